/// A value read from a Python pickle by ``Pickle``.
///
/// Python 2 `str` and Python 3 `bytes` and `bytearray` all become ``bytes(_:)``; Python text
/// (`unicode` in Python 2, `str` in 3) becomes ``string(_:)``.
public indirect enum PickleValue: Sendable, Equatable {
    /// One key and value of a dictionary.
    public struct Entry: Sendable, Equatable {
        /// The key.
        public var key: PickleValue
        /// The value stored under it.
        public var value: PickleValue
    }

    /// Python's `None`.
    case none
    /// `True` or `False` (also a numpy bool scalar).
    case bool(Bool)
    /// An integer that fits in 64 bits (also a numpy integer scalar).
    case int(Int)
    /// A float (also a numpy float scalar).
    case float(Double)
    /// Text.
    case string(String)
    /// A byte string.
    case bytes([UInt8])
    /// A list.
    case list([PickleValue])
    /// A tuple.
    case tuple([PickleValue])
    /// A dictionary's entries in pickle order.
    case dict([Entry])
    /// A numpy array of bools, integers or floats.
    case array(NumpyArray)
    /// A PyTorch tensor (only in the ``Pickle/Dialect/pytorch`` dialect): where its elements
    /// are, in a storage kept outside the pickle.
    case torchTensor(TorchTensorReference)

    /// The value stored under `key` in a dictionary, matching a text key or a byte-string key
    /// with the same characters (Python 2 pickles use byte strings); `nil` for other values.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let entries) = self else { return nil }
        return entries.last { entry in
            switch entry.key {
            case .string(let text): text == key
            case .bytes(let bytes): PickleValue.bytes(bytes).text == key
            default: false
            }
        }?.value
    }

    /// A text value, or a byte string decoded as Latin-1 (what Python 3 does for Python 2 `str`).
    public var text: String? {
        switch self {
        case .string(let text): text
        case .bytes(let bytes): String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        default: nil
        }
    }

    /// A short name of the value's type, for messages.
    public var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .array(let array): "numpy array \(array.dtype) \(array.shape)"
        case .torchTensor(let tensor): "torch tensor \(tensor.storage.dtype) \(tensor.shape)"
        }
    }
}

/// A numpy array read from a pickle: its elements' raw bytes in row-major (C) order.
public struct NumpyArray: Sendable, Equatable {
    /// The element kinds the reader accepts.
    public enum Kind: Character, Sendable {
        /// numpy `b1`.
        case bool = "b"
        /// numpy `i1` ... `i8`.
        case signed = "i"
        /// numpy `u1` ... `u8`.
        case unsigned = "u"
        /// numpy `f2`, `f4`, `f8`.
        case float = "f"
    }

    /// The size of each dimension, outermost first.
    public var shape: [Int]
    /// The element kind.
    public var kind: Kind
    /// Bytes per element: 1 for bool, 1, 2, 4 or 8 for integers, 2, 4 or 8 for floats.
    public var itemSize: Int
    /// Whether multi-byte elements are stored big-endian.
    public var bigEndian: Bool
    /// `shape.product * itemSize` bytes in row-major order.
    public var bytes: [UInt8]

    /// The numpy type string, such as `u1` or `<i8`.
    public var dtype: String {
        (itemSize == 1 ? "" : bigEndian ? ">" : "<") + String(kind.rawValue) + String(itemSize)
    }

    /// The number of elements (the reader only makes arrays whose shape's product fits in `Int`).
    public var count: Int { DataLimits.product(shape) ?? 0 }

    /// The elements as integers, for bool and integer arrays that fit in `Int`; else `nil`.
    public func integers() -> [Int]? {
        guard kind != .float else { return nil }
        var result = [Int]()
        result.reserveCapacity(count)
        for start in stride(from: 0, to: bytes.count, by: itemSize) {
            var value: UInt64 = 0
            for i in 0..<itemSize {
                let byte = bytes[start + (bigEndian ? i : itemSize - 1 - i)]
                value = value << 8 | UInt64(byte)
            }
            if kind == .signed && itemSize < 8 && value >> (itemSize * 8 - 1) & 1 == 1 {
                value |= ~0 << UInt64(itemSize * 8)  // sign-extend
            }
            if kind == .unsigned && itemSize == 8 && value > UInt64(Int.max) { return nil }
            result.append(Int(truncatingIfNeeded: value))
        }
        return result
    }
}

/// The element types of PyTorch storages that ``Pickle`` reads in the ``Pickle/Dialect/pytorch``
/// dialect, each named by the storage class a pickle refers to (`torch.FloatStorage`, ...).
public enum TorchDType: String, Sendable, CaseIterable {
    /// `torch.float32` (`torch.FloatStorage`).
    case float32
    /// `torch.float16` (`torch.HalfStorage`).
    case float16
    /// `torch.bfloat16` (`torch.BFloat16Storage`).
    case bfloat16
    /// `torch.float64` (`torch.DoubleStorage`).
    case float64
    /// `torch.int64` (`torch.LongStorage`): batch norm's `num_batches_tracked`.
    case int64

