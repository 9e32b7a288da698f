import Dispatch
import Foundation
import Hummingbird
import Logging
import ResNetData
import ResNetInference
import ServiceLifecycle

/// An HTTP server that classifies images with a model: `resnet serve`, as a library.
///
/// ```swift
/// let model = try ModelFile.load("model.safetensors")
/// let server = try ClassificationServer(model: model, configuration: ServerConfiguration(port: 8080))
/// try await server.run(stopOnSignals: true)   // until SIGTERM or SIGINT; then drains
/// ```
///
/// Routes: `POST /v1/classify` (a JPEG or PNG body, or `multipart/form-data` with several
/// images; `?top=k`), `GET /healthz`, `GET /v1/model` (the model card), `GET /metrics`
/// (Prometheus text). Answers carry the fields of `resnet predict --json`.
///
/// Threads: Hummingbird's event loops read and write HTTP; ``ServerConfiguration/decodeThreads``
/// threads decode and prepare images in parallel; one inference thread (``InferenceBatcher``)
/// gathers concurrent requests into batches and is the only one that touches the network.
///
/// Shutdown: SIGTERM or SIGINT (with `stopOnSignals`) or ``shutdown()`` stops accepting connections, lets
/// every request already received finish (its batch included), then returns from ``run(stopOnSignals:)``.
public final class ClassificationServer: @unchecked Sendable {
    /// The settings, validated.
    public let configuration: ServerConfiguration
    /// The model card of the classifier served.
    public let card: ModelCard
    /// The batcher in front of the classifier; its `metrics` are what `/metrics` shows.
    public let batcher: InferenceBatcher
    private let logger: Logger

    private let lock = NSLock()
    private var group: ServiceGroup?
    private var shutdownRequested = false
    private var boundPort: Int?
    private var stoppedBeforeListening: (any Error)?
    /// What the network computes in, for the log: fp32, bf16 or int8.
    private let numberFormat: String
    private var portWaiters: [CheckedContinuation<Int, any Error>] = []

    /// A server for `classifier`, which it takes over (only its inference thread calls it).
    ///
    /// - Parameter logger: where the server and Hummingbird log (default: standard output at
    ///   `info`, or `LOG_LEVEL`).
    /// - Throws: ``ServingError/invalidConfiguration(_:)`` for a setting out of range.
    public init(classifier: sending any BatchClassifier, configuration: ServerConfiguration, logger: Logger? = nil) throws {
        self.configuration = try configuration.validated()
        card = classifier.card
        numberFormat = (classifier as? Classifier).map { $0.isQuantized ? "int8" : $0.precision.rawValue } ?? configuration.precision.rawValue
        batcher = InferenceBatcher(classifier: classifier, maximumBatchSize: configuration.maximumBatchSize,
                                   maximumWait: configuration.maximumWait, queueLimit: configuration.queueLimit,
                                   inferenceThreads: configuration.inferenceThreads)
        if let logger {
            self.logger = logger
        } else {
            var logger = Logger(label: "resnet.serve")
            logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            self.logger = logger
        }
    }

    /// A server for a loaded model: a `Classifier` whose largest batch is
    /// ``ServerConfiguration/maximumBatchSize``.
    ///
    /// - Throws: ``ServingError/invalidConfiguration(_:)``, or the classifier's error when the
    ///   model cannot run (a batch that does not fit in memory, a ZCA model without its whitening).
    public convenience init(model: sending LoadedModel, configuration: ServerConfiguration, logger: Logger? = nil) throws {
        let configuration = try configuration.validated()
        let classifier = try Classifier(model, maximumBatchSize: configuration.maximumBatchSize, precision: configuration.precision)
        try self.init(classifier: classifier, configuration: configuration, logger: logger)
    }

    /// Warms the model up (plans and runs a batch of every size it will use), listens, and
    /// serves until ``shutdown()`` or, with `stopOnSignals`, SIGTERM or SIGINT; then stops
    /// accepting, finishes the requests received, and returns. Call it once.
    ///
    /// - Throws: ``ServingError/modelFailed(_:)`` when the warm-up fails, or the error of a
    ///   ``ServingError/cannotListen(address:reason:)`` (an address in use).
    public func run(stopOnSignals: Bool = false) async throws {
        do {
            try await serve(stopOnSignals: stopOnSignals)
            stopWaiters(ServingError.stopped)
        } catch {
            stopWaiters(error)
            throw error
        }
    }

