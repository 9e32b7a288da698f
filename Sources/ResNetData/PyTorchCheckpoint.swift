/// Reads the tensors of a PyTorch checkpoint written by `torch.save(model.state_dict(), path)`,
/// without running anything.
///
/// Two formats are read:
/// - the ZIP archive PyTorch writes since 1.6 (`PREFIX/data.pkl`, `PREFIX/data/KEY` per storage,
///   `PREFIX/byteorder`, ...), through ``ZipArchive``;
/// - the legacy stream older PyTorch wrote (and `_use_new_zipfile_serialization=False` still
///   writes): the magic-number, protocol-version and system-info pickles, the main pickle, the
///   pickled list of storage keys, then each storage as an int64 element count and its bytes.
///
/// The pickle is read by ``Pickle`` in its ``Pickle/Dialect/pytorch`` dialect, which knows only
/// ``Pickle/pytorchGlobals`` besides plain data: a pickle naming any other global (`os.system`,
/// `builtins.eval`, a `torch.nn` module class of a whole pickled model) is refused with one line
/// naming it, before a single storage byte is read, and nothing in the file is ever executed.
///
/// Tensors are read from their storages by their offsets and strides (non-contiguous views and
/// several tensors sharing one storage are read as PyTorch would), every index checked against
/// the storage, and converted to `Float`: float32 exactly, float16 and bfloat16 exactly (every
/// value is representable), float64 rounded to nearest. Only little-endian files are read.
public enum PyTorchCheckpoint {
    /// One entry of the state_dict.
    public struct Tensor: Sendable, Equatable {
        /// The state_dict key, such as `layer1.0.conv1.weight`.
        public var name: String
        /// The size of each dimension, outermost first (empty for a scalar).
        public var shape: [Int]
        /// The elements in row-major order, converted to `Float`. For an `int64` tensor (batch
        /// norm's `num_batches_tracked`) these are the integers converted to `Float` (exact up to
        /// 2^24): a model loader checks ``isFloatingPoint`` and skips those.
        public var values: [Float]
        /// The element type the file stores.
        public var dtype: TorchDType

        /// Whether the file stores floating-point elements (false for `int64` counters).
        public var isFloatingPoint: Bool { dtype.isFloatingPoint }
    }

    /// The bounds a checkpoint is checked against before anything is allocated for it.
    public struct Limits: Sendable {
        /// The largest file read: 2 GiB (capped at ``DataLimits/memoryBudget``). torchvision's
        /// largest ResNet, wide_resnet101_2, is 254 MB as float32.
        public var fileBytes = 2 << 30
        /// The largest pickle read: 64 MiB. A ResNet-152 state_dict's `data.pkl` is about
        /// 100 KB (about 90 bytes per tensor).
        public var pickleBytes = 64 << 20
        /// The most tensors a state_dict may hold: 100,000 (ResNet-152 has 1,045).
        public var tensors = 100_000
        /// The most elements all tensors together may hold: 2^29 (2 GiB as `Float`);
        /// wide_resnet101_2 has 126.9 million parameters.
        public var totalElements = 1 << 29

        /// The defaults above.
        public init() {}
    }

    /// The tensors of the checkpoint at `path`, in the state_dict's order.
    ///
    /// The file's top-level object must be a dictionary of tensors (a state_dict), or a
    /// dictionary holding one under `state_dict` or `model_state_dict` (as training scripts
    /// often save it).
    ///
    /// - Throws: a ``DataError`` naming `path` (and for a zip member `path:member`): the file
    ///   missing, too large, not a checkpoint, damaged (with the byte offset), using a global
    ///   outside the allow-list (naming it), or holding something other than tensors.
    public static func read(path: String, limits: Limits = Limits()) throws -> [Tensor] {
        let bytes = try readFileBytes(path: path, limit: limits.fileBytes, format: "a PyTorch checkpoint")
        return try read(bytes: bytes, path: path, limits: limits)
    }

    /// The tensors of the checkpoint in `bytes`; `path` is used in errors.
    public static func read(bytes: [UInt8], path: String, limits: Limits = Limits()) throws -> [Tensor] {
        guard bytes.count <= limits.fileBytes else {
            throw DataError.tooLarge(path: path, what: "the checkpoint's size", limit: limits.fileBytes, hint: "is it really a PyTorch checkpoint?")
        }
        if bytes.starts(with: [0x50, 0x4b, 0x03, 0x04]) || bytes.starts(with: [0x50, 0x4b, 0x05, 0x06]) {
            return try readZip(bytes, path: path, limits: limits)
        }
        if let start = legacyMagicLength(bytes) {
            return try readLegacy(bytes, from: start, path: path, limits: limits)
        }
        if bytes.count >= 262, bytes[257..<262].elementsEqual("ustar".utf8) {
            throw DataError.unsupported(path: path, reason: "a tar checkpoint (PyTorch before 0.4); load and re-save it with a current PyTorch")
        }
        throw DataError.malformed(path: path, offset: 0, reason: "not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save stream)")
    }