    /// The storage class a pickle names for this type, as `module.name`.
    public var storageClass: String {
        switch self {
        case .float32: "torch.FloatStorage"
        case .float16: "torch.HalfStorage"
        case .bfloat16: "torch.BFloat16Storage"
        case .float64: "torch.DoubleStorage"
        case .int64: "torch.LongStorage"
        }
    }

    /// Bytes per element.
    public var elementSize: Int {
        switch self {
        case .float16, .bfloat16: 2
        case .float32: 4
        case .float64, .int64: 8
        }
    }

    /// Whether the type holds floating-point numbers (all but `int64`).
    public var isFloatingPoint: Bool { self != .int64 }

    /// The type whose storage class is `name` (`module.name`), or `nil`.
    public init?(storageClass name: String) {
        guard let type = Self.allCases.first(where: { $0.storageClass == name }) else { return nil }
        self = type
    }
}

/// A PyTorch storage named by a pickle's persistent id `('storage', storage class, key,
/// location, element count)`: its bytes are kept outside the pickle, under `key`.
public struct TorchStorageReference: Sendable, Equatable, Hashable {
    /// The key of the storage's bytes (`data/KEY` in a zip checkpoint).
    public var key: String
    /// The element type.
    public var dtype: TorchDType
    /// The number of elements the storage holds.
    public var count: Int
    /// The device it was saved from (`cpu`, `cuda:0`, ...): informational, the bytes are the same.
    public var location: String
}

/// A tensor in a PyTorch pickle, as `torch._utils._rebuild_tensor_v2` describes it: a view of
/// `storage` starting at element `offset`, with `shape` and `strides` in elements.
///
/// The pickle reader checks, with overflow-checked arithmetic, that every element of the view
/// lies inside the storage's declared element count.
public struct TorchTensorReference: Sendable, Equatable {
    /// The storage holding the elements.
    public var storage: TorchStorageReference
    /// The index of the tensor's first element in the storage.
    public var offset: Int
    /// The size of each dimension, outermost first (empty for a scalar).
    public var shape: [Int]
    /// The distance in elements between neighbours along each dimension.
    public var strides: [Int]

    /// The number of elements (`shape`'s product; the reader only makes tensors where it fits).
    public var count: Int { DataLimits.product(shape) ?? 0 }

    /// Whether the elements lie in row-major order without gaps (strides of a C-contiguous
    /// tensor; dimensions of size 1 may have any stride, as in PyTorch).
    public var isContiguous: Bool {
        guard shape.count == strides.count else { return false }
        var expected = 1
        for axis in shape.indices.reversed() where shape[axis] != 1 {
            guard strides[axis] == expected else { return false }
            let (next, overflow) = expected.multipliedReportingOverflow(by: shape[axis])
            guard !overflow else { return false }
            expected = next
        }
        return true
    }

    /// The storage index one past the last element the view reaches (`offset` for an empty
    /// tensor), or `nil` if a shape, stride or offset is negative or the index overflows.
    static func end(offset: Int, shape: [Int], strides: [Int]) -> Int? {
        guard offset >= 0, shape.count == strides.count, DataLimits.product(shape) != nil else { return nil }
        if shape.contains(0) { return offset }
        var last = offset
        for (size, stride) in zip(shape, strides) {
            guard stride >= 0 else { return nil }
            let (step, overflow1) = (size - 1).multipliedReportingOverflow(by: stride)
            let (sum, overflow2) = last.addingReportingOverflow(step)
            guard !overflow1, !overflow2 else { return nil }
            last = sum
        }
        let (end, overflow) = last.addingReportingOverflow(1)
        return overflow ? nil : end
    }
}

/// A safe reader of Python pickles (protocols 2 to 5) holding plain data and numpy arrays.
///
/// The reader is a small pickle machine with a fixed set of opcodes. It never imports or runs
/// anything: the only globals it accepts are the few numpy and codec functions that pickled
/// arrays and Python 2 byte strings refer to, and it interprets those structurally
/// (`numpy.core.multiarray._reconstruct` and `numpy._core...` for numpy 1 and 2, `numpy.ndarray`,
/// `numpy.dtype`, `numpy.core.numeric._frombuffer` (protocol 5), `numpy.core.multiarray.scalar`
/// and `_codecs.encode`). Any other global, object construction (`NEWOBJ`, `INST`, `OBJ`),
/// persistent ids, extension codes, sets, out-of-band buffers and protocol-0 text opcodes are
/// refused with a ``DataError`` naming the file and byte offset. Every length is checked against
/// the bytes that remain before anything is allocated.
///
/// The ``Dialect/pytorch`` dialect also reads what `torch.save(model.state_dict())` pickles
/// (see ``pytorchGlobals``): `collections.OrderedDict`, tensors made by
/// `torch._utils._rebuild_tensor_v2` (returned as ``PickleValue/torchTensor(_:)``, references to
/// storages, not their bytes) and `BINPERSID` persistent ids naming storages. It still runs
/// nothing: those globals are interpreted structurally too, and any other is refused at its
/// opcode, before the caller reads a single storage byte.
public enum Pickle {
    /// Which globals and opcodes a pickle may use.
    public enum Dialect: Sendable {
        /// Plain data and numpy arrays (``allowedGlobals``): CIFAR's pickles.
        case numpy
        /// Also a PyTorch checkpoint's pickle: ``pytorchGlobals`` and `BINPERSID` storage ids.
        case pytorch
    }

