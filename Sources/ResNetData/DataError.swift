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

    /// The file the error concerns (the image file for `countMismatch`).
    public var path: String {
        switch self {
        case .fileNotFound(let path), .readFailed(let path, _), .corruptGzip(let path, _),
             .truncated(let path, _, _), .trailingBytes(let path, _, _), .badMagic(let path, _),
             .unsupported(let path, _), .unexpectedShape(let path, _, _),
             .labelOutOfRange(let path, _, _, _):
            return path
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
        }
    }
}
