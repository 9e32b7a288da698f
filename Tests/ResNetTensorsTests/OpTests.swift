import ResNetEngine
import ResNetReference
@testable import ResNetTensors
import Testing

struct ConvolutionCase: CustomStringConvertible, Sendable {
    var input: [Int], outChannels: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), bias: Bool
    var description: String { "x\(input) o\(outChannels) k\(kernel) s\(stride) p\(padding) bias=\(bias)" }
}

@Suite("oneDNN ops agree with the Swift reference and with finite differences")
struct OpTests {
    static let convolutions: [ConvolutionCase] = [
        .init(input: [2, 3, 5, 7], outChannels: 4, kernel: (3, 3), stride: (1, 1), padding: (1, 1), bias: true),
        .init(input: [2, 5, 6, 6], outChannels: 8, kernel: (1, 1), stride: (2, 2), padding: (0, 0), bias: false),
        .init(input: [3, 16, 9, 9], outChannels: 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1), bias: false),
        .init(input: [2, 16, 8, 8], outChannels: 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1), bias: true),
        .init(input: [2, 32, 7, 5], outChannels: 64, kernel: (1, 1), stride: (2, 2), padding: (0, 0), bias: false),
        .init(input: [1, 4, 11, 9], outChannels: 6, kernel: (3, 1), stride: (2, 1), padding: (1, 0), bias: true),
        // Winograd shapes (3x3, stride 1, >= 32 channels, <= 16x16).
        .init(input: [2, 32, 8, 8], outChannels: 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1), bias: false),
        .init(input: [2, 64, 7, 9], outChannels: 64, kernel: (3, 3), stride: (1, 1), padding: (1, 1), bias: true),
    ]

    @Test("convolution", arguments: convolutions, Precision.allCases)
    func convolution(_ c: ConvolutionCase, precision: Precision) throws {
        var random = TestRandom(1)
        let weightShape = [c.outChannels, c.input[1], c.kernel.0, c.kernel.1]
        let weight = parameter(weightShape, random.uniform(weightShape.reduce(1, *), -0.5...0.5))
        let bias = c.bias ? parameter([c.outChannels], random.uniform(c.outChannels)) : nil
        let x = random.uniform(c.input.reduce(1, *))
        let refWeight = RefTensor(shape: weightShape, data: weight.values)
        try OpCheck(
            inputShape: c.input, precision: precision, input: x, parameters: [weight] + (bias.map { [$0] } ?? []),
            build: { try conv2d($0, weight: weight, bias: bias, stride: c.stride, padding: c.padding) },
            reference: { Reference.conv2d(RefTensor(shape: c.input, data: $0), weight: refWeight, bias: bias?.values, stride: c.stride, padding: c.padding) },
            referenceBackward: { x, dy in
                let g = Reference.conv2dBackward(RefTensor(shape: c.input, data: x), weight: refWeight, stride: c.stride,
                                                 padding: c.padding, outputGradient: dy, hasBias: c.bias)
                return (g.input.data, [g.weight.data] + (g.bias.map { [$0] } ?? []))
            }
        ).run()
    }

    @Test("linear")
    func linearLayer() throws {
        var random = TestRandom(2)
        for (n, i, o) in [(3, 5, 4), (8, 64, 10)] {
            let weight = parameter([o, i], random.uniform(o * i))
            let bias = parameter([o], random.uniform(o))
            let x = random.uniform(n * i)
            let refWeight = RefTensor(shape: [o, i], data: weight.values)
            try OpCheck(
                inputShape: [n, i], input: x, parameters: [weight, bias],
                build: { try linear($0, weight: weight, bias: bias) },
                reference: { Reference.linear(RefTensor(shape: [n, i], data: $0), weight: refWeight, bias: bias.values) },
                referenceBackward: { x, dy in
                    let g = Reference.linearBackward(RefTensor(shape: [n, i], data: x), weight: refWeight, outputGradient: dy, hasBias: true)
                    return (g.input.data, [g.weight.data, g.bias!])
                }
            ).run()
        }
    }

    @Test("batch norm with batch statistics", arguments: TestLayout.allCases, Precision.allCases)
    func batchNormTraining(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(3)
        for shape in [[4, 16, 5, 5], [3, 5, 4, 6]] {
            let c = shape[1]
            let scale = parameter([c], random.uniform(c, 0.5...1.5)), shift = parameter([c], random.uniform(c))
            let mean = parameter([c], [Float](repeating: 0, count: c), trainable: false)
            let variance = parameter([c], [Float](repeating: 1, count: c), trainable: false)
            let x = random.uniform(shape.reduce(1, *), -2...3)
            let (g, b) = (scale.values, shift.values)
            try OpCheck(
                inputShape: shape, layout: layout, precision: precision, input: x, parameters: [scale, shift],
                build: { try batchNorm($0, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                                       statistics: .batch, updateRunningStatistics: false) },
                reference: { Reference.batchNormTraining(RefTensor(shape: shape, data: $0), scale: g, shift: b, epsilon: 1e-5).output },
                referenceBackward: { x, dy in
                    let r = Reference.batchNormTrainingBackward(RefTensor(shape: shape, data: x), scale: g, epsilon: 1e-5, outputGradient: dy)
                    return (r.input.data, [r.scale, r.shift])
                }
            ).run()
        }
    }

    @Test("batch norm with running statistics")
    func batchNormInference() throws {
        var random = TestRandom(4)
        let shape = [3, 16, 4, 5], c = 16
        let scale = parameter([c], random.uniform(c, 0.5...1.5)), shift = parameter([c], random.uniform(c))
        let mean = parameter([c], random.uniform(c), trainable: false)
        let variance = parameter([c], random.uniform(c, 0.5...2), trainable: false)
        let (g, b, m, v) = (scale.values, shift.values, mean.values, variance.values)
        try OpCheck(
            inputShape: shape, input: random.uniform(shape.reduce(1, *)), parameters: [scale, shift],
            build: { try batchNorm($0, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                                   statistics: .running, updateRunningStatistics: true) },
            reference: { Reference.batchNormInference(RefTensor(shape: shape, data: $0), scale: g, shift: b, mean: m, variance: v, epsilon: 1e-5) },
            referenceBackward: { x, dy in
                let r = Reference.batchNormInferenceBackward(RefTensor(shape: shape, data: x), scale: g, mean: m, variance: v, epsilon: 1e-5, outputGradient: dy)
                return (r.input.data, [r.scale, r.shift])
            }
        ).run()
        #expect(mean.values == m && variance.values == v, "running statistics must not move when they are used")
    }

    @Test("batch norm updates running statistics with momentum and the unbiased variance")
    func runningStatistics() throws {
        var random = TestRandom(5)
        let shape = [4, 3, 2, 5], c = 3
        let scale = Parameter(shape: [c], initialValue: 1), shift = Parameter(shape: [c])
        let mean = parameter([c], [0.5, -0.5, 0], trainable: false)
        let variance = parameter([c], [1, 2, 3], trainable: false)
        let graph = Graph(computesGradients: false)
        let x = graph.input(shape)
        let y = try batchNorm(x, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                              statistics: .batch, updateRunningStatistics: true, momentum: 0.1)
        try graph.plan(keep: [y])
        let data = random.uniform(shape.reduce(1, *), 0...4)
        try graph.setInput(x, data)
        graph.forward()
        let batch = Reference.batchNormTraining(RefTensor(shape: shape, data: data), scale: [1, 1, 1], shift: [0, 0, 0], epsilon: 1e-5)
        let m = Float(shape[0] * shape[2] * shape[3])
        var expectedMean: [Float] = [0.5, -0.5, 0], expectedVariance: [Float] = [1, 2, 3]
        Reference.updateRunningStatistics(running: &expectedMean, batch: batch.mean, momentum: 0.1)
        Reference.updateRunningStatistics(running: &expectedVariance, batch: batch.variance.map { $0 * m / (m - 1) }, momentum: 0.1)
        #expect(relativeError(mean.values, expectedMean) < 1e-5)
        #expect(relativeError(variance.values, expectedVariance) < 1e-5)
    }

    @Test("batch norm + ReLU is fused into one primitive and stays exact", arguments: TestLayout.allCases)
    func fusedBatchNormReLU(_ layout: TestLayout) throws {
        var random = TestRandom(6)
        let shape = [2, 16, 5, 3], c = 16
        // Each channel holds a shuffled symmetric ramp and the shift is 0, so no normalized value
        // is near ReLU's kink and finite differences stay on one side of it.
        let scale = parameter([c], random.uniform(c, 0.5...1.5)), shift = Parameter(shape: [c])
        let mean = Parameter(shape: [c], isTrainable: false), variance = Parameter(shape: [c], isTrainable: false, initialValue: 1)
        let (g, b) = (scale.values, shift.values)
        let perChannel = shape[0] * shape[2] * shape[3], plane = shape[2] * shape[3]
        var input = [Float](repeating: 0, count: shape.reduce(1, *))
        for channel in 0..<c {
            var ramp = (0..<perChannel).map { Float($0) - Float(perChannel - 1) / 2 }
            ramp.shuffle(using: &random.generator)
            for (j, v) in ramp.enumerated() { input[(j / plane * c + channel) * plane + j % plane] = 0.1 * v + Float(channel) }
        }
        var fusedGraph: Graph?
        try OpCheck(
            inputShape: shape, layout: layout, input: input, parameters: [scale, shift],
            build: { x in
                fusedGraph = x.graph
                return relu(try batchNorm(x, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                                          statistics: .batch, updateRunningStatistics: false))
            },
            reference: { Reference.relu(Reference.batchNormTraining(RefTensor(shape: shape, data: $0), scale: g, shift: b, epsilon: 1e-5).output) },
            referenceBackward: { x, dy in
                let normalized = Reference.batchNormTraining(RefTensor(shape: shape, data: x), scale: g, shift: b, epsilon: 1e-5).output
                let throughReLU = Reference.reluBackward(normalized, outputGradient: dy)
                let r = Reference.batchNormTrainingBackward(RefTensor(shape: shape, data: x), scale: g, epsilon: 1e-5, outputGradient: throughReLU)
                return (r.input.data, [r.scale, r.shift])
            },
            finiteDifferenceStep: 1e-3
        ).run()
        let summary = fusedGraph!.nodeSummary
        #expect(!summary.contains { $0.hasPrefix("ReLUNode") }, "ReLU should be fused: \(summary)")
    }

    @Test("relu", arguments: TestLayout.allCases, Precision.allCases)
    func reluOp(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(7)
        let shape = [2, 16, 3, 5]
        try OpCheck(
            inputShape: shape, layout: layout, precision: precision, input: random.spaced(shape.reduce(1, *)),
            build: { relu($0) },
            reference: { Reference.relu(RefTensor(shape: shape, data: $0)) },
            referenceBackward: { x, dy in (Reference.reluBackward(RefTensor(shape: shape, data: x), outputGradient: dy).data, []) }
        ).run()
    }

    @Test("add, with the input used twice so that gradients accumulate", arguments: TestLayout.allCases, Precision.allCases)
    func addOp(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(8)
        let shape = [2, 16, 3, 5]
        // y = x + relu(x): x feeds two consumers.
        try OpCheck(
            inputShape: shape, layout: layout, precision: precision, input: random.spaced(shape.reduce(1, *)),
            build: { try add($0, relu($0)) },
            reference: { let x = RefTensor(shape: shape, data: $0); return Reference.add(x, Reference.relu(x)) },
            referenceBackward: { x, dy in
                let viaReLU = Reference.reluBackward(RefTensor(shape: shape, data: x), outputGradient: dy)
                return (zip(dy.data, viaReLU.data).map { $0 + $1 }, [])
            }
        ).run()
    }

    @Test("add + ReLU fuse in training; the backward pass reads the ReLU's output", arguments: TestLayout.allCases, Precision.allCases)
    func addReLUOp(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(18)
        let shape = [2, 16, 3, 5]
        // y = relu(x + relu(x)): x feeds the sum and the inner ReLU, as a block input feeds
        // its shortcut and its first convolution.
        var fusedGraph: Graph?
        try OpCheck(
            inputShape: shape, layout: layout, precision: precision, input: random.spaced(shape.reduce(1, *)),
            build: { x in
                fusedGraph = x.graph
                return relu(try add(x, relu(x)))
            },
            reference: { let x = RefTensor(shape: shape, data: $0); return Reference.relu(Reference.add(x, Reference.relu(x))) },
            referenceBackward: { x, dy in
                let input = RefTensor(shape: shape, data: x)
                let sum = Reference.add(input, Reference.relu(input))
                let throughSum = Reference.reluBackward(sum, outputGradient: dy)
                let viaInnerReLU = Reference.reluBackward(input, outputGradient: throughSum)
                return (zip(throughSum.data, viaInnerReLU.data).map { $0 + $1 }, [])
            }
        ).run()
        let summary = fusedGraph!.nodeSummary
        #expect(summary.filter { $0.hasPrefix("ReLUNode") }.count == 1, "the outer ReLU should be fused: \(summary)")
        // relu(x + x): both operands are one value, so the gradient is added to itself.
        try OpCheck(
            inputShape: shape, layout: layout, precision: precision, input: random.spaced(shape.reduce(1, *)),
            build: { x in relu(try add(x, x)) },
            reference: { let x = RefTensor(shape: shape, data: $0); return Reference.relu(Reference.add(x, x)) },
            referenceBackward: { x, dy in
                let input = RefTensor(shape: shape, data: x)
                let throughSum = Reference.reluBackward(Reference.add(input, input), outputGradient: dy)
                return (throughSum.data.map { 2 * $0 }, [])
            }
        ).run()
    }

    @Test("a training graph shares the memory of values no backward step reads, and nothing changes")
    func trainingValueSharing() throws {
        var random = TestRandom(19)
        let shape = [2, 16, 6, 6], count = shape.reduce(1, *)
        let data = random.uniform(count), seed = random.uniform(count)
        let (scale, shift) = (random.uniform(shape[1]), random.uniform(shape[1]))
        func run(sharing: Bool) throws -> (graph: Graph, normalized: Tensor, gradient: [Float]) {
            let graph = Graph(sharesMemory: sharing)
            let x = graph.input(shape, requiresGradient: true)
            func normalized(_ input: Tensor) throws -> Tensor {
                try batchNorm(input, scale: parameter([shape[1]], scale), shift: parameter([shape[1]], shift),
                              runningMean: parameter([shape[1]], .init(repeating: 0, count: shape[1]), trainable: false),
                              runningVariance: parameter([shape[1]], .init(repeating: 1, count: shape[1]), trainable: false),
                              statistics: .batch, updateRunningStatistics: false)
            }
            // Two residual steps. h and h2 feed only additions, whose backward passes do not read
            // their inputs, and batch norm's backward reads its input, not its output: they are
            // needed only going forward, so h2 can take h's bytes.
            let h = try normalized(x)
            let y = relu(try add(h, x))
            let z = relu(try add(try normalized(y), y))
            try graph.plan(loss: z)
            try graph.setInput(x, data)
            graph.forward()
            graph.backward(seed: seed)
            return (graph, h, try graph.gradient(of: x))
        }
        let shared = try run(sharing: true), separate = try run(sharing: false)
        #expect(shared.gradient == separate.gradient)
        #expect(try separate.graph.read(separate.normalized).count == count)
        #expect(throws: TensorError.self) { try shared.graph.read(shared.normalized) }
        #expect(shared.graph.allocatedBytes < separate.graph.allocatedBytes)
    }

    @Test("shortcut option A: subsample and zero-pad channels", arguments: TestLayout.allCases, Precision.allCases)
    func padChannelsOp(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(9)
        for (shape, channels, stride) in [([2, 16, 8, 8], 32, 2), ([2, 16, 7, 5], 32, 2), ([1, 5, 4, 4], 9, 1)] {
            try OpCheck(
                inputShape: shape, layout: layout, precision: precision, input: random.uniform(shape.reduce(1, *)),
                build: { try padChannels($0, to: channels, stride: stride) },
                reference: { Reference.padChannels(RefTensor(shape: shape, data: $0), to: channels, stride: stride) },
                referenceBackward: { _, dy in (Reference.padChannelsBackward(inputShape: shape, stride: stride, outputGradient: dy).data, []) }
            ).run()
        }
    }

    @Test("max pooling", arguments: TestLayout.allCases, Precision.allCases)
    func maxPool(_ layout: TestLayout, precision: Precision) throws {
        var random = TestRandom(10)
        // At bf16 the inputs are distinct integers below 256, which bfloat16 holds exactly:
        // rounding must not create ties that move the maximum.
        let first = precision == .bf16 ? [1, 16, 4, 4] : [2, 16, 7, 7]
        for (shape, k, s, p) in [(first, (3, 3), (2, 2), (1, 1)), ([1, 3, 6, 5], (2, 2), (2, 2), (0, 0))] {
            let count = shape.reduce(1, *)
            let input = precision == .bf16 ? random.spaced(count, gap: 1) : random.spaced(count)
            try OpCheck(
                inputShape: shape, layout: layout, precision: precision, input: input,
                build: { try maxPool2d($0, kernel: k, stride: s, padding: p) },
                reference: { Reference.maxPool2d(RefTensor(shape: shape, data: $0), kernel: k, stride: s, padding: p) },
                referenceBackward: { x, dy in (Reference.maxPool2dBackward(RefTensor(shape: shape, data: x), kernel: k, stride: s, padding: p, outputGradient: dy).data, []) },
                finiteDifferenceStep: 1e-3
            ).run()
        }
    }

    @Test("average pooling, with and without padding in the count", arguments: [true, false])
    func avgPool(_ includePadding: Bool) throws {
        var random = TestRandom(11)
        for (shape, k, s, p) in [([2, 16, 7, 7], (3, 3), (2, 2), (1, 1)), ([1, 3, 6, 5], (2, 2), (1, 2), (0, 0))] {
            try OpCheck(
                inputShape: shape, layout: .blocked16, input: random.uniform(shape.reduce(1, *)),
                build: { try avgPool2d($0, kernel: k, stride: s, padding: p, countIncludesPadding: includePadding) },
                reference: { Reference.avgPool2d(RefTensor(shape: shape, data: $0), kernel: k, stride: s, padding: p, countIncludesPadding: includePadding) },
                referenceBackward: { _, dy in (Reference.avgPool2dBackward(inputShape: shape, kernel: k, stride: s, padding: p, countIncludesPadding: includePadding, outputGradient: dy).data, []) }
            ).run()
        }
    }

    @Test("global average pooling and flatten", arguments: TestLayout.allCases)
    func globalPoolAndFlatten(_ layout: TestLayout) throws {
        var random = TestRandom(12)
        let shape = [3, 16, 5, 7]
        try OpCheck(
            inputShape: shape, layout: layout, input: random.uniform(shape.reduce(1, *)),
            build: { try flatten(globalAvgPool2d($0)) },
            reference: { let r = Reference.globalAvgPool2d(RefTensor(shape: shape, data: $0)); return RefTensor(shape: [3, 16], data: r.data) },
            referenceBackward: { _, dy in (Reference.globalAvgPool2dBackward(inputShape: shape, outputGradient: RefTensor(shape: [3, 16, 1, 1], data: dy.data)).data, []) }
        ).run()
        try OpCheck(
            inputShape: shape, layout: layout, input: random.uniform(shape.reduce(1, *)),
            build: { try flatten($0) },
            reference: { RefTensor(shape: [3, 16 * 35], data: $0) },
            referenceBackward: { _, dy in (dy.data, []) }
        ).run()
    }

    @Test("softmax")
    func softmaxOp() throws {
        var random = TestRandom(13)
        let shape = [4, 10]
        try OpCheck(
            inputShape: shape, input: random.uniform(40, -3...3),
            build: { try softmax($0) },
            reference: { Reference.softmax(RefTensor(shape: shape, data: $0)) },
            referenceBackward: { x, dy in (Reference.softmaxBackward(output: Reference.softmax(RefTensor(shape: shape, data: x)), outputGradient: dy).data, []) }
        ).run()
    }

    @Test("softmax cross-entropy, with and without label smoothing", arguments: [Float(0), 0.1])
    func crossEntropy(_ smoothing: Float) throws {
        var random = TestRandom(14)
        let (n, k) = (6, 10)
        let labels: [Int32] = [0, 3, 9, 3, 5, 1]
        let logits = random.uniform(n * k, -3...3)
        let graph = Graph()
        let x = graph.input([n, k], requiresGradient: true)
        let l = graph.labels(count: n)
        let loss = try softmaxCrossEntropy(x, labels: l, labelSmoothing: smoothing)
        try graph.plan(loss: loss)
        try graph.setInput(x, logits)
        try graph.setLabels(l, labels)
        graph.forward()
        let reference = RefTensor(shape: [n, k], data: logits)
        let expected = Reference.softmaxCrossEntropy(logits: reference, labels: labels.map(Int.init), labelSmoothing: smoothing)
        #expect(abs(try graph.scalar(loss) - expected) / expected < 1e-5)
        graph.backward()
        let expectedGradient = Reference.softmaxCrossEntropyBackward(logits: reference, labels: labels.map(Int.init), labelSmoothing: smoothing)
        #expect(relativeError(try graph.gradient(of: x), expectedGradient.data) < 1e-4)
        // Finite differences on the oneDNN forward.
        let direction = random.uniform(n * k)
        let step: Float = 1e-2
        func lossAt(_ v: [Float]) throws -> Double { try graph.setInput(x, v); graph.forward(); return Double(try graph.scalar(loss)) }
        let numeric = (try lossAt(zip(logits, direction).map { $0 + step * $1 }) - lossAt(zip(logits, direction).map { $0 - step * $1 })) / (2 * Double(step))
        let exact = zip(expectedGradient.data, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(numeric - exact) / abs(exact) < 1e-2)
    }

    @Test("dropout and channel dropout: masks are 0 or 1/(1-p), gradients use the same mask", arguments: [false, true])
    func dropoutOp(_ channelWise: Bool) throws {
        var random = TestRandom(15)
        let shape = [4, 16, 6, 6], rate: Float = 0.3
        let graph = Graph(seed: 99)
        let x = graph.input(shape, requiresGradient: true)
        let y = channelWise ? try channelDropout(x, rate: rate) : try dropout(x, rate: rate)
        try graph.plan(loss: y, keep: [y])
        let data = random.uniform(shape.reduce(1, *), 0.1...1)
        try graph.setInput(x, data)
        graph.forward()
        let out = try graph.read(y)
        // Recover the mask from the output and check it against the reference.
        let mask = zip(out, data).map { $0 / $1 * (1 - rate) }
        #expect(mask.allSatisfy { abs($0) < 1e-5 || abs($0 - 1) < 1e-5 })
        let binary = mask.map { $0 > 0.5 ? Float(1) : 0 }
        let dropped = 1 - binary.reduce(0, +) / Float(binary.count)
        let draws = Float(channelWise ? shape[0] * shape[1] : binary.count)
        #expect(abs(dropped - rate) < 4 * (rate * (1 - rate) / draws).squareRoot(), "dropped fraction \(dropped)")
        if channelWise {
            let plane = shape[2] * shape[3]
            for start in stride(from: 0, to: binary.count, by: plane) {
                #expect(Set(binary[start..<start + plane]).count == 1, "a channel plane is all kept or all dropped")
            }
        }
        let expected = Reference.dropout(RefTensor(shape: shape, data: data), mask: binary, rate: rate)
        #expect(relativeError(out, expected.data) < 1e-6)
        let dy = random.uniform(shape.reduce(1, *))
        graph.backward(seed: dy)
        let expectedGradient = Reference.dropoutBackward(mask: binary, rate: rate, outputGradient: RefTensor(shape: shape, data: dy))
        #expect(relativeError(try graph.gradient(of: x), expectedGradient.data) < 1e-6)
        graph.forward()
        #expect(try graph.read(y) != out, "a new mask every forward pass")
    }
}

