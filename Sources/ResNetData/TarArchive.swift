import Foundation

/// A tar archive held in memory, read from a `.tar` or `.tar.gz` file.
///
/// Reads POSIX ustar headers (with the `prefix` field), GNU long names (`L` entries) and pax
/// extended headers (`path` and `size` records), which covers what `tar` and Python's `tarfile`
/// write. Entry data are slices of one buffer; nothing is copied until asked for.
public struct TarArchive: Sendable {
    /// What an entry is.
    public enum Kind: Sendable, Equatable {
        /// A regular file.
        case file
        /// A directory.
        case directory
        /// A symbolic or hard link, a device or anything else; never extracted.
        case other
    }

    /// One member of the archive.
    public struct Entry: Sendable, Equatable {
        /// The member's path inside the archive, without a leading `./` or trailing `/`.
        public let name: String
        /// What the member is.
        public let kind: Kind
        /// Where the member's data lie in ``TarArchive/bytes``.
        public let range: Range<Int>
        /// The byte offset of the member's (last) header block.
        public let headerOffset: Int
    }

    /// The path the archive was read from, used in errors.
    public let path: String
    /// The uncompressed archive.
    public let bytes: [UInt8]
    /// The members in archive order.
    public let entries: [Entry]

    private static let block = 512

    /// Reads a tar archive, gzip-compressed or not.
    ///
    /// The archive is held in memory, so it must be a regular file of at most `limit` bytes
    /// (default ``DataLimits/archiveBytes``), compressed and decompressed.
    ///
    /// - Throws: a ``DataError`` naming `path` if the file is missing, not a regular file, too
    ///   large, unreadable, not a tar archive, or cut short (with the byte offset of the damaged
    ///   header).
    public static func read(path: String, limit: Int = DataLimits.archiveBytes) throws -> TarArchive {
        try TarArchive(bytes: readFileDecompressingIfGzip(path: path, limit: limit, format: "a tar archive"), path: path)
    }

