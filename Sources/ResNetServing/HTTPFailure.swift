import Foundation
import Hummingbird

/// An answer other than 200: its status, a one-line message sent as `{"error": "..."}`, the
/// reason it is counted under in `resnet_serve_errors_total`, and extra headers.
struct HTTPFailure: Error, CustomStringConvertible {
    /// Why a request was not answered with predictions: the `reason` label of the errors metric.
    enum Reason: String, CaseIterable {
        case badImage = "bad_image"
        case badRequest = "bad_request"
        case unsupportedMediaType = "unsupported_media_type"
        case bodyTooLarge = "body_too_large"
        case queueFull = "queue_full"
        case shuttingDown = "shutting_down"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case internalError = "internal"
    }

    let status: HTTPResponse.Status
    let reason: Reason
    let message: String
    var headers: HTTPFields = [:]

    var description: String { "\(status.code) \(message)" }

    static func badRequest(_ message: String) -> HTTPFailure { .init(status: .badRequest, reason: .badRequest, message: message) }
    static func badImage(_ message: String) -> HTTPFailure { .init(status: .badRequest, reason: .badImage, message: message) }
    static func unsupportedMediaType(_ message: String) -> HTTPFailure {
        .init(status: .unsupportedMediaType, reason: .unsupportedMediaType, message: message)
    }
    static func bodyTooLarge(limit: Int) -> HTTPFailure {
        .init(status: .contentTooLarge, reason: .bodyTooLarge, message: "the request body is larger than the server's limit of \(limit) bytes (--max-body)")
    }
    static func notFound(_ path: String) -> HTTPFailure {
        .init(status: .notFound, reason: .notFound,
              message: "no such path: \(path.prefix(200)) (the server answers POST /v1/classify, GET /healthz, GET /v1/model, GET /metrics)")
    }
    static func methodNotAllowed(_ method: HTTPRequest.Method, path: String, allowed: String) -> HTTPFailure {
        .init(status: .methodNotAllowed, reason: .methodNotAllowed, message: "\(path) does not take \(method.rawValue.prefix(20)); use \(allowed)",
              headers: [.allow: allowed])
    }
    static func unavailable(_ reason: Reason, retryAfter seconds: Int, _ message: String) -> HTTPFailure {
        .init(status: .serviceUnavailable, reason: reason, message: message, headers: [.retryAfter: String(seconds)])
    }

    /// The JSON answer.
    var response: Response {
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jsonBody(["error": message]))))
    }
}

/// `value` as compact JSON with sorted keys and unescaped slashes, as `resnet predict --json`
/// writes it (without its indentation).
func jsonBody<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? Array(encoder.encode(value))) ?? Array(#"{"error":"the answer could not be encoded"}"#.utf8)
}
