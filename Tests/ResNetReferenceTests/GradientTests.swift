// Finite-difference checks of every backward function in `Reference`.
//
// Each check uses the scalar loss L = sum(R ⊙ f(x)) with a fixed random R, so
// the gradient of every output element is exercised, and compares the analytic
// gradient `a` (the backward function fed with dy = R) with the central
// difference `n` of L: ||a - n|| / max(||n||, 1e-6) < 1e-3.

import Testing
import ResNetReference

// MARK: - Helpers

/// Tiny deterministic generator (SplitMix64), so every run sees the same numbers.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float {
        let unit = Double(next() >> 11) / Double(1 << 53)
        return low + Float(unit) * (high - low)
    }

    mutating func floats(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }

    mutating func tensor(_ shape: [Int]) -> RefTensor {
        RefTensor(shape: shape, data: floats(shape.reduce(1, *)))
    }

    /// Values at least `spacing` apart from each other (a shuffled ramp), so
    /// max pooling has a unique maximum that a small step cannot change.
    mutating func distinctTensor(_ shape: [Int], spacing: Float = 0.01) -> RefTensor {
        let count = shape.reduce(1, *)
        var values = (0..<count).map { Float($0 - count / 2) * spacing }
        for i in stride(from: count - 1, to: 0, by: -1) {
            values.swapAt(i, Int(next() % UInt64(i + 1)))
        }
        return RefTensor(shape: shape, data: values)
    }

    /// Values of random sign with magnitude at least 0.05, away from ReLU's kink.
    mutating func awayFromZero(_ shape: [Int]) -> RefTensor {
        RefTensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
            (next() & 1 == 0 ? -1 : 1) * uniform(0.05, 1)
        })
    }

    /// A dropout mask of 0s and 1s.
    mutating func mask(_ count: Int) -> [Float] {
        (0..<count).map { _ in next() % 3 == 0 ? 0 : 1 }
    }
}

/// L = sum(R ⊙ y), in Double.
func weightedSum(_ y: RefTensor, _ r: RefTensor) -> Double {
    precondition(y.shape == r.shape, "weightedSum: shapes \(y.shape) and \(r.shape) differ")
    return zip(y.data, r.data).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

func weightedSum(_ y: [Float], _ r: [Float]) -> Double {
    precondition(y.count == r.count)
    return zip(y, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

func norm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }

/// ||a - n|| / max(||n||, 1e-6).
func relativeError(_ analytic: [Float], _ numerical: [Float]) -> Double {
    let difference = zip(analytic, numerical).map { $0 - $1 }
    return norm(difference) / max(norm(numerical), 1e-6)
}

/// Compares `analytic` with the central-difference gradient of `f` at `x`.
func expectGradient(_ analytic: [Float]?, at x: [Float], _ what: String, step: Double = 1e-3,
                    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Float]) -> Double) {
    guard let analytic else {
        Issue.record("\(what): no analytic gradient", sourceLocation: sourceLocation)
        return
    }
    #expect(analytic.count == x.count, "\(what): gradient has \(analytic.count) values, input \(x.count)",
            sourceLocation: sourceLocation)
    let numerical = Reference.numericalGradient(of: f, at: x, step: step)
    let error = relativeError(analytic, numerical)
    #expect(norm(numerical) > 1e-3, "\(what): numerical gradient is ~0, the check proves nothing",
            sourceLocation: sourceLocation)
    #expect(error < 1e-3, "\(what): relative error \(error)", sourceLocation: sourceLocation)
}

/// Kernel, stride and padding of a convolution or pooling case.
struct WindowCase: Sendable, CustomTestStringConvertible {
    var kernel: (Int, Int)
    var stride: (Int, Int)
    var padding: (Int, Int)
    var testDescription: String { "k\(kernel) s\(stride) p\(padding)" }

    init(_ k: (Int, Int), _ s: (Int, Int), _ p: (Int, Int)) { kernel = k; stride = s; padding = p }
}

let convCases: [WindowCase] = [
    WindowCase((1, 1), (1, 1), (0, 0)),
    WindowCase((1, 1), (2, 2), (0, 0)),
    WindowCase((3, 3), (1, 1), (0, 0)),
    WindowCase((3, 3), (1, 1), (1, 1)),
    WindowCase((3, 3), (2, 2), (0, 0)),
    WindowCase((3, 3), (2, 2), (1, 1)),
    WindowCase((3, 1), (2, 1), (1, 0)),  // non-square kernel, mixed stride and padding
]

let poolCases: [WindowCase] = [
    WindowCase((1, 1), (2, 2), (0, 0)),
    WindowCase((2, 2), (2, 2), (0, 0)),
    WindowCase((3, 3), (1, 1), (1, 1)),
    WindowCase((3, 3), (2, 2), (1, 1)),
    WindowCase((3, 3), (2, 2), (0, 0)),
    WindowCase((3, 2), (1, 2), (1, 0)),
]

// MARK: - Gradient checks

@Suite("Finite-difference gradient checks")
struct GradientTests {