    /// Parses the (uncompressed) bytes of a tar archive; `path` is used in errors.
    public init(bytes: [UInt8], path: String) throws {
        self.path = path
        self.bytes = bytes
        var entries: [Entry] = []
        var offset = 0
        var longName: String?       // from a GNU `L` entry or a pax `path` record
        var paxSize: Int?           // from a pax `size` record
        let block = Self.block
        while offset < bytes.count {
            guard bytes.count - offset >= block else {
                if bytes[offset...].allSatisfy({ $0 == 0 }) { break }  // short zero padding
                throw DataError.truncated(path: path, expected: offset + block, actual: bytes.count)
            }
            let header = bytes[offset..<(offset + block)]
            if header.allSatisfy({ $0 == 0 }) { break }  // end-of-archive marker
            try Self.verifyChecksum(header, path: path, offset: offset)
            let type = header[offset + 156]
            let size: Int
            if let paxSize {
                size = paxSize
            } else {
                guard let parsed = Self.number(header[(offset + 124)..<(offset + 136)]) else {
                    throw DataError.malformed(path: path, offset: offset + 124, reason: "tar header has a bad size field")
                }
                size = parsed
            }
            let dataStart = offset + block
            guard size <= bytes.count - dataStart else {
                throw DataError.truncated(path: path, expected: dataStart + min(size, Int.max - dataStart), actual: bytes.count)
            }
            let data = dataStart..<(dataStart + size)
            let padded = (size + block - 1) / block * block
            let next = padded <= bytes.count - dataStart ? dataStart + padded : bytes.count

            switch type {
            case UInt8(ascii: "L"):  // GNU long name for the next entry
                longName = Self.string(bytes[data])
                paxSize = nil
            case UInt8(ascii: "x"):  // pax extended header for the next entry
                let records = try Self.paxRecords(bytes[data], path: path, offset: dataStart)
                if let name = records["path"] { longName = name }
                if let text = records["size"] {
                    guard let value = Int(text), value >= 0 else {
                        throw DataError.malformed(path: path, offset: dataStart, reason: "pax header has a bad size '\(text)'")
                    }
                    paxSize = value
                }
            case UInt8(ascii: "g"), UInt8(ascii: "K"):  // pax global header, GNU long link name
                break
            default:
                var name = longName ?? Self.string(header[offset..<(offset + 100)])
                if longName == nil, header[(offset + 257)..<(offset + 263)].elementsEqual(Array("ustar\0".utf8)) {
                    let prefix = Self.string(header[(offset + 345)..<(offset + 500)])
                    if !prefix.isEmpty { name = prefix + "/" + name }
                }
                while name.hasPrefix("./") { name.removeFirst(2) }
                while name.hasSuffix("/") { name.removeLast() }
                let kind: Kind = switch type {
                case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): .file
                case UInt8(ascii: "5"): .directory
                default: .other
                }
                if !name.isEmpty && name != "." {
                    entries.append(Entry(name: name, kind: kind, range: data, headerOffset: offset))
                }
                longName = nil
                paxSize = nil
            }
            offset = next
        }
        self.entries = entries
    }

    /// The last member called `name` (later members replace earlier ones, as `tar -x` does).
    public func entry(named name: String) -> Entry? {
        entries.last { $0.name == name }
    }

    /// The data of `entry`, sharing the archive's buffer.
    public func contents(of entry: Entry) -> ArraySlice<UInt8> {
        bytes[entry.range]
    }

    /// Writes every regular file and directory into `directory` (created if needed).
    /// Links and special files are skipped.
    ///
    /// - Throws: ``DataError/malformed(path:offset:reason:)`` for a member whose name is
    ///   absolute or climbs out of `directory` with `..` (nothing is written for it), or
    ///   ``DataError/writeFailed(path:reason:)`` when a file cannot be written.
    public func extract(to directory: String) throws {
        let manager = FileManager.default
        for entry in entries where entry.kind != .other {
            let components = entry.name.split(separator: "/", omittingEmptySubsequences: true)
            guard !entry.name.hasPrefix("/"), !components.contains("..") else {
                throw DataError.malformed(path: path, offset: entry.headerOffset,
                                          reason: "unsafe member name '\(entry.name)' (absolute or with '..')")
            }
            let target = directory + "/" + components.joined(separator: "/")
            do {
                if entry.kind == .directory {
                    try manager.createDirectory(atPath: target, withIntermediateDirectories: true)
                } else {
                    let parent = (target as NSString).deletingLastPathComponent
                    try manager.createDirectory(atPath: parent, withIntermediateDirectories: true)
                    try Data(bytes[entry.range]).write(to: URL(fileURLWithPath: target))
                }
            } catch {
                throw DataError.writeFailed(path: target, reason: error.localizedDescription)
            }
        }
    }

    /// Checks the header checksum: the sum of the header's bytes with the checksum field read
    /// as spaces (unsigned, or signed as some old tars computed it).
    private static func verifyChecksum(_ header: ArraySlice<UInt8>, path: String, offset: Int) throws {
        let base = header.startIndex
        guard let stored = number(header[(base + 148)..<(base + 156)]) else {
            throw DataError.malformed(path: path, offset: offset,
                                      reason: "not a tar header (no checksum field; not a tar archive or damaged)")
        }
        var unsigned = 0, signed = 0
        for (i, byte) in header.enumerated() {
            let value = (148..<156).contains(i) ? 32 : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            throw DataError.malformed(path: path, offset: offset,
                                      reason: "tar header checksum is \(stored) but the header sums to \(unsigned) (not a tar archive or damaged)")
        }
    }

    /// A numeric header field: octal ASCII (space or NUL padded), or GNU base-256 when the
    /// first byte has its high bit set. `nil` when malformed or too large.
    private static func number(_ field: ArraySlice<UInt8>) -> Int? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            guard first == 0x80 else { return nil }  // negative or oversized
            var value = 0
            for byte in field.dropFirst() {
                guard value <= (Int.max >> 8) else { return nil }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0, digits = 0
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value <= (Int.max >> 3) else { return nil }
                value = value << 3 | Int(byte - UInt8(ascii: "0"))
                digits += 1
            case UInt8(ascii: " ") where digits == 0:
                continue
            case 0, UInt8(ascii: " "):
                return digits > 0 ? value : nil
            default:
                return nil
            }
        }
        return digits > 0 ? value : nil
    }

    /// A NUL-terminated field as UTF-8 (invalid bytes replaced).
    private static func string(_ field: ArraySlice<UInt8>) -> String {
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    /// Parses pax records `"<length> <key>=<value>\n"`.
    private static func paxRecords(_ data: ArraySlice<UInt8>, path: String, offset: Int) throws -> [String: String] {
        var records: [String: String] = [:]
        var position = data.startIndex
        while position < data.endIndex {
            if data[position] == 0 { break }  // zero padding
            guard let space = data[position...].prefix(20).firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[position..<space], as: UTF8.self)),
                  length > space - position + 1, length <= data.endIndex - position,
                  data[position + length - 1] == UInt8(ascii: "\n"),
                  let equals = data[(space + 1)..<(position + length)].firstIndex(of: UInt8(ascii: "=")) else {
                throw DataError.malformed(path: path, offset: offset + position - data.startIndex, reason: "bad pax extended header record")
            }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            records[key] = String(decoding: data[(equals + 1)..<(position + length - 1)], as: UTF8.self)
            position += length
        }
        return records
    }
}
