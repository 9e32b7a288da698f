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

    @Test("a data set's evaluation runs its batches in the chunks measured faster, with the same result")
    func evaluationRunsInChunks() throws {
        let model = try model(seed: 5)
        let count = 70
        var generator = SeededGenerator(seed: 6)
        let dataset = ImageDataset(images: (0..<(count * 3 * 32 * 32)).map { _ in UInt8.random(in: 0...255, using: &generator) },
                                   labels: (0..<count).map { Int32($0 % 10) }, channels: 3, height: 32, width: 32,
                                   classNames: (0..<10).map { "class \($0)" })
        let normalization = Normalization.perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        // Batches of 40 and 30: training's validation evaluator runs them whole.
        let reference = try Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: 40).evaluate(dataset, normalization: normalization)
        let evaluator = Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: 40, parametersAreConstant: true)
        evaluator.chunkTimer = { batch in batch == 40 ? 1 : 0.1 }
        var seen: [Int] = []
        let chunked = try evaluator.evaluate(dataset, normalization: normalization) { index, _ in seen.append(index) }
        #expect(evaluator.runSizes == [40: 10], "the batch of 40 ran as 4 x 10; 30 is below the size that is measured")
        #expect(chunked.confusionMatrix == reference.confusionMatrix)
        #expect(chunked.top5 == reference.top5)
        #expect(abs(chunked.loss - reference.loss) < 1e-5 * max(1, abs(reference.loss)))
        #expect(seen == Array(0..<count), "every image reported once, in order")
    }
}
