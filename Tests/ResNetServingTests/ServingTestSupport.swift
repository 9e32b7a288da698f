import Foundation
import ResNetData
import ResNetInference
import ResNetModels
@testable import ResNetServing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - A small model

/// A model file on disk for the tests: ResNet-8 (one block per stage) on 8x8 RGB inputs with
/// three classes, stretched and normalized per channel; removed at the end of the test.
struct TestModel {
    static let card = ModelCard(architecture: .init(name: "resnet8", options: ModelOptions(shortcut: .a)),
                                input: .init(channels: 3, height: 8, width: 8, channelOrder: .rgb),
                                preprocessing: .init(resize: .stretch, normalization: .perChannel(mean: [0.5, 0.4, 0.3], std: [0.25, 0.2, 0.3])),
                                classNames: ["cat", "dog", "fish"],
                                provenance: .init(origin: .imported, source: "the serving tests"))

    let directory: URL
    var path: String { directory.appendingPathComponent("model.safetensors").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("serving-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ModelFile.write(model: try Self.card.buildModel(seed: 11), card: Self.card, whitening: nil,
                            to: URL(fileURLWithPath: path))
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    func load() throws -> LoadedModel { try ModelFile.load(path) }

    /// What `resnet predict MODEL FILE --top k` answers for each image: the library's path for
    /// files (decode, prepare, a batch of one), after writing each image to a file.
    func predictions(_ images: [[UInt8]], top: Int) throws -> [[Classifier.Prediction]] {
        try images.flatMap { try batchPredictions([$0], top: top) }
    }

    /// What `resnet predict MODEL FILE... --top k` answers for all the images at once: one batch.
    func batchPredictions(_ images: [[UInt8]], top: Int) throws -> [[Classifier.Prediction]] {
        let classifier = try Classifier(try load(), maximumBatchSize: images.count)
        let files = try images.enumerated().map { index, bytes in
            let file = directory.appendingPathComponent("image-\(index)-\(UUID().uuidString)")
            try Data(bytes).write(to: file)
            return file
        }
        defer { for file in files { try? FileManager.default.removeItem(at: file) } }
        return try classifier.classify(files: files.map(\.path), top: top)
    }
}

/// Whether two answers name the same classes in the same order with probabilities within
/// `tolerance`: what a batch of three or more gives against a batch of one. (oneDNN runs the
/// Winograd convolutions as F(2x2, 3x3) for one or two images and as F(4x4, 3x3) for more:
/// the same function, rounded differently, ~1e-7 apart.)
func agree(_ a: [Classifier.Prediction], _ b: [Classifier.Prediction], tolerance: Float = 1e-6) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.className == $1.className && $0.index == $1.index && abs($0.probability - $1.probability) <= tolerance }
}

// MARK: - Images

enum TestImages {
    /// Seeded random RGB pixels as a PNG file's bytes.
    static func png(width: Int, height: Int, seed: UInt64) throws -> [UInt8] {
        var state = seed
        let pixels = (0..<(width * height * 3)).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        return try encodePNG(pixels: pixels, width: width, height: height, channels: 3)
    }

    /// 16x16 RGB JPEG (Pillow, quality 95): red, green / blue, gray quadrants (ResNetDataTests' fixture).
    static let colorJPEG = bytes("""
        /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBD\
        AQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wAARCAAQABADAREAAhEBAxEB/8QAHwAAAQUB\
        AQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJico\
        KSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ\
        2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMi\
        MoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOk\
        paanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD4vr+Uz/fw/Siv5bP+Fc/Buv8AtMP9WD9jK/wD\
        P1Q//9k=
        """)
    /// 24x16 progressive JPEG (Pillow, quality 85, 4:2:0) (ResNetDataTests' fixture).
    static let progressiveJPEG = bytes("""
        /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJCIeJBweHx7/2wBD\
        AQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAQABgDASIAAhEBAxEB/8QAFwABAQEB\
        AAAAAAAAAAAAAAAABgAEBf/EABUBAQEAAAAAAAAAAAAAAAAAAAUG/9oADAMBAAIQAxAAAAEVvU9BkwtOKRvP/8QAFhAAAwAAAAAAAAAAAAAAAAAAAAIE/9oACAEB\
        AAEFAklElElElElElP/EABkRAAIDAQAAAAAAAAAAAAAAAAAFBCIxYf/aAAgBAwEBPwFY36Rm9NP/xAAYEQACAwAAAAAAAAAAAAAAAAAABQMEIv/aAAgBAgEBPwG+\
        yJ2Wj//EABUQAQEAAAAAAAAAAAAAAAAAAAAx/9oACAEBAAY/AoiIiP/EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEAAT8hUkkn/9oADAMBAAIAAwAAABDkz//E\
        ABYRAQEBAAAAAAAAAAAAAAAAAAAhMf/aAAgBAwEBPxDIhP/EABYRAQEBAAAAAAAAAAAAAAAAACEAMf/aAAgBAgEBPxDRkt//xAAWEAADAAAAAAAAAAAAAAAAAAAA\
        McH/2gAIAQEAAT8QVAqBUCoFQKg//9k=
        """)

