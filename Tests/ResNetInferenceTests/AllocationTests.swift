import AllocationCounter
import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetOptimizers
@testable import ResNetTensors
import Testing
@testable import ResNetInference

/// Allocations the calling thread makes in `body`.
private func allocations(_ body: () throws -> Void) rethrows -> Int {
    allocation_counter_start()
    defer { _ = allocation_counter_stop() }
    try body()
    return allocation_counter_stop()
}

/// Keeps a value from being optimized away.
@inline(never) private func keep<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Checks that `body` allocates only what oneDNN's `dnnl_primitive_execute` allocates for the
/// primitives of `graphs` that it runs: that much is counted by running each of them once more
/// alone, times how often `body` ran it. Everything else would be ours, and must be nothing.
private func expectOnlyOneDNNAllocates(in graphs: [Graph], _ what: String, _ body: () throws -> Void) rethrows {
    let primitives = graphs.flatMap(\.boundPrimitives)
    let before = primitives.map(\.executions)
    let made = try allocations(body)
    var byOneDNN = 0
    for (primitive, runs) in zip(primitives, zip(primitives.map(\.executions), before).map(-)) where runs > 0 {
        byOneDNN += runs * allocations { primitive.execute() }
    }
    #expect(byOneDNN > 0)
    #expect(made == byOneDNN, "\(what): \(made) allocations, \(byOneDNN) of them oneDNN's")
}

@Suite("A planned step allocates nothing", .serialized)
struct AllocationTests {
    @Test("the counter sees the allocations of this thread")
    func counterCounts() {
        let n = allocations { keep([Int](repeating: 1, count: 1_000)) }
        #expect(n >= 1)
        #expect(allocations {} == 0)
    }

    @Test("a training step (forward, backward, SGD with momentum and weight decay) allocates nothing but oneDNN's bookkeeping")
    func trainingStepAllocatesNothing() throws {
        let model = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(input: nil, classes: nil)
        model.initializeParameters(seed: 2)
        model.train()
        let graph = Graph(computesGradients: true)
        let x = graph.input([8, 3, 32, 32])
        let labels = graph.labels(count: 8)
        try graph.plan(loss: try softmaxCrossEntropy(try model(x), labels: labels))
        graph.fillInputsWithPattern()
        try graph.setLabels(labels, (0..<8).map { Int32($0 % 10) })
        let optimizer = try SGD(learningRate: 0.01, momentum: 0.9, weightDecay: 5e-4)
        let parameters = model.trainableParameters
        optimizer.register(parameters)
        func step() {
            graph.forward()
            graph.backward()
            optimizer.update(parameters)
        }
        step()
        try expectOnlyOneDNNAllocates(in: [graph], "a training step") { step() }
    }

    /// oneDNN 2.6 allocates in every `dnnl_primitive_execute` (its argument map): that much is
    /// counted by running each primitive of the call alone; everything else is ours and must be 0.
    @Test("a deployed model's call allocates nothing but oneDNN's own execution bookkeeping, fp32 and int8", arguments: [1, 8, 64])
    func classifierCallAllocatesNothing(count: Int) throws {
        let model = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(input: nil, classes: nil)
        model.initializeParameters(seed: 1)
        var generator = SeededGenerator(seed: 3)
        let pixels = (0..<(count * 3 * 32 * 32)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var probabilities = [Float](repeating: 0, count: count * 10)
        let normalization = Normalization.perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        for quantized in [false, true] {
            let evaluator = Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: 32, parametersAreConstant: true)
            if quantized {
                try pixels.withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: count, normalization: normalization) }
            }
            try pixels.withUnsafeBufferPointer { p in
                try probabilities.withUnsafeMutableBufferPointer { out in
                    try evaluator.probabilities(ofPrepared: p, count: count, normalization: normalization, into: out)   // plans
                    try expectOnlyOneDNNAllocates(in: evaluator.plannedGraphs, "\(quantized ? "int8" : "fp32"), \(count) images") {
                        try evaluator.probabilities(ofPrepared: p, count: count, normalization: normalization, into: out)
                    }
                }
            }
        }
    }
}

