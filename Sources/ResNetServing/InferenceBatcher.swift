import Foundation
import ResNetData
import ResNetEngine
import ResNetInference

/// What the inference thread drives: a network that gives softmax probabilities for prepared
/// images. ``ResNetInference/Classifier`` is one; a program can wrap it (to time or gate it).
///
/// Not thread-safe, like `Classifier`: the server calls it from its one inference thread only.
public protocol BatchClassifier: AnyObject {
    /// The model card: input size, preprocessing, class names.
    var card: ModelCard { get }
    /// Probabilities of each image, in order; `prepared` images are already input-sized
    /// (``ResNetInference/ModelCard/prepare(_:)``).
    func probabilities(_ images: [PlanarImage], prepared: Bool) throws -> [[Float]]
    /// The `top` classes of one probability vector, most probable first (ties: lower index).
    func ranked(_ probabilities: [Float], top: Int) -> [Classifier.Prediction]
}

extension Classifier: BatchClassifier {}

/// Gathers the images of concurrent requests into batches and runs them on one dedicated
/// thread, the only one that touches the classifier (oneDNN, its graphs and buffers are not
/// thread-safe).
///
/// Admission and batching:
/// - ``reserve(_:)`` admits a request's images before they are decoded, or refuses them when
///   the images waiting (being decoded or queued) would exceed the queue limit;
/// - ``submit(_:top:)`` queues the prepared images and suspends until their predictions are
///   ready; ``cancelReservation(_:)`` gives back the places of a request that failed to decode;
/// - the inference thread takes up to `maximumBatchSize` images as soon as some are queued. It
///   waits (at most `maximumWait` after the first one was queued) only while other admitted
///   requests are still being decoded and the batch is not full, so a lone request never
///   waits and a burst of them is gathered.
///
/// A gathered batch of `n` images runs as forward passes of power-of-two sizes (and the
/// maximum size), largest first: `n = 23` with a maximum of 32 runs 16 + 4 + 2 + 1. So the
/// classifier plans at most `log2(max) + 1` graphs, all during ``start()``'s warm-up, and memory
/// stays flat whatever mix of batch sizes the load brings.
public final class InferenceBatcher: @unchecked Sendable {
    /// Why an admission was refused.
    public enum Refusal: Error, Equatable {
        /// The queue cannot take that many more images now.
        case queueFull
        /// The batcher is draining for shutdown.
        case shuttingDown
        /// More images than a whole batch queue could ever hold.
        case tooMany
    }

    /// One request's images, split over batches as needed. Its mutable state belongs to the
    /// batcher: `next` under the lock, `predictions`/`remaining`/`finished` on the inference thread.
    final class Job {
        let images: [PlanarImage]
        let top: Int
        let continuation: CheckedContinuation<[[Classifier.Prediction]], any Error>
        let queuedAt: Date
        var next = 0
        var predictions: [[Classifier.Prediction]]
        var remaining: Int
        var finished = false

        init(images: [PlanarImage], top: Int, continuation: CheckedContinuation<[[Classifier.Prediction]], any Error>) {
            self.images = images
            self.top = top
            self.continuation = continuation
            queuedAt = Date()
            predictions = [[Classifier.Prediction]](repeating: [], count: images.count)
            remaining = images.count
        }

        func finish(_ result: Result<[[Classifier.Prediction]], any Error>) {
            guard !finished else { return }
            finished = true
            continuation.resume(with: result)
        }
    }

    private enum State { case created, running, draining, stopped }

    /// Only the inference thread reads it (and ``start()`` before the thread exists).
    private let classifier: any BatchClassifier
    /// The most images in one batch.
    public let maximumBatchSize: Int
    /// How long a batch's first image may wait for requests still being decoded.
    public let maximumWait: Duration
    /// The most images admitted and not yet in a running batch.
    public let queueLimit: Int
    private let inferenceThreads: Int?
    /// The forward-pass sizes: powers of two below the maximum, and the maximum.
    public let passSizes: [Int]
    let card: ModelCard
    /// The server's counters, histograms and gauges.
    public let metrics: ServingMetrics