    static func bytes(_ base64: String) -> [UInt8] {
        [UInt8](Data(base64Encoded: base64.filter { !$0.isWhitespace })!)
    }

    /// A PNG whose header declares `width` x `height` pixels (its IHDR rewritten, CRC fixed) but
    /// whose data is that of a 2x2 image: a decompression bomb's header without the bomb.
    static func pngDeclaring(width: Int, height: Int) throws -> [UInt8] {
        var png = try self.png(width: 2, height: 2, seed: 1)
        // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... , CRC at 29.
        for (offset, value) in [(16, width), (20, height)] {
            for i in 0..<4 { png[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * (3 - i))) }
        }
        let crc = crc32(png[12..<29])
        for i in 0..<4 { png[29 + i] = UInt8(truncatingIfNeeded: crc >> (8 * (3 - i))) }
        return png
    }

    /// CRC-32 (ISO 3309, as PNG chunks use).
    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// A `multipart/form-data` body of `parts` (field name, file name, content type, bytes).
    static func multipart(_ parts: [(name: String, filename: String?, type: String?, bytes: [UInt8])], boundary: String) -> [UInt8] {
        var body: [UInt8] = Array("preamble to ignore\r\n".utf8)
        for part in parts {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\""
            if let filename = part.filename { head += "; filename=\"\(filename)\"" }
            head += "\r\n"
            if let type = part.type { head += "Content-Type: \(type)\r\n" }
            head += "\r\n"
            body += Array(head.utf8) + part.bytes + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return body
    }
}

// MARK: - A blocking HTTP/1.1 client over a TCP socket

/// One answer: status, headers (lower-case names), body.
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as JSON.
    func json() throws -> Any { try JSONSerialization.jsonObject(with: Data(body)) }

    /// The `error` message of a JSON error answer.
    var error: String? { (try? json() as? [String: Any])?["error"] as? String }

    /// The predictions of a single-image answer.
    func predictions() throws -> [Classifier.Prediction] {
        struct Answer: Decodable { let predictions: [Classifier.Prediction] }
        return try JSONDecoder().decode(Answer.self, from: Data(body)).predictions
    }
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole answer.
///
/// - Parameters:
///   - body: sent with `Content-Length`, or in 16 KiB chunks when `chunked`.
///   - contentLength: a `Content-Length` to declare instead of the body's (a lie, for tests).
func http(_ method: String, _ target: String, port: Int, headers: [(String, String)] = [], body: [UInt8] = [],
          chunked: Bool = false, contentLength: Int? = nil) throws -> HTTPAnswer {
    let descriptor = try connectLoopback(port: port)
    defer { close(descriptor) }
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if chunked {
        head += "Transfer-Encoding: chunked\r\n"
    } else if !body.isEmpty || contentLength != nil || method == "POST" {
        head += "Content-Length: \(contentLength ?? body.count)\r\n"
    }
    head += "\r\n"
    var payload = Array(head.utf8)
    if chunked {
        for start in stride(from: 0, to: body.count, by: 16 << 10) {
            let chunk = body[start..<min(body.count, start + (16 << 10))]
            payload += Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + Array("\r\n".utf8)
        }
        payload += Array("0\r\n\r\n".utf8)
    } else {
        payload += body
    }
    // The server may answer (413) and close before it has read everything: keep what it said.
    _ = sendAll(descriptor, payload)
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            received += buffer[0..<n]
            if let answer = parseAnswer(received), answer.complete { return answer.answer }
            continue
        }
        if n == 0 || errno == ECONNRESET { break }
        if errno == EINTR { continue }
        throw ClientError(description: "recv: \(String(cString: strerror(errno)))")
    }
    guard let answer = parseAnswer(received) else {
        throw ClientError(description: "no HTTP answer (\(received.count) bytes)")
    }
    return answer.answer
}

/// A TCP connection to 127.0.0.1:`port`.
func connectLoopback(port: Int) throws -> Int32 {
    #if canImport(Glibc)
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let descriptor = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard descriptor >= 0 else { throw ClientError(description: "socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard result == 0 else {
        let message = String(cString: strerror(errno))
        close(descriptor)
        throw ClientError(description: "connect: \(message)")
    }
    return descriptor
}

private func sendAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        sent += n
    }
    return true
}

