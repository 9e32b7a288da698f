import ResNetEngine
@testable import ResNetTensors
import Testing

// `Graph.backward(seed:onParameterGradientFinal:)`: the hook a data-parallel run uses to start
// a gradient all-reduce while the rest of backward runs (issue 17).
@Suite("Backward reports each parameter's gradient as soon as it is final")
struct GradientReadinessTests {
    /// conv -> batch norm -> ReLU -> conv(shared) -> ReLU -> conv(shared) -> linear -> loss: the
    /// shared weight is read by two nodes and is final only after the earlier one's backward.
    func network() throws -> (Graph, Tensor, LabelInput, shared: Parameter, all: [Parameter], statistics: [Parameter]) {
        var random = TestRandom(11)
        let first = parameter([4, 3, 3, 3], random.uniform(108, -0.4...0.4))
        let shared = parameter([4, 4, 3, 3], random.uniform(144, -0.3...0.3))
        let scale = parameter([4], random.uniform(4, 0.5...1.5)), shift = parameter([4], random.uniform(4))
        let mean = parameter([4], [Float](repeating: 0, count: 4), trainable: false)
        let variance = parameter([4], [Float](repeating: 1, count: 4), trainable: false)
        let weight = parameter([3, 4 * 6 * 6], random.uniform(3 * 144, -0.1...0.1)), bias = parameter([3], random.uniform(3))
        let graph = Graph(seed: 1)
        let x = graph.input([2, 3, 6, 6])
        let labels = graph.labels(count: 2)
        var h = try conv2d(x, weight: first, padding: (1, 1), label: "first")
        h = relu(try batchNorm(h, scale: scale, shift: shift, runningMean: mean, runningVariance: variance, statistics: .batch,
                               updateRunningStatistics: true))
        h = relu(try conv2d(h, weight: shared, padding: (1, 1), label: "shared1"))
        h = try conv2d(h, weight: shared, padding: (1, 1), label: "shared2")
        let logits = try linear(try flatten(h), weight: weight, bias: bias)
        try graph.plan(loss: try softmaxCrossEntropy(logits, labels: labels))
        try graph.setInput(x, random.uniform(2 * 3 * 36, -2...2))
        try graph.setLabels(labels, [0, 2])
        return (graph, x, labels, shared, [first, shared, scale, shift, weight, bias], [mean, variance])
    }

    @Test("every trainable parameter once, its gradient already final; the gradients bit for bit those of backward(); the same order at every pass")
    func reportsFinalGradients() throws {
        let (graph, _, _, shared, all, statistics) = try network()
        graph.forward()
        graph.backward()
        let plain = all.map { Array(UnsafeBufferPointer(start: $0.gradient.floats, count: $0.count)) }

        var orders: [[ObjectIdentifier]] = []
        for _ in 0..<2 {
            graph.forward()
            var reported: [ObjectIdentifier] = [], atReport: [ObjectIdentifier: [Float]] = [:]
            graph.backward { parameter in
                reported.append(ObjectIdentifier(parameter))
                atReport[ObjectIdentifier(parameter)] = Array(UnsafeBufferPointer(start: parameter.gradient.floats, count: parameter.count))
            }
            #expect(reported.count == all.count && Set(reported) == Set(all.map(ObjectIdentifier.init)), "each trainable parameter once")
            #expect(statistics.allSatisfy { !reported.contains(ObjectIdentifier($0)) }, "running statistics have no gradient")
            for (p, expected) in zip(all, plain) {
                let final = Array(UnsafeBufferPointer(start: p.gradient.floats, count: p.count))
                #expect(final == expected, "bit for bit the gradient of backward()")
                #expect(atReport[ObjectIdentifier(p)] == final, "final when reported")
            }
            orders.append(reported)
        }
        #expect(orders[0] == orders[1])
        // Reverse layer order: the classifier first, the first convolution last, the shared weight
        // after both of its convolutions (that is, before batch norm's scale and shift).
        let position = { (p: Parameter) in orders[0].firstIndex(of: ObjectIdentifier(p))! }
        #expect(position(all[4]) < position(shared) && position(all[5]) < position(shared))
        #expect(position(shared) < position(all[2]) && position(all[2]) < position(all[0]))
        #expect(position(all[0]) == all.count - 1)
    }

    @Test("a frozen parameter is not reported")
    func frozenParameterNotReported() throws {
        var random = TestRandom(5)
        let frozen = parameter([2, 3, 1, 1], random.uniform(6)), trained = parameter([2, 2, 1, 1], random.uniform(4))
        frozen.isFrozen = true
        let graph = Graph(seed: 2)
        let x = graph.input([2, 3, 2, 2])
        let labels = graph.labels(count: 2)
        let h = try conv2d(relu(try conv2d(x, weight: frozen)), weight: trained)
        try graph.plan(loss: try softmaxCrossEntropy(try flatten(h), labels: labels))
        try graph.setInput(x, random.uniform(24))
        try graph.setLabels(labels, [1, 7])
        graph.forward()
        var reported: [ObjectIdentifier] = []
        graph.backward { reported.append(ObjectIdentifier($0)) }
        #expect(reported == [ObjectIdentifier(trained)])
    }
}

@Suite("Buffers")
struct BufferTests {
    @Test("small and large buffers start zeroed, 64-byte aligned and writable; large ones are mapped pages")
    func buffersStartZeroed() {
        for byteCount in [1, 4096, Buffer.mappedByteCount - 64, Buffer.mappedByteCount, 3 * Buffer.mappedByteCount + 100] {
            let buffer = Buffer(byteCount: byteCount)
            #expect(buffer.byteCount == max(byteCount, 64))
            #expect(Int(bitPattern: buffer.pointer) % 64 == 0)
            let bytes = buffer.pointer.assumingMemoryBound(to: UInt8.self)
            #expect((0..<buffer.byteCount).allSatisfy { bytes[$0] == 0 })
            bytes[buffer.byteCount - 1] = 7
            #expect(bytes[buffer.byteCount - 1] == 7)
            // Mapped pages are page aligned, which malloc's 64-byte alignment rarely is.
            if byteCount >= Buffer.mappedByteCount { #expect(Int(bitPattern: buffer.pointer) % 4096 == 0) }
        }
    }
}
