import Foundation

/// CIFAR-10 and CIFAR-100 (Krizhevsky 2009): 32x32 colour images, 50,000 for training and
/// 10,000 for testing, read from the official binary or Python distribution.
///
/// The binary version stores records of label byte(s) then 3,072 pixel bytes: the red plane,
/// green, blue, each 32x32 row-major. That is ``ImageDataset``'s NCHW uint8 layout, so loading
/// is a copy. The Python version stores pickled dictionaries with a uint8 `data` array
/// `[count, 3072]` in the same layout (see ``Pickle``).
public enum CIFAR {
    /// Which of the two data sets.
    public enum Variant: String, Sendable, CaseIterable {
        /// 10 classes; binary records of 1 label byte + 3,072 pixel bytes.
        case cifar10
        /// 100 fine classes grouped into 20 coarse ones; binary records of
        /// <1 coarse label byte><1 fine label byte><3,072 pixel bytes>.
        case cifar100

        /// The folder of the binary distribution.
        public var binaryFolder: String { self == .cifar10 ? "cifar-10-batches-bin" : "cifar-100-binary" }
        /// The folder of the Python distribution.
        public var pythonFolder: String { self == .cifar10 ? "cifar-10-batches-py" : "cifar-100-python" }
        /// The official archives, binary first.
        public var archiveNames: [String] {
            self == .cifar10 ? ["cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"]
                : ["cifar-100-binary.tar.gz", "cifar-100-python.tar.gz"]
        }

        var recordSize: Int { self == .cifar10 ? 3073 : 3074 }

        func files(_ layout: Layout, split: String) -> [String] {
            switch (self, layout, split) {
            case (.cifar10, .binary, "train"): (1...5).map { "data_batch_\($0).bin" }
            case (.cifar10, .binary, _): ["test_batch.bin"]
            case (.cifar10, .python, "train"): (1...5).map { "data_batch_\($0)" }
            case (.cifar10, .python, _): ["test_batch"]
            case (.cifar100, .binary, _): ["\(split).bin"]
            case (.cifar100, .python, _): [split]
            }
        }
    }

    /// Which CIFAR-100 labels to use (CIFAR-10 has only one kind).
    public enum LabelSet: String, Sendable, CaseIterable {
        /// The 100 classes.
        case fine
        /// The 20 superclasses.
        case coarse
    }

    /// The two distributions of the data.
    public enum Layout: String, Sendable {
        /// `cifar-10-batches-bin`, `cifar-100-binary`.
        case binary
        /// `cifar-10-batches-py`, `cifar-100-python`.
        case python
    }

    /// Bytes per image: 3 channels of 32x32.
    public static let imageBytes = 3 * 32 * 32

    /// Loads the `train` and `test` splits and the class names from `path`, which may be the
    /// binary or Python folder itself, a folder holding one of them (or an official archive),
    /// or an official `.tar.gz` (or `.tar`) archive, read without unpacking.
    /// When both distributions are present the binary one is used.
    ///
    /// - Parameter labels: for CIFAR-100, the fine (default) or coarse labels.
    /// - Throws: ``DataError/datasetNotFound(name:searched:hint:)`` when `path` holds no copy, or
    ///   another ``DataError`` naming the file and record or byte offset for a damaged file: a
    ///   size that is not a whole number of records, a label out of range, a bad pickle, a
    ///   wrong number of class names.
    public static func load(_ variant: Variant, from path: String, labels: LabelSet = .fine) throws -> LoadedDataset {
        let (source, layout) = try locate(variant, path: path)
        let classNames = try readClassNames(variant, labels: labels, source: source, layout: layout)
        var splits: [(name: String, data: ImageDataset)] = []
        for split in ["train", "test"] {
            let files = variant.files(layout, split: split)
            var images: [UInt8] = []
            var labelValues: [Int32] = []
            switch layout {
            case .binary:
                // Reserve once (the batches are large) and read every file into one reused buffer:
                // at 180 MB, fresh pages cost more than the copying.
                // A size above the limit is refused when the file is read; it must not reserve first.
                let count = files.reduce(0) { $0 + min(source.size($1), DataLimits.batchFileBytes) / variant.recordSize }
                images.reserveCapacity(count * imageBytes)
                labelValues.reserveCapacity(count)
                var scratch: [UInt8] = []
                for name in files {
                    try appendBinary(try source.bytes(name, reusing: &scratch), variant: variant, labels: labels,
                                     path: source.path(name), images: &images, labelValues: &labelValues)
                }
            case .python:
                let batches = try files.map { try Pickle.parse(try source.bytes($0), path: source.path($0)) }
                images.reserveCapacity(batches.reduce(0) { total, batch in
                    guard case .array(let data)? = batch["data"] else { return total }
                    return total + data.bytes.count
                })
                for (name, batch) in zip(files, batches) {
                    try appendPython(batch, variant: variant, labels: labels, path: source.path(name),
                                     images: &images, labelValues: &labelValues)
                }
            }
            splits.append((split, ImageDataset(images: images, labels: labelValues, channels: 3, height: 32, width: 32,
                                               classNames: classNames)))
        }
        return LoadedDataset(name: variant.rawValue, classNames: classNames, splits: splits)
    }

