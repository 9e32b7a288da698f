import CZlib

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the file at `path`; if it starts with the gzip magic `1f 8b` it is inflated,
/// otherwise its bytes are returned unchanged.
///
/// The file must be a regular file of at most `limit` bytes, and its decompressed data may not
/// exceed `limit` bytes either (`limit` is capped at ``DataLimits/memoryBudget``): a device, a
/// FIFO or a gzip bomb is refused instead of filling memory.
///
/// - Parameter format: what the file should be, for the error when it is too large.
/// - Throws: ``DataError/fileNotFound(path:)``, ``DataError/notARegularFile(path:kind:)``,
///   ``DataError/tooLarge(path:what:limit:hint:)``, ``DataError/readFailed(path:reason:)`` or
///   ``DataError/corruptGzip(path:reason:)``.
public func readFileDecompressingIfGzip(path: String, limit: Int = DataLimits.archiveBytes,
                                        format: String = "a data file") throws -> [UInt8] {
    let bytes = try readFileBytes(path: path, limit: limit, format: format)
    return GzipReader.isGzip(bytes) ? try GzipReader.decompress(bytes, path: path, maximumSize: limit) : bytes
}

/// Inflates gzip data with zlib.
public enum GzipReader {
    /// Whether `bytes` starts with the gzip magic number `1f 8b`.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// Inflates all gzip members in `compressed` and returns the concatenated data.
    ///
    /// Trailing zero padding after the last member is ignored; any other trailing data,
    /// a damaged stream, a bad CRC or a cut-short stream throws
    /// ``DataError/corruptGzip(path:reason:)`` naming `path`.
    ///
    /// Deflate can expand 1,032-fold, and members can be concatenated without end, so the
    /// output is bounded: more than `maximumSize` bytes (capped at ``DataLimits/memoryBudget``)
    /// throws ``DataError/tooLarge(path:what:limit:hint:)`` once that many have been produced,
    /// without allocating more.
    public static func decompress(_ compressed: [UInt8], path: String,
                                  maximumSize: Int = DataLimits.archiveBytes) throws -> [UInt8] {
        guard !compressed.isEmpty else {
            throw DataError.corruptGzip(path: path, reason: "no data")
        }
        let maximumSize = max(0, min(maximumSize, DataLimits.memoryBudget))
        func tooLarge() -> DataError {
            .tooLarge(path: path, what: "the decompressed data", limit: maximumSize,
                      hint: "the file decompresses to more than its format ever needs (damaged, or a decompression bomb)")
        }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        // windowBits 15 + 32: maximum window, automatic gzip/zlib header detection.
        let initStatus = inflateInit2_(stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw DataError.corruptGzip(path: path, reason: "zlib inflateInit2 failed with status \(initStatus)")
        }
        defer { inflateEnd(stream) }

        // The output grows with realloc, which moves large blocks by remapping their pages
        // (glibc's mremap) instead of zero-filling and copying them: rejecting a 1 GiB bomb
        // costs the inflating, not three passes over memory.
        var capacity = max(1, min(initialCapacity(for: compressed), maximumSize + 1))
        guard var output = malloc(capacity)?.assumingMemoryBound(to: UInt8.self) else { throw tooLarge() }
        defer { free(output) }
        var produced = 0
        var fed = 0          // input bytes handed to zlib so far
        var memberStart = 0  // input offset of the current gzip member

        try compressed.withUnsafeBufferPointer { input in
            let inputBase = UnsafeMutablePointer(mutating: input.baseAddress!)
            while true {
                if produced == capacity {
                    // One byte beyond the limit tells "exactly the limit" from "more".
                    guard capacity <= maximumSize else { throw tooLarge() }
                    let grown = min(max(capacity * 2, 1 << 16), maximumSize + 1)
                    guard let bigger = realloc(output, grown)?.assumingMemoryBound(to: UInt8.self) else { throw tooLarge() }
                    (output, capacity) = (bigger, grown)
                }
                if stream.pointee.avail_in == 0 && fed < input.count {
                    let chunk = min(input.count - fed, Int(UInt32.max))
                    stream.pointee.next_in = inputBase + fed
                    stream.pointee.avail_in = UInt32(chunk)
                    fed += chunk
                }
                let room = min(capacity - produced, Int(UInt32.max))
                stream.pointee.next_out = output + produced
                stream.pointee.avail_out = UInt32(room)
                let status = CZlib.inflate(stream, Z_NO_FLUSH)
                produced += room - Int(stream.pointee.avail_out)
                let position = fed - Int(stream.pointee.avail_in)
                if produced > maximumSize { throw tooLarge() }
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    if position == input.count { return }
                    let rest = input[position...]
                    if rest.count >= 2 && rest[position] == 0x1f && rest[position + 1] == 0x8b {
                        // Another gzip member follows (as produced by `cat a.gz b.gz`).
                        memberStart = position
                        guard inflateReset(stream) == Z_OK else {
                            throw DataError.corruptGzip(path: path, reason: "zlib inflateReset failed at byte offset \(position)")
                        }
                        continue
                    }
                    if rest.allSatisfy({ $0 == 0 }) { return }  // zero padding, as gzip(1) accepts
                    throw DataError.corruptGzip(
                        path: path, reason: "\(rest.count) bytes of trailing garbage after the gzip stream at byte offset \(position)")
                case Z_BUF_ERROR where stream.pointee.avail_in == 0 && fed == input.count:
                    throw DataError.corruptGzip(
                        path: path,
                        reason: "compressed stream ends early at byte offset \(input.count) (member starting at offset \(memberStart)); the file is truncated")
                case Z_BUF_ERROR:
                    continue  // more room or input is supplied at the top of the loop
                default:
                    let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                    throw DataError.corruptGzip(
                        path: path, reason: "\(message) near byte offset \(position) (member starting at offset \(memberStart))")
                }
            }
        }
        return [UInt8](UnsafeBufferPointer(start: output, count: produced))
    }

    /// A starting output size: the ISIZE trailer (uncompressed size mod 2^32) when plausible.
    private static func initialCapacity(for compressed: [UInt8]) -> Int {
        let fallback = max(compressed.count.multipliedReportingOverflow(by: 4).partialValue, 1 << 16)
        guard compressed.count >= 18 else { return 1 << 12 }
        let n = compressed.count
        let isize = Int(compressed[n - 4]) | Int(compressed[n - 3]) << 8
            | Int(compressed[n - 2]) << 16 | Int(compressed[n - 1]) << 24
        // Deflate expands at most ~1032:1, so a larger ISIZE is corrupt or wrapped.
        let limit = compressed.count.multipliedReportingOverflow(by: 1032)
        if isize == 0 || limit.overflow || isize > limit.partialValue { return fallback }
        return isize
    }
}