    private let condition = NSCondition()
    private var state = State.created
    private var queue: [Job] = []
    private var queuedImages = 0
    /// Images admitted and not yet taken into a batch (decoding or queued).
    private var waiting = 0
    /// Requests admitted whose images are being decoded.
    private var decoding = 0
    private var finishWaiters: [CheckedContinuation<Void, Never>] = []

    /// Takes `classifier` over: from now on only the inference thread calls it.
    ///
    /// - Parameter inferenceThreads: oneDNN threads of the inference thread (`nil`: the
    ///   process's `ComputeEngine` setting). OpenMP's thread count is a per-thread setting, so
    ///   the inference thread sets it for itself.
    public init(classifier: sending any BatchClassifier, maximumBatchSize: Int, maximumWait: Duration, queueLimit: Int,
                inferenceThreads: Int? = nil) {
        precondition(maximumBatchSize >= 1 && queueLimit >= 1, "InferenceBatcher: batch size and queue limit must be positive")
        self.classifier = classifier
        card = classifier.card
        self.maximumBatchSize = maximumBatchSize
        self.maximumWait = maximumWait
        self.queueLimit = queueLimit
        self.inferenceThreads = inferenceThreads
        passSizes = Self.passSizes(maximum: maximumBatchSize)
        metrics = ServingMetrics(maximumBatchSize: maximumBatchSize, queueLimit: queueLimit)
        metrics.setGauges { [unowned self] in self.gauges() }
    }

    /// The sizes of the forward passes a batch of `count` images runs as (largest first), for
    /// a batcher whose largest batch is `maximum`.
    public static func passes(for count: Int, maximum: Int) -> [Int] {
        let sizes = passSizes(maximum: maximum)
        var remaining = count
        var passes: [Int] = []
        while remaining > 0 {
            let size = sizes.last { $0 <= remaining }!
            passes.append(size)
            remaining -= size
        }
        return passes
    }

    private static func passSizes(maximum: Int) -> [Int] {
        var sizes: [Int] = []
        var size = 1
        while size < maximum {
            sizes.append(size)
            size *= 2
        }
        return sizes + [maximum]
    }

    // MARK: Life cycle

    /// Starts the inference thread and waits for its warm-up: one forward pass of blank images
    /// at each pass size, which plans every graph the server will use (so the first requests
    /// are not slow and memory does not grow later).
    ///
    /// - Throws: ``ServingError/modelFailed(_:)`` when the warm-up fails; the thread has
    ///   stopped then.
    public func start() async throws {
        condition.withLock {
            precondition(state == .created, "InferenceBatcher.start() called twice")
            state = .running
        }
        let warmUp: Result<Void, any Error> = await withCheckedContinuation { ready in
            let box = UncheckedSendable(ready)
            let thread = Thread { [self] in self.threadMain(ready: box.value) }
            thread.name = "resnet-serve-inference"
            thread.stackSize = 8 << 20
            thread.start()
        }
        if case .failure(let error) = warmUp {
            throw ServingError.modelFailed("\(error)")
        }
    }