    // MARK: Zip

    static func readZip(_ bytes: [UInt8], path: String, limits: Limits) throws -> [Tensor] {
        let archive = try ZipArchive(bytes: bytes, path: path, maximumEntryBytes: min(limits.fileBytes, DataLimits.memoryBudget))
        // torch.save names every member PREFIX/...; PREFIX is the file's stem (`archive` when saving to a buffer).
        let pickles = archive.entries.filter { entry in
            entry.name.hasSuffix("/data.pkl") && entry.name.split(separator: "/", omittingEmptySubsequences: false).count == 2
        }
        guard pickles.count == 1, let pickleEntry = pickles.first else {
            throw DataError.malformed(path: path, offset: 0, reason: pickles.isEmpty
                ? "zip archive has no PREFIX/data.pkl member: not a torch.save checkpoint"
                : "zip archive has \(pickles.count) PREFIX/data.pkl members")
        }
        let prefix = String(pickleEntry.name.dropLast("data.pkl".count))
        if let order = archive.entry(named: prefix + "byteorder") {
            let text = String(decoding: try archive.data(of: order), as: UTF8.self)
            switch text {
            case "little": break
            case "big": throw DataError.unsupported(path: path, reason: "a big-endian checkpoint (byteorder 'big'); re-save it on a little-endian machine")
            default: throw DataError.malformed(path: path, offset: order.headerOffset, reason: "byteorder member is neither 'little' nor 'big'")
            }
        }
        guard pickleEntry.size <= limits.pickleBytes else {
            throw DataError.tooLarge(path: path + ":" + oneLine(pickleEntry.name), what: "the pickle", limit: limits.pickleBytes,
                                     hint: "a state_dict's pickle is about 90 bytes per tensor")
        }
        let root = try Pickle.parse(try archive.data(of: pickleEntry), path: path + ":" + oneLine(pickleEntry.name), dialect: .pytorch)
        let references = try stateDict(root, path: path, limits: limits)
        var storages: [String: ArraySlice<UInt8>] = [:]
        return try references.map { name, reference in
            let key = reference.storage.key
            if storages[key] == nil {
                let member = prefix + "data/" + key
                guard let entry = archive.entry(named: member) else {
                    throw DataError.malformed(path: path, offset: 0, reason: "tensor '\(oneLine(name))' names storage '\(oneLine(key))' but the archive has no member '\(oneLine(member))'")
                }
                let (expected, overflow) = reference.storage.count.multipliedReportingOverflow(by: reference.storage.dtype.elementSize)
                guard !overflow, entry.size == expected else {
                    throw DataError.malformed(path: path, offset: entry.headerOffset,
                                              reason: "member '\(oneLine(member))' has \(entry.size) bytes, not the \(reference.storage.count) \(reference.storage.dtype) elements its storage declares")
                }
                storages[key] = try archive.data(of: entry)
            }
            return try tensor(name, reference, storage: storages[key]!, path: path)
        }
    }

    // MARK: Legacy