    // MARK: - Finding the files

    /// A folder or an archive holding one distribution's files.
    enum Source {
        case folder(String)
        case archive(TarArchive, root: String)

        func path(_ name: String) -> String {
            switch self {
            case .folder(let folder): folder + "/" + name
            case .archive(let archive, let root): archive.path + ":" + root + name
            }
        }

        func exists(_ name: String) -> Bool {
            switch self {
            case .folder: fileExists(path(name))
            case .archive(let archive, let root): archive.entry(named: root + name)?.kind == .file
            }
        }

        /// The size of a file (of the compressed file, when it is gzip-compressed), 0 when unknown.
        func size(_ name: String) -> Int {
            switch self {
            case .folder:
                var info = stat()
                return stat(path(name), &info) == 0 ? max(Int(info.st_size), 0) : 0
            case .archive(let archive, let root):
                return archive.entry(named: root + name)?.range.count ?? 0
            }
        }

        /// A file's contents; a folder's file is read into `scratch`, which the next call reuses.
        /// Every file, compressed or not, is bounded by ``DataLimits/batchFileBytes``.
        func bytes(_ name: String, reusing scratch: inout [UInt8]) throws -> ArraySlice<UInt8> {
            guard case .folder = self else { return try bytes(name) }
            let count = try readFileBytes(path: path(name), into: &scratch, limit: DataLimits.batchFileBytes, format: format)
            let contents = scratch[..<count]
            guard GzipReader.isGzip(Array(contents.prefix(2))) else { return contents }
            return try GzipReader.decompress(Array(contents), path: path(name), maximumSize: DataLimits.batchFileBytes)[...]
        }

        func bytes(_ name: String) throws -> ArraySlice<UInt8> {
            switch self {
            case .folder:
                return try readFileDecompressingIfGzip(path: path(name), limit: DataLimits.batchFileBytes, format: format)[...]
            case .archive(let archive, let root):
                guard let entry = archive.entry(named: root + name), entry.kind == .file else {
                    throw DataError.fileNotFound(path: path(name))
                }
                guard entry.range.count <= DataLimits.batchFileBytes else {
                    throw DataError.tooLarge(path: path(name), what: "the member's size, \(DataLimits.describe(bytes: entry.range.count)),",
                                             limit: DataLimits.batchFileBytes, hint: "is it really \(format)?")
                }
                return archive.contents(of: entry)
            }
        }

        private var format: String { "a CIFAR batch or meta file" }
    }

    /// The file whose presence identifies a layout.
    static func marker(_ variant: Variant, _ layout: Layout) -> String {
        variant.files(layout, split: "train")[0]
    }