    /// Refuses new work, lets the inference thread finish every image admitted so far, and
    /// returns when it has stopped.
    public func drainAndStop() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = condition.withLock {
                switch state {
                case .created, .stopped:
                    state = .stopped
                    return true
                case .running, .draining:
                    state = .draining
                    finishWaiters.append(done)
                    condition.broadcast()
                    return false
                }
            }
            if resumeNow { done.resume() }
        }
    }

    // MARK: Admission

    /// Admits `count` images that are about to be decoded.
    public func reserve(_ count: Int) throws(Refusal) {
        condition.lock()
        defer { condition.unlock() }
        guard state == .running else { throw .shuttingDown }
        guard count <= queueLimit else { throw .tooMany }
        guard waiting + count <= queueLimit else { throw .queueFull }
        waiting += count
        decoding += 1
    }

    /// Gives back the places of `count` reserved images that will not be submitted.
    public func cancelReservation(_ count: Int) {
        condition.withLock {
            waiting -= count
            decoding -= 1
            condition.broadcast()
        }
    }

    /// Queues the prepared images of a reservation and returns their `top` predictions, in order.
    public func submit(_ images: [PlanarImage], top: Int) async throws -> [[Classifier.Prediction]] {
        guard !images.isEmpty else {
            cancelReservation(0)
            return []
        }
        return try await withCheckedThrowingContinuation { continuation in
            let job = Job(images: images, top: top, continuation: continuation)
            condition.withLock {
                queue.append(job)
                queuedImages += images.count
                decoding -= 1
                condition.broadcast()
            }
        }
    }

    private func gauges() -> (queued: Int, decoding: Int) {
        condition.withLock { (waiting, decoding) }
    }

    // MARK: The inference thread

    private func threadMain(ready: CheckedContinuation<Result<Void, any Error>, Never>) {
        if let inferenceThreads {
            ComputeEngine.shared.setThreadCount(inferenceThreads)
        } else {
            ComputeEngine.shared.setThreadCount(ComputeEngine.shared.threadCount)
        }
        do {
            let input = card.input
            let blank = PlanarImage(pixels: [UInt8](repeating: 0, count: input.shape.reduce(1, *)),
                                    channels: input.channels, height: input.height, width: input.width)
            for size in passSizes.reversed() {
                _ = try classifier.probabilities([PlanarImage](repeating: blank, count: size), prepared: true)
            }
        } catch {
            finishThread()
            ready.resume(returning: .failure(error))
            return
        }
        ready.resume(returning: .success(()))
        while let batch = nextBatch() { run(batch) }
        finishThread()
    }

    private func finishThread() {
        let waiters: [CheckedContinuation<Void, Never>] = condition.withLock {
            state = .stopped
            defer { finishWaiters = [] }
            return finishWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits for queued images and takes a batch of them, or returns `nil` when draining is done.
    private func nextBatch() -> [(job: Job, index: Int)]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if state == .draining && waiting == 0 { return nil }
            condition.wait()
        }
        let deadline = queue[0].queuedAt.addingTimeInterval(maximumWait.seconds)
        while queuedImages < maximumBatchSize && decoding > 0 && Date() < deadline {
            _ = condition.wait(until: deadline)
        }
        var items: [(job: Job, index: Int)] = []
        items.reserveCapacity(min(queuedImages, maximumBatchSize))
        while items.count < maximumBatchSize, let job = queue.first {
            let take = min(job.images.count - job.next, maximumBatchSize - items.count)
            for index in job.next..<(job.next + take) { items.append((job, index)) }
            job.next += take
            if job.next == job.images.count { queue.removeFirst() }
        }
        queuedImages -= items.count
        waiting -= items.count
        return items
    }

    private func run(_ items: [(job: Job, index: Int)]) {
        let started = DispatchTime.now().uptimeNanoseconds
        let passes = Self.passes(for: items.count, maximum: maximumBatchSize)
        // Counted before any answer leaves, so that a client reading /metrics after its answer
        // sees its batch.
        metrics.batch(size: items.count, passes: passes.count)
        var start = 0
        for size in passes {
            let part = items[start..<(start + size)]
            start += size
            do {
                let probabilities = try classifier.probabilities(part.map { $0.job.images[$0.index] }, prepared: true)
                for ((job, index), p) in zip(part, probabilities) where !job.finished {
                    job.predictions[index] = classifier.ranked(p, top: job.top)
                    job.remaining -= 1
                    if job.remaining == 0 { job.finish(.success(job.predictions)) }
                }
            } catch {
                for (job, _) in part { job.finish(.failure(error)) }
            }
        }
        metrics.inference(seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
    }
}

extension Duration {
    /// The duration in seconds, as a `TimeInterval`.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

/// A value handed to another thread whose ownership the code guarantees by construction.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