/// The answer in `bytes`, and whether all of its body has arrived.
private func parseAnswer(_ bytes: [UInt8]) -> (answer: HTTPAnswer, complete: Bool)? {
    let separator: [UInt8] = [13, 10, 13, 10]
    guard bytes.count >= 4, let end = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<($0 + 4)]) == separator }) else { return nil }
    let lines = String(decoding: bytes[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var body = Array(bytes[(end + 4)...])
    if headers["transfer-encoding"]?.lowercased() == "chunked" {
        var decoded: [UInt8] = []
        var position = 0
        while true {
            guard let lineEnd = (position..<max(position, body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                  let size = Int(String(decoding: body[position..<lineEnd], as: UTF8.self), radix: 16) else {
                return (HTTPAnswer(status: status, headers: headers, body: decoded), false)
            }
            if size == 0 { return (HTTPAnswer(status: status, headers: headers, body: decoded), true) }
            guard lineEnd + 2 + size + 2 <= body.count else { return (HTTPAnswer(status: status, headers: headers, body: decoded), false) }
            decoded += body[(lineEnd + 2)..<(lineEnd + 2 + size)]
            position = lineEnd + 2 + size + 2
        }
    }
    if let length = headers["content-length"].flatMap({ Int($0) }) {
        guard body.count >= length else { return (HTTPAnswer(status: status, headers: headers, body: body), false) }
        body = Array(body[0..<length])
        return (HTTPAnswer(status: status, headers: headers, body: body), true)
    }
    return (HTTPAnswer(status: status, headers: headers, body: body), false)
}

/// Runs blocking `body` on a new thread (not on Swift's cooperative pool, which the server's
/// handlers need) and returns its result.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result(catching: body)) }
        thread.start()
    }
}

/// The samples of a Prometheus text answer by series (`name{labels}`).
func metricSamples(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}

/// This process's resident memory (VmRSS), in MiB.
func residentMiB() -> Double {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]).map { $0 / 1024 } ?? 0
    }
    return 0
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass; whether it held.
func eventually(within seconds: Double = 10, _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(nanoseconds: 10_000_000)
    }
    return try await condition()
}

// MARK: - A server under test

/// A server on a free loopback port, running in a task of the test.
final class RunningServer: Sendable {
    let server: ClassificationServer
    let task: Task<Void, any Error>
    let port: Int

    init(classifier: sending any BatchClassifier, _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
        var configuration = ServerConfiguration(port: 0, maximumBatchSize: 8, decodeThreads: 2)
        configure(&configuration)
        let server = try ClassificationServer(classifier: classifier, configuration: configuration)
        self.server = server
        task = Task { try await server.run() }
        port = try await server.port()
    }

    /// A request from another thread.
    func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = [],
                 chunked: Bool = false, contentLength: Int? = nil) async throws -> HTTPAnswer {
        let port = port
        return try await onThread { try http(method, target, port: port, headers: headers, body: body, chunked: chunked, contentLength: contentLength) }
    }

    /// POSTs one image to /v1/classify.
    func classify(_ bytes: [UInt8], type: String = "image/png", query: String = "") async throws -> HTTPAnswer {
        try await request("POST", "/v1/classify\(query)", headers: [("Content-Type", type)], body: bytes)
    }

    /// The current metric samples.
    func metrics() async throws -> [String: Double] {
        metricSamples(try await request("GET", "/metrics").text)
    }

    /// Shuts down gracefully and waits for `run()` to return.
    func stop() async throws {
        await server.shutdown()
        try await task.value
    }
}

/// A gate a classifier waits at: closed, the inference thread blocks inside its batch until
/// the test opens it. So a test can hold a batch while it queues requests behind it.
final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = true
    private var waiting = 0

    func close() { condition.withLock { isOpen = false } }
    func open() {
        condition.withLock {
            isOpen = true
            condition.broadcast()
        }
    }
    /// Threads blocked at the gate.
    var blocked: Int { condition.withLock { waiting } }

    func pass() {
        condition.withLock {
            waiting += 1
            while !isOpen { condition.wait() }
            waiting -= 1
        }
    }
}

/// A `Classifier` that waits at a gate before each forward pass, or fails when told to.
final class GatedClassifier: BatchClassifier {
    let inner: Classifier
    let gate: Gate
    let failure: String?

    init(_ inner: Classifier, gate: Gate, failure: String? = nil) {
        self.inner = inner
        self.gate = gate
        self.failure = failure
    }

    var card: ModelCard { inner.card }

    func probabilities(_ images: [PlanarImage], prepared: Bool) throws -> [[Float]] {
        gate.pass()
        if let failure { throw ClientError(description: failure) }
        return try inner.probabilities(images, prepared: prepared)
    }

    func ranked(_ probabilities: [Float], top: Int) -> [Classifier.Prediction] {
        inner.ranked(probabilities, top: top)
    }
}