    /// Finds the distribution at `path` (see ``load(_:from:labels:)``).
    static func locate(_ variant: Variant, path: String) throws -> (Source, Layout) {
        var folder = path
        while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
            throw notFound(variant, searched: [path])
        }
        guard isDirectory.boolValue else { return try locateInArchive(variant, path: folder) }
        for candidate in [folder, folder + "/" + variant.binaryFolder, folder + "/" + variant.pythonFolder] {
            for layout in [Layout.binary, .python] where fileExists(candidate + "/" + marker(variant, layout)) {
                return (.folder(candidate), layout)
            }
        }
        for archive in variant.archiveNames where fileExists(folder + "/" + archive) {
            return try locateInArchive(variant, path: folder + "/" + archive)
        }
        throw notFound(variant, searched: [path])
    }

    static func locateInArchive(_ variant: Variant, path: String) throws -> (Source, Layout) {
        let archive = try TarArchive.read(path: path)
        for layout in [Layout.binary, .python] {
            let marker = marker(variant, layout)
            if let entry = archive.entries.first(where: { $0.kind == .file && ($0.name == marker || $0.name.hasSuffix("/" + marker)) }) {
                return (.archive(archive, root: String(entry.name.dropLast(marker.count))), layout)
            }
        }
        throw DataError.datasetNotFound(
            name: variant.rawValue, searched: [path],
            hint: "the archive holds neither \(marker(variant, .binary)) nor \(marker(variant, .python)); is it the \(variant.rawValue) archive?")
    }

    static func notFound(_ variant: Variant, searched: [String]) -> DataError {
        .datasetNotFound(name: variant.rawValue, searched: searched, hint: DatasetName(rawValue: variant.rawValue)!.howToGet)
    }

    // MARK: - Class names

    static func readClassNames(_ variant: Variant, labels: LabelSet, source: Source, layout: Layout) throws -> [String] {
        let coarse = variant == .cifar100 && labels == .coarse
        let expected = variant == .cifar10 ? 10 : coarse ? 20 : 100
        let names: [String]
        let file: String
        switch layout {
        case .binary:
            file = variant == .cifar10 ? "batches.meta.txt" : coarse ? "coarse_label_names.txt" : "fine_label_names.txt"
            let text = String(decoding: try source.bytes(file), as: UTF8.self)
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .python:
            file = variant == .cifar10 ? "batches.meta" : "meta"
            let key = variant == .cifar10 ? "label_names" : coarse ? "coarse_label_names" : "fine_label_names"
            let meta = try Pickle.parse(try source.bytes(file), path: source.path(file))
            guard case .list(let items)? = meta[key], items.allSatisfy({ $0.text != nil }) else {
                throw DataError.unsupported(path: source.path(file), reason: "not a CIFAR meta file: no list of names under '\(key)'")
            }
            names = items.compactMap(\.text)
        }
        guard names.count == expected else {
            throw DataError.unexpectedShape(path: source.path(file), dimensions: [names.count], expected: "\(expected) class names")
        }
        return names
    }

    // MARK: - Records

    /// Appends the records of one binary batch, checking the size and every label.
    static func appendBinary(_ bytes: ArraySlice<UInt8>, variant: Variant, labels: LabelSet, path: String,
                             images: inout [UInt8], labelValues: inout [Int32]) throws {
        let recordSize = variant.recordSize
        guard !bytes.isEmpty else { throw DataError.truncated(path: path, expected: recordSize, actual: 0) }
        guard bytes.count.isMultiple(of: recordSize) else {
            throw DataError.truncatedRecord(path: path, record: bytes.count / recordSize, recordSize: recordSize, fileSize: bytes.count)
        }
        let count = bytes.count / recordSize
        let labelBytes = recordSize - imageBytes
        // CIFAR-100 records hold the coarse label (< 20) then the fine one (< 100).
        let limits = variant == .cifar10 ? [10] : [20, 100]
        let chosen = variant == .cifar100 && labels == .fine ? 1 : 0
        try bytes.withUnsafeBufferPointer { source in
            for record in 0..<count {
                let start = record * recordSize
                for j in 0..<labelBytes where Int(source[start + j]) >= limits[j] {
                    throw DataError.labelOutOfRange(path: path, index: record, label: Int(source[start + j]), classCount: limits[j])
                }
                labelValues.append(Int32(source[start + chosen]))
                images.append(contentsOf: UnsafeBufferPointer(rebasing: source[(start + labelBytes)..<(start + recordSize)]))
            }
        }
    }

    /// Appends the images and labels of one unpickled Python batch.
    static func appendPython(_ batch: PickleValue, variant: Variant, labels: LabelSet, path: String,
                             images: inout [UInt8], labelValues: inout [Int32]) throws {
        let key = variant == .cifar10 ? "labels" : labels == .fine ? "fine_labels" : "coarse_labels"
        guard case .dict = batch else {
            throw DataError.unsupported(path: path, reason: "not a CIFAR batch: the pickle holds a \(batch.typeName), not a dict")
        }
        guard case .array(let data)? = batch["data"] else {
            throw DataError.unsupported(path: path, reason: "not a CIFAR batch: no numpy array under 'data'")
        }
        guard data.kind == .unsigned, data.itemSize == 1, data.shape.count >= 1,
              [[3072], [3, 32, 32]].contains(Array(data.shape.dropFirst())) else {
            throw DataError.unexpectedShape(path: path, dimensions: data.shape, expected: "uint8 [count, 3072] (got \(data.dtype))")
        }
        let values: [Int]
        switch batch[key] {
        case .list(let items)?:
            values = try items.enumerated().map { index, item in
                guard case .int(let value) = item else {
                    throw DataError.unsupported(path: path, reason: "'\(key)' item \(index) is a \(item.typeName), not an int")
                }
                return value
            }
        case .array(let array)? where array.shape.count == 1:
            guard let integers = array.integers() else {
                throw DataError.unsupported(path: path, reason: "'\(key)' is a \(array.dtype) array, not integers")
            }
            values = integers
        default:
            throw DataError.unsupported(path: path, reason: "not a CIFAR batch: no list of labels under '\(key)'")
        }
        let count = data.shape[0]
        guard values.count == count else {
            throw DataError.countMismatch(imagesPath: path, imageCount: count, labelsPath: path + " '\(key)'", labelCount: values.count)
        }
        let classCount = variant == .cifar10 ? 10 : labels == .fine ? 100 : 20
        if let index = values.firstIndex(where: { !(0..<classCount).contains($0) }) {
            throw DataError.labelOutOfRange(path: path, index: index, label: values[index], classCount: classCount)
        }
        images.append(contentsOf: data.bytes)
        labelValues.append(contentsOf: values.lazy.map { Int32($0) })
    }
}
