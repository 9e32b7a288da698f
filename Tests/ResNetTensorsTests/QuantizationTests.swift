import ResNetEngine
import ResNetReference
@testable import ResNetTensors
import Testing

// 8-bit inference graphs (issue 16): ranges measured on an fp32 graph, then the same network
// planned on integers.
@Suite("Quantized inference graphs")
struct QuantizationTests {
    /// `x -> conv -> batch norm (-> ReLU)`, with a projection shortcut and a residual addition
    /// when `residual` (the sum post-op adding an int8 shortcut under a uint8 output), then
    /// max pooling and `flatten`, traced into `graph`.
    struct Network {
        let weight, projection: Parameter
        let norms: [[Parameter]]
        let input: [Float]
        let shape = [2, 3, 8, 8]

        init(seed: UInt64) {
            var random = TestRandom(seed)
            weight = parameter([32, 3, 3, 3], random.uniform(32 * 27, -0.5...0.5))
            projection = parameter([32, 3, 1, 1], random.uniform(32 * 3, -0.8...0.8))
            norms = (0..<2).map { _ in
                [parameter([32], random.uniform(32, 0.5...1.5)), parameter([32], random.uniform(32, -0.3...0.3)),
                 parameter([32], random.uniform(32, -0.2...0.2), trainable: false), parameter([32], random.uniform(32, 0.5...2), trainable: false)]
            }
            input = random.uniform(2 * 3 * 64, -2...2)
        }

        func norm(_ x: Tensor, _ k: Int) throws -> Tensor {
            try batchNorm(x, scale: norms[k][0], shift: norms[k][1], runningMean: norms[k][2], runningVariance: norms[k][3],
                          statistics: .running, updateRunningStatistics: false, label: "norm\(k)")
        }

        /// Planned and run once; returns the graph and its flattened output.
        func run(residual: Bool, quantization: ActivationRanges? = nil, measure: ((Graph) throws -> Void)? = nil) throws -> (Graph, [Float]) {
            let graph = Graph(computesGradients: false, parametersAreConstant: true, convolutionAlgorithms: .direct, quantization: quantization)
            let x = graph.input(shape)
            var h = try norm(try conv2d(x, weight: weight, padding: (1, 1), label: "conv"), 0)
            if residual {
                let shortcut = try norm(try conv2d(x, weight: projection, label: "projection"), 1)
                h = try add(h, shortcut)
            }
            h = try maxPool2d(relu(h), kernel: (2, 2), stride: (2, 2))
            let out = try flatten(h)
            try graph.plan(keep: [out])
            try graph.setInput(x, input)
            if let measure { try measure(graph) } else { graph.forward() }
            return (graph, try graph.read(out))
        }

        func ranges(residual: Bool) throws -> ActivationRanges {
            var ranges: ActivationRanges?
            _ = try run(residual: residual) { graph in
                var r = ActivationRanges(for: graph)
                try graph.measureRanges(into: &r)
                ranges = r
            }
            return ranges!
        }
    }

    @Test("a quantized convolution computes what the integer arithmetic written out in Swift computes")
    func convolutionMatchesReference() throws {
        let network = Network(seed: 3)
        let ranges = try network.ranges(residual: false)
        #expect(ranges.imageCount == 2)
        let (_, float) = try network.run(residual: false)
        let (_, integer) = try network.run(residual: false, quantization: ranges)

        // The reference: input scaled to int8 by its largest magnitude, weights (batch norm
        // folded) to int8 per output channel, an exact integer convolution, then the output
        // scales, the folded bias, ReLU and rounding to uint8 by the output's largest value.
        let x = network.input
        let inputScale = x.map(abs).max()! / 127
        let q = x.map { ($0 / inputScale).rounded(.toNearestOrEven) }
        let (gamma, beta, mean, variance) = (network.norms[0][0].values, network.norms[0][1].values, network.norms[0][2].values, network.norms[0][3].values)
        let w = network.weight.values
        var folded = w, bias = [Float](repeating: 0, count: 32), weightScales = [Float](repeating: 1, count: 32)
        for o in 0..<32 {
            let s = gamma[o] / (variance[o] + 1e-5).squareRoot()
            for i in 0..<27 { folded[o * 27 + i] = w[o * 27 + i] * s }
            bias[o] = beta[o] - mean[o] * s
            weightScales[o] = folded[(o * 27)..<((o + 1) * 27)].map(abs).max()! / 127
            for i in 0..<27 { folded[o * 27 + i] = (folded[o * 27 + i] / weightScales[o]).rounded() }
        }
        let accumulators = Reference.conv2d(RefTensor(shape: network.shape, data: q), weight: RefTensor(shape: [32, 3, 3, 3], data: folded),
                                            bias: nil, stride: (1, 1), padding: (1, 1))
        var real = accumulators
        for i in real.data.indices {
            let o = (i / 64) % 32
            real.data[i] = max(0, inputScale * weightScales[o] * accumulators.data[i] + bias[o])
        }
        let outputScale = real.data.max()! / 255
        var expected = Reference.maxPool2d(real, kernel: (2, 2), stride: (2, 2), padding: (0, 0)).data
        expected = expected.map { min(255, ($0 / outputScale).rounded(.toNearestOrEven)) * outputScale }
        #expect(expected.count == integer.count)
        // One step of the output's scale: oneDNN multiplies by the combined scale, which can round the other way.
        let worst = zip(expected, integer).map { abs($0 - $1) }.max()!
        #expect(worst <= outputScale * 1.001, "largest difference \(worst), output step \(outputScale)")
        let fromFloat = zip(float, integer).map { abs($0 - $1) }.max()!
        #expect(fromFloat <= 4 * outputScale, "int8 differs from fp32 by \(fromFloat), output step \(outputScale)")
        #expect(integer.contains { $0 > 0 })
    }

    @Test("a residual addition with a projection shortcut runs in place on integers, close to fp32")
    func residualBlockIsCloseToFloat() throws {
        let network = Network(seed: 5)
        let ranges = try network.ranges(residual: true)
        let (_, float) = try network.run(residual: true)
        let (graph, integer) = try network.run(residual: true, quantization: ranges)
        // The addition became the sum post-op of the convolution computed last (the projection),
        // which writes the uint8 block output over the other branch's int8 output.
        #expect(!graph.nodeSummary.contains { $0.hasPrefix("AddNode") })
        #expect(graph.nodeSummary.contains { $0.hasPrefix("ConvolutionNode conv ") && $0.contains("s8") })
        #expect(graph.nodeSummary.contains { $0.hasPrefix("ConvolutionNode projection") && $0.contains("u8") })
        let largest = float.map(abs).max()!
        let worst = zip(float, integer).map { abs($0 - $1) }.max()!
        #expect(worst <= 0.03 * largest, "int8 differs from fp32 by \(worst) with values up to \(largest)")
        #expect(relativeError(integer, float) < 0.02)
    }

    @Test("ranges apply only to the network they were measured on, and are measured in fp32")
    func rangesAreChecked() throws {
        let plain = try Network(seed: 3).ranges(residual: false)
        #expect(throws: TensorError.self) { try Network(seed: 3).run(residual: true, quantization: plain) }
        let graph = Graph(computesGradients: false, precision: .bf16)
        let x = graph.input([1, 3, 4, 4])
        try graph.plan(keep: [relu(x)])
        var ranges = ActivationRanges(for: graph)
        #expect(throws: TensorError.self) { try graph.measureRanges(into: &ranges) }
    }
}

private extension Parameter {
    var values: [Float] { Array(UnsafeBufferPointer(start: value.floats, count: count)) }
}
