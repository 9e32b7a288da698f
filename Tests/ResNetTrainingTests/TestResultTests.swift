import Foundation
import ResNetData
@testable import ResNetInference
@testable import ResNetTraining
import Testing

/// A run's `test.json` is read back by reports and exports: it is checked where it is decoded.
@Suite("Test results: test.json is checked when read back")
struct TestResultTests {
    /// A consistent result of 3 classes: 10 images each, 24 of 30 right.
    static let valid = EvaluationResult(count: 30, loss: 0.62, top1: 0.8, top5: 1, perClass: [0.9, 0.8, 0.7],
                                        confusionMatrix: [[9, 1, 0], [2, 8, 0], [0, 3, 7]], classNames: ["a", "b", "c"])

    static func folder(holding json: Data?) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("test-result-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        if let json { try json.write(to: folder.appendingPathComponent("test.json")) }
        return folder
    }

    /// `valid` as a JSON object with one field replaced by `value` (JSON text).
    static func edited(_ key: String, _ value: String) throws -> Data {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(valid)) as! [String: Any]
        object[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        return try JSONSerialization.data(withJSONObject: object)
    }

    @Test func aResultTheEvaluatorWroteReadsBackAsItWas() throws {
        let folder = try Self.folder(holding: JSONEncoder().encode(Self.valid))
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try readTestResult(of: folder) == Self.valid)
        // A result of 1,000 classes, as ImageNet's, is far inside the size bound.
        let k = 1_000
        let matrix = (0..<k).map { t in (0..<k).map { p in p == t ? 40 : (p == (t + 1) % k ? 10 : 0) } }
        let large = EvaluationResult(count: 50 * k, loss: 1.1, top1: 0.8, top5: 0.95, perClass: [Double](repeating: 0.8, count: k),
                                     confusionMatrix: matrix, classNames: (0..<k).map { "class \($0)" })
        let json = try JSONEncoder().encode(large)
        #expect(json.count < EvaluationResult.maximumFileBytes / 8)
        #expect(try JSONDecoder().decode(EvaluationResult.self, from: json) == large)
    }

    @Test func aRunWithoutTestJSONHasNoResult() throws {
        let folder = try Self.folder(holding: nil)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try readTestResult(of: folder) == nil)
    }

    @Test(arguments: [
        ("top1", "1.5", "'top1': an accuracy must be a fraction in 0...1"),
        ("top5", "-0.1", "'top5': an accuracy must be a fraction in 0...1"),
        ("top5", "0.5", "top-5 accuracy 0.5 is below top-1's 0.8"),
        ("top1", "0.7", "disagrees with the matrix's diagonal (24 of 30 images)"),
        ("loss", "-1", "a cross-entropy must be finite and not negative"),
        ("count", "31", "the counts add up to 30, not to the 31 images"),
        ("count", "-30", "a count of images must not be negative"),
        ("per_class", "[0.9, 0.8]", "2 accuracies for 3 classes"),
        ("per_class", "[0.9, 0.8, 7]", "'per_class': an accuracy must be a fraction in 0...1"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8, 0]]", "the matrix must have 3 rows of 3 counts"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8], [0, 3, 7, 0]]", "the matrix must have 3 rows of 3 counts"),
        ("confusion_matrix", "[[10, 1, -1], [2, 8, 0], [0, 3, 7]]", "a count must not be negative"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8, 0], [0, 3, \(Int.max)]]", "the counts overflow"),
        ("classes", "[]", "the number of classes must be in 1...1000000, got 0"),
        ("top1", "\"0.8\"", "'top1' should be Double"),
    ])
    func aDamagedResultIsRefusedNamingTheFileAndTheField(key: String, value: String, reason: String) throws {
        let folder = try Self.folder(holding: Self.edited(key, value))
        defer { try? FileManager.default.removeItem(at: folder) }
        let error = try #require(throws: TrainingError.self) { try readTestResult(of: folder) }
        #expect(error.description.hasPrefix(folder.appendingPathComponent("test.json").path + ": not a valid test result ("))
        #expect(error.description.contains(reason), "\(error.description)")
    }

    @Test func aFileThatIsNotJSONOrTooLargeIsRefused() throws {
        for bytes in [Data("{\"count\": 30, \"loss\"".utf8), Data(), Data(repeating: 0x20, count: EvaluationResult.maximumFileBytes + 1)] {
            let folder = try Self.folder(holding: bytes)
            defer { try? FileManager.default.removeItem(at: folder) }
            let error = try #require(throws: TrainingError.self) { try readTestResult(of: folder) }
            #expect(error.description.hasPrefix(folder.appendingPathComponent("test.json").path + ": "))
        }
        // A test.json that is a directory cannot be read.
        let folder = try Self.folder(holding: nil)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("test.json"), withIntermediateDirectories: false)
        #expect(throws: TrainingError.self) { try readTestResult(of: folder) }
    }
}