    /// The globals the reader accepts, as `module.name`.
    public static let allowedGlobals: Set<String> = [
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
        "numpy.ndarray", "numpy.dtype", "_codecs.encode",
    ]

    /// The further globals the ``Dialect/pytorch`` dialect accepts, as `module.name`: what the
    /// pickle of a `state_dict` saved by PyTorch 1.x and 2.x refers to (checked on files written
    /// by torch 2.13 with `_use_new_zipfile_serialization` true and false).
    public static let pytorchGlobals: Set<String> = Set([
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    ] + TorchDType.allCases.map(\.storageClass))

    /// The deepest nesting of containers the reader returns.
    public static let maximumDepth = 64

    /// Reads the pickle in the file at `path` (gzip-compressed or not).
    ///
    /// The file must be a regular file of at most `limit` bytes (default
    /// ``DataLimits/batchFileBytes``, above the largest CIFAR pickle), compressed and decompressed.
    ///
    /// - Throws: a ``DataError`` naming `path` and, for a malformed or refused pickle, the byte offset.
    public static func load(path: String, limit: Int = DataLimits.batchFileBytes) throws -> PickleValue {
        try parse(readFileDecompressingIfGzip(path: path, limit: limit, format: "a pickle")[...], path: path)
    }

    /// Reads a pickle from `bytes`; `path` is used in errors, offsets count from `bytes.startIndex`.
    ///
    /// Bytes after the pickle's `STOP` are ignored.
    public static func parse(_ bytes: ArraySlice<UInt8>, path: String, dialect: Dialect = .numpy) throws -> PickleValue {
        try parsePrefix(bytes, path: path, dialect: dialect).value
    }

    /// Reads the pickle at the start of `bytes` and returns it with its length in bytes (up to
    /// and including `STOP`): for streams of consecutive pickles such as PyTorch's legacy format.
    static func parsePrefix(_ bytes: ArraySlice<UInt8>, path: String, dialect: Dialect) throws -> (value: PickleValue, length: Int) {
        try bytes.withUnsafeBufferPointer { buffer in
            var machine = Machine(input: buffer, path: path, dialect: dialect)
            let value = try machine.run()
            return (value, machine.position)
        }
    }
}

// MARK: - The machine

/// A list or dictionary under construction: mutable and shared through the memo, as in Python.
private final class ListBox { var items: [Object] = [] }
private final class DictBox { var entries: [(Object, Object)] = [] }
/// A `numpy.dtype` (BUILD may set its byte order after creation).
private final class DTypeBox {
    let kind: NumpyArray.Kind, itemSize: Int
    var bigEndian: Bool
    init(kind: NumpyArray.Kind, itemSize: Int, bigEndian: Bool) {
        self.kind = kind; self.itemSize = itemSize; self.bigEndian = bigEndian
    }
}
/// An array made by `_reconstruct`, filled by BUILD.
private final class ArrayBox { var array: NumpyArray?; init(_ array: NumpyArray?) { self.array = array } }

private enum Object {
    case none, bool(Bool), int(Int), float(Double)
    case unicode([UInt8])  // UTF-8, validated when returned
    case bytes([UInt8])
    case list(ListBox), tuple([Object]), dict(DictBox)
    case global(String)    // "module.name", already checked against the allowed list
    case dtype(DTypeBox), array(ArrayBox)
    case storage(TorchStorageReference), tensor(TorchTensorReference)  // PyTorch dialect only

    var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .unicode: "str"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .global(let name): name
        case .dtype: "numpy.dtype"
        case .array: "numpy.ndarray"
        case .storage(let storage): "\(storage.dtype.storageClass) storage"
        case .tensor: "torch.Tensor"
        }
    }
}

private struct Machine {
    let input: UnsafeBufferPointer<UInt8>
    let path: String
    let dialect: Pickle.Dialect
    var position = 0
    var opcodeOffset = 0
    var stack: [Object] = []
    var marks: [Int] = []
    var memo: [Int: Object] = [:]
    var nodeBudget: Int
    /// The storages persistent ids have named, by key: one key must always mean one storage.
    var storages: [String: TorchStorageReference] = [:]

    init(input: UnsafeBufferPointer<UInt8>, path: String, dialect: Pickle.Dialect) {
        self.input = input
        self.path = path
        self.dialect = dialect
        nodeBudget = input.count + 1024
    }

    // MARK: Errors and input

    func fail(_ reason: String) -> DataError {
        .malformed(path: path, offset: opcodeOffset, reason: reason)
    }

    func refuse(_ reason: String) -> DataError {
        .unsupported(path: path, reason: "\(reason) at byte offset \(opcodeOffset)")
    }

    mutating func take(_ count: Int) throws -> UnsafeBufferPointer<UInt8> {
        guard count >= 0, count <= input.count - position else {
            throw DataError.truncated(path: path, expected: position + min(max(count, 0), Int.max - position), actual: input.count)
        }
        defer { position += count }
        return UnsafeBufferPointer(rebasing: input[position..<(position + count)])
    }

