/// Errors thrown while reading dataset files.
///
/// Every case names the file it concerns, and `description` is a single line
/// that also gives the record index or byte offset when it is known.
public enum DataError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file does not exist.
    case fileNotFound(path: String)
    /// The file exists but could not be opened or read.
    case readFailed(path: String, reason: String)
    /// The file starts with the gzip magic but its compressed stream is damaged or cut short.
    case corruptGzip(path: String, reason: String)
    /// The file (after decompression) ends before `expected` bytes; it has `actual`.
    case truncated(path: String, expected: Int, actual: Int)
    /// The file (after decompression) has `actual` bytes where its header declares `expected`.
    case trailingBytes(path: String, expected: Int, actual: Int)
    /// The first four bytes are not an IDX magic number.
    case badMagic(path: String, found: UInt32)
    /// The file is well formed but uses a feature this reader does not support.
    case unsupported(path: String, reason: String)
    /// The array has a shape other than the one the dataset needs.
    case unexpectedShape(path: String, dimensions: [Int], expected: String)
    /// The image and label files disagree on the number of items.
    case countMismatch(imagesPath: String, imageCount: Int, labelsPath: String, labelCount: Int)
    /// The label of record `index` is not in `0..<classCount`.
    case labelOutOfRange(path: String, index: Int, label: Int, classCount: Int)
    /// The structure of the file is wrong at byte `offset` (a bad tar header, pickle opcode, ...).
    case malformed(path: String, offset: Int, reason: String)
    /// A file of fixed-size records has `fileSize` bytes, which is not a whole number of
    /// `recordSize`-byte records: record `record` is cut short.
    case truncatedRecord(path: String, record: Int, recordSize: Int, fileSize: Int)
    /// No copy of data set `name` was found at any of the `searched` paths; `hint` says how to get one.
    case datasetNotFound(name: String, searched: [String], hint: String)
    /// Downloading `url` to `destination` failed.
    case downloadFailed(url: String, destination: String, reason: String)
    /// The file's checksum is not the published one.
    case checksumMismatch(path: String, expected: String, actual: String)
    /// The file is not a JPEG or PNG image (by its signature or, in an image folder, its extension).
    case notAnImage(path: String, reason: String)
    /// The file looks like a JPEG or PNG image but cannot be decoded (damaged or cut short).
    case corruptImage(path: String, reason: String)
    /// Writing the file failed (or, for in-memory encoding, the data could not be encoded).
    case writeFailed(path: String, reason: String)
    /// A class folder of an image-folder data set holds no images.
    case emptyClassFolder(path: String)
    /// An image-folder root holds no class folders.
    case noClasses(path: String)
    /// An image folder's layout is inconsistent (e.g. a test class without training images).
    case invalidLayout(path: String, reason: String)
    /// The path names something other than a regular file (a folder, a device such as
    /// `/dev/zero`, a FIFO, a socket), which the reader refuses before reading: such a file has
    /// no size to check and may never end.
    case notARegularFile(path: String, kind: String)
    /// Reading the file would take more memory than its format or ``DataLimits`` allows:
    /// `what` says what is too large (the file, its decompressed data, the decoded data set),
    /// `limit` is the bound in bytes, and `hint` says what to do.
    case tooLarge(path: String, what: String, limit: Int, hint: String)

    /// The file the error concerns (the image file for `countMismatch`).
    public var path: String {
        switch self {
        case .fileNotFound(let path), .readFailed(let path, _), .corruptGzip(let path, _),
             .truncated(let path, _, _), .trailingBytes(let path, _, _), .badMagic(let path, _),
             .unsupported(let path, _), .unexpectedShape(let path, _, _),
             .labelOutOfRange(let path, _, _, _), .malformed(let path, _, _), .truncatedRecord(let path, _, _, _),
             .downloadFailed(_, let path, _), .checksumMismatch(let path, _, _),
             .notAnImage(let path, _), .corruptImage(let path, _), .writeFailed(let path, _),
             .emptyClassFolder(let path), .noClasses(let path), .invalidLayout(let path, _),
             .notARegularFile(let path, _), .tooLarge(let path, _, _, _):
            return path
        case .datasetNotFound(let name, let searched, _):
            return searched.first ?? name
        case .countMismatch(let imagesPath, _, _, _):
            return imagesPath
        }
    }

    /// One line naming the file and, where known, the record or byte offset.
    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): file not found"
        case .readFailed(let path, let reason):
            return "\(path): cannot read file: \(reason)"
        case .corruptGzip(let path, let reason):
            return "\(path): corrupt gzip data: \(reason)"
        case .truncated(let path, let expected, let actual):
            return "\(path): truncated: expected \(expected) bytes, file ends at byte offset \(actual)"
        case .trailingBytes(let path, let expected, let actual):
            return "\(path): \(actual - expected) unexpected trailing bytes after byte offset \(expected) (file has \(actual) bytes)"
        case .badMagic(let path, let found):
            let hex = String(found, radix: 16)
            return "\(path): not an IDX file: bad magic number 0x\(String(repeating: "0", count: max(0, 8 - hex.count)))\(hex) at byte offset 0"
        case .unsupported(let path, let reason):
            return "\(path): unsupported: \(reason)"
        case .unexpectedShape(let path, let dimensions, let expected):
            return "\(path): unexpected shape \(dimensions), expected \(expected)"
        case .countMismatch(let imagesPath, let imageCount, let labelsPath, let labelCount):
            return "\(imagesPath): has \(imageCount) images but \(labelsPath) has \(labelCount) labels"
        case .labelOutOfRange(let path, let index, let label, let classCount):
            return "\(path): record \(index): label \(label) is out of range 0..<\(classCount)"
        case .malformed(let path, let offset, let reason):
            return "\(path): byte offset \(offset): \(reason)"
        case .truncatedRecord(let path, let record, let recordSize, let fileSize):
            return "\(path): truncated: \(fileSize) bytes is not a whole number of \(recordSize)-byte records; record \(record) at byte offset \(record * recordSize) has only \(fileSize - record * recordSize) bytes"
        case .datasetNotFound(let name, let searched, let hint):
            return "\(name): data set not found (looked in \(searched.joined(separator: ", "))); \(hint)"
        case .downloadFailed(let url, let destination, let reason):
            return "\(url): download failed: \(reason); download it by hand and put it at \(destination)"
        case .checksumMismatch(let path, let expected, let actual):
            return "\(path): checksum mismatch: MD5 is \(actual), expected \(expected) (a damaged or different file)"
        case .notAnImage(let path, let reason):
            return "\(path): not an image: \(reason)"
        case .corruptImage(let path, let reason):
            return "\(path): cannot decode image: \(reason)"
        case .writeFailed(let path, let reason):
            return "\(path): cannot write: \(reason)"
        case .emptyClassFolder(let path):
            return "\(path): class folder contains no images (.jpg, .jpeg or .png)"
        case .noClasses(let path):
            return "\(path): no class folders found; expected <root>/<class>/*.jpg|.jpeg|.png or <root>/train/<class>/..."
        case .invalidLayout(let path, let reason):
            return "\(path): invalid image-folder layout: \(reason)"
        case .notARegularFile(let path, let kind):
            return "\(path): not a regular file but \(kind); give a file"
        case .tooLarge(let path, let what, let limit, let hint):
            return "\(path): \(what) exceeds the limit of \(DataLimits.describe(bytes: limit)); \(hint)"
        }
    }
}
