import Foundation
import ResNetData
import ResNetModels
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
        #expect(try readTestResult(of: folder, classCount: 3) == Self.valid)
        // A result of 1,000 classes, as ImageNet's, is far inside the size bound.
        let k = 1_000
        let matrix = (0..<k).map { t in (0..<k).map { p in p == t ? 40 : (p == (t + 1) % k ? 10 : 0) } }
        let large = EvaluationResult(count: 50 * k, loss: 1.1, top1: 0.8, top5: 0.95, perClass: [Double](repeating: 0.8, count: k),
                                     confusionMatrix: matrix, classNames: (0..<k).map { "class \($0)" })
        let json = try JSONEncoder().encode(large)
        #expect(json.count < EvaluationResult.maximumFileBytes(classCount: k) / 8)
        #expect(try JSONDecoder().decode(EvaluationResult.self, from: json) == large)
    }

    @Test func aRunWithoutTestJSONHasNoResult() throws {
        let folder = try Self.folder(holding: nil)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try readTestResult(of: folder, classCount: 3) == nil)
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
        ("per_class", "[0.9, 0.8, 7]", "class 2's accuracy 7.0 disagrees with its row of the matrix (7 of 10 images)"),
        ("per_class", "[0.8, 0.9, 0.7]", "class 0's accuracy 0.8 disagrees with its row"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8, 0]]", "the matrix must be square"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8], [0, 3, 7, 0]]", "the matrix must be square"),
        ("confusion_matrix", "[]", "the matrix must be square"),
        ("confusion_matrix", "[[10, 1, -1], [2, 8, 0], [0, 3, 7]]", "a count must not be negative"),
        ("confusion_matrix", "[[9, 1, 0], [2, 8, 0], [0, 3, \(Int.max)]]", "the counts overflow"),
        ("classes", "[]", "0 class names for a matrix of 3 classes"),
        ("classes", "[\"a\", \"b\", \"c\", \"d\"]", "4 class names for a matrix of 3 classes"),
        ("top1", "\"0.8\"", "'top1' should be Double"),
    ])
    func aDamagedResultIsRefusedNamingTheFileAndTheField(key: String, value: String, reason: String) throws {
        let folder = try Self.folder(holding: Self.edited(key, value))
        defer { try? FileManager.default.removeItem(at: folder) }
        let error = try #require(throws: TrainingError.self) { try readTestResult(of: folder, classCount: 3) }
        #expect(error.isInvalidTestResult)
        #expect(error.description.hasPrefix(folder.appendingPathComponent("test.json").path + ": not a valid test result ("))
        #expect(error.description.contains(reason), "\(error.description)")
    }

    @Test func aFileThatIsNotJSONIsAnInvalidResult() throws {
        for bytes in [Data("{\"count\": 30, \"loss\"".utf8), Data(), Data("[]".utf8)] {
            let folder = try Self.folder(holding: bytes)
            defer { try? FileManager.default.removeItem(at: folder) }
            let error = try #require(throws: TrainingError.self) { try readTestResult(of: folder, classCount: 3) }
            #expect(error.isInvalidTestResult && error.description.hasPrefix(folder.appendingPathComponent("test.json").path + ": "))
        }
    }

    /// Too large, a directory, a FIFO (which must not block), a device: refused before reading.
    @Test func aFileThatIsTooLargeOrNotARegularFileIsRefusedUnread() throws {
        let folder = try Self.folder(holding: nil)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("test.json")
        try Data(repeating: 0x20, count: EvaluationResult.maximumFileBytes(classCount: 3) + 1).write(to: file)
        #expect(throws: DataError.self) { try readTestResult(of: folder, classCount: 3) }
        try FileManager.default.removeItem(at: file)
        try FileManager.default.createDirectory(at: file, withIntermediateDirectories: false)
        #expect(throws: DataError.notARegularFile(path: file.path, kind: "a folder")) { try readTestResult(of: folder, classCount: 3) }
        try FileManager.default.removeItem(at: file)
        #expect(mkfifo(file.path, 0o644) == 0)
        #expect(throws: DataError.self) { try readTestResult(of: folder, classCount: 3) }
        try FileManager.default.removeItem(at: file)
        try FileManager.default.createSymbolicLink(atPath: file.path, withDestinationPath: "/dev/zero")
        #expect(throws: DataError.self) { try readTestResult(of: folder, classCount: 3) }
    }

    @Test func theSizeBoundGrowsWithTheConfusionMatrixUpToAShareOfMemory() {
        #expect(EvaluationResult.maximumFileBytes(classCount: 10) == 64 << 20)
        #expect(EvaluationResult.maximumFileBytes(classCount: 1_000) == 64 << 20)
        #expect(EvaluationResult.maximumFileBytes(classCount: 3_000) == 3_000 * 3_000 * 16 + (1 << 20))
        #expect(EvaluationResult.maximumFileBytes(classCount: ModelCard.maximumClassCount) == max(64 << 20, DataLimits.memoryBudget / 16))
    }

    /// What the evaluator writes reads back, also for data with fewer classes than the network
    /// (a class without images, fewer than 5 classes).
    @Test func whatTheEvaluatorWritesReadsBack() throws {
        let model = try ModelDefinition(name: "resnet8").build(classes: 5)
        let data = tinyDataset(count: 40, classes: 3).split("train")!
        let evaluator = Evaluator(model: model, imageShape: [3, 8, 8], classCount: 5, batchSize: 16)
        let result = try evaluator.evaluate(data, normalization: .none)
        #expect(result.classNames.count == 3 && result.confusionMatrix.count == 5 && result.count == 40)
        let folder = try Self.folder(holding: JSONEncoder().encode(result))
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try readTestResult(of: folder, classCount: 5) == result)
    }
}