    mutating func byte() throws -> UInt8 { try take(1)[0] }

    /// A little-endian unsigned integer of `size` bytes.
    mutating func unsigned(_ size: Int) throws -> UInt64 {
        let raw = try take(size)
        var value: UInt64 = 0
        for i in (0..<size).reversed() { value = value << 8 | UInt64(raw[i]) }
        return value
    }

    /// A length prefix of `size` bytes; anything larger than the rest of the input is reported
    /// as truncation by the following `take`.
    mutating func length(_ size: Int) throws -> Int {
        let value = try unsigned(size)
        return value > UInt64(Int.max) ? Int.max : Int(value)
    }

    /// A newline-terminated line (GLOBAL's module and name), at most 256 bytes.
    mutating func line() throws -> String {
        let rest = input[position...].prefix(257)
        guard let newline = rest.firstIndex(of: UInt8(ascii: "\n")) else {
            throw fail(rest.count < 257 ? "pickle ends inside a GLOBAL name" : "GLOBAL name longer than 256 bytes")
        }
        let text = String(decoding: input[position..<newline], as: UTF8.self)
        position = newline + 1
        return text
    }

    // MARK: Stack

    mutating func pop() throws -> Object {
        guard let top = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        stack.removeLast()
        return top
    }

    mutating func popMark() throws -> [Object] {
        guard let mark = marks.popLast() else { throw fail("no MARK on the stack") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    mutating func top() throws -> Object {
        guard let top = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return top
    }

    // MARK: Run

    mutating func run() throws -> PickleValue {
        while true {
            opcodeOffset = position
            let op = try byte()
            switch op {
            case 0x80:  // PROTO
                let version = try byte()
                guard version <= 5 else { throw refuse("pickle protocol \(version) (newer than 5)") }
            case 0x95:  // FRAME: a length hint; frames are not otherwise needed to read
                let size = try length(8)
                guard size <= input.count - position else {
                    throw DataError.truncated(path: path, expected: position + min(size, Int.max - position), actual: input.count)
                }
            case UInt8(ascii: "."):  // STOP
                let result = try pop()
                return try value(of: result, depth: 0)
            case UInt8(ascii: "("): marks.append(stack.count)
            case UInt8(ascii: "0"):  // POP (a mark if that is what is on top)
                if let mark = marks.last, mark == stack.count { marks.removeLast() } else { _ = try pop() }
            case UInt8(ascii: "1"): _ = try popMark()
            case UInt8(ascii: "2"): stack.append(try top())

            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case UInt8(ascii: "J"): stack.append(.int(Int(Int32(truncatingIfNeeded: try unsigned(4)))))
            case UInt8(ascii: "K"): stack.append(.int(Int(try byte())))
            case UInt8(ascii: "M"): stack.append(.int(Int(try unsigned(2))))
            case 0x8a: stack.append(.int(try long(Int(try byte()))))  // LONG1
            case 0x8b:  // LONG4
                let size = Int32(truncatingIfNeeded: try unsigned(4))
                guard size >= 0 else { throw fail("negative LONG4 size \(size)") }
                stack.append(.int(try long(Int(size))))
            case UInt8(ascii: "G"):  // BINFLOAT, big-endian
                let raw = try take(8)
                stack.append(.float(Double(bitPattern: raw.reduce(0) { $0 << 8 | UInt64($1) })))

            case UInt8(ascii: "T"):  // BINSTRING (Python 2 str), signed 32-bit length
                let size = Int32(truncatingIfNeeded: try unsigned(4))
                guard size >= 0 else { throw fail("negative BINSTRING length \(size)") }
                stack.append(.bytes(Array(try take(Int(size)))))
            case UInt8(ascii: "U"): stack.append(.bytes(Array(try take(Int(try byte())))))   // SHORT_BINSTRING
            case UInt8(ascii: "B"): stack.append(.bytes(Array(try take(try length(4)))))     // BINBYTES
            case UInt8(ascii: "C"): stack.append(.bytes(Array(try take(Int(try byte())))))   // SHORT_BINBYTES
            case 0x8e, 0x96: stack.append(.bytes(Array(try take(try length(8)))))            // BINBYTES8, BYTEARRAY8
            case UInt8(ascii: "X"): stack.append(.unicode(Array(try take(try length(4)))))   // BINUNICODE
            case 0x8c: stack.append(.unicode(Array(try take(Int(try byte())))))              // SHORT_BINUNICODE
            case 0x8d: stack.append(.unicode(Array(try take(try length(8)))))                // BINUNICODE8

            case UInt8(ascii: ")"): stack.append(.tuple([]))
            case UInt8(ascii: "t"): stack.append(.tuple(try popMark()))
            case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                let count = Int(op - 0x84)
                guard stack.count - (marks.last ?? 0) >= count else { throw fail("stack underflow") }
                let items = Array(stack.suffix(count))
                stack.removeLast(count)
                stack.append(.tuple(items))
            case UInt8(ascii: "]"): stack.append(.list(ListBox()))
            case UInt8(ascii: "l"):
                let list = ListBox()
                list.items = try popMark()
                stack.append(.list(list))
            case UInt8(ascii: "a"):  // APPEND
                let item = try pop()
                try list(try top()).items.append(item)
            case UInt8(ascii: "e"):  // APPENDS
                let items = try popMark()
                try list(try top()).items.append(contentsOf: items)
            case UInt8(ascii: "}"): stack.append(.dict(DictBox()))
            case UInt8(ascii: "d"):
                let dict = DictBox()
                try addPairs(try popMark(), to: dict)
                stack.append(.dict(dict))
            case UInt8(ascii: "s"):  // SETITEM
                let value = try pop(), key = try pop()
                try addPairs([key, value], to: try dict(try top()))
            case UInt8(ascii: "u"):  // SETITEMS
                let items = try popMark()
                try addPairs(items, to: try dict(try top()))

            case UInt8(ascii: "c"):  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .unicode(let nameBytes) = name, case .unicode(let moduleBytes) = module else {
                    throw fail("STACK_GLOBAL needs two str values, got \(module.typeName) and \(name.typeName)")
                }
                stack.append(try global(String(decoding: moduleBytes, as: UTF8.self), String(decoding: nameBytes, as: UTF8.self)))
            case UInt8(ascii: "R"):  // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .tuple(let items) = arguments else { throw fail("REDUCE arguments are a \(arguments.typeName), not a tuple") }
                stack.append(try call(callable, items))
            case UInt8(ascii: "b"):  // BUILD
                let state = try pop()
                try build(try top(), state: state)
            case UInt8(ascii: "Q") where dialect == .pytorch:  // BINPERSID
                stack.append(try persistentLoad(try pop()))

            case UInt8(ascii: "q"): memo[Int(try byte())] = try top()         // BINPUT
            case UInt8(ascii: "r"): memo[Int(try unsigned(4))] = try top()    // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                           // MEMOIZE
            case UInt8(ascii: "h"): stack.append(try recall(Int(try byte())))      // BINGET
            case UInt8(ascii: "j"): stack.append(try recall(Int(try unsigned(4)))) // LONG_BINGET

            default:
                throw refuse("pickle opcode \(Self.opcodeName(op))")
            }
        }
    }

    func recall(_ index: Int) throws -> Object {
        guard let object = memo[index] else { throw fail("memo entry \(index) was never stored") }
        return object
    }

    func list(_ object: Object) throws -> ListBox {
        guard case .list(let list) = object else { throw fail("APPEND to a \(object.typeName), not a list") }
        return list
    }

    func dict(_ object: Object) throws -> DictBox {
        guard case .dict(let dict) = object else { throw fail("SETITEM on a \(object.typeName), not a dict") }
        return dict
    }

    func addPairs(_ items: [Object], to dict: DictBox) throws {
        guard items.count.isMultiple(of: 2) else { throw fail("odd number of items for a dict") }
        for i in stride(from: 0, to: items.count, by: 2) { dict.entries.append((items[i], items[i + 1])) }
    }

    /// A two's-complement little-endian integer of `size` bytes that must fit in `Int`.
    mutating func long(_ size: Int) throws -> Int {
        let raw = try take(size)
        guard size > 0 else { return 0 }
        let negative = raw[size - 1] & 0x80 != 0
        // Bytes beyond the eighth may only repeat the sign.
        guard size <= 8 || (raw[7...].allSatisfy { $0 == (negative ? 0xff : 0) } && (raw[7] & 0x80 != 0) == negative) else {
            throw refuse("integer of \(size) bytes (larger than 64 bits)")
        }
        var value: UInt64 = negative ? ~0 : 0
        for i in (0..<min(size, 8)).reversed() { value = value << 8 | UInt64(raw[i]) }
        return Int(truncatingIfNeeded: value)
    }

    // MARK: Globals

    func global(_ module: String, _ name: String) throws -> Object {
        let full = module + "." + name
        switch dialect {
        case .numpy:
            guard Pickle.allowedGlobals.contains(full) else {
                throw refuse("global '\(oneLine(full))' is not allowed (only numpy arrays, dtypes and _codecs.encode are read)")
            }
        case .pytorch:
            guard Pickle.allowedGlobals.contains(full) || Pickle.pytorchGlobals.contains(full) else {
                throw refuse("global '\(oneLine(full))' is not allowed (a state_dict needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch storage types; nothing is run)")
            }
        }
        return .global(full)
    }

    // MARK: PyTorch

    /// `BINPERSID` with `('storage', storage class, key, location, count[, view metadata])`, as
    /// `torch.serialization` writes it (6 items in the legacy format, whose view metadata is
    /// always `None` since PyTorch 1.x).
    mutating func persistentLoad(_ id: Object) throws -> Object {
        guard case .tuple(let items) = id, items.count == 5 || items.count == 6,
              case .unicode(let tag) = items[0], tag == Array("storage".utf8) else {
            throw refuse("persistent id \(id.typeName) (only PyTorch's ('storage', ...) ids are read)")
        }
        guard case .global(let typeName) = items[1] else { throw fail("storage type is a \(items[1].typeName), not a class") }
        guard let dtype = TorchDType(storageClass: typeName) else {
            throw refuse("storage type '\(oneLine(typeName))' (float32, float16, bfloat16, float64 and int64 are read)")
        }
        guard let key = text(items[2]), let location = text(items[3]) else { throw fail("storage key or location is not text") }
        guard case .int(let count) = items[4], count >= 0 else { throw fail("storage element count is not a non-negative int") }
        if items.count == 6, case .none = items[5] {} else if items.count == 6 {
            throw refuse("storage views (legacy view metadata); re-save the checkpoint with a current PyTorch")
        }
        let storage = TorchStorageReference(key: key, dtype: dtype, count: count, location: location)
        if let known = storages[key], known.dtype != dtype || known.count != count {
            throw fail("storage '\(oneLine(key))' is named as \(known.count) \(known.dtype) and as \(count) \(dtype) elements")
        }
        storages[key] = storage
        return .storage(storage)
    }

    func text(_ object: Object) -> String? {
        switch object {
        case .unicode(let bytes):
            let text = String(decoding: bytes, as: UTF8.self)
            return text.utf8.elementsEqual(bytes) ? text : nil
        case .bytes(let bytes): return PickleValue.bytes(bytes).text
        default: return nil
        }
    }

    func integers(_ object: Object, _ what: String) throws -> [Int] {
        guard case .tuple(let items) = object, items.count <= Pickle.maximumDepth else {
            throw fail("tensor \(what) is a \(object.typeName), not a tuple of at most \(Pickle.maximumDepth) ints")
        }
        return try items.map {
            guard case .int(let value) = $0 else { throw fail("tensor \(what) holds a \($0.typeName), not an int") }
            return value
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
    /// metadata])`, checking the view lies inside the storage.
    func rebuildTensor(_ arguments: [Object]) throws -> Object {
        guard arguments.count == 6 || arguments.count == 7 else {
            throw fail("_rebuild_tensor_v2 expects 6 or 7 arguments, got \(arguments.count)")
        }
        guard case .storage(let storage) = arguments[0] else {
            throw fail("_rebuild_tensor_v2 of a \(arguments[0].typeName), not a storage")
        }
        guard case .int(let offset) = arguments[1] else { throw fail("tensor storage offset is a \(arguments[1].typeName), not an int") }
        let shape = try integers(arguments[2], "size"), strides = try integers(arguments[3], "stride")
        guard shape.count == strides.count else { throw fail("tensor has \(shape.count) sizes but \(strides.count) strides") }
        guard let end = TorchTensorReference.end(offset: offset, shape: shape, strides: strides) else {
            throw fail("tensor view (offset \(offset), size \(shape), stride \(strides)) is negative or overflows")
        }
        guard end <= storage.count else {
            throw fail("tensor view (offset \(offset), size \(shape), stride \(strides)) reaches element \(end - 1) of storage '\(oneLine(storage.key))' of \(storage.count)")
        }
        switch arguments[4] { case .bool: break; default: throw fail("tensor requires_grad is not a bool") }
        switch arguments[5] { case .dict, .none: break; default: throw fail("tensor backward hooks are a \(arguments[5].typeName), not a dict") }
        return .tensor(TorchTensorReference(storage: storage, offset: offset, shape: shape, strides: strides))
    }

    mutating func call(_ callable: Object, _ arguments: [Object]) throws -> Object {
        guard case .global(let name) = callable else { throw fail("REDUCE on a \(callable.typeName), not a function") }
        switch name {
        case "collections.OrderedDict":  // OrderedDict(): SETITEMS fills it
            guard arguments.isEmpty else { throw refuse("collections.OrderedDict with arguments") }
            return .dict(DictBox())
        case "torch._utils._rebuild_tensor_v2":
            return try rebuildTensor(arguments)
        case "torch._utils._rebuild_parameter":  // _rebuild_parameter(data, requires_grad, backward_hooks)
            guard arguments.count == 3, case .tensor = arguments[0] else { throw fail("_rebuild_parameter expects (tensor, bool, hooks)") }
            return arguments[0]
        default:
            break
        }
        switch name.split(separator: ".").last! {
        case "encode":  // _codecs.encode(text, encoding): how Python 3 pickles bytes in protocol 2
            guard arguments.count == 2, case .unicode(let text) = arguments[0], case .unicode(let codec) = arguments[1] else {
                throw fail("_codecs.encode expects (str, str)")
            }
            switch String(decoding: codec, as: UTF8.self).lowercased() {
            case "latin1", "latin-1", "iso-8859-1", "iso8859-1":
                guard let bytes = latin1(fromUTF8: text) else { throw fail("_codecs.encode: text is not valid Latin-1") }
                return .bytes(bytes)
            case "utf-8", "utf8", "ascii":
                return .bytes(text)
            case let other:
                throw refuse("_codecs.encode with encoding '\(oneLine(other))'")
            }
        case "_reconstruct":  // _reconstruct(numpy.ndarray, (0,), b'b'); BUILD sets the contents
            guard arguments.count == 3, case .global("numpy.ndarray") = arguments[0] else {
                throw refuse("_reconstruct of anything but numpy.ndarray")
            }
            return .array(ArrayBox(nil))
        case "dtype":  // numpy.dtype('u1', False, True)
            guard let spec = arguments.first else { throw fail("numpy.dtype without arguments") }
            return .dtype(try dtype(spec))
        case "_frombuffer":  // protocol 5: _frombuffer(buffer, dtype, shape, order)
            guard arguments.count == 4, case .bytes(let data) = arguments[0], case .dtype(let type) = arguments[1] else {
                throw fail("_frombuffer expects (buffer, dtype, shape, order)")
            }
            let order = arguments[3]
            guard case .unicode(let orderBytes) = order, orderBytes == [UInt8(ascii: "C")] || orderBytes == [UInt8(ascii: "F")] else {
                throw fail("_frombuffer order must be 'C' or 'F'")
            }
            return .array(ArrayBox(try array(shape: arguments[2], type: type, data: data, fortran: orderBytes[0] == UInt8(ascii: "F"))))
        case "scalar":  // numpy.core.multiarray.scalar(dtype, raw bytes): a numpy number
            guard arguments.count == 2, case .dtype(let type) = arguments[0], case .bytes(let data) = arguments[1] else {
                throw fail("numpy scalar expects (dtype, bytes)")
            }
            let element = try array(shape: .tuple([]), type: type, data: data, fortran: false)
            if type.kind == .float {
                var bits: UInt64 = 0
                for i in 0..<type.itemSize { bits = bits << 8 | UInt64(data[type.bigEndian ? i : type.itemSize - 1 - i]) }
                switch type.itemSize {
                case 8: return .float(Double(bitPattern: bits))
                case 4: return .float(Double(Float(bitPattern: UInt32(bits))))
                default: throw refuse("numpy scalar of type \(element.dtype)")
                }
            }
            guard let value = element.integers()?.first else { throw refuse("numpy scalar of type \(element.dtype) beyond 64 bits") }
            return type.kind == .bool ? .bool(value != 0) : .int(value)
        default:
            throw refuse("calling '\(oneLine(name))'")
        }
    }

    func dtype(_ spec: Object) throws -> DTypeBox {
        let text: String
        switch spec {
        case .unicode(let bytes), .bytes(let bytes): text = String(decoding: bytes, as: UTF8.self)
        default: throw fail("numpy.dtype of a \(spec.typeName)")
        }
        var characters = Substring(text)
        var bigEndian = false
        if let order = characters.first, "<>=|".contains(order) {
            bigEndian = order == ">"
            characters.removeFirst()
        }
        guard let first = characters.first, let kind = NumpyArray.Kind(rawValue: first), let size = Int(characters.dropFirst()),
              kind == .float ? [2, 4, 8].contains(size) : kind == .bool ? size == 1 : [1, 2, 4, 8].contains(size) else {
            throw refuse("numpy dtype '\(oneLine(text))' (only bool, integer and float arrays are read)")
        }
        return DTypeBox(kind: kind, itemSize: size, bigEndian: bigEndian)
    }

    /// An array from a shape tuple, dtype and raw data, checking the sizes agree.
    func array(shape: Object, type: DTypeBox, data: [UInt8], fortran: Bool) throws -> NumpyArray {
        guard case .tuple(let items) = shape else { throw fail("array shape is a \(shape.typeName), not a tuple") }
        var dimensions: [Int] = []
        for item in items {
            guard case .int(let size) = item, size >= 0 else { throw fail("array shape has a bad dimension") }
            dimensions.append(size)
        }
        // Zero-safe: a shape such as (0, 2^40, 2^40) is refused, so that no product of some of
        // its dimensions (a CIFAR reader's 3 x 32 x 32 check, say) can overflow later.
        guard let count = DataLimits.product(dimensions) else { throw fail("array shape \(dimensions) overflows") }
        let (expected, overflow) = count.multipliedReportingOverflow(by: type.itemSize)
        guard !overflow, expected == data.count else {
            throw fail("array data has \(data.count) bytes for shape \(dimensions) of \(type.itemSize)-byte elements")
        }
        var array = NumpyArray(shape: dimensions, kind: type.kind, itemSize: type.itemSize, bigEndian: type.bigEndian, bytes: data)
        if fortran && dimensions.count > 1 { array.bytes = Self.rowMajor(fromColumnMajor: data, shape: dimensions, itemSize: type.itemSize) }
        return array
    }

    /// Reorders column-major elements into row-major order.
    static func rowMajor(fromColumnMajor data: [UInt8], shape: [Int], itemSize: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: data.count)
        let count = DataLimits.product(shape) ?? 0
        var index = [Int](repeating: 0, count: shape.count)  // row-major counter
        for target in 0..<count {
            var source = 0
            for axis in (0..<shape.count).reversed() { source = source * shape[axis] + index[axis] }
            for b in 0..<itemSize { result[target * itemSize + b] = data[source * itemSize + b] }
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    func build(_ object: Object, state: Object) throws {
        if dialect == .pytorch, case .dict = object {
            guard case .dict = state else { throw fail("BUILD state of a dict is a \(state.typeName), not a dict") }
            // OrderedDict.__reduce__ gives its __dict__ as state: a state_dict's `_metadata`
            // (per-module versions), which loading weights does not need.
            return
        }
        guard case .tuple(let items) = state else { throw fail("BUILD state is a \(state.typeName), not a tuple") }
        switch object {
        case .array(let box):
            // ndarray.__setstate__((version, shape, dtype, is_fortran, data)); old numpy omits version.
            let fields = items.count == 5 ? Array(items.dropFirst()) : items
            guard fields.count == 4, case .dtype(let type) = fields[1] else { throw fail("bad numpy array state") }
            let fortran: Bool
            switch fields[2] {
            case .bool(let flag): fortran = flag
            case .int(let flag): fortran = flag != 0
            default: throw fail("bad numpy array order flag")
            }
            let data: [UInt8]
            switch fields[3] {
            case .bytes(let bytes): data = bytes
            case .unicode(let text):  // Python 3 reading a Python 2 str as text: Latin-1
                guard let bytes = latin1(fromUTF8: text) else { throw fail("array data is not Latin-1 text") }
                data = bytes
            default: throw refuse("numpy array data given as a \(fields[3].typeName) (object arrays are not read)")
            }
            box.array = try array(shape: fields[0], type: type, data: data, fortran: fortran)
        case .dtype(let type):
            // dtype.__setstate__((version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]))
            guard items.count >= 2 else { throw fail("bad numpy dtype state") }
            let order: [UInt8]
            switch items[1] {
            case .unicode(let bytes), .bytes(let bytes): order = bytes
            default: throw fail("bad numpy dtype byte order")
            }
            if items.count >= 5, !items[2...4].allSatisfy({ if case .none = $0 { true } else { false } }) {
                throw refuse("structured or sub-array numpy dtypes")
            }
            if order == [UInt8(ascii: ">")] { type.bigEndian = true } else if order == [UInt8(ascii: "<")] { type.bigEndian = false }
        default:
            throw refuse("BUILD on a \(object.typeName) (setting object state)")
        }
    }

    // MARK: Results

    /// Converts a finished object to a value, with a depth limit (which also stops cycles) and
    /// a node budget (which stops shared references from multiplying into a huge tree).
    mutating func value(of object: Object, depth: Int) throws -> PickleValue {
        guard depth <= Pickle.maximumDepth else { throw fail("containers nested deeper than \(Pickle.maximumDepth) levels") }
        nodeBudget -= 1
        guard nodeBudget >= 0 else { throw fail("too many shared references to expand") }
        switch object {
        case .none: return .none
        case .bool(let flag): return .bool(flag)
        case .int(let value): return .int(value)
        case .float(let value): return .float(value)
        case .bytes(let bytes): return .bytes(bytes)
        case .unicode(let bytes):
            let text = String(decoding: bytes, as: UTF8.self)
            guard text.utf8.elementsEqual(bytes) else { throw fail("str is not valid UTF-8") }
            return .string(text)
        case .list(let box): return .list(try box.items.map { try value(of: $0, depth: depth + 1) })
        case .tuple(let items): return .tuple(try items.map { try value(of: $0, depth: depth + 1) })
        case .dict(let box):
            return .dict(try box.entries.map {
                PickleValue.Entry(key: try value(of: $0.0, depth: depth + 1), value: try value(of: $0.1, depth: depth + 1))
            })
        case .array(let box):
            guard let array = box.array else { throw fail("numpy array was never given its contents") }
            return .array(array)
        case .tensor(let tensor): return .torchTensor(tensor)
        case .storage(let storage): throw refuse("a bare torch storage '\(oneLine(storage.key))' as data (only tensors are read)")
        case .global(let name): throw refuse("a bare reference to '\(oneLine(name))' as data")
        case .dtype: throw refuse("a bare numpy.dtype as data")
        }
    }

    static func opcodeName(_ op: UInt8) -> String {
        let names: [UInt8: String] = [
            0x50: "PERSID", 0x51: "BINPERSID", 0x69: "INST", 0x6f: "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX",
            0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
            0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x49: "INT", 0x4c: "LONG", 0x46: "FLOAT",
            0x53: "STRING", 0x56: "UNICODE", 0x67: "GET", 0x70: "PUT",
        ]
        let hex = "0x" + (op < 16 ? "0" : "") + String(op, radix: 16)
        return names[op].map { "\($0) (\(hex))" } ?? "\(hex) (unknown)"
    }
}

/// `text` with control characters (a newline in a hostile name, say) shown as `?`, so that
/// an error quoting it stays one line.
func oneLine(_ text: String) -> String {
    String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }))
}

/// Decodes UTF-8 whose code points are all below 256 into those byte values (Latin-1), or `nil`.
private func latin1(fromUTF8 utf8: [UInt8]) -> [UInt8]? {
    var result = [UInt8](repeating: 0, count: utf8.count)
    var count = 0
    let ok = utf8.withUnsafeBufferPointer { source in
        result.withUnsafeMutableBufferPointer { target in
            var i = 0
            let n = source.count
            while i < n {
                let byte = source[i]
                if byte < 0x80 {
                    target[count] = byte
                    i += 1
                } else if byte == 0xC2 || byte == 0xC3, i + 1 < n, source[i + 1] & 0xC0 == 0x80 {
                    target[count] = (byte & 0x03) << 6 | (source[i + 1] & 0x3F)
                    i += 2
                } else {
                    return false
                }
                count += 1
            }
            return true
        }
    }
    guard ok else { return nil }
    result.removeSubrange(count...)
    return result
}
