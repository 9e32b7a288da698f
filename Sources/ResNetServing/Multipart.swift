import Foundation

/// A media type from a `Content-Type` header: `type/subtype` in lower case and its parameters
/// (names in lower case, values unquoted).
struct MediaType: Equatable {
    var type: String
    var parameters: [String: String]

    /// Parses `image/png`, `multipart/form-data; boundary="abc"`; `nil` when there is no `/`.
    init?(_ header: String) {
        let fields = splitParameters(header)
        guard let first = fields.first else { return nil }
        let type = first.trimmingCharacters(in: .whitespaces).lowercased()
        guard type.contains("/"), !type.hasPrefix("/"), !type.hasSuffix("/") else { return nil }
        self.type = type
        parameters = [:]
        for field in fields.dropFirst() {
            guard let equals = field.firstIndex(of: "=") else { continue }
            let name = field[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            parameters[name] = unquote(field[field.index(after: equals)...].trimmingCharacters(in: .whitespaces))
        }
    }
}

/// One part of a `multipart/form-data` body.
struct FormPart {
    /// The field name and file name of its `Content-Disposition`.
    var name: String?
    var filename: String?
    /// Its `Content-Type`, if it has one.
    var contentType: String?
    /// Where its content lies in the body.
    var content: Range<Int>
}

/// A malformed multipart body, as the message of a 400 answer.
struct MultipartError: Error, CustomStringConvertible {
    let description: String
}

/// Splits a `multipart/form-data` body (RFC 7578, RFC 2046 section 5.1) into its parts.
///
/// The body is already bounded (the server's body limit); the parser also bounds the parts it
/// accepts (`maximumParts`) and each part's header block (16 KiB), and never copies content.
/// - Throws: ``MultipartError`` for a missing or malformed delimiter, a part without a blank
///   line after its headers, a body without its closing delimiter (a truncated upload), or
///   more than `maximumParts` parts.
func parseMultipart(_ body: UnsafeRawBufferPointer, boundary: String, maximumParts: Int) throws -> [FormPart] {
    guard (1...70).contains(boundary.utf8.count) else {
        throw MultipartError(description: "the multipart boundary must have 1 to 70 characters")
    }
    let delimiter = Array("--\(boundary)".utf8)
    let crlf: [UInt8] = [13, 10]
    // The first delimiter starts the body or follows a preamble's line break.
    var position: Int
    if starts(body, at: 0, with: delimiter) {
        position = delimiter.count
    } else if let found = find(crlf + delimiter, in: body, from: 0) {
        position = found + 2 + delimiter.count
    } else {
        throw MultipartError(description: "no multipart delimiter '--\(boundary)' in the body")
    }
    var parts: [FormPart] = []
    while true {
        if starts(body, at: position, with: [45, 45]) { return parts }  // "--": the closing delimiter
        // Transport padding, then the line break that ends the delimiter line.
        while position < body.count && (body[position] == 32 || body[position] == 9) { position += 1 }
        guard starts(body, at: position, with: crlf) else {
            throw MultipartError(description: position >= body.count ? "the multipart body ends without its closing delimiter (truncated?)"
                                                                      : "a multipart delimiter is not followed by a line break")
        }
        position += 2
        guard parts.count < maximumParts else {
            throw MultipartError(description: "more than \(maximumParts) parts in the multipart body")
        }
        // Headers, up to a blank line (none at all when the line break comes at once).
        var part = FormPart(content: 0..<0)
        let headerEnd: Int
        if starts(body, at: position, with: crlf) {
            headerEnd = position
        } else {
            guard let end = find(crlf + crlf, in: body, from: position, limit: 16 << 10) else {
                throw MultipartError(description: "a multipart part's headers do not end with a blank line within 16 KiB")
            }
            headerEnd = end + 2
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: body[position..<end]), as: UTF8.self)
            for line in text.components(separatedBy: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else {
                    throw MultipartError(description: "a multipart part has a malformed header line")
                }
                let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                switch name {
                case "content-type": part.contentType = value
                case "content-disposition":
                    let fields = splitParameters(value)
                    for field in fields.dropFirst() {
                        guard let equals = field.firstIndex(of: "=") else { continue }
                        let key = field[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
                        let text = unquote(field[field.index(after: equals)...].trimmingCharacters(in: .whitespaces))
                        if key == "name" { part.name = text } else if key == "filename" { part.filename = text }
                    }
                default: break
                }
            }
        }
        let start = headerEnd + 2
        guard let end = find(crlf + delimiter, in: body, from: start) else {
            throw MultipartError(description: "the multipart body ends without its closing delimiter (truncated?)")
        }
        part.content = start..<end
        parts.append(part)
        position = end + 2 + delimiter.count
    }
}

/// Whether `bytes` holds `pattern` at `offset`.
private func starts(_ bytes: UnsafeRawBufferPointer, at offset: Int, with pattern: [UInt8]) -> Bool {
    guard offset >= 0, offset + pattern.count <= bytes.count else { return false }
    for (i, byte) in pattern.enumerated() where bytes[offset + i] != byte { return false }
    return true
}

/// The first offset at or after `from` where `pattern` starts, looking at most `limit` bytes on.
private func find(_ pattern: [UInt8], in bytes: UnsafeRawBufferPointer, from: Int, limit: Int = .max) -> Int? {
    guard from >= 0, let base = bytes.baseAddress else { return nil }
    let end = min(bytes.count, from.addingReportingOverflow(limit).overflow ? bytes.count : from + limit)
    guard end - from >= pattern.count else { return nil }
    // memchr to each candidate first byte, then a comparison (glibc's memmem is not visible
    // to Swift without _GNU_SOURCE).
    var offset = from
    let last = end - pattern.count
    while offset <= last {
        guard let hit = memchr(base + offset, Int32(pattern[0]), last - offset + 1) else { return nil }
        offset = base.distance(to: UnsafeRawPointer(hit))
        if starts(bytes, at: offset, with: pattern) { return offset }
        offset += 1
    }
    return nil
}

/// `a; b="x;y"; c` split at the semicolons outside quotes.
private func splitParameters(_ text: String) -> [String] {
    var fields: [String] = []
    var current = ""
    var quoted = false
    var escaped = false
    for character in text {
        if escaped {
            current.append(character)
            escaped = false
        } else if quoted && character == "\\" {
            current.append(character)
            escaped = true
        } else if character == "\"" {
            quoted.toggle()
            current.append(character)
        } else if character == ";" && !quoted {
            fields.append(current)
            current = ""
        } else {
            current.append(character)
        }
    }
    fields.append(current)
    return fields
}

/// A parameter value without its quotes and backslash escapes.
private func unquote(_ value: String) -> String {
    guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return value }
    var result = ""
    var escaped = false
    for character in value.dropFirst().dropLast() {
        if escaped {
            result.append(character)
            escaped = false
        } else if character == "\\" {
            escaped = true
        } else {
            result.append(character)
        }
    }
    return result
}
