import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
import Testing
@testable import ResNetInference

private func model(seed: UInt64) throws -> any Layer {
    // Option A: its padded shortcut is the one operand a fused residual addition must not overwrite.
    let model = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(input: nil, classes: nil)
    model.initializeParameters(seed: seed)
    model.eval()
    return model
}

private func close(_ a: [Float], _ b: [Float], tolerance: Float = 1e-4) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
}

@Suite("A large call runs in chunks when measured faster", .serialized)
struct ChunkingTests {
    @Test("a deployed model runs a large call in chunks when they were measured faster, with the same probabilities")
    func largeCallsRunInChunks() throws {
        let model = try model(seed: 9)
        let count = 67
        var generator = SeededGenerator(seed: 2)
        let pixels = (0..<(count * 3 * 32 * 32)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let normalization = Normalization.perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        func probabilities(_ evaluator: Evaluator) throws -> [Float] {
            var out = [Float](repeating: 0, count: count * 10)
            try pixels.withUnsafeBufferPointer { p in
                try out.withUnsafeMutableBufferPointer { try evaluator.probabilities(ofPrepared: p, count: count, normalization: normalization, into: $0) }
            }
            return out
        }
        // Training's validation evaluator: one batch, the rule's kernels, nothing measured.
        let reference = try probabilities(Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: count))
        for chunked in [true, false] {
            let evaluator = Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: count, parametersAreConstant: true)
            evaluator.chunkTimer = { batch in chunked ? (batch == count ? 1 : 0.1) : 0.1 * Double(batch) }
            #expect(close(try probabilities(evaluator), reference, tolerance: 1e-5))
            #expect(evaluator.runSizes == [count: chunked ? 16 : count])
            // The whole batch's graph was dropped when chunks won.
            #expect((evaluator.convolutionChoices[count] == nil) == chunked)
            #expect(try probabilities(evaluator) == probabilities(evaluator), "a second call gives the same numbers")
        }
    }
}
