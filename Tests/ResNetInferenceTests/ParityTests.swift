import Foundation
import ResNetData
import ResNetModels
import Testing
@testable import ResNetInference

/// The fixture `benchmarks/make-cifar-parity-fixture.py` wrote with PyTorch.
private let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cifar-resnet20")

@Suite("Outputs equal PyTorch's")
struct ParityTests {
    @Test("a CIFAR ResNet-20 (option A, akamaster's layout) saved by torch.save gives PyTorch's probabilities within 1e-4")
    func cifarResNet20() throws {
        let tensors = try ImportedWeights.readTensors(path: fixture.appendingPathComponent("resnet20.pth").path)
        let loaded = try ImportedWeights.model(from: tensors, source: "resnet20.pth",
                                               architecture: .init(name: "resnet20", options: ModelOptions(shortcut: .a)))
        let classifier = try Classifier(loaded)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixture.appendingPathComponent("expected.json")))
        let names = expected.probabilities.keys.sorted()
        let answers = try classifier.classify(files: names.map { fixture.appendingPathComponent($0).path }, top: 10)
        var worst: Float = 0
        for (name, answer) in zip(names, answers) {
            let torch = expected.probabilities[name]!
            #expect(answer.count == 10)
            for p in answer { worst = max(worst, abs(p.probability - torch[p.index])) }
        }
        #expect(worst < 1e-4, "largest difference \(worst) (PyTorch \(expected.torch))")
        // Read as our end-padded layout, the same weights compute another function: the
        // permutation is what makes them agree.
        let unpermuted = try ImportedWeights.model(from: tensors, source: "resnet20.pth",
                                                   architecture: .init(name: "resnet20", options: ModelOptions(shortcut: .a)),
                                                   optionAPadding: .end)
        let other = try Classifier(unpermuted).classify(files: [fixture.appendingPathComponent(names[0]).path], top: 10)[0]
        #expect(other.contains { abs($0.probability - expected.probabilities[names[0]]![$0.index]) > 1e-3 })
    }

    private struct Expected: Decodable {
        let torch: String
        let probabilities: [String: [Float]]
    }
}
