import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One file of a data set on the web: where to get it, its published MD5, and, for a
/// `.tar.gz`, the folder it unpacks to.
public struct RemoteFile: Sendable, Equatable {
    /// The file's name in the destination folder.
    public var name: String
    /// Mirrors, tried in order.
    public var urls: [String]
    /// The published MD5, 32 lowercase hex digits.
    public var md5: String
    /// For an archive to unpack: the folder it creates (its presence means the work is done).
    public var unpacksTo: String?

    /// Describes a remote file.
    public init(name: String, urls: [String], md5: String, unpacksTo: String? = nil) {
        self.name = name
        self.urls = urls
        self.md5 = md5.lowercased()
        self.unpacksTo = unpacksTo
    }
}

/// The files that make up a downloadable data set.
public struct DatasetDownload: Sendable, Equatable {
    /// The data set's name, for messages.
    public var name: String
    /// Its files.
    public var files: [RemoteFile]

    /// Describes a downloadable data set.
    public init(name: String, files: [RemoteFile]) {
        self.name = name
        self.files = files
    }

    /// The official download of `name`, or `nil` for data sets without one here (MNIST, folders).
    public static func standard(_ name: DatasetName) -> DatasetDownload? {
        switch name {
        case .cifar10: cifar10
        case .cifar100: cifar100
        case .fashionMNIST: fashionMNIST
        case .mnist, .folder: nil
        }
    }

    /// CIFAR-10, binary version, with the MD5 published at https://www.cs.toronto.edu/~kriz/cifar.html.
    public static let cifar10 = DatasetDownload(name: "cifar10", files: [
        RemoteFile(name: "cifar-10-binary.tar.gz", urls: ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"],
                   md5: "c32a1d4ab5d03f1284b67883e8d87530", unpacksTo: "cifar-10-batches-bin"),
    ])

    /// CIFAR-100, binary version, with the MD5 published at https://www.cs.toronto.edu/~kriz/cifar.html.
    public static let cifar100 = DatasetDownload(name: "cifar100", files: [
        RemoteFile(name: "cifar-100-binary.tar.gz", urls: ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"],
                   md5: "03b5dce01913d631647c71ecec9e9cb8", unpacksTo: "cifar-100-binary"),
    ])

    /// Fashion-MNIST's four gzip-compressed IDX files (kept compressed; the reader inflates
    /// them), with the MD5s of its README, from its GitHub repository or S3 mirror.
    public static let fashionMNIST = DatasetDownload(name: "fashion-mnist", files: [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ].map { name, md5 in
        RemoteFile(name: name, urls: [
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/\(name)",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/\(name)",
        ], md5: md5)
    })
}

/// Downloads data sets: resumable (HTTP `Range` on a `.part` file), checked against the
/// published MD5, archives unpacked.
public struct Downloader: Sendable {
    /// Seconds without progress before a connection is given up.
    public var timeout: Double
    /// Whether to keep a `.tar.gz` after unpacking it.
    public var keepArchives: Bool
    /// Receives progress messages (one line each).
    public var log: @Sendable (String) -> Void

    /// The longest ``timeout`` accepted: an hour without a byte is a dead connection.
    public static let maximumTimeout: Double = 3_600

    /// Checks a timeout in seconds: finite, positive and at most ``maximumTimeout``. (Foundation
    /// stops the program on a NaN or infinite timeout, so it must never get one.)
    ///
    /// - Throws: ``DataOptionError`` saying what is wrong.
    public static func checkTimeout(_ seconds: Double) throws {
        guard seconds.isFinite, seconds > 0, seconds <= maximumTimeout else {
            throw DataOptionError("timeout must be a number of seconds above 0 and at most \(Int(maximumTimeout)), got \(seconds)")
        }
    }

    /// Creates a downloader; ``download(_:to:)`` and ``fetch(_:to:)`` check `timeout`
    /// (``checkTimeout(_:)``) before they connect.
    public init(timeout: Double = 30, keepArchives: Bool = false, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.timeout = timeout
        self.keepArchives = keepArchives
        self.log = log
    }