    @Test("conv2dBackward", arguments: convCases, [false, true])
    func conv2d(_ config: WindowCase, hasBias: Bool) {
        var rng = SplitMix64(seed: 1)
        let x = rng.tensor([2, 3, 5, 7])
        let w = rng.tensor([4, 3, config.kernel.0, config.kernel.1])
        let bias: [Float]? = hasBias ? rng.floats(4) : nil
        func forward(_ x: RefTensor, _ w: RefTensor, _ b: [Float]?) -> RefTensor {
            Reference.conv2d(x, weight: w, bias: b, stride: config.stride, padding: config.padding)
        }
        let r = rng.tensor(forward(x, w, bias).shape)
        let g = Reference.conv2dBackward(x, weight: w, stride: config.stride, padding: config.padding,
                                         outputGradient: r, hasBias: hasBias)

        expectGradient(g.input.data, at: x.data, "input") {
            weightedSum(forward(RefTensor(shape: x.shape, data: $0), w, bias), r)
        }
        expectGradient(g.weight.data, at: w.data, "weight") {
            weightedSum(forward(x, RefTensor(shape: w.shape, data: $0), bias), r)
        }
        if let bias {
            expectGradient(g.bias, at: bias, "bias") { weightedSum(forward(x, w, $0), r) }
        } else {
            #expect(g.bias == nil)
        }
    }

    @Test("batchNormTrainingBackward", arguments: [[2, 3, 5, 7], [4, 2, 1, 1], [1, 2, 3, 1]])
    func batchNormTraining(shape: [Int]) {
        var rng = SplitMix64(seed: 2)
        let c = shape[1]
        let x = rng.tensor(shape)
        let scale = rng.floats(c, 0.5, 1.5), shift = rng.floats(c)
        let epsilon: Float = 1e-3
        let r = rng.tensor(shape)
        let g = Reference.batchNormTrainingBackward(x, scale: scale, epsilon: epsilon, outputGradient: r)
        func loss(_ x: RefTensor, _ scale: [Float], _ shift: [Float]) -> Double {
            weightedSum(Reference.batchNormTraining(x, scale: scale, shift: shift, epsilon: epsilon).output, r)
        }
        expectGradient(g.input.data, at: x.data, "input") { loss(RefTensor(shape: shape, data: $0), scale, shift) }
        expectGradient(g.scale, at: scale, "scale") { loss(x, $0, shift) }
        expectGradient(g.shift, at: shift, "shift") { loss(x, scale, $0) }
    }

    @Test("batchNormInferenceBackward")
    func batchNormInference() {
        var rng = SplitMix64(seed: 3)
        let shape = [2, 3, 5, 7]
        let x = rng.tensor(shape)
        let scale = rng.floats(3, 0.5, 1.5), shift = rng.floats(3)
        let mean = rng.floats(3, -0.5, 0.5), variance = rng.floats(3, 0.5, 2)
        let epsilon: Float = 1e-5
        let r = rng.tensor(shape)
        let g = Reference.batchNormInferenceBackward(x, scale: scale, mean: mean, variance: variance,
                                                     epsilon: epsilon, outputGradient: r)
        func loss(_ x: RefTensor, _ scale: [Float], _ shift: [Float]) -> Double {
            weightedSum(Reference.batchNormInference(x, scale: scale, shift: shift, mean: mean,
                                                     variance: variance, epsilon: epsilon), r)
        }
        expectGradient(g.input.data, at: x.data, "input") { loss(RefTensor(shape: shape, data: $0), scale, shift) }
        expectGradient(g.scale, at: scale, "scale") { loss(x, $0, shift) }
        expectGradient(g.shift, at: shift, "shift") { loss(x, scale, $0) }
    }

    @Test("reluBackward")
    func relu() {
        var rng = SplitMix64(seed: 4)
        let x = rng.awayFromZero([2, 3, 5, 7])
        let r = rng.tensor(x.shape)
        let g = Reference.reluBackward(x, outputGradient: r)
        expectGradient(g.data, at: x.data, "input") {
            weightedSum(Reference.relu(RefTensor(shape: x.shape, data: $0)), r)
        }
    }

    @Test("padChannelsBackward", arguments: [1, 2, 3])
    func padChannels(stride: Int) {
        var rng = SplitMix64(seed: 5)
        let x = rng.tensor([2, 3, 5, 7])
        let r = rng.tensor(Reference.padChannels(x, to: 5, stride: stride).shape)
        let g = Reference.padChannelsBackward(inputShape: x.shape, stride: stride, outputGradient: r)
        #expect(g.shape == x.shape)
        expectGradient(g.data, at: x.data, "input") {
            weightedSum(Reference.padChannels(RefTensor(shape: x.shape, data: $0), to: 5, stride: stride), r)
        }
    }

