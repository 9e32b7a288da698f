import Foundation
import Testing
@testable import ResNetData

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal HTTP/1.1 server on 127.0.0.1 for download tests: serves files from memory, honours
/// `Range: bytes=N-` (unless told not to), can cut the next response short, and records requests.
final class LocalHTTPServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let lock = NSLock()
    private var files: [String: [UInt8]]
    private var log: [(path: String, range: String?)] = []
    private var cut: Int?
    private var honourRanges = true
    private let stopped = DispatchSemaphore(value: 0)

    init(files: [String: [UInt8]]) throws {
        self.files = files
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(socketFD, generic, length) == 0 && listen(socketFD, 8) == 0 && getsockname(socketFD, generic, &length) == 0
            }
        }
        guard socketFD >= 0, bound else {
            close(socketFD)
            throw DataError.readFailed(path: "127.0.0.1", reason: "cannot listen")
        }
        listener = socketFD
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [self] in
            serve()
            stopped.signal()
        }
        thread.start()
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)/\(path)" }

    /// Requests received so far: path and Range header.
    var requests: [(path: String, range: String?)] { lock.withLock { log } }

    /// The next response sends only `bytes` bytes of its body, then closes the connection.
    func cutNextResponse(after bytes: Int) { lock.withLock { cut = bytes } }

    /// Whether `Range` requests get a 206 (true) or the whole file with 200 (false).
    func honourRanges(_ flag: Bool) { lock.withLock { honourRanges = flag } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        stopped.wait()
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            respond(client)
            close(client)
        }
    }

    private func respond(_ client: Int32) {
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.suffix(4).elementsEqual([13, 10, 13, 10]) {
            let count = read(client, &buffer, buffer.count)
            if count <= 0 { return }
            request += buffer[..<count]
        }
        let lines = String(decoding: request, as: UTF8.self).components(separatedBy: "\r\n")
        let path = String(lines[0].split(separator: " ").dropFirst().first?.dropFirst() ?? "")
        let range = lines.first { $0.lowercased().hasPrefix("range:") }.map { $0.dropFirst(6).trimmingCharacters(in: .whitespaces) }
        let (file, cutAfter, ranges) = lock.withLock { () -> ([UInt8]?, Int?, Bool) in
            log.append((path, range))
            defer { cut = nil }
            return (files[path], cut, honourRanges)
        }
        guard let file else {
            send(client, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", [])
            return
        }
        var start = 0
        if ranges, let range, range.hasPrefix("bytes="), let first = Int(range.dropFirst(6).split(separator: "-").first ?? "") {
            guard first < file.count else {
                send(client, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */\(file.count)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", [])
                return
            }
            start = first
        }
        let body = Array(file[start...])
        let status = start > 0 ? "206 Partial Content\r\nContent-Range: bytes \(start)-\(file.count - 1)/\(file.count)" : "200 OK"
        let header = "HTTP/1.1 \(status)\r\nContent-Length: \(body.count)\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        send(client, header, cutAfter.map { Array(body.prefix($0)) } ?? body)
    }

    private func send(_ client: Int32, _ header: String, _ body: [UInt8]) {
        let bytes = Array(header.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return }
            sent += count
        }
    }
}