    /// Downloads, checks and unpacks every file of `dataset` into `directory` (created if
    /// needed). Files already present and intact are not fetched again; an interrupted
    /// download resumes where it stopped when run again.
    ///
    /// - Throws: ``DataError/downloadFailed(url:destination:reason:)`` (naming the URL and
    ///   where to put the file by hand), ``DataError/checksumMismatch(path:expected:actual:)``,
    ///   or the ``DataError`` of a damaged archive; ``DataOptionError`` for a bad ``timeout``.
    public func download(_ dataset: DatasetDownload, to directory: String) throws {
        try Self.checkTimeout(timeout)
        for file in dataset.files {
            let path = directory + "/" + file.name
            if let folder = file.unpacksTo, fileExists(directory + "/" + folder) {
                log("\(file.name): already unpacked in \(directory)/\(folder)")
                continue
            }
            try fetch(file, to: directory)
            if let folder = file.unpacksTo {
                log("\(file.name): unpacking into \(directory)/\(folder)")
                // Unpack beside the target, then rename, so a half-unpacked folder never looks complete.
                let staging = directory + "/.unpacking-" + file.name
                try? FileManager.default.removeItem(atPath: staging)
                try TarArchive.read(path: path).extract(to: staging)
                do {
                    try FileManager.default.moveItem(atPath: staging + "/" + folder, toPath: directory + "/" + folder)
                    try FileManager.default.removeItem(atPath: staging)
                } catch {
                    throw DataError.writeFailed(path: directory + "/" + folder, reason: "cannot move it out of the unpacked \(file.name) (does the archive hold it?): \(error.localizedDescription)")
                }
                if !keepArchives { try? FileManager.default.removeItem(atPath: path) }
            }
        }
    }

    /// Makes sure `directory/file.name` holds the file with the published checksum, downloading
    /// it (or the rest of it) when needed, and returns its path.
    ///
    /// - Throws: as ``download(_:to:)``.
    @discardableResult
    public func fetch(_ file: RemoteFile, to directory: String) throws -> String {
        try Self.checkTimeout(timeout)
        let path = directory + "/" + file.name
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DataError.writeFailed(path: directory, reason: "cannot create the folder: \(error.localizedDescription)")
        }
        if fileExists(path) {
            let digest = try MD5.hexDigest(ofFile: path)
            guard digest == file.md5 else { throw DataError.checksumMismatch(path: path, expected: file.md5, actual: digest) }
            log("\(file.name): already present, checksum OK")
            return path
        }
        let part = path + ".part"
        // Appending to a FIFO or a device would block or never end.
        if fileExists(part) && !isRegularFile(part) {
            _ = try openRegularFile(part)  // throws notARegularFile
        }
        var failures: [(url: String, reason: String)] = []
        for url in file.urls {
            do {
                try transfer(url, to: part, name: file.name)
                failures = []
                break
            } catch let failure as TransferFailure {
                failures.append((url, failure.reason))
                log("\(file.name): \(url): \(failure.reason)")
            }
        }
        guard failures.isEmpty else {
            let received = fileSize(part) ?? 0
            if received == 0 { try? FileManager.default.removeItem(atPath: part) }
            let kept = received > 0 ? " (the \(received) bytes received are kept in \(part); run again to resume)" : ""
            let reasons = failures.count == 1 ? failures[0].reason : failures.map { "\($0.url): \($0.reason)" }.joined(separator: "; ")
            throw DataError.downloadFailed(url: failures[0].url, destination: path, reason: reasons + kept)
        }
        let digest = try MD5.hexDigest(ofFile: part)
        guard digest == file.md5 else {
            try? FileManager.default.removeItem(atPath: part)  // start afresh next time
            throw DataError.checksumMismatch(path: path, expected: file.md5, actual: digest)
        }
        do {
            try FileManager.default.moveItem(atPath: part, toPath: path)
        } catch {
            throw DataError.writeFailed(path: path, reason: "cannot rename \(part): \(error.localizedDescription)")
        }
        log("\(file.name): checksum OK")
        return path
    }

    private struct TransferFailure: Error { let reason: String }

    /// GETs `url` into `part`, asking for the bytes after those already there.
    private func transfer(_ url: String, to part: String, name: String) throws {
        guard let address = URL(string: url), address.scheme == "http" || address.scheme == "https" else {
            throw TransferFailure(reason: "not an http(s) URL")
        }
        if !fileExists(part) { _ = FileManager.default.createFile(atPath: part, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: part) else { throw TransferFailure(reason: "cannot write \(part)") }
        defer { try? handle.close() }
        let offset = fileSize(part) ?? 0
        var request = URLRequest(url: address, timeoutInterval: timeout)
        if offset > 0 {
            request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range")
            log("\(name): resuming after \(offset) bytes from \(url)")
        } else {
            log("\(name): downloading \(url)")
        }
        let delegate = TransferDelegate(handle: handle, offset: offset, name: name, log: log)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = 7 * 24 * 3600
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
        session.dataTask(with: request).resume()
        delegate.finished.wait()
        session.finishTasksAndInvalidate()
        if let failure = delegate.failure { throw TransferFailure(reason: failure) }
    }

    private func fileSize(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }
}