    @Test("maxPool2dBackward", arguments: poolCases)
    func maxPool(_ config: WindowCase) {
        var rng = SplitMix64(seed: 6)
        let x = rng.distinctTensor([2, 3, 5, 7])
        func forward(_ x: RefTensor) -> RefTensor {
            Reference.maxPool2d(x, kernel: config.kernel, stride: config.stride, padding: config.padding)
        }
        let r = rng.tensor(forward(x).shape)
        let g = Reference.maxPool2dBackward(x, kernel: config.kernel, stride: config.stride,
                                            padding: config.padding, outputGradient: r)
        expectGradient(g.data, at: x.data, "input") { weightedSum(forward(RefTensor(shape: x.shape, data: $0)), r) }
    }

    @Test("avgPool2dBackward", arguments: poolCases, [true, false])
    func avgPool(_ config: WindowCase, countIncludesPadding: Bool) {
        var rng = SplitMix64(seed: 7)
        let x = rng.tensor([2, 3, 5, 7])
        func forward(_ x: RefTensor) -> RefTensor {
            Reference.avgPool2d(x, kernel: config.kernel, stride: config.stride, padding: config.padding,
                                countIncludesPadding: countIncludesPadding)
        }
        let r = rng.tensor(forward(x).shape)
        let g = Reference.avgPool2dBackward(inputShape: x.shape, kernel: config.kernel, stride: config.stride,
                                            padding: config.padding, countIncludesPadding: countIncludesPadding,
                                            outputGradient: r)
        expectGradient(g.data, at: x.data, "input") { weightedSum(forward(RefTensor(shape: x.shape, data: $0)), r) }
    }

    @Test("globalAvgPool2dBackward")
    func globalAvgPool() {
        var rng = SplitMix64(seed: 8)
        let x = rng.tensor([2, 3, 5, 7])
        let r = rng.tensor([2, 3, 1, 1])
        let g = Reference.globalAvgPool2dBackward(inputShape: x.shape, outputGradient: r)
        expectGradient(g.data, at: x.data, "input") {
            weightedSum(Reference.globalAvgPool2d(RefTensor(shape: x.shape, data: $0)), r)
        }
    }

    @Test("linearBackward", arguments: [false, true])
    func linear(hasBias: Bool) {
        var rng = SplitMix64(seed: 9)
        let x = rng.tensor([3, 5])
        let w = rng.tensor([4, 5])
        let bias: [Float]? = hasBias ? rng.floats(4) : nil
        let r = rng.tensor([3, 4])
        let g = Reference.linearBackward(x, weight: w, outputGradient: r, hasBias: hasBias)
        expectGradient(g.input.data, at: x.data, "input") {
            weightedSum(Reference.linear(RefTensor(shape: x.shape, data: $0), weight: w, bias: bias), r)
        }
        expectGradient(g.weight.data, at: w.data, "weight") {
            weightedSum(Reference.linear(x, weight: RefTensor(shape: w.shape, data: $0), bias: bias), r)
        }
        if let bias {
            expectGradient(g.bias, at: bias, "bias") { weightedSum(Reference.linear(x, weight: w, bias: $0), r) }
        } else {
            #expect(g.bias == nil)
        }
    }

    @Test("dropoutBackward and channelDropoutBackward")
    func dropout() {
        var rng = SplitMix64(seed: 10)
        let x = rng.tensor([2, 3, 5, 7])
        let r = rng.tensor(x.shape)
        let rate: Float = 0.3

        let mask = rng.mask(x.count)
        let g = Reference.dropoutBackward(mask: mask, rate: rate, outputGradient: r)
        expectGradient(g.data, at: x.data, "dropout input") {
            weightedSum(Reference.dropout(RefTensor(shape: x.shape, data: $0), mask: mask, rate: rate), r)
        }

        let channelMask = rng.mask(2 * 3)
        let gc = Reference.channelDropoutBackward(mask: channelMask, rate: rate, outputGradient: r)
        expectGradient(gc.data, at: x.data, "channel dropout input") {
            weightedSum(Reference.channelDropout(RefTensor(shape: x.shape, data: $0), mask: channelMask, rate: rate), r)
        }
    }

    @Test("softmaxBackward")
    func softmax() {
        var rng = SplitMix64(seed: 11)
        let x = RefTensor(shape: [3, 5], data: rng.floats(15, -2, 2))
        let r = rng.tensor([3, 5])
        let g = Reference.softmaxBackward(output: Reference.softmax(x), outputGradient: r)
        expectGradient(g.data, at: x.data, "input") {
            weightedSum(Reference.softmax(RefTensor(shape: x.shape, data: $0)), r)
        }
    }

    @Test("softmaxCrossEntropyBackward", arguments: [Float(0), 0.1])
    func crossEntropy(labelSmoothing: Float) {
        var rng = SplitMix64(seed: 12)
        let logits = RefTensor(shape: [3, 5], data: rng.floats(15, -2, 2))
        let labels = [4, 0, 2]
        let g = Reference.softmaxCrossEntropyBackward(logits: logits, labels: labels, labelSmoothing: labelSmoothing)
        expectGradient(g.data, at: logits.data, "logits") {
            Double(Reference.softmaxCrossEntropy(logits: RefTensor(shape: logits.shape, data: $0),
                                                 labels: labels, labelSmoothing: labelSmoothing))
        }
    }
}