@Suite("Downloads and checksums", .serialized)
struct DownloaderTests {
    @Test("MD5 matches RFC 1321's test vectors and md5sum, fed whole or in pieces")
    func md5() throws {
        let vectors = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"), ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"), ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("12345678901234567890123456789012345678901234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"),
        ]
        for (text, digest) in vectors { #expect(MD5.hexDigest(of: Array(text.utf8)) == digest, "\(text)") }
        var rng = SplitMix64(seed: 5)
        let data = randomBlock(100_003, using: &rng)
        var pieces = MD5()
        var offset = 0
        while offset < data.count {
            let size = min(Int.random(in: 0...200, using: &rng), data.count - offset)
            pieces.update(Array(data[offset..<(offset + size)]))
            offset += size
        }
        #expect(pieces.hexDigest() == MD5.hexDigest(of: data))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/md5sum") {
            try withTemporaryDirectory { dir in
                let path = try write(data, to: dir, name: "data")
                let expected = try runProcess("/usr/bin/md5sum", [path]).output.prefix(32)
                #expect(try MD5.hexDigest(ofFile: path) == String(expected))
                #expect(MD5.hexDigest(of: data) == String(expected))
            }
        }
    }

    /// A CIFAR-10 `.tar.gz` like the official one, and its MD5.
    static func archive() -> (bytes: [UInt8], md5: String, layout: (files: [(String, [UInt8])], train: SyntheticCIFAR, test: SyntheticCIFAR)) {
        let layout = binaryLayout(.cifar10, trainPerFile: 3, test: 2)
        let bytes = gzip(makeTar(layout.files.map { ("cifar-10-batches-bin/" + $0.0, $0.1) }, directories: ["cifar-10-batches-bin"]))
        return (bytes, MD5.hexDigest(of: bytes), layout)
    }

    @Test("Downloads, checks and unpacks a data set; the front door then finds it; a second run fetches nothing")
    func download() throws {
        let (bytes, md5, layout) = Self.archive()
        let server = try LocalHTTPServer(files: ["cifar-10-binary.tar.gz": bytes])
        defer { server.stop() }
        let spec = DatasetDownload(name: "cifar10", files: [
            RemoteFile(name: "cifar-10-binary.tar.gz", urls: [server.url("missing.tar.gz"), server.url("cifar-10-binary.tar.gz")],
                       md5: md5.uppercased(), unpacksTo: "cifar-10-batches-bin"),
        ])
        try withTemporaryDirectory { dir in
            let target = dir + "/cache/cifar10"
            try Downloader(timeout: 10).download(spec, to: target)
            #expect(server.requests.map(\.path) == ["missing.tar.gz", "cifar-10-binary.tar.gz"])  // the first mirror 404s
            #expect(!FileManager.default.fileExists(atPath: target + "/cifar-10-binary.tar.gz"))  // archive removed
            #expect(!FileManager.default.fileExists(atPath: target + "/cifar-10-binary.tar.gz.part"))
            let loaded = try LoadedDataset.load(.cifar10, from: target)
            expectSplit(loaded.split("train"), equals: layout.train, classNames: cifar10Names)
            try Downloader(timeout: 10).download(spec, to: target)
            #expect(server.requests.count == 2)

            // Keeping the archive: a later fetch verifies it instead of downloading.
            try Downloader(timeout: 10, keepArchives: true).download(spec, to: dir + "/kept")
            #expect(FileManager.default.fileExists(atPath: dir + "/kept/cifar-10-binary.tar.gz"))
            #expect(try Downloader().fetch(spec.files[0], to: dir + "/kept") == dir + "/kept/cifar-10-binary.tar.gz")
            #expect(server.requests.count == 4)
        }
    }

    @Test("A partial file is resumed with a Range request, and an interrupted transfer resumes on the next run")
    func resume() throws {
        var rng = SplitMix64(seed: 11)
        let data = randomBlock(300_000, using: &rng)
        let file = RemoteFile(name: "blob.bin", urls: [], md5: MD5.hexDigest(of: data))
        let server = try LocalHTTPServer(files: ["blob.bin": data])
        defer { server.stop() }
        var remote = file
        remote.urls = [server.url("blob.bin")]
        try withTemporaryDirectory { dir in
            // A .part left by an earlier run.
            try write(Array(data[..<123_456]), to: dir, name: "blob.bin.part")
            let path = try Downloader(timeout: 10).fetch(remote, to: dir)
            #expect(server.requests.last?.range == "bytes=123456-")
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(data))

            // The connection drops after 100,000 bytes: the error says so, the bytes are kept.
            let second = dir + "/second"
            server.cutNextResponse(after: 100_000)
            let error = #expect(throws: DataError.self) { try Downloader(timeout: 10).fetch(remote, to: second) }
            guard case .downloadFailed(let url, let destination, let reason)? = error else {
                Issue.record("expected downloadFailed, got \(String(describing: error))")
                return
            }
            #expect(url == remote.urls[0] && destination == second + "/blob.bin")
            #expect(reason.contains("run again to resume"), "\(reason)")
            let kept = try FileManager.default.attributesOfItem(atPath: second + "/blob.bin.part")[.size] as? Int
            #expect(kept == 100_000)
            try Downloader(timeout: 10).fetch(remote, to: second)
            #expect(server.requests.last?.range == "bytes=100000-")
            #expect(try Data(contentsOf: URL(fileURLWithPath: second + "/blob.bin")) == Data(data))

            // A server that ignores ranges sends everything again; the file is rewritten, not appended to.
            let third = dir + "/third"
            try FileManager.default.createDirectory(atPath: third, withIntermediateDirectories: true)
            try write(Array(data[..<5000]), to: third, name: "blob.bin.part")
            server.honourRanges(false)
            try Downloader(timeout: 10).fetch(remote, to: third)
            #expect(try Data(contentsOf: URL(fileURLWithPath: third + "/blob.bin")) == Data(data))

            // A complete .part: the server answers 416 and the checksum decides.
            server.honourRanges(true)
            let fourth = dir + "/fourth"
            try FileManager.default.createDirectory(atPath: fourth, withIntermediateDirectories: true)
            try write(data, to: fourth, name: "blob.bin.part")
            try Downloader(timeout: 10).fetch(remote, to: fourth)
            #expect(FileManager.default.fileExists(atPath: fourth + "/blob.bin"))
        }
    }

    @Test("A checksum mismatch is reported, and the bad download is removed so the next run starts afresh")
    func checksumMismatch() throws {
        let data = Array("not the real file".utf8)
        let server = try LocalHTTPServer(files: ["f.tar.gz": data])
        defer { server.stop() }
        let file = RemoteFile(name: "f.tar.gz", urls: [server.url("f.tar.gz")], md5: String(repeating: "0", count: 32))
        try withTemporaryDirectory { dir in
            #expect(throws: DataError.checksumMismatch(path: dir + "/f.tar.gz", expected: file.md5, actual: MD5.hexDigest(of: data))) {
                try Downloader(timeout: 10).fetch(file, to: dir)
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/f.tar.gz.part"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/f.tar.gz"))
            // A wrong file put there by hand is reported, not silently replaced.
            try write(data, to: dir, name: "f.tar.gz")
            expectDescription(of: { try Downloader(timeout: 10).fetch(file, to: dir) }, contains: [dir + "/f.tar.gz", "checksum mismatch"])
        }
    }

    @Test("Without a server the download fails fast, naming the URL and where to put the file by hand")
    func noNetwork() throws {
        // A port nothing listens on: bind, read the port, close.
        let server = try LocalHTTPServer(files: [:])
        let url = server.url("cifar-10-binary.tar.gz")
        server.stop()
        let file = RemoteFile(name: "cifar-10-binary.tar.gz", urls: [url], md5: String(repeating: "0", count: 32))
        try withTemporaryDirectory { dir in
            let start = ContinuousClock.now
            expectDescription(of: { try Downloader(timeout: 5).fetch(file, to: dir) },
                              contains: [url, "download failed", "put it at \(dir)/cifar-10-binary.tar.gz"])
            #expect(ContinuousClock.now - start < .seconds(5))
            let part = try? FileManager.default.attributesOfItem(atPath: dir + "/cifar-10-binary.tar.gz.part")
            #expect(part == nil || (part?[.size] as? Int) == 0)
        }
    }

    @Test("The standard table names the official URLs and published MD5s")
    func standardTable() {
        #expect(DatasetDownload.standard(.cifar10)?.files.first?.md5 == "c32a1d4ab5d03f1284b67883e8d87530")
        #expect(DatasetDownload.standard(.cifar100)?.files.first?.md5 == "03b5dce01913d631647c71ecec9e9cb8")
        #expect(DatasetDownload.standard(.cifar10)?.files.first?.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"])
        #expect(DatasetDownload.standard(.fashionMNIST)?.files.count == 4)
        #expect(DatasetDownload.standard(.mnist) == nil && DatasetDownload.standard(.folder) == nil)
        for download in [DatasetDownload.cifar10, .cifar100, .fashionMNIST] {
            for file in download.files {
                #expect(file.md5.count == 32 && file.md5.allSatisfy(\.isHexDigit))
                #expect(!file.urls.isEmpty)
            }
        }
    }
}
