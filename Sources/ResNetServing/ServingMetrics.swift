import Foundation

/// The server's counters and histograms, written in Prometheus' text exposition format
/// (version 0.0.4) by hand: a handful of series does not need a metrics library.
///
/// Every label takes values from a fixed set (routes, statuses the server answers, error
/// reasons), so a client cannot grow the series by asking for odd paths. Thread-safe.
public final class ServingMetrics: @unchecked Sendable {
    /// A cumulative histogram with fixed upper bounds.
    struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0
        init(bounds: [Double]) {
            self.bounds = bounds
            counts = [Int](repeating: 0, count: bounds.count)
        }
        mutating func observe(_ value: Double) {
            if let i = bounds.firstIndex(where: { value <= $0 }) { counts[i] += 1 }
            sum += value
            count += 1
        }
        func lines(_ name: String) -> [String] {
            var cumulative = 0
            var lines: [String] = []
            for (bound, n) in zip(bounds, counts) {
                cumulative += n
                lines.append("\(name)_bucket{le=\"\(ServingMetrics.format(bound))\"} \(cumulative)")
            }
            lines.append("\(name)_bucket{le=\"+Inf\"} \(count)")
            lines.append("\(name)_sum \(ServingMetrics.format(sum))")
            lines.append("\(name)_count \(count)")
            return lines
        }
    }

    /// The routes requests are counted under; anything else is `other`.
    static let routes = ["/v1/classify", "/healthz", "/v1/model", "/metrics", "other"]

    private let lock = NSLock()
    private var requests: [String: [Int: Int]] = [:]
    private var errors: [String: Int] = [:]
    private var images = 0
    private var passes = 0
    private var batchSizes: Histogram
    private var latency: Histogram
    private var inference: Histogram
    /// Reads the images waiting (decoding or queued) and the requests being decoded.
    private var gauges: @Sendable () -> (queued: Int, decoding: Int) = { (0, 0) }
    private let queueLimit: Int

    /// - Parameter maximumBatchSize: the batch-size histogram's buckets are the powers of two up to it.
    init(maximumBatchSize: Int, queueLimit: Int) {
        var sizes: [Double] = []
        var size = 1
        while size < maximumBatchSize {
            sizes.append(Double(size))
            size *= 2
        }
        sizes.append(Double(maximumBatchSize))
        batchSizes = Histogram(bounds: sizes)
        let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        latency = Histogram(bounds: seconds)
        inference = Histogram(bounds: seconds)
        self.queueLimit = queueLimit
    }

    /// Sets what the queue gauges read.
    func setGauges(_ gauges: @escaping @Sendable () -> (queued: Int, decoding: Int)) {
        lock.withLock { self.gauges = gauges }
    }

    /// Images classified so far.
    public var imagesClassified: Int { lock.withLock { images } }

    /// One answered request.
    func request(route: String, status: Int, seconds: Double) {
        let route = Self.routes.contains(route) ? route : "other"
        lock.withLock {
            requests[route, default: [:]][status, default: 0] += 1
            if route == "/v1/classify" && status == 200 { latency.observe(seconds) }
        }
    }

    /// One refused or failed request, by the reason it names (a fixed set: see
    /// ``HTTPFailure/Reason``).
    func error(_ reason: String) {
        lock.withLock { errors[reason, default: 0] += 1 }
    }

    /// One batch of `size` images, run as `passes` forward passes.
    func batch(size: Int, passes: Int) {
        lock.withLock {
            batchSizes.observe(Double(size))
            images += size
            self.passes += passes
        }
    }

    /// The network time of one batch.
    func inference(seconds: Double) {
        lock.withLock { inference.observe(seconds) }
    }

    /// The exposition text (`Content-Type: text/plain; version=0.0.4`).
    public func text() -> String {
        let (queued, decoding) = lock.withLock { gauges }()
        return lock.withLock {
            var lines: [String] = []
            func header(_ name: String, _ type: String, _ help: String) {
                lines.append("# HELP \(name) \(help)")
                lines.append("# TYPE \(name) \(type)")
            }
            header("resnet_serve_requests_total", "counter", "HTTP requests answered, by route and status.")
            for route in Self.routes {
                for (status, n) in (requests[route] ?? [:]).sorted(by: { $0.key < $1.key }) {
                    lines.append("resnet_serve_requests_total{route=\"\(route)\",status=\"\(status)\"} \(n)")
                }
            }
            header("resnet_serve_errors_total", "counter", "Requests refused or failed, by reason.")
            for reason in HTTPFailure.Reason.allCases.map(\.rawValue) {
                lines.append("resnet_serve_errors_total{reason=\"\(reason)\"} \(errors[reason] ?? 0)")
            }
            header("resnet_serve_images_total", "counter", "Images classified.")
            lines.append("resnet_serve_images_total \(images)")
            header("resnet_serve_forward_passes_total", "counter", "Forward passes of the network (a batch runs as one pass per power-of-two part).")
            lines.append("resnet_serve_forward_passes_total \(passes)")
            header("resnet_serve_batch_size", "histogram", "Images per batch gathered from concurrent requests.")
            lines += batchSizes.lines("resnet_serve_batch_size")
            header("resnet_serve_inference_seconds", "histogram", "Network time per batch.")
            lines += inference.lines("resnet_serve_inference_seconds")
            header("resnet_serve_request_duration_seconds", "histogram",
                   "Time from a classify request's arrival to its answer, successful requests only.")
            lines += latency.lines("resnet_serve_request_duration_seconds")
            header("resnet_serve_queue_depth", "gauge", "Images admitted and not yet in a running batch (decoding or queued).")
            lines.append("resnet_serve_queue_depth \(queued)")
            header("resnet_serve_decoding_requests", "gauge", "Requests whose images are being decoded.")
            lines.append("resnet_serve_decoding_requests \(decoding)")
            header("resnet_serve_queue_limit", "gauge", "The most images that may wait (--queue-limit).")
            lines.append("resnet_serve_queue_limit \(queueLimit)")
            return lines.joined(separator: "\n") + "\n"
        }
    }

    /// A number as Prometheus reads it: integers without a fraction, others in full precision.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
