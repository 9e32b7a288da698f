import Foundation
import ResNetData
import ResNetTensors

/// The settings of a ``ClassificationServer``: where it listens, how it batches, and the limits
/// that keep a hostile or mistaken client from exhausting the machine.
///
/// Every limit is checked before the memory it protects is allocated: a body above
/// ``maximumBodyBytes`` is refused while it streams in (413), an image whose header declares
/// more than ``maximumImagePixels`` pixels before its pixels are decoded (400), and a request
/// that would take the waiting images above ``queueLimit`` before it is decoded (503).
public struct ServerConfiguration: Sendable, Equatable {
    /// The address to listen on: `127.0.0.1` (this machine only) or `0.0.0.0` (every interface).
    public var host: String
    /// The TCP port; 0 lets the system choose one (``ClassificationServer/port()`` tells which).
    public var port: Int
    /// The most images one batch gathers from concurrent requests. Forward passes run at this
    /// size and at the powers of two below it (see ``InferenceBatcher/passes(for:maximum:)``).
    public var maximumBatchSize: Int
    /// How long the first image of a batch may wait for others that are still being decoded.
    /// The batch starts at once when nothing else is on its way, so at low load a request sees
    /// batch-1 latency.
    public var maximumWait: Duration
    /// The most images admitted but not yet in a running batch (being decoded or queued); a
    /// request that would go beyond is answered 503 with `Retry-After`.
    public var queueLimit: Int
    /// The largest request body read, in bytes; larger ones get 413.
    public var maximumBodyBytes: Int
    /// The largest image decoded, in pixels (width x height from its header): the guard
    /// against decompression bombs. At most ResNetData's `maximumImagePixels`.
    public var maximumImagePixels: Int
    /// The most images one multipart request may carry.
    public var maximumImagesPerRequest: Int
    /// Threads that decode and resize images, beside the one inference thread.
    public var decodeThreads: Int
    /// oneDNN threads of the inference thread (`nil`: the process's setting, see
    /// `ComputeEngine.threadCount`).
    public var inferenceThreads: Int?
    /// Seconds a client is told to wait (`Retry-After`) when the queue is full.
    public var retryAfterSeconds: Int
    /// How long a connection may stay silent (no request, or a body that stopped coming)
    /// before the server closes it.
    public var idleTimeout: Duration
    /// How long a graceful shutdown may wait for requests in flight before it cancels them.
    public var shutdownTimeout: Duration
    /// The number format the network runs in (`--precision`): fp32, or bf16 where the CPU has native bf16.
    public var precision: Precision

    /// The defaults of `resnet serve`: loopback port 8080, batches of up to 32 images waiting
    /// at most 5 ms, 256 images waiting, 16 MiB bodies, 40-megapixel images, 64 images per
    /// multipart request, one decoding thread per core.
    public init(host: String = "127.0.0.1", port: Int = 8080, maximumBatchSize: Int = 32, maximumWait: Duration = .milliseconds(5),
                queueLimit: Int = 256, maximumBodyBytes: Int = 16 << 20, maximumImagePixels: Int = 40_000_000,
                maximumImagesPerRequest: Int = 64, decodeThreads: Int = ProcessInfo.processInfo.activeProcessorCount,
                inferenceThreads: Int? = nil, retryAfterSeconds: Int = 1, idleTimeout: Duration = .seconds(60), shutdownTimeout: Duration = .seconds(30),
                precision: Precision = .fp32) {
        self.precision = precision
        self.host = host
        self.port = port
        self.maximumBatchSize = maximumBatchSize
        self.maximumWait = maximumWait
        self.queueLimit = queueLimit
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumImagePixels = maximumImagePixels
        self.maximumImagesPerRequest = maximumImagesPerRequest
        self.decodeThreads = decodeThreads
        self.inferenceThreads = inferenceThreads
        self.retryAfterSeconds = retryAfterSeconds
        self.idleTimeout = idleTimeout
        self.shutdownTimeout = shutdownTimeout
    }

    /// The configuration, or the first setting out of its range as a
    /// ``ServingError/invalidConfiguration(_:)`` naming the command-line option.
    public func validated() throws -> ServerConfiguration {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ServingError.invalidConfiguration(message()) }
        }
        try check(!host.isEmpty, "--host must not be empty")
        try check((0...65_535).contains(port), "--port must be in 0...65535, got \(port)")
        try check((1...1_024).contains(maximumBatchSize), "--max-batch must be in 1...1024, got \(maximumBatchSize)")
        try check(maximumWait >= .zero && maximumWait <= .seconds(10), "--max-wait-ms must be in 0...10000, got \(maximumWait)")
        try check((1...1_000_000).contains(queueLimit), "--queue-limit must be in 1...1000000, got \(queueLimit)")
        try check((1...(1 << 30)).contains(maximumBodyBytes), "--max-body must be in 1...1073741824 bytes, got \(maximumBodyBytes)")
        try check((1...ResNetData.maximumImagePixels).contains(maximumImagePixels),
                  "--max-pixels must be in 1...\(ResNetData.maximumImagePixels), got \(maximumImagePixels)")
        try check((1...4_096).contains(maximumImagesPerRequest), "--max-images must be in 1...4096, got \(maximumImagesPerRequest)")
        try check(maximumImagesPerRequest <= queueLimit,
                  "--max-images (\(maximumImagesPerRequest)) must not exceed --queue-limit (\(queueLimit)): such a request could never be admitted")
        try check((1...256).contains(decodeThreads), "--decode-threads must be in 1...256, got \(decodeThreads)")
        if let inferenceThreads { try check(inferenceThreads >= 1, "--threads must be at least 1, got \(inferenceThreads)") }
        try check((1...3_600).contains(retryAfterSeconds), "--retry-after must be in 1...3600 seconds, got \(retryAfterSeconds)")
        try check(idleTimeout > .zero, "the idle timeout must be positive")
        try check(shutdownTimeout > .zero, "the shutdown timeout must be positive")
        return self
    }
}

/// A server that cannot start or a setting out of range; the command line prints it as one
/// `Error:` line.
public enum ServingError: Error, CustomStringConvertible, Equatable {
    case invalidConfiguration(String)
    /// The model failed its warm-up (planning and running a batch of each size it will use).
    case modelFailed(String)
    /// The server could not listen on `address` (`host:port`).
    case cannotListen(address: String, reason: String)
    /// The server has stopped.
    case stopped

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): message
        case .modelFailed(let message): "the model cannot serve: \(message)"
        case .cannotListen(let address, let reason): "cannot listen on \(address): \(reason)"
        case .stopped: "the server has stopped"
        }
    }
}
