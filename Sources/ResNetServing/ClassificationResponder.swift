import Foundation
import Hummingbird
import ResNetData
import ResNetInference

/// The server's four routes, answered without a router so that a known path asked with the
/// wrong method is a 405 with `Allow` (a router answers 404), and so that every answer, error
/// or not, is counted and timed in one place.
///
/// | route | method | answer |
/// |---|---|---|
/// | `/v1/classify` | POST | predictions for a JPEG/PNG body or a multipart form of images |
/// | `/healthz` | GET | `{"status":"ok"}` |
/// | `/v1/model` | GET | the model card's JSON |
/// | `/metrics` | GET | Prometheus text |
struct ClassificationResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let batcher: InferenceBatcher
    let pool: DecodePool
    let configuration: ServerConfiguration
    let card: ModelCard
    /// The card as the model file stores it.
    let cardJSON: [UInt8]

    /// One image's answer inside a multipart answer: the fields of `resnet predict --json`.
    struct FileAnswer: Encodable {
        let file: String
        let predictions: [Classifier.Prediction]
    }

    /// The answer to a single-image body.
    struct ImageAnswer: Encodable {
        let predictions: [Classifier.Prediction]
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let path = request.uri.path
        var response: Response
        do {
            response = try await route(request, path: path)
        } catch let failure as HTTPFailure {
            batcher.metrics.error(failure.reason.rawValue)
            response = failure.response
        } catch {
            let failure = HTTPFailure(status: .internalServerError, reason: .internalError, message: "\(error)")
            batcher.metrics.error(failure.reason.rawValue)
            response = failure.response
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        batcher.metrics.request(route: path, status: response.status.code, seconds: seconds)
        return response
    }

    private func route(_ request: Request, path: String) async throws -> Response {
        let get: Set<HTTPRequest.Method> = [.get, .head]
        switch path {
        case "/v1/classify":
            guard request.method == .post else { throw HTTPFailure.methodNotAllowed(request.method, path: path, allowed: "POST") }
            return try await classify(request)
        case "/healthz":
            guard get.contains(request.method) else { throw HTTPFailure.methodNotAllowed(request.method, path: path, allowed: "GET") }
            return json(jsonBody(["status": "ok"]))
        case "/v1/model":
            guard get.contains(request.method) else { throw HTTPFailure.methodNotAllowed(request.method, path: path, allowed: "GET") }
            return json(cardJSON)
        case "/metrics":
            guard get.contains(request.method) else { throw HTTPFailure.methodNotAllowed(request.method, path: path, allowed: "GET") }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: batcher.metrics.text())))
        default:
            throw HTTPFailure.notFound(path)
        }
    }

    private func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// An image of a request: its name in answers and errors, its declared type, its bytes.
    struct Upload: Sendable {
        let name: String
        let type: String
        let bytes: [UInt8]
    }

    private func classify(_ request: Request) async throws -> Response {
        let top = try Self.top(request.uri.queryParameters[values: "top"])
        guard let header = request.headers[.contentType], let media = MediaType(header),
              ["image/jpeg", "image/png", "multipart/form-data"].contains(media.type) else {
            let given = request.headers[.contentType].map { "'\($0.prefix(100))'" } ?? "none"
            throw HTTPFailure.unsupportedMediaType("Content-Type must be image/jpeg, image/png or multipart/form-data (given: \(given))")
        }
        let limit = configuration.maximumBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw HTTPFailure.bodyTooLarge(limit: limit)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw HTTPFailure.bodyTooLarge(limit: limit)
        } catch {  // a malformed chunked encoding, or a client that went away
            throw HTTPFailure.badRequest("the request body could not be read: \(error)")
        }
        guard body.readableBytes > 0 else { throw HTTPFailure.badImage("the request body is empty: send a JPEG or PNG image") }

        let uploads: [Upload]
        let multipart = media.type == "multipart/form-data"
        if multipart {
            guard let boundary = media.parameters["boundary"], !boundary.isEmpty else {
                throw HTTPFailure.badRequest("a multipart/form-data Content-Type needs its boundary parameter")
            }
            uploads = try body.withUnsafeReadableBytes { bytes in
                let parts: [FormPart]
                do {
                    parts = try parseMultipart(bytes, boundary: boundary, maximumParts: configuration.maximumImagesPerRequest)
                } catch let error as MultipartError {
                    throw HTTPFailure.badRequest(error.description)
                }
                return try parts.enumerated().map { index, part in
                    let name = part.filename ?? part.name ?? "part \(index + 1)"
                    guard let type = part.contentType.flatMap(MediaType.init)?.type, type == "image/jpeg" || type == "image/png" else {
                        let given = part.contentType.map { "'\($0.prefix(100))'" } ?? "none"
                        throw HTTPFailure.unsupportedMediaType("\(name.prefix(200)): each part must be image/jpeg or image/png (given: \(given))")
                    }
                    return Upload(name: String(name.prefix(200)), type: type, bytes: Array(UnsafeRawBufferPointer(rebasing: bytes[part.content])))
                }
            }
            guard !uploads.isEmpty else { throw HTTPFailure.badRequest("the multipart body holds no images") }
        } else {
            uploads = [Upload(name: "request body", type: media.type, bytes: Array(body.readableBytesView))]
        }

        do {
            try batcher.reserve(uploads.count)
        } catch {
            switch error {
            case .queueFull:
                throw HTTPFailure.unavailable(.queueFull, retryAfter: configuration.retryAfterSeconds,
                                              "the server is busy: its queue is full (\(batcher.queueLimit) images); retry later")
            case .shuttingDown:
                throw HTTPFailure.unavailable(.shuttingDown, retryAfter: configuration.retryAfterSeconds, "the server is shutting down")
            case .tooMany:
                throw HTTPFailure.badRequest("\(uploads.count) images are more than the queue holds (\(batcher.queueLimit))")
            }
        }
        let prepared: [PlanarImage]
        do {
            prepared = try await prepare(uploads)
        } catch {
            batcher.cancelReservation(uploads.count)
            throw HTTPFailure.badImage("\(error)")
        }
        let predictions = try await batcher.submit(prepared, top: top)
        if multipart {
            return json(jsonBody(zip(uploads, predictions).map { FileAnswer(file: $0.name, predictions: $1) }))
        }
        return json(jsonBody(ImageAnswer(predictions: predictions[0])))
    }

    /// `?top=k`: the classes per image, at least 1 (default 5, as `resnet predict`); more
    /// than the model's classes gives them all.
    static func top(_ values: [Substring]) throws -> Int {
        guard let value = values.last else { return 5 }
        guard values.count == 1, let k = Int(value), k >= 1 else {
            throw HTTPFailure.badRequest("top must be a whole number of classes, at least 1 (given: '\(value.prefix(40))')")
        }
        return k
    }

    /// Decodes and prepares every upload on the decode threads, in parallel.
    private func prepare(_ uploads: [Upload]) async throws -> [PlanarImage] {
        let card = card, pixels = configuration.maximumImagePixels
        if uploads.count == 1 {
            let upload = uploads[0]
            return [try await pool.run { try Self.prepare(upload, card: card, maximumPixels: pixels) }]
        }
        return try await withThrowingTaskGroup(of: (Int, PlanarImage).self) { group in
            for (index, upload) in uploads.enumerated() {
                group.addTask { (index, try await pool.run { try Self.prepare(upload, card: card, maximumPixels: pixels) }) }
            }
            var images = [PlanarImage?](repeating: nil, count: uploads.count)
            for try await (index, image) in group { images[index] = image }
            return images.map { $0! }
        }
    }

    /// One upload as the network's input, exactly as `Classifier.prepareImage(path:)` prepares a
    /// file, after checking that its bytes are what its `Content-Type` says and that its
    /// header's size is within the server's pixel limit.
    static func prepare(_ upload: Upload, card: ModelCard, maximumPixels: Int) throws -> PlanarImage {
        let bytes = upload.bytes
        guard !bytes.isEmpty else { throw ImageError(description: "\(upload.name): empty") }
        let isJPEG = bytes.starts(with: [0xFF, 0xD8, 0xFF])
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        if upload.type == "image/jpeg" && isPNG || upload.type == "image/png" && isJPEG {
            throw ImageError(description: "\(upload.name): declared \(upload.type) but holds a \(isPNG ? "PNG" : "JPEG") image")
        }
        let image = try decodeImage(bytes, channels: card.input.channels, path: upload.name, maximumPixels: maximumPixels)
        return try card.prepare(image)
    }

    struct ImageError: Error, CustomStringConvertible {
        let description: String
    }
}
