import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
import Testing
@testable import ResNetInference

/// An inference graph of `model` for `batch` 3x32x32 images and its logits.
private struct Pass {
    let graph: Graph, input: Tensor, logits: Tensor, batch: Int

    init(_ model: any Layer, batch: Int, _ graph: Graph) throws {
        input = graph.input([batch, 3, 32, 32])
        logits = try model(input)
        try graph.plan(keep: [logits])
        (self.graph, self.batch) = (graph, batch)
    }

    func run(seed: UInt64) throws -> [Float] {
        var generator = SeededGenerator(seed: seed)
        try graph.setInput(input, (0..<(batch * 3 * 32 * 32)).map { _ in generator.nextNormal() })
        graph.forward()
        return try graph.read(logits)
    }
}

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

@Suite("Kernels chosen at plan time", .serialized)
struct PlanningTests {
    @Test("the planner keeps the candidate its clock says is faster, drops the other's weights and activations, and remembers")
    func plannerKeepsTheFaster() throws {
        let model = try model(seed: 3)
        // Batch 7: at 16x16 and 8x8 it has enough output pixels for the rule's Winograd.
        let batch = 7
        for preferred in ConvolutionAlgorithms.allCases {
            InferencePlanner.forgetDecisions()
            let store = DerivedWeightStore(), arena = ActivationArena()
            func trace(_ algorithms: ConvolutionAlgorithms) throws -> (Graph, Pass) {
                let graph = Graph(computesGradients: false, parametersAreConstant: true, derivedWeights: store,
                                  activations: arena, convolutionAlgorithms: algorithms)
                return (graph, try Pass(model, batch: batch, graph))
            }
            var timed = 0
            let planned = try InferencePlanner.plan(timer: { graph in
                timed += 1
                return (graph.winogradConvolutionCount > 0) == (preferred == .rule) ? 0.001 : 0.002
            }) { try trace($0) }
            #expect(planned.choice.algorithms == preferred && planned.choice.measured && timed >= 4)
            #expect((planned.graph.winogradConvolutionCount > 0) == (preferred == .rule))

            // Alone, the kept candidate needs exactly what the shared store and arena still hold.
            let aloneStore = DerivedWeightStore(), aloneArena = ActivationArena()
            let alone = try Pass(model, batch: batch, Graph(computesGradients: false, parametersAreConstant: true, derivedWeights: aloneStore,
                                                            activations: aloneArena, convolutionAlgorithms: preferred))
            #expect(try planned.traced.run(seed: 5) == alone.run(seed: 5))
            #expect(store.byteCount == aloneStore.byteCount, "\(store.byteCount) bytes of weights kept, \(aloneStore.byteCount) needed")
            #expect(arena.byteCount == aloneArena.byteCount, "\(arena.byteCount) bytes of activations kept, \(aloneArena.byteCount) needed")
            // Both algorithms compute the same function.
            let other = try Pass(model, batch: batch, Graph(computesGradients: false, convolutionAlgorithms: preferred == .rule ? .direct : .rule))
            #expect(close(try planned.traced.run(seed: 5), try other.run(seed: 5)))

            // A second graph of the same structure takes the remembered choice without timing.
            var timedAgain = 0
            let again = try InferencePlanner.plan(timer: { _ in timedAgain += 1; return 1 }) { try trace($0) }
            #expect(again.choice == InferencePlanner.Choice(algorithms: preferred, seconds: [:]) && timedAgain == 0)
            #expect((again.graph.winogradConvolutionCount > 0) == (preferred == .rule))
        }
    }

    @Test("a graph without a Winograd candidate is planned once and not timed")
    func nothingToChoose() throws {
        let weight = Parameter(shape: [16, 16, 3, 3])
        var traced = 0, timed = 0
        let planned = try InferencePlanner.plan(timer: { _ in timed += 1; return 1 }) { algorithms in
            traced += 1
            let graph = Graph(computesGradients: false, parametersAreConstant: true, convolutionAlgorithms: algorithms)
            let y = try conv2d(graph.input([4, 16, 16, 16]), weight: weight, padding: (1, 1), label: "narrow")
            try graph.plan(keep: [y])
            return (graph, y)
        }
        #expect(planned.choice == InferencePlanner.Choice(algorithms: .rule, seconds: [:]))
        #expect(traced == 1 && timed == 0)
    }

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
