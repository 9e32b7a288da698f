/// An array read from an IDX file (the MNIST file format) of unsigned bytes.
///
/// The format is a big-endian magic `0x0000TTDD` (element type `TT`, dimension count `DD`),
/// then `DD` big-endian `UInt32` sizes, then the elements in row-major order.
public struct IDXArray: Sendable, Equatable {
    /// The size of each dimension, outermost first.
    public let dimensions: [Int]
    /// The elements in row-major order; `bytes.count` is the product of `dimensions`.
    public let bytes: [UInt8]

    /// The element type code for unsigned bytes, the only type supported.
    public static let unsignedByteType: UInt8 = 0x08
    /// The dimension counts accepted by the reader.
    public static let supportedRanks: ClosedRange<Int> = 1...4

    /// Reads an IDX file of unsigned bytes, raw or gzip-compressed.
    ///
    /// The file must be a regular file of at most `limit` bytes (default
    /// ``DataLimits/idxFileBytes``), compressed and decompressed.
    ///
    /// - Throws: a ``DataError`` naming `path` if the file is missing, not a regular file, too
    ///   large, unreadable, corrupt, of an unsupported type or rank, or if its size does not
    ///   match its header exactly.
    public static func read(path: String, limit: Int = DataLimits.idxFileBytes) throws -> IDXArray {
        try parse(readFileDecompressingIfGzip(path: path, limit: limit, format: "an IDX file"), path: path)
    }

    /// Parses the (already decompressed) contents of an IDX file; `path` is used in errors.
    public static func parse(_ data: [UInt8], path: String) throws -> IDXArray {
        guard data.count >= 4 else {
            throw DataError.truncated(path: path, expected: 4, actual: data.count)
        }
        let magic = readBigEndianUInt32(data, at: 0)
        let type = data[2]
        let rank = Int(data[3])
        guard data[0] == 0, data[1] == 0, let typeName = typeNames[type] else {
            throw DataError.badMagic(path: path, found: magic)
        }
        guard type == unsignedByteType else {
            throw DataError.unsupported(
                path: path, reason: "element type 0x\(String(type, radix: 16)) (\(typeName)); only 0x08 (unsigned byte) is supported")
        }
        guard supportedRanks.contains(rank) else {
            throw DataError.unsupported(
                path: path, reason: "\(rank) dimensions; only \(supportedRanks.lowerBound) to \(supportedRanks.upperBound) are supported")
        }
        let headerSize = 4 + 4 * rank
        guard data.count >= headerSize else {
            throw DataError.truncated(path: path, expected: headerSize, actual: data.count)
        }
        let dimensions = (0..<rank).map { Int(readBigEndianUInt32(data, at: 4 + 4 * $0)) }
        // Zero-safe: [0, 2^32-1, 2^32-1] is refused too, so no product of some dimensions can
        // overflow later (a reader's height x width, say).
        guard let elementCount = DataLimits.product(dimensions) else {
            throw DataError.unsupported(path: path, reason: "declared dimensions \(dimensions) overflow the addressable size")
        }
        let (expected, overflow) = headerSize.addingReportingOverflow(elementCount)
        guard !overflow else {
            throw DataError.unsupported(path: path, reason: "declared dimensions \(dimensions) overflow the addressable size")
        }
        if data.count < expected {
            throw DataError.truncated(path: path, expected: expected, actual: data.count)
        }
        if data.count > expected {
            throw DataError.trailingBytes(path: path, expected: expected, actual: data.count)
        }
        return IDXArray(dimensions: dimensions, bytes: Array(data[headerSize...]))
    }

    private static let typeNames: [UInt8: String] = [
        0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16",
        0x0C: "int32", 0x0D: "float32", 0x0E: "float64",
    ]

    private static func readBigEndianUInt32(_ data: [UInt8], at offset: Int) -> UInt32 {
        UInt32(data[offset]) << 24 | UInt32(data[offset + 1]) << 16
            | UInt32(data[offset + 2]) << 8 | UInt32(data[offset + 3])
    }
}