    /// The length of the legacy format's first pickle, `MAGIC_NUMBER` = 0x1950a86a20f9469cfc6c
    /// (`torch/serialization.py`) as a `LONG1`, or `nil` if `bytes` does not start with it.
    static func legacyMagicLength(_ bytes: [UInt8]) -> Int? {
        var at = 0
        guard bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) else { return nil }
        at = 2
        if bytes.count > at, bytes[at] == 0x95 { at += 9 }  // FRAME and its 8-byte length (protocol 4+)
        let magic: [UInt8] = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]
        guard bytes.count >= at + magic.count, bytes[at..<(at + magic.count)].elementsEqual(magic) else { return nil }
        return at + magic.count
    }

    static func readLegacy(_ bytes: [UInt8], from start: Int, path: String, limits: Limits) throws -> [Tensor] {
        var offset = start
        /// The next pickle of the stream, at most `limits.pickleBytes` long.
        func nextPickle(_ what: String, dialect: Pickle.Dialect) throws -> PickleValue {
            let end = offset + min(bytes.count - offset, limits.pickleBytes)
            let name = "\(path) (\(what) pickle at byte \(offset))"
            do {
                let (value, length) = try Pickle.parsePrefix(bytes[offset..<end], path: name, dialect: dialect)
                offset += length
                return value
            } catch DataError.truncated where end < bytes.count {
                throw DataError.tooLarge(path: name, what: "the pickle", limit: limits.pickleBytes, hint: "a state_dict's pickle is about 90 bytes per tensor")
            }
        }
        guard case .int(1001) = try nextPickle("protocol version", dialect: .numpy) else {
            throw DataError.unsupported(path: path, reason: "legacy checkpoint protocol version other than 1001")
        }
        let info = try nextPickle("system info", dialect: .numpy)
        guard case .bool(let littleEndian)? = info["little_endian"] else {
            throw DataError.malformed(path: path, offset: offset, reason: "legacy system info has no little_endian flag")
        }
        guard littleEndian else { throw DataError.unsupported(path: path, reason: "a big-endian checkpoint; re-save it on a little-endian machine") }
        let root = try nextPickle("main", dialect: .pytorch)
        let references = try stateDict(root, path: path, limits: limits)
        guard case .list(let keyValues) = try nextPickle("storage keys", dialect: .numpy) else {
            throw DataError.malformed(path: path, offset: offset, reason: "legacy storage keys are not a list")
        }
        // Every storage the pickle names, also those of tensors outside the state_dict (an
        // optimizer's, say): their element types give the sizes needed to step over them.
        var storageOf: [String: TorchStorageReference] = [:]
        func collect(_ value: PickleValue) {
            switch value {
            case .torchTensor(let tensor): storageOf[tensor.storage.key] = tensor.storage
            case .list(let items), .tuple(let items): items.forEach(collect)
            case .dict(let entries): entries.forEach { collect($0.value) }
            default: break
            }
        }
        collect(root)
        var storages: [String: ArraySlice<UInt8>] = [:]
        for keyValue in keyValues {
            guard let key = keyValue.text else { throw DataError.malformed(path: path, offset: offset, reason: "legacy storage key is a \(keyValue.typeName)") }
            guard let storage = storageOf[key] else {
                throw DataError.unsupported(path: path, reason: "legacy storage '\(oneLine(key))' is used by no tensor, so its element type is unknown")
            }
            guard bytes.count - offset >= 8 else { throw DataError.truncated(path: path, expected: offset + 8, actual: bytes.count) }
            var count: UInt64 = 0
            for i in (0..<8).reversed() { count = count << 8 | UInt64(bytes[offset + i]) }
            guard count == UInt64(storage.count) else {
                throw DataError.malformed(path: path, offset: offset, reason: "legacy storage '\(oneLine(key))' holds \(count) elements where the pickle says \(storage.count)")
            }
            offset += 8
            let (size, overflow) = storage.count.multipliedReportingOverflow(by: storage.dtype.elementSize)
            guard !overflow, size <= bytes.count - offset else {
                throw DataError.truncated(path: path, expected: overflow ? Int.max : offset + size, actual: bytes.count)
            }
            guard storages[key] == nil else { throw DataError.malformed(path: path, offset: offset, reason: "legacy storage '\(oneLine(key))' appears twice") }
            storages[key] = bytes[offset..<(offset + size)]
            offset += size
        }
        return try references.map { name, reference in
            guard let storage = storages[reference.storage.key] else {
                throw DataError.malformed(path: path, offset: offset, reason: "tensor '\(oneLine(name))' names storage '\(oneLine(reference.storage.key))', which the file does not hold")
            }
            return try tensor(name, reference, storage: storage, path: path)
        }
    }

    // MARK: Tensors

    /// The (name, tensor) pairs of the state_dict in `root`, with the element total checked.
    static func stateDict(_ root: PickleValue, path: String, limits: Limits) throws -> [(String, TorchTensorReference)] {
        func tensors(_ value: PickleValue) -> [PickleValue.Entry]? {
            guard case .dict(let entries) = value,
                  entries.allSatisfy({ if case .torchTensor = $0.value { true } else { false } }) else { return nil }
            return entries
        }
        guard let entries = tensors(root) ?? root["state_dict"].flatMap(tensors) ?? root["model_state_dict"].flatMap(tensors) else {
            if case .dict(let entries) = root, let odd = entries.first(where: { if case .torchTensor = $0.value { false } else { true } }) {
                throw DataError.unsupported(path: path, reason: "not a state_dict: entry '\(oneLine(odd.key.text ?? odd.key.typeName))' is a \(odd.value.typeName), not a tensor")
            }
            throw DataError.unsupported(path: path, reason: "not a state_dict: the file holds a \(root.typeName), not a dict of tensors")
        }
        guard entries.count <= limits.tensors else {
            throw DataError.tooLarge(path: path, what: "the number of tensors (\(entries.count))", limit: limits.tensors, hint: "the file is not a model's state_dict")
        }
        var seen = Set<String>()
        var total = 0
        return try entries.map { entry in
            guard let name = entry.key.text else { throw DataError.malformed(path: path, offset: 0, reason: "state_dict key is a \(entry.key.typeName), not text") }
            guard seen.insert(name).inserted else { throw DataError.malformed(path: path, offset: 0, reason: "state_dict key '\(oneLine(name))' appears twice") }
            guard case .torchTensor(let reference) = entry.value else { preconditionFailure("checked above") }
            let (sum, overflow) = total.addingReportingOverflow(reference.count)
            guard !overflow, sum <= min(limits.totalElements, DataLimits.memoryBudget / 4) else {
                throw DataError.tooLarge(path: path, what: "the tensors' elements (at '\(oneLine(name))', \(overflow ? "overflowing" : "\(sum)") elements of 4 bytes)",
                                         limit: min(limits.totalElements, DataLimits.memoryBudget / 4) * 4, hint: "the file is larger than any model this reads")
            }
            total = sum
            return (name, reference)
        }
    }

    /// The elements of `reference` gathered from `storage` (its raw little-endian bytes) by
    /// offset and strides, converted to `Float`.
    static func tensor(_ name: String, _ reference: TorchTensorReference, storage: ArraySlice<UInt8>, path: String) throws -> Tensor {
        let dtype = reference.storage.dtype, size = dtype.elementSize
        let (storageBytes, overflow) = reference.storage.count.multipliedReportingOverflow(by: size)
        guard !overflow, storage.count == storageBytes,
              let end = TorchTensorReference.end(offset: reference.offset, shape: reference.shape, strides: reference.strides),
              end <= reference.storage.count else {
            throw DataError.malformed(path: path, offset: 0, reason: "tensor '\(oneLine(name))' reaches outside its storage '\(oneLine(reference.storage.key))'")
        }
        let count = reference.count
        let convert: (UnsafeRawBufferPointer, Int) -> Float
        switch dtype {
        case .float32: convert = { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: $1 * 4, as: UInt32.self))) }
        case .float16: convert = { floatFromHalf(UInt16(littleEndian: $0.loadUnaligned(fromByteOffset: $1 * 2, as: UInt16.self))) }
        case .bfloat16: convert = { Float(bitPattern: UInt32(UInt16(littleEndian: $0.loadUnaligned(fromByteOffset: $1 * 2, as: UInt16.self))) << 16) }
        case .float64: convert = { Float(Double(bitPattern: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: $1 * 8, as: UInt64.self)))) }
        case .int64: convert = { Float(Int64(littleEndian: $0.loadUnaligned(fromByteOffset: $1 * 8, as: Int64.self))) }
        }
        let values = [Float](unsafeUninitializedCapacity: count) { output, initialized in
            storage.withUnsafeBytes { raw in
                if reference.isContiguous {
                    for i in 0..<count { output[i] = convert(raw, reference.offset + i) }
                } else {
                    // An odometer over the shape, row-major, stepping the storage index by strides.
                    let shape = reference.shape, strides = reference.strides
                    var index = [Int](repeating: 0, count: shape.count)
                    var element = reference.offset
                    for i in 0..<count {
                        output[i] = convert(raw, element)
                        var axis = shape.count - 1
                        while axis >= 0 {
                            index[axis] += 1
                            if index[axis] < shape[axis] {
                                element += strides[axis]
                                break
                            }
                            element -= strides[axis] * (shape[axis] - 1)  // within the checked end
                            index[axis] = 0
                            axis -= 1
                        }
                    }
                }
            }
            initialized = count
        }
        return Tensor(name: name, shape: reference.shape, values: values, dtype: dtype)
    }

    /// An IEEE half-precision value widened exactly to `Float` (written out because `Float16`
    /// is unavailable on macOS on Intel).
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign: UInt32 = UInt32(bits >> 15) << 31
        let exponent = Int(bits >> 10) & 0x1f
        let mantissa = UInt32(bits & 0x3ff)
        switch exponent {
        case 0:  // zero or subnormal: mantissa x 2^-24, exact in Float
            let magnitude = Float(mantissa) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        case 31:  // infinity or NaN (payload kept)
            return Float(bitPattern: sign | 0x7f80_0000 | mantissa << 13)
        default:
            return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
        }
    }
}