/// Streams one response into a file: appended after `offset` for a 206 answer, from the
/// start for a 200 (a server that ignores ranges), nothing for anything else.
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let handle: FileHandle
    let offset: Int
    let name: String
    let log: @Sendable (String) -> Void
    let finished = DispatchSemaphore(value: 0)
    // Written on the session's delegate queue, read after `finished` is signalled.
    var failure: String?
    private var expected: Int64 = -1
    private var received: Int64 = 0
    private var start: Int64 = 0
    private var nextReport: Int64 = 0

    init(handle: FileHandle, offset: Int, name: String, log: @escaping @Sendable (String) -> Void) {
        self.handle = handle
        self.offset = offset
        self.name = name
        self.log = log
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let http = response as? HTTPURLResponse
        let status = http?.statusCode ?? 0
        do {
            switch status {
            case 206:
                let range = http?.value(forHTTPHeaderField: "Content-Range") ?? ""
                let first = range.split(whereSeparator: { " -/".contains($0) }).dropFirst().first.flatMap { Int64($0) }
                guard first == Int64(offset) else {
                    try handle.truncate(atOffset: 0)  // start over next time
                    failure = "the server resumed at the wrong place (Content-Range '\(range)', asked for byte \(offset))"
                    completionHandler(.cancel)
                    return
                }
                try handle.seek(toOffset: UInt64(offset))
                start = Int64(offset)
            case 200:
                try handle.truncate(atOffset: 0)
                try handle.seek(toOffset: 0)
                start = 0
            case 416 where offset > 0:
                // Nothing after the bytes we have: the file is complete (its checksum will tell).
                completionHandler(.cancel)
                return
            default:
                failure = "HTTP status \(status)"
                completionHandler(.cancel)
                return
            }
        } catch {
            failure = "cannot write the partial file: \(error.localizedDescription)"
            completionHandler(.cancel)
            return
        }
        expected = response.expectedContentLength
        nextReport = 8 << 20
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        do {
            try handle.write(contentsOf: data)
        } catch {
            failure = "cannot write the partial file: \(error.localizedDescription)"
            dataTask.cancel()
            return
        }
        received += Int64(data.count)
        if received >= nextReport {
            nextReport += 16 << 20
            let total = expected > 0 ? " of \((start + expected) >> 20) MiB" : ""
            log("\(name): \((start + received) >> 20) MiB\(total)")
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if failure == nil {
            if let error, (error as? URLError)?.code != .cancelled {
                failure = error.localizedDescription
            } else if error == nil, expected >= 0, received != expected {
                failure = "the connection closed after \(received) of \(expected) bytes"
            }
        }
        finished.signal()
    }
}
