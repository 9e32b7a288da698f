import Foundation

/// Reads and writes the safetensors format (Hugging Face): an 8-byte little-endian header
/// length, a JSON header mapping names to dtype, shape and byte offsets (plus a string-to-string
/// `__metadata__`), then the raw little-endian tensor bytes. Loading never executes anything.
public enum SafeTensors {
    /// One float32 tensor.
    public struct Tensor: Equatable, Sendable {
        public var shape: [Int]
        public var values: [Float]
        public init(shape: [Int], values: [Float]) {
            self.shape = shape
            self.values = values
        }
    }

    /// Encodes `tensors` (written in name order) and `metadata`.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            guard t.shape.reduce(1, *) == t.values.count else {
                throw ModelFileError.invalidFile("tensor \(name): shape \(t.shape) does not hold \(t.values.count) values")
            }
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for name in names {
            tensors[name]!.values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4)) }
        }
        return data
    }

    /// Decodes a safetensors file's bytes; `path` names the file in errors.
    public static func decode(_ data: Data, path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        func bad(_ why: String) -> ModelFileError { .invalidFile("\(path): not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw bad("\(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8), headerLength <= 100_000_000 else {
            throw bad("header length \(headerLength) exceeds the file (\(data.count) bytes): truncated?")
        }
        let headerEnd = 8 + Int(headerLength)
        guard let header = (try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd))) as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        let body = data.count - headerEnd
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, entry) in header {
            if name == "__metadata__" {
                guard let m = entry as? [String: String] else { throw bad("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            guard let e = entry as? [String: Any], let dtype = e["dtype"] as? String,
                  let shape = e["shape"] as? [Int], let offsets = e["data_offsets"] as? [Int], offsets.count == 2 else {
                throw bad("entry '\(name)' lacks dtype, shape or data_offsets")
            }
            guard dtype == "F32" else { throw bad("tensor '\(name)' has dtype \(dtype); only F32 is supported") }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body else {
                throw bad("tensor '\(name)': offsets \(offsets) outside the \(body)-byte data: truncated?")
            }
            let count = shape.reduce(1, *)
            guard offsets[1] - offsets[0] == 4 * count else {
                throw bad("tensor '\(name)': \(offsets[1] - offsets[0]) bytes for shape \(shape)")
            }
            var values = [Float](repeating: 0, count: count)
            values.withUnsafeMutableBytes { out in
                data.withUnsafeBytes { raw in
                    out.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(headerEnd + offsets[0])..<(headerEnd + offsets[1])]))
                }
            }
            tensors[name] = Tensor(shape: shape, values: values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) })
        }
        return (tensors, metadata)
    }

    /// Writes atomically: a temporary file in the same folder, flushed to disk, then renamed
    /// over `url`, so that a crash leaves either the old file or the new one.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
        try writeAtomically(try encode(tensors, metadata: metadata), to: url)
    }

    /// Reads and decodes a file.
    public static func read(_ url: URL) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard FileManager.default.fileExists(atPath: url.path) else { throw ModelFileError.io("\(url.path): no such file") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelFileError.io("\(url.path): cannot read: \(error.localizedDescription)") }
        return try decode(data, path: url.path)
    }
}

/// Writes `data` to a temporary file beside `url`, fsyncs it, renames it over `url` and
/// fsyncs the folder.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let folder = url.deletingLastPathComponent()
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw ModelFileError.io("\(folder.path): cannot write (\(String(cString: strerror(errno))))") }
    var ok = true
    data.withUnsafeBytes { raw in
        var written = 0
        while written < raw.count {
            let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
            if n <= 0 { ok = false; break }
            written += n
        }
    }
    ok = ok && fsync(fd) == 0
    close(fd)
    guard ok, rename(temporary.path, url.path) == 0 else {
        unlink(temporary.path)
        throw ModelFileError.io("\(url.path): write failed (\(String(cString: strerror(errno))))")
    }
    let dir = open(folder.path, O_RDONLY)
    if dir >= 0 { fsync(dir); close(dir) }
}
