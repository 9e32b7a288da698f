import Foundation
import ResNetData
import ResNetInference
import ResNetServing
import ResNetTensors
import Testing
@testable import ResNetServing

#if canImport(Glibc)
import Glibc
#endif

/// `resnet serve` as a library: a real server on a loopback port, real HTTP requests over TCP.
@Suite("Serving", .serialized)
struct ServingTests {
    /// Images of several sizes and both formats.
    static func images() throws -> [(bytes: [UInt8], type: String)] {
        [(try TestImages.png(width: 8, height: 8, seed: 1), "image/png"),
         (try TestImages.png(width: 13, height: 9, seed: 2), "image/png"),
         (try TestImages.png(width: 31, height: 17, seed: 3), "image/png"),
         (TestImages.colorJPEG, "image/jpeg"),
         (TestImages.progressiveJPEG, "image/jpeg")]
    }

    @Test func answersEqualResnetPredictsForJPEGAndPNGBodies() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 8))
        let images = try Self.images()
        let expected = try model.predictions(images.map(\.bytes), top: 2)
        for (image, want) in zip(images, expected) {
            let answer = try await server.classify(image.bytes, type: image.type, query: "?top=2")
            #expect(answer.status == 200, "\(answer.text)")
            #expect(answer.headers["content-type"] == "application/json; charset=utf-8")
            #expect(try answer.predictions() == want)
        }
        // The default is five classes, as `resnet predict`; more than the model has gives them all.
        let all = try await server.classify(images[0].bytes, query: "?top=100")
        #expect(try all.predictions() == model.predictions([images[0].bytes], top: 3)[0])
        #expect(try await server.classify(images[0].bytes).predictions().count == 3)
        try await server.stop()
    }

    @Test func aBFloat16ClassifierAgreesWithFloat32WithinBFloat16Rounding() throws {
        let model = try TestModel()
        defer { model.remove() }
        let images = try Self.images().map { try decodeImage($0.bytes, channels: 3, path: "test image") }
        let exact = try Classifier(try model.load(), maximumBatchSize: 8)
        let fast = try Classifier(try model.load(), maximumBatchSize: 8, precision: .bf16)
        #expect(exact.precision == .fp32 && fast.precision == .bf16)
        let (p, q) = (try exact.probabilities(images), try fast.probabilities(images))
        let largest = zip(p.joined(), q.joined()).map { abs($0 - $1) }.max() ?? .infinity
        // bfloat16 keeps 8 significant bits: each activation is rounded by up to 2^-9.
        #expect(largest < 0.02, "largest difference \(largest)")
        #expect(largest > 0, "bf16 should round somewhere: is it running in fp32?")
        #expect(ServerConfiguration().precision == .fp32)
    }

    @Test func aMultipartRequestClassifiesEveryImageInOrder() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 4)) {
            $0.maximumBatchSize = 4
        }
        let images = try Self.images()
        let boundary = "----serving-test-boundary"
        let body = TestImages.multipart(images.enumerated().map { index, image in
            (name: "image", filename: index == 2 ? nil : "photo-\(index).\(image.type == "image/png" ? "png" : "jpg")",
             type: image.type, bytes: image.bytes)
        }, boundary: boundary)
        let answer = try await server.request("POST", "/v1/classify?top=1",
                                              headers: [("Content-Type", "multipart/form-data; boundary=\"\(boundary)\"")], body: body)
        #expect(answer.status == 200, "\(answer.text)")
        struct FileAnswer: Decodable { let file: String; let predictions: [Classifier.Prediction] }
        let files = try JSONDecoder().decode([FileAnswer].self, from: Data(answer.body))
        #expect(files.map(\.file) == ["photo-0.png", "photo-1.png", "image", "photo-3.jpg", "photo-4.jpg"])
        // Five images with a largest batch of four: a batch of four, then one of one, each
        // equal to the library's answer for that batch, and within rounding of one image alone.
        let bytes = images.map(\.bytes)
        #expect(Array(files.prefix(4).map(\.predictions)) == (try model.batchPredictions(Array(bytes.prefix(4)), top: 1)))
        #expect(files[4].predictions == (try model.predictions([bytes[4]], top: 1))[0])
        for (file, alone) in zip(files, try model.predictions(bytes, top: 1)) { #expect(agree(file.predictions, alone)) }
        let metrics = try await server.metrics()
        #expect(metrics["resnet_serve_images_total"] == 5)
        #expect(metrics["resnet_serve_batch_size_count"] == 2)
        try await server.stop()
    }

    @Test func concurrentRequestsAreGatheredIntoOneBatch() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let gate = Gate()
        let server = try await RunningServer(classifier: GatedClassifier(try Classifier(try model.load(), maximumBatchSize: 8), gate: gate)) {
            $0.maximumBatchSize = 8
        }
        let images = try (0..<8).map { try TestImages.png(width: 8 + $0, height: 8, seed: UInt64(10 + $0)) }
        let expected = try model.predictions(images, top: 3)
        // Hold the inference thread in a batch of one, queue seven requests behind it, let go.
        gate.close()
        let first = Task { try await server.classify(images[0], query: "?top=3") }
        #expect(await eventually { gate.blocked == 1 })
        let others = (1..<8).map { index in Task { try await server.classify(images[index], query: "?top=3") } }
        #expect(try await eventually { try await server.metrics()["resnet_serve_queue_depth"] == 7 })
        gate.open()
        var answers = [try await first.value]
        for task in others { answers.append(try await task.value) }
        for (answer, alone) in zip(answers, expected) {
            #expect(answer.status == 200)
            #expect(agree(try answer.predictions(), alone))  // each image's own answer, batched with others
        }
        #expect(try answers[0].predictions() == expected[0])  // the batch of one: exactly `resnet predict`'s
        let metrics = try await server.metrics()
        #expect(metrics["resnet_serve_batch_size_count"] == 2)
        #expect(metrics["resnet_serve_batch_size_sum"] == 8)
        #expect(metrics["resnet_serve_batch_size_bucket{le=\"4\"}"] == 1)  // the other batch held seven images
        #expect(metrics["resnet_serve_forward_passes_total"] == 4)       // 1, then 7 = 4 + 2 + 1
        try await server.stop()
    }

    @Test func aFullQueueAnswers503WithRetryAfter() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let gate = Gate()
        let server = try await RunningServer(classifier: GatedClassifier(try Classifier(try model.load(), maximumBatchSize: 1), gate: gate)) {
            $0.maximumBatchSize = 1
            $0.queueLimit = 2
            $0.maximumImagesPerRequest = 2
            $0.retryAfterSeconds = 3
        }
        let image = try TestImages.png(width: 8, height: 8, seed: 5)
        gate.close()
        let running = Task { try await server.classify(image) }
        #expect(await eventually { gate.blocked == 1 })
        let queued = (0..<2).map { _ in Task { try await server.classify(image) } }
        #expect(try await eventually { try await server.metrics()["resnet_serve_queue_depth"] == 2 })
        let refused = try await server.classify(image)
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "3")
        #expect(refused.error?.contains("queue is full") == true)
        gate.open()
        #expect(try await running.value.status == 200)
        for task in queued { #expect(try await task.value.status == 200) }
        let metrics = try await server.metrics()
        #expect(metrics["resnet_serve_errors_total{reason=\"queue_full\"}"] == 1)
        #expect(metrics["resnet_serve_requests_total{route=\"/v1/classify\",status=\"503\"}"] == 1)
        #expect(metrics["resnet_serve_queue_depth"] == 0)
        try await server.stop()
    }

    @Test func badInputGetsTheRightStatusAndAJSONError() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 8)) {
            $0.maximumBodyBytes = 64 << 10
            $0.maximumImagePixels = 1_000_000
        }
        let png = try TestImages.png(width: 9, height: 9, seed: 7)
        func expect(_ answer: HTTPAnswer, _ status: Int, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(answer.status == status, "\(answer.text)", sourceLocation: sourceLocation)
            #expect(answer.error?.contains(fragment) == true, "\(answer.text)", sourceLocation: sourceLocation)
        }
        // 400: not decodable, empty, truncated, wrong type, a decompression bomb's header, bad ?top.
        expect(try await server.classify([]), 400, "empty")
        expect(try await server.classify(Array(png.prefix(png.count / 2))), 400, "cannot decode image")
        expect(try await server.classify(Array(TestImages.colorJPEG.prefix(400)), type: "image/jpeg"), 400, "cannot decode image")
        expect(try await server.classify(Array("hello, world".utf8)), 400, "not an image")
        expect(try await server.classify(Array("GIF89a....".utf8), type: "image/png"), 400, "GIF")
        expect(try await server.classify(TestImages.colorJPEG, type: "image/png"), 400, "declared image/png but holds a JPEG")
        expect(try await server.classify(try TestImages.pngDeclaring(width: 50_000, height: 50_000)), 400, "exceeds the limit of 1000000 pixels")
        expect(try await server.classify(try TestImages.pngDeclaring(width: 1_001, height: 1_000)), 400, "exceeds the limit")
        expect(try await server.classify(png, query: "?top=0"), 400, "top must be")
        expect(try await server.classify(png, query: "?top=two"), 400, "top must be")
        expect(try await server.classify(png, query: "?top=1&top=2"), 400, "top must be")
        // Multipart: no boundary, cut short, no parts, a part that is not an image.
        let boundary = "b0undary"
        let body = TestImages.multipart([(name: "a", filename: "a.png", type: "image/png", bytes: png)], boundary: boundary)
        let form = [("Content-Type", "multipart/form-data; boundary=\(boundary)")]
        expect(try await server.request("POST", "/v1/classify", headers: [("Content-Type", "multipart/form-data")], body: body), 400, "boundary")
        expect(try await server.request("POST", "/v1/classify", headers: form, body: Array(body.prefix(body.count - 20))), 400, "truncated")
        expect(try await server.request("POST", "/v1/classify", headers: form, body: Array("--\(boundary)--\r\n".utf8)), 400, "no images")
        let text = TestImages.multipart([(name: "a", filename: "a.png", type: "image/png", bytes: png),
                                         (name: "note", filename: nil, type: "text/plain", bytes: Array("hi".utf8))], boundary: boundary)
        expect(try await server.request("POST", "/v1/classify", headers: form, body: text), 415, "note: each part must be image/jpeg or image/png")
        let untyped = TestImages.multipart([(name: "a", filename: "a.png", type: nil, bytes: png)], boundary: boundary)
        expect(try await server.request("POST", "/v1/classify", headers: form, body: untyped), 415, "(given: none)")
        let many = TestImages.multipart((0..<65).map { _ in (name: "a", filename: nil, type: "image/png", bytes: png) }, boundary: boundary)
        expect(try await server.request("POST", "/v1/classify", headers: form, body: many), 400, "more than 64 parts")
        // 415: not an image type, no type at all.
        expect(try await server.classify(png, type: "text/plain"), 415, "Content-Type must be")
        expect(try await server.classify(png, type: "application/octet-stream"), 415, "given: 'application/octet-stream'")
        expect(try await server.request("POST", "/v1/classify", body: png), 415, "given: none")
        // 413: a body above the limit, declared, streamed in chunks, or only announced.
        let large = [UInt8](repeating: 7, count: 80 << 10)
        expect(try await server.classify(large), 413, "larger than the server's limit of 65536 bytes")
        expect(try await server.request("POST", "/v1/classify", headers: [("Content-Type", "image/png")], body: large, chunked: true),
               413, "larger than")
        expect(try await server.request("POST", "/v1/classify", headers: [("Content-Type", "image/png")], contentLength: 10 << 30),
               413, "larger than")
        // A body that is not HTTP's chunked encoding.
        let badChunks = try await onThread { [port = server.port] in
            let descriptor = try connectLoopback(port: port)
            defer { close(descriptor) }
            let request = "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n"
            _ = request.withCString { send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            var buffer = [UInt8](repeating: 0, count: 4_096)
            let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            return String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
        }
        #expect(badChunks.hasPrefix("HTTP/1.1 400") && badChunks.contains("could not be read"), "\(badChunks)")
        // 404 and 405, with Allow.
        expect(try await server.request("GET", "/v1/classify/extra"), 404, "no such path")
        expect(try await server.request("GET", "/"), 404, "no such path")
        let get = try await server.request("GET", "/v1/classify")
        expect(get, 405, "use POST")
        #expect(get.headers["allow"] == "POST")
        let post = try await server.request("POST", "/healthz", body: [1])
        expect(post, 405, "use GET")
        #expect(post.headers["allow"] == "GET")
        expect(try await server.request("DELETE", "/metrics"), 405, "use GET")
        expect(try await server.request("PUT", "/v1/model", body: [1]), 405, "use GET")

        // Nothing of this hurt the server.
        #expect(try await server.classify(png).status == 200)
        let metrics = try await server.metrics()
        #expect(metrics["resnet_serve_errors_total{reason=\"bad_image\"}"] == 8)
        #expect(metrics["resnet_serve_errors_total{reason=\"bad_request\"}"] == 8)
        #expect(metrics["resnet_serve_errors_total{reason=\"unsupported_media_type\"}"] == 5)
        #expect(metrics["resnet_serve_errors_total{reason=\"body_too_large\"}"] == 3)
        #expect(metrics["resnet_serve_errors_total{reason=\"not_found\"}"] == 2)
        #expect(metrics["resnet_serve_errors_total{reason=\"method_not_allowed\"}"] == 4)
        #expect(metrics["resnet_serve_requests_total{route=\"other\",status=\"404\"}"] == 2)
        #expect(metrics["resnet_serve_requests_total{route=\"/v1/classify\",status=\"200\"}"] == 1)
        #expect(metrics["resnet_serve_queue_depth"] == 0)
        try await server.stop()
    }

    @Test func healthModelCardAndMetricsRoutes() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 8))
        let health = try await server.request("GET", "/healthz")
        #expect(health.status == 200)
        #expect(health.text == #"{"status":"ok"}"#)
        let card = try await server.request("GET", "/v1/model")
        #expect(card.status == 200)
        #expect(try ModelCard.decode(card.text, path: "/v1/model") == TestModel.card)
        _ = try await server.classify(try TestImages.png(width: 8, height: 8, seed: 1))
        let metrics = try await server.request("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        for name in ["requests_total", "errors_total", "images_total", "batch_size", "inference_seconds", "request_duration_seconds",
                     "queue_depth", "queue_limit"] {
            #expect(metrics.text.contains("# TYPE resnet_serve_\(name) "), "\(name)")
        }
        let samples = metricSamples(metrics.text)
        #expect(samples["resnet_serve_requests_total{route=\"/healthz\",status=\"200\"}"] == 1)
        #expect(samples["resnet_serve_requests_total{route=\"/v1/model\",status=\"200\"}"] == 1)
        #expect(samples["resnet_serve_request_duration_seconds_count"] == 1)
        #expect(samples["resnet_serve_batch_size_bucket{le=\"+Inf\"}"] == 1)
        #expect(samples["resnet_serve_queue_limit"] == 256)
        try await server.stop()
    }

    @Test func gracefulShutdownStopsAcceptingAndFinishesWhatIsQueued() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let gate = Gate()
        let server = try await RunningServer(classifier: GatedClassifier(try Classifier(try model.load(), maximumBatchSize: 1), gate: gate)) {
            $0.maximumBatchSize = 1
        }
        let images = try (0..<3).map { try TestImages.png(width: 8, height: 8, seed: UInt64(20 + $0)) }
        let expected = try model.predictions(images, top: 5)
        gate.close()
        let first = Task { try await server.classify(images[0]) }
        #expect(await eventually { gate.blocked == 1 })
        let queued = images.dropFirst().map { image in Task { try await server.classify(image) } }
        #expect(try await eventually { try await server.metrics()["resnet_serve_queue_depth"] == 2 })
        let stopping = Task { try await server.stop() }
        // New connections are refused while the three requests wait...
        let port = server.port
        #expect(await eventually { (try? connectLoopback(port: port)).map { close($0); return false } ?? true })
        // ...and answered once the batch goes on.
        gate.open()
        var answers = [try await first.value]
        for task in queued { answers.append(try await task.value) }
        for (answer, want) in zip(answers, expected) {
            #expect(answer.status == 200)
            #expect(try answer.predictions() == want)
        }
        try await stopping.value
        #expect(throws: InferenceBatcher.Refusal.shuttingDown) { try server.server.batcher.reserve(1) }
    }

    @Test func aModelThatFailsItsWarmUpOrAnAddressInUseStopsTheServerWithAnError() async throws {
        let model = try TestModel()
        defer { model.remove() }
        let broken = try ClassificationServer(classifier: GatedClassifier(try Classifier(try model.load()), gate: Gate(), failure: "no memory"),
                                              configuration: ServerConfiguration(port: 0, maximumBatchSize: 4))
        await #expect(throws: ServingError.modelFailed("no memory")) { try await broken.run() }
        await #expect(throws: ServingError.modelFailed("no memory")) { _ = try await broken.port() }

        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 8))
        let second = try ClassificationServer(classifier: try Classifier(try model.load()),
                                              configuration: ServerConfiguration(port: server.port, maximumBatchSize: 4))
        let error = await #expect(throws: ServingError.self) { try await second.run() }
        #expect("\(error.map { "\($0)" } ?? "")".contains("127.0.0.1:\(server.port)"))
        try await server.stop()
    }

    @Test func memoryStaysFlatOverManyRequests() async throws {
        let model = try TestModel()
        defer { model.remove() }
        // One image per forward pass, one oneDNN thread: 2,048 passes in a few seconds. (The
        // loader's epoch that leaked with each pass grew this by 11 MiB; without it, < 0.5 MiB.)
        let server = try await RunningServer(classifier: try Classifier(try model.load(), maximumBatchSize: 1)) {
            $0.maximumBatchSize = 1
            $0.inferenceThreads = 1
        }
        let images = try (0..<4).map { try TestImages.png(width: 8 + $0, height: 8, seed: UInt64(30 + $0)) }
        let boundary = "flat"
        let body = TestImages.multipart((0..<64).map { (name: "i", filename: nil, type: "image/png", bytes: images[$0 % 4]) },
                                        boundary: boundary)
        func round(_ requests: Int) async throws {
            for _ in 0..<requests {
                let answer = try await server.request("POST", "/v1/classify",
                                                      headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")], body: body)
                #expect(answer.status == 200)
            }
        }
        try await round(8)
        let before = residentMiB()
        #expect(before > 1, "no resident memory read from /proc/self/status: the growth below would be 0")
        try await round(32)
        let growth = residentMiB() - before
        #expect(growth < 4, "RSS grew by \(growth) MiB over 2,048 forward passes")
        #expect(try await server.metrics()["resnet_serve_images_total"] == 40 * 64)
        try await server.stop()
    }

    @Test func settingsOutOfRangeAreRefusedByName() throws {
        func problem(_ edit: (inout ServerConfiguration) -> Void) -> String {
            var configuration = ServerConfiguration()
            edit(&configuration)
            do { _ = try configuration.validated(); return "" } catch { return "\(error)" }
        }
        #expect(problem { _ in } == "")
        #expect(problem { $0.port = 70_000 }.contains("--port"))
        #expect(problem { $0.maximumBatchSize = 0 }.contains("--max-batch"))
        #expect(problem { $0.maximumWait = .seconds(-1) }.contains("--max-wait-ms"))
        #expect(problem { $0.queueLimit = 0 }.contains("--queue-limit"))
        #expect(problem { $0.maximumBodyBytes = 0 }.contains("--max-body"))
        #expect(problem { $0.maximumImagePixels = 1 << 40 }.contains("--max-pixels"))
        #expect(problem { $0.queueLimit = 8 }.contains("must not exceed --queue-limit"))
        #expect(problem { $0.decodeThreads = 0 }.contains("--decode-threads"))
    }
}