@Suite("The edges: plain and channels-last arrays in and out")
struct EdgeTests {
    @Test("NHWC input and output match NCHW through a blocked convolution")
    func channelsLast() throws {
        var random = TestRandom(20)
        let (n, c, h, w) = (2, 3, 5, 4)
        let nchw = random.uniform(n * c * h * w)
        var nhwc = [Float](repeating: 0, count: nchw.count)
        for i in 0..<n { for j in 0..<c { for y in 0..<h { for x in 0..<w {
            nhwc[((i * h + y) * w + x) * c + j] = nchw[((i * c + j) * h + y) * w + x]
        } } } }
        let weight = parameter([16, c, 3, 3], random.uniform(16 * c * 9))
        let graph = Graph(computesGradients: false)
        let input = graph.input([n, c, h, w])
        let y = try conv2d(input, weight: weight, padding: (1, 1))
        try graph.plan(keep: [y])
        try graph.setInput(input, nchw)
        graph.forward()
        let fromPlain = try graph.read(y)
        let fromPlainNHWC = try graph.read(y, layout: .channelsLast)
        try graph.setInput(input, nhwc, layout: .channelsLast)
        graph.forward()
        #expect(try graph.read(y) == fromPlain)
        #expect(try graph.read(y, layout: .channelsLast) == fromPlainNHWC)
        // The NHWC read is the NCHW one transposed.
        #expect(fromPlainNHWC[((1 * h + 2) * w + 3) * 16 + 7] == fromPlain[((1 * 16 + 7) * h + 2) * w + 3])
        #expect(throws: TensorError.self) { try graph.setInput(input, nchw, layout: .blocked16) }
        #expect(throws: TensorError.wrongElementCount(what: "input [2, 3, 5, 4]", expected: 120, actual: 3)) {
            try graph.setInput(input, [1, 2, 3])
        }
    }
}
