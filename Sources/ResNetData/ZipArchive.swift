import CZlib

/// A ZIP archive held in memory, read through its central directory: what `torch.save` writes
/// since PyTorch 1.6.
///
/// Reads stored and deflated entries, ZIP64 sizes and offsets (PyTorch's writer, miniz, always
/// adds a ZIP64 end record) and local headers with data descriptors (flag bit 3, which PyTorch
/// sets: the local header's sizes are zero, so sizes come from the central directory). Every
/// size and offset is checked against the archive's bytes before it is used; no entry is
/// inflated beyond its declared size, and none may declare more than `maximumEntryBytes`.
/// Encrypted entries, other compression methods and multi-disk archives are refused.
public struct ZipArchive: Sendable {
    /// One member of the archive.
    public struct Entry: Sendable, Equatable {
        /// The member's name (path) inside the archive.
        public let name: String
        /// The compression method: 0 (stored) or 8 (deflated).
        public let method: UInt16
        /// The CRC-32 of the uncompressed data, as the central directory records it.
        public let crc32: UInt32
        /// Where the (possibly compressed) data lie in ``ZipArchive/bytes``.
        public let range: Range<Int>
        /// The size of the uncompressed data.
        public let size: Int
        /// The byte offset of the member's local header.
        public let headerOffset: Int
    }

    /// The path the archive was read from, used in errors.
    public let path: String
    /// The archive's bytes.
    public let bytes: [UInt8]
    /// The members in central-directory order.
    public let entries: [Entry]
    private let index: [String: Int]

    /// The most members an archive may list: 100,000 (a ResNet-152 state_dict has 1,045 entries).
    public static let maximumEntries = 100_000