@Suite("Serving parts") struct ServingPartTests {
    @Test func batchesRunAsPowerOfTwoPassesUpToTheMaximum() {
        #expect(InferenceBatcher.passes(for: 1, maximum: 32) == [1])
        #expect(InferenceBatcher.passes(for: 23, maximum: 32) == [16, 4, 2, 1])
        #expect(InferenceBatcher.passes(for: 32, maximum: 32) == [32])
        #expect(InferenceBatcher.passes(for: 24, maximum: 24) == [24])
        #expect(InferenceBatcher.passes(for: 23, maximum: 24) == [16, 4, 2, 1])
        #expect(InferenceBatcher.passes(for: 7, maximum: 1) == [1, 1, 1, 1, 1, 1, 1])
    }

    @Test func multipartBodiesAreSplitWithoutTheirDelimiters() throws {
        let body = TestImages.multipart([(name: "x", filename: "a;b\".png", type: "image/png", bytes: [1, 2, 13, 10, 3]),
                                         (name: "y", filename: nil, type: nil, bytes: [])], boundary: "zz")
        let parts = try body.withUnsafeBytes { try parseMultipart($0, boundary: "zz", maximumParts: 8) }
        #expect(parts.count == 2)
        #expect(parts[0].name == "x" && parts[0].contentType == "image/png")
        #expect(Array(body[parts[0].content]) == [1, 2, 13, 10, 3])
        #expect(parts[1].name == "y" && parts[1].filename == nil && parts[1].contentType == nil && parts[1].content.isEmpty)
        #expect(throws: MultipartError.self) { try body.withUnsafeBytes { try parseMultipart($0, boundary: "other", maximumParts: 8) } }
        #expect(throws: MultipartError.self) { try body.withUnsafeBytes { try parseMultipart($0, boundary: "zz", maximumParts: 1) } }
        let media = MediaType("Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\"")
        #expect(media?.type == "multipart/form-data" && media?.parameters["boundary"] == "a b;c")
        #expect(MediaType("image/png")?.type == "image/png")
        #expect(MediaType("png") == nil)
    }

    @Test func metricsAreValidPrometheusText() {
        let metrics = ServingMetrics(maximumBatchSize: 6, queueLimit: 10)
        metrics.batch(size: 5, passes: 2)
        metrics.inference(seconds: 0.002)
        metrics.request(route: "/v1/classify", status: 200, seconds: 0.01)
        metrics.request(route: "/secret/../etc", status: 404, seconds: 0.001)
        let samples = metricSamples(metrics.text())
        #expect(samples["resnet_serve_batch_size_bucket{le=\"4\"}"] == 0)
        #expect(samples["resnet_serve_batch_size_bucket{le=\"6\"}"] == 1)
        #expect(samples["resnet_serve_requests_total{route=\"other\",status=\"404\"}"] == 1)
        #expect(samples["resnet_serve_request_duration_seconds_bucket{le=\"0.01\"}"] == 1)
        #expect(samples["resnet_serve_request_duration_seconds_bucket{le=\"0.005\"}"] == 0)
        #expect(samples["resnet_serve_forward_passes_total"] == 2)
    }
}