    private func serve(stopOnSignals: Bool) async throws {
        try await batcher.start()
        let pool = DecodePool(threads: configuration.decodeThreads)
        defer { pool.stop() }
        let responder = ClassificationResponder(batcher: batcher, pool: pool, configuration: configuration, card: card,
                                                cardJSON: Array(try card.encoded().utf8))
        let idle = Int64(configuration.idleTimeout.seconds * 1e9)
        let app = Application(
            responder: responder,
            server: .http1(configuration: .init(idleTimeout: .nanoseconds(idle))),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port)),
            services: [BatcherService(batcher: batcher)],
            onServerRunning: { [self] channel in listening(port: channel.localAddress?.port) },
            logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [],
                                                       logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        let group = ServiceGroup(configuration: groupConfiguration)
        let stopAtOnce = lock.withLock {
            self.group = group
            return shutdownRequested
        }
        if stopAtOnce { await group.triggerGracefulShutdown() }
        do {
            try await group.run()
        } catch {
            // A failure to start: the batcher's thread must not outlive the server.
            await batcher.drainAndStop()
            if lock.withLock({ boundPort == nil }) {
                throw ServingError.cannotListen(address: "\(configuration.host):\(configuration.port)", reason: "\(error)")
            }
            throw error
        }
        await batcher.drainAndStop()
        logger.info("stopped", metadata: ["images": "\(batcher.metrics.imagesClassified)"])
    }

    /// The port the server listens on, once it listens (useful with port 0).
    ///
    /// - Throws: the error of ``run(stopOnSignals:)`` when the server stops before listening.
    public func port() async throws -> Int {
        try await withCheckedThrowingContinuation { waiter in
            let answer: Result<Int, any Error>? = lock.withLock {
                if let boundPort { return .success(boundPort) }
                if let stoppedBeforeListening { return .failure(stoppedBeforeListening) }
                portWaiters.append(waiter)
                return nil
            }
            if let answer { waiter.resume(with: answer) }
        }
    }

    /// Starts a graceful shutdown: no new connections; requests already received are answered;
    /// then ``run(stopOnSignals:)`` returns.
    public func shutdown() async {
        let group: ServiceGroup? = lock.withLock {
            shutdownRequested = true
            return self.group
        }
        await group?.triggerGracefulShutdown()
    }

    /// Runs the server on the calling thread until SIGTERM or SIGINT (then drains and returns):
    /// for command-line tools whose `main` is synchronous.
    public func runUntilSignalled() throws {
        let outcome = UncheckedSendable(ResultBox())
        let done = DispatchSemaphore(value: 0)
        Task.detached { [self] in
            do { try await run(stopOnSignals: true) } catch { outcome.value.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.value.error { throw error }
    }

    private final class ResultBox { var error: (any Error)? }

    private func listening(port: Int?) {
        let waiters: [CheckedContinuation<Int, any Error>] = lock.withLock {
            boundPort = port ?? configuration.port
            defer { portWaiters = [] }
            return portWaiters
        }
        let port = port ?? configuration.port
        for waiter in waiters { waiter.resume(returning: port) }
        let input = card.input.shape.map(String.init).joined(separator: "x")
        let wait = ServingMetrics.format(configuration.maximumWait.seconds * 1000)
        logger.info("""
            serving \(card.architecture.name) (\(card.classNames.count) classes, input \(input), \(numberFormat)) on http://\(configuration.host):\(port): \
            batches of up to \(configuration.maximumBatchSize) images, waiting up to \(wait) ms, queue limit \(configuration.queueLimit) images
            """)
    }

    private func stopWaiters(_ error: any Error) {
        let waiters: [CheckedContinuation<Int, any Error>] = lock.withLock {
            if boundPort == nil { stoppedBeforeListening = error }
            defer { portWaiters = [] }
            return portWaiters
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }
}

/// The batcher as a service of the application's group. The group shuts its services down in
/// reverse order, so the HTTP server has stopped and answered its requests before this drains
/// what may remain and stops the inference thread.
struct BatcherService: Service {
    let batcher: InferenceBatcher

    func run() async throws {
        try? await gracefulShutdown()
        await batcher.drainAndStop()
    }
}