    /// Parses the central directory of the ZIP archive in `bytes`; `path` is used in errors.
    ///
    /// - Parameter maximumEntryBytes: the largest uncompressed size an entry may declare.
    /// - Throws: ``DataError/malformed(path:offset:reason:)`` for a damaged structure (with its
    ///   byte offset), ``DataError/truncated(path:expected:actual:)`` for data beyond the end,
    ///   ``DataError/unsupported(path:reason:)`` for encryption, other methods or several disks,
    ///   ``DataError/tooLarge(path:what:limit:hint:)`` for an entry or directory too large.
    public init(bytes: [UInt8], path: String, maximumEntryBytes: Int) throws {
        self.path = path
        self.bytes = bytes
        let reader = ByteReader(bytes: bytes, path: path)

        // End of central directory: 22 bytes plus a comment of at most 65,535, at the very end.
        let minimumStart = max(0, bytes.count - 22 - 0xFFFF)
        var end = -1
        var candidate = bytes.count - 22
        while candidate >= minimumStart {
            if reader.u32(candidate) == 0x0605_4b50, candidate + 22 + Int(reader.u16(candidate + 20)) == bytes.count {
                end = candidate
                break
            }
            candidate -= 1
        }
        guard end >= 0 else {
            throw DataError.malformed(path: path, offset: bytes.count, reason: "not a zip archive: no end-of-central-directory record")
        }
        var entryCount = Int(reader.u16(end + 10))
        var directorySize = Int(reader.u32(end + 12))
        var directoryOffset = Int(reader.u32(end + 16))
        guard reader.u16(end + 4) == 0 || reader.u16(end + 4) == 0xFFFF, reader.u16(end + 6) == 0 || reader.u16(end + 6) == 0xFFFF,
              reader.u16(end + 8) == reader.u16(end + 10) else {
            throw DataError.unsupported(path: path, reason: "a zip archive split over several disks")
        }
        // ZIP64: a locator just before the end record points at the ZIP64 end record.
        if end >= 20, reader.u32(end - 20) == 0x0706_4b50 {
            let locator = end - 20
            let record = try reader.offset(reader.u64(locator + 8), "ZIP64 end record offset", at: locator)
            guard record <= locator - 56, reader.u32(record) == 0x0606_4b50 else {
                throw DataError.malformed(path: path, offset: locator, reason: "ZIP64 locator points at no ZIP64 end record")
            }
            entryCount = try reader.offset(reader.u64(record + 32), "ZIP64 entry count", at: record)
            directorySize = try reader.offset(reader.u64(record + 40), "ZIP64 central directory size", at: record)
            directoryOffset = try reader.offset(reader.u64(record + 48), "ZIP64 central directory offset", at: record)
            end = record
        }
        guard entryCount <= Self.maximumEntries else {
            throw DataError.tooLarge(path: path, what: "the number of zip entries (\(entryCount))", limit: Self.maximumEntries,
                                     hint: "a checkpoint has one entry per storage")
        }
        guard directoryOffset <= end, directorySize <= end - directoryOffset else {
            throw DataError.malformed(path: path, offset: end, reason: "central directory (\(directorySize) bytes at \(directoryOffset)) lies outside the archive")
        }
        guard entryCount <= directorySize / 46 else {
            throw DataError.malformed(path: path, offset: end, reason: "\(entryCount) entries cannot fit in a \(directorySize)-byte central directory")
        }

        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        var offset = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for _ in 0..<entryCount {
            guard offset <= directoryEnd - 46, reader.u32(offset) == 0x0201_4b50 else {
                throw DataError.malformed(path: path, offset: offset, reason: "bad central directory entry signature")
            }
            let flags = reader.u16(offset + 8), method = reader.u16(offset + 10)
            let crc = reader.u32(offset + 16)
            var compressedSize = UInt64(reader.u32(offset + 20)), size = UInt64(reader.u32(offset + 24))
            let nameLength = Int(reader.u16(offset + 28)), extraLength = Int(reader.u16(offset + 30))
            let commentLength = Int(reader.u16(offset + 32))
            var headerOffset = UInt64(reader.u32(offset + 42))
            let variable = offset + 46
            guard nameLength + extraLength + commentLength <= directoryEnd - variable else {
                throw DataError.malformed(path: path, offset: offset, reason: "central directory entry runs past the directory's end")
            }
            let name = String(decoding: bytes[variable..<(variable + nameLength)], as: UTF8.self)
            // ZIP64 extended information (tag 1): the 64-bit values of the fields saturated above, in order.
            var extra = variable + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let tag = reader.u16(extra), length = Int(reader.u16(extra + 2))
                guard length <= extraEnd - extra - 4 else {
                    throw DataError.malformed(path: path, offset: extra, reason: "extra field of '\(oneLine(name))' runs past its end")
                }
                if tag == 1 {
                    var field = extra + 4
                    let fieldEnd = field + length
                    if size == 0xFFFF_FFFF {
                        guard field + 8 <= fieldEnd else { throw DataError.malformed(path: path, offset: extra, reason: "short ZIP64 field of '\(oneLine(name))'") }
                        size = reader.u64(field); field += 8
                    }
                    if compressedSize == 0xFFFF_FFFF {
                        guard field + 8 <= fieldEnd else { throw DataError.malformed(path: path, offset: extra, reason: "short ZIP64 field of '\(oneLine(name))'") }
                        compressedSize = reader.u64(field); field += 8
                    }
                    if headerOffset == 0xFFFF_FFFF {
                        guard field + 8 <= fieldEnd else { throw DataError.malformed(path: path, offset: extra, reason: "short ZIP64 field of '\(oneLine(name))'") }
                        headerOffset = reader.u64(field); field += 8
                    }
                }
                extra += 4 + length
            }
            guard flags & 1 == 0 else { throw DataError.unsupported(path: path, reason: "zip entry '\(oneLine(name))' is encrypted") }
            guard method == 0 || method == 8 else {
                throw DataError.unsupported(path: path, reason: "zip entry '\(oneLine(name))' uses compression method \(method) (only stored and deflated entries are read)")
            }
            guard size <= UInt64(maximumEntryBytes) else {
                throw DataError.tooLarge(path: path, what: "zip entry '\(oneLine(name))' (declaring \(size) bytes)", limit: maximumEntryBytes,
                                         hint: "the archive is damaged or not a checkpoint")
            }
            guard method == 8 || compressedSize == size else {
                throw DataError.malformed(path: path, offset: offset, reason: "stored entry '\(oneLine(name))' has compressed size \(compressedSize) but size \(size)")
            }
            // The local header: its own name and extra field lengths decide where the data start.
            let local = try reader.offset(headerOffset, "local header offset of '\(oneLine(name))'", at: offset)
            guard local <= directoryOffset - 30, reader.u32(local) == 0x0403_4b50 else {
                throw DataError.malformed(path: path, offset: local, reason: "no local header for '\(oneLine(name))' (central directory at \(offset))")
            }
            let localNameLength = Int(reader.u16(local + 26)), localExtraLength = Int(reader.u16(local + 28))
            let dataStart = local + 30 + localNameLength + localExtraLength
            guard localNameLength == nameLength,
                  bytes[(local + 30)..<(local + 30 + min(nameLength, directoryOffset - local - 30))].elementsEqual(bytes[variable..<(variable + nameLength)]) else {
                throw DataError.malformed(path: path, offset: local, reason: "local header name differs from the central directory's '\(oneLine(name))'")
            }
            guard dataStart <= directoryOffset, compressedSize <= UInt64(directoryOffset - dataStart) else {
                throw DataError.truncated(path: path, expected: dataStart + Int(clamping: compressedSize), actual: directoryOffset)
            }
            guard index[name] == nil else {
                throw DataError.malformed(path: path, offset: offset, reason: "zip entry '\(oneLine(name))' appears twice")
            }
            index[name] = entries.count
            entries.append(Entry(name: name, method: method, crc32: crc, range: dataStart..<(dataStart + Int(compressedSize)),
                                 size: Int(size), headerOffset: local))
            offset = variable + nameLength + extraLength + commentLength
        }
        self.entries = entries
        self.index = index
    }

    /// The member named `name`, if any.
    public func entry(named name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The uncompressed data of `entry` (a slice of ``bytes`` when it is stored), checked
    /// against its CRC-32.
    ///
    /// - Throws: ``DataError/malformed(path:offset:reason:)`` naming the entry when the
    ///   deflate stream is damaged, inflates to another size than declared, or the CRC differs.
    public func data(of entry: Entry) throws -> ArraySlice<UInt8> {
        let data: ArraySlice<UInt8>
        if entry.method == 0 {
            data = bytes[entry.range]
        } else {
            data = try inflate(entry)[...]
        }
        let crc = data.withUnsafeBufferPointer { buffer -> UInt32 in
            var crc: uLong = CZlib.crc32(0, nil, 0)
            var start = 0
            while start < buffer.count {
                let chunk = min(buffer.count - start, 1 << 30)
                crc = CZlib.crc32(crc, buffer.baseAddress! + start, uInt(chunk))
                start += chunk
            }
            return UInt32(truncatingIfNeeded: crc)
        }
        guard crc == entry.crc32 else {
            throw DataError.malformed(path: path, offset: entry.headerOffset,
                                      reason: "zip entry '\(oneLine(entry.name))' fails its CRC-32 check (damaged file)")
        }
        return data
    }

    /// Inflates a raw deflate stream into exactly `entry.size` bytes.
    private func inflate(_ entry: Entry) throws -> [UInt8] {
        func damaged(_ why: String) -> DataError {
            .malformed(path: path, offset: entry.range.lowerBound, reason: "deflated zip entry '\(oneLine(entry.name))' \(why)")
        }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        // windowBits -15: a raw deflate stream, as zip stores it.
        guard inflateInit2_(stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw damaged("cannot be inflated (zlib inflateInit2 failed)")
        }
        defer { inflateEnd(stream) }
        // The output grows as it is produced (deflate expands up to 1,032-fold, so a small entry
        // may claim gigabytes), up to one spare byte past the declared size, which tells
        // "exactly the declared size" from "more".
        let capacity = entry.size + 1
        var output = [UInt8](repeating: 0, count: min(capacity, max(entry.range.count.multipliedReportingOverflow(by: 4).partialValue, 1 << 16)))
        var produced = 0
        var consumed = entry.range.lowerBound
        while true {
            if produced == output.count {
                guard output.count < capacity else { throw damaged("inflates to more than its declared \(entry.size) bytes") }
                output.append(contentsOf: repeatElement(0, count: min(output.count, capacity - output.count)))
            }
            let status: Int32 = bytes.withUnsafeBufferPointer { input in
                output.withUnsafeMutableBufferPointer { out in
                    let chunk = min(entry.range.upperBound - consumed, 1 << 30)
                    let room = min(out.count - produced, 1 << 30)
                    stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + consumed)
                    stream.pointee.avail_in = uInt(chunk)
                    stream.pointee.next_out = out.baseAddress! + produced
                    stream.pointee.avail_out = uInt(room)
                    let status = CZlib.inflate(stream, Z_NO_FLUSH)
                    consumed += chunk - Int(stream.pointee.avail_in)
                    produced += room - Int(stream.pointee.avail_out)
                    return status
                }
            }
            switch status {
            case Z_STREAM_END: break
            case Z_OK: continue
            case Z_BUF_ERROR where produced == output.count: continue  // needs more room: grown above
            case Z_BUF_ERROR: throw damaged("ends before its deflate stream does (truncated)")
            default: throw damaged("is damaged (zlib status \(status))")
            }
            break
        }
        output.removeSubrange(produced...)
        guard produced == entry.size else { throw damaged("inflates to \(produced) bytes, not its declared \(entry.size)") }
        return output
    }
}

/// Little-endian reads at offsets the caller has bounds-checked; out-of-range reads give 0 so
/// that a signature check at a bad offset fails instead of trapping.
private struct ByteReader {
    let bytes: [UInt8]
    let path: String

    func u16(_ at: Int) -> UInt16 {
        guard at >= 0, at <= bytes.count - 2 else { return 0 }
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    func u32(_ at: Int) -> UInt32 {
        guard at >= 0, at <= bytes.count - 4 else { return 0 }
        return UInt32(u16(at)) | UInt32(u16(at + 2)) << 16
    }

    func u64(_ at: Int) -> UInt64 {
        guard at >= 0, at <= bytes.count - 8 else { return 0 }
        return UInt64(u32(at)) | UInt64(u32(at + 4)) << 32
    }

    /// A 64-bit size or offset that must lie within the archive.
    func offset(_ value: UInt64, _ what: String, at: Int) throws -> Int {
        guard value <= UInt64(bytes.count) else {
            throw DataError.malformed(path: path, offset: at, reason: "\(what) \(value) lies beyond the archive's \(bytes.count) bytes")
        }
        return Int(value)
    }
}
