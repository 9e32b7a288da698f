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
/// - Throws: ``DataError/fileNotFound(path:)``, ``DataError/readFailed(path:reason:)`` or
///   ``DataError/corruptGzip(path:reason:)``.
public func readFileDecompressingIfGzip(path: String) throws -> [UInt8] {
    let bytes = try readFileBytes(path: path)
    return GzipReader.isGzip(bytes) ? try GzipReader.decompress(bytes, path: path) : bytes
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
    public static func decompress(_ compressed: [UInt8], path: String) throws -> [UInt8] {
        guard !compressed.isEmpty else {
            throw DataError.corruptGzip(path: path, reason: "no data")
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

        var output = [UInt8](repeating: 0, count: initialCapacity(for: compressed))
        var produced = 0
        var fed = 0          // input bytes handed to zlib so far
        var memberStart = 0  // input offset of the current gzip member

        try compressed.withUnsafeBufferPointer { input in
            let inputBase = UnsafeMutablePointer(mutating: input.baseAddress!)
            while true {
                if produced == output.count {
                    output.append(contentsOf: repeatElement(0, count: max(output.count, 1 << 16)))
                }
                if stream.pointee.avail_in == 0 && fed < input.count {
                    let chunk = min(input.count - fed, Int(UInt32.max))
                    stream.pointee.next_in = inputBase + fed
                    stream.pointee.avail_in = UInt32(chunk)
                    fed += chunk
                }
                let room = min(output.count - produced, Int(UInt32.max))
                let status = output.withUnsafeMutableBufferPointer { out -> Int32 in
                    stream.pointee.next_out = out.baseAddress! + produced
                    stream.pointee.avail_out = UInt32(room)
                    let status = CZlib.inflate(stream, Z_NO_FLUSH)
                    produced += room - Int(stream.pointee.avail_out)
                    return status
                }
                let position = fed - Int(stream.pointee.avail_in)
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
        output.removeSubrange(produced...)
        return output
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

/// Opens `path` for reading, with the data errors for a missing or unreadable file.
func openForReading(_ path: String) throws -> Int32 {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw DataError.fileNotFound(path: path) }
        throw DataError.readFailed(path: path, reason: String(cString: strerror(code)))
    }
    return fd
}

/// Reads a whole file into memory.
func readFileBytes(path: String) throws -> [UInt8] {
    let fd = try openForReading(path)
    defer { close(fd) }
    var info = stat()
    let sizeHint = fstat(fd, &info) == 0 ? max(Int(info.st_size), 0) : 0
    // One extra byte so that a regular file is read in one call and EOF is seen without growing.
    var buffer = [UInt8](repeating: 0, count: sizeHint + 1)
    var filled = 0
    while true {
        if filled == buffer.count {
            buffer.append(contentsOf: repeatElement(0, count: max(buffer.count, 1 << 16)))
        }
        let count = buffer.withUnsafeMutableBytes { raw in
            read(fd, raw.baseAddress! + filled, raw.count - filled)
        }
        if count < 0 {
            let code = errno
            if code == EINTR { continue }
            throw DataError.readFailed(path: path, reason: String(cString: strerror(code)))
        }
        if count == 0 { break }
        filled += count
    }
    buffer.removeSubrange(filled...)
    return buffer
}

/// Whether something exists at `path`.
func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}
