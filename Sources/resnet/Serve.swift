import ArgumentParser
import Foundation
import ResNetEngine
import ResNetInference
import ResNetServing
import ResNetTensors
import ResNetTraining

/// `resnet serve`: a model behind an HTTP server with dynamic batching (ResNetServing).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP: POST /v1/classify with JPEG/PNG images, batched across concurrent requests.",
        discussion: """
            Routes: POST /v1/classify (a JPEG or PNG body with Content-Type image/jpeg or image/png, or \
            multipart/form-data with several images; ?top=K), GET /healthz, GET /v1/model (the model card), \
            GET /metrics (Prometheus). Answers have the fields of `resnet predict --json` and its values. \
            Concurrent requests are gathered into batches of up to --max-batch images on one inference thread; \
            a full queue answers 503 with Retry-After, a body above --max-body 413, an undecodable image 400. \
            SIGTERM or Ctrl-C stops accepting, answers the requests received, and exits 0.
            """)

    @Argument(help: "A model file (.safetensors with a model card), a run's checkpoint, or a run directory (its best.safetensors).")
    var model: String
    @Option(help: "The address to listen on (0.0.0.0: every interface).") var host = "127.0.0.1"
    @Option(help: "The TCP port (0: any free port, printed at start).") var port = 8080
    @Option(help: "The most images per batch.") var maxBatch = 32
    @Option(help: "How long a batch may wait for requests still being decoded, in milliseconds.") var maxWaitMs = 5.0
    @Option(help: "The most images waiting (decoding or queued) before requests get 503.") var queueLimit = 256
    @Option(help: "The largest request body, in bytes (413 above).") var maxBody = 16 << 20
    @Option(help: "The largest image decoded, in pixels (width x height; 400 above).") var maxPixels = 40_000_000
    @Option(help: "The most images in one multipart request.") var maxImages = 64
    @Option(help: "Threads that decode and resize images (default: the number of cores).") var decodeThreads: Int?
    @OptionGroup var engine: EngineOptions
    @OptionGroup var number: InferencePrecisionOption

    func run() throws {
        try engine.apply()
        guard maxWaitMs.isFinite, (0...10_000).contains(maxWaitMs) else {
            throw UserError("--max-wait-ms must be in 0...10000, got \(maxWaitMs)")
        }
        var settings = ServerConfiguration(host: host, port: port, maximumBatchSize: maxBatch,
                                           maximumWait: .microseconds(Int64((maxWaitMs * 1000).rounded())), queueLimit: queueLimit,
                                           maximumBodyBytes: maxBody, maximumImagePixels: maxPixels, maximumImagesPerRequest: maxImages,
                                           inferenceThreads: ComputeEngine.shared.threadCount)
        if let decodeThreads { settings.decodeThreads = decodeThreads }
        settings.precision = try number.resolved()
        settings = try settings.validated()
        let trained = try TrainedModel(model)
        let server: ClassificationServer
        if number.quantizes {
            let classifier = try Classifier(trained.loaded, maximumBatchSize: settings.maximumBatchSize, precision: settings.precision)
            let measured = try calibrationImages(for: trained, folder: number.calibration, count: number.calibrationImages)
            try classifier.quantize(calibratingOn: measured.pixels, count: measured.count)
            server = try ClassificationServer(classifier: classifier, configuration: settings)
        } else {
            server = try ClassificationServer(model: trained.loaded, configuration: settings)
        }
        try server.runUntilSignalled()
    }
}
