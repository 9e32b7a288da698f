// Forward values checked against numbers computed by hand (or by an
// independent loop in the test), plus the RefTensor basics.

import Testing
import ResNetReference

/// Elementwise comparison with an absolute tolerance.
func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "count \(actual.count) != \(expected.count)", sourceLocation: sourceLocation)
    for (i, (a, e)) in zip(actual, expected).enumerated() where !(abs(a - e) <= tolerance) {
        Issue.record("element \(i): \(a) != \(e)\nactual:   \(actual)\nexpected: \(expected)",
                     sourceLocation: sourceLocation)
        return
    }
}

/// The 4x4 image 1...16 as [1, 1, 4, 4].
let ramp4x4 = RefTensor(shape: [1, 1, 4, 4], data: (1...16).map(Float.init))

@Suite("Forward values")
struct ForwardTests {

    @Test func tensorBasics() {
        var t = RefTensor(zeros: [2, 3, 4, 5])
        #expect(t.count == 120)
        #expect(t.data.allSatisfy { $0 == 0 })
        t[1, 2, 3, 4] = 7
        t[0, 1, 2, 3] = 5
        #expect(t.data[119] == 7)
        #expect(t.data[((0 * 3 + 1) * 4 + 2) * 5 + 3] == 5)
        #expect(t[1, 2, 3, 4] == 7)
        #expect(RefTensor(shape: [2, 2], data: [1, 2, 3, 4]) == RefTensor(shape: [2, 2], data: [1, 2, 3, 4]))
        #expect(RefTensor(shape: [2, 2], data: [1, 2, 3, 4]) != RefTensor(shape: [4], data: [1, 2, 3, 4]))
    }

    @Test("1x1 convolution is a per-pixel matrix product")
    func conv1x1() {
        var rng = SplitMix64(seed: 20)
        let x = rng.tensor([2, 3, 5, 7])
        let w = rng.tensor([4, 3, 1, 1])
        let bias = rng.floats(4)
        let y = Reference.conv2d(x, weight: w, bias: bias, stride: (1, 1), padding: (0, 0))
        #expect(y.shape == [2, 4, 5, 7])
        var expected = [Float]()
        for n in 0..<2 { for o in 0..<4 { for h in 0..<5 { for v in 0..<7 {
            var sum = bias[o]
            for c in 0..<3 { sum += w.data[o * 3 + c] * x.data[((n * 3 + c) * 5 + h) * 7 + v] }
            expected.append(sum)
        } } } }
        expectClose(y.data, expected)
    }

    @Test("3x3 all-ones kernel sums neighbourhoods")
    func conv3x3Ones() {
        let ones = RefTensor(shape: [1, 1, 3, 3], data: [Float](repeating: 1, count: 9))
        // padding 1, stride 1: border windows only see the real pixels.
        let same = Reference.conv2d(ramp4x4, weight: ones, bias: nil, stride: (1, 1), padding: (1, 1))
        #expect(same.shape == [1, 1, 4, 4])
        expectClose(same.data, [14, 24, 30, 22,
                                33, 54, 63, 45,
                                57, 90, 99, 69,
                                46, 72, 78, 54])
        // padding 1, stride 2: windows centred on (0,0), (0,2), (2,0), (2,2).
        let strided = Reference.conv2d(ramp4x4, weight: ones, bias: [0.5], stride: (2, 2), padding: (1, 1))
        #expect(strided.shape == [1, 1, 2, 2])
        expectClose(strided.data, [14.5, 30.5, 57.5, 99.5])
        // no padding, stride 1.
        let valid = Reference.conv2d(ramp4x4, weight: ones, bias: nil, stride: (1, 1), padding: (0, 0))
        #expect(valid.shape == [1, 1, 2, 2])
        expectClose(valid.data, [54, 63, 90, 99])
    }

    @Test("Convolution is cross-correlation (the kernel is not flipped)")
    func crossCorrelation() {
        // Only the top-left tap is 1: y[i, j] = x[i, j]. A flipped kernel would give x[i+2, j+2].
        var w = RefTensor(zeros: [1, 1, 3, 3])
        w[0, 0, 0, 0] = 1
        let y = Reference.conv2d(ramp4x4, weight: w, bias: nil, stride: (1, 1), padding: (0, 0))
        expectClose(y.data, [1, 2, 5, 6])
        // Two input channels and two filters: channel sums and a per-filter bias.
        let x = RefTensor(shape: [1, 2, 1, 2], data: [1, 2, 10, 20])
        let w2 = RefTensor(shape: [2, 2, 1, 2], data: [1, 0, 0, 1,    // filter 0: x[c0, w0] + x[c1, w1]
                                                       -1, 1, 1, -1])  // filter 1
        let y2 = Reference.conv2d(x, weight: w2, bias: [100, 0], stride: (1, 1), padding: (0, 0))
        #expect(y2.shape == [1, 2, 1, 1])
        expectClose(y2.data, [121, (-1 + 2) + (10 - 20)])
    }

    @Test func batchNormTrainingValues() {
        // N=2, C=2, H=1, W=2. Channel 0: {0, 2, 0, 2} -> mean 1, var 1. Channel 1: {1, 1, 5, 5} -> mean 3, var 4.
        let x = RefTensor(shape: [2, 2, 1, 2], data: [0, 2, 1, 1,
                                                      0, 2, 5, 5])
        let r = Reference.batchNormTraining(x, scale: [2, 0.5], shift: [1, 0], epsilon: 0)
        expectClose(r.mean, [1, 3])
        expectClose(r.variance, [1, 4])
        expectClose(r.output.data, [-1, 3, -0.5, -0.5,
                                    -1, 3, 0.5, 0.5])
        // epsilon enters under the square root: var 1 + eps 3 -> std 2.
        let withEps = Reference.batchNormTraining(x, scale: [1, 1], shift: [0, 0], epsilon: 3)
        expectClose([withEps.output[0, 0, 0, 0]], [-0.5])
    }

    @Test func batchNormInferenceValues() {
        let x = RefTensor(shape: [1, 2, 1, 2], data: [3, -1, 0, 4])
        let y = Reference.batchNormInference(x, scale: [2, 1], shift: [1, -1], mean: [1, 0], variance: [4, 15],
                                             epsilon: 0)
        // channel 0: 2 * (x - 1)/2 + 1;  channel 1: (x - 0)/sqrt(15) - 1.
        expectClose(y.data, [3, -1, -1, 4 / Float(15).squareRoot() - 1])
        let g = Reference.batchNormInferenceBackward(x, scale: [2, 1], mean: [1, 0], variance: [4, 15], epsilon: 0,
                                                     outputGradient: RefTensor(shape: [1, 2, 1, 2], data: [1, 1, 1, 2]))
        expectClose(g.input.data, [1, 1, 1 / Float(15).squareRoot(), 2 / Float(15).squareRoot()])
        expectClose(g.shift, [2, 3])
        expectClose(g.scale, [1 + -1, 0 + 8 / Float(15).squareRoot()])
    }

    @Test func batchNormTrainingBackwardSums() {
        // The input gradient of training batch norm sums to zero per channel,
        // and is zero when dy is constant.
        var rng = SplitMix64(seed: 21)
        let x = rng.tensor([2, 2, 3, 3])
        let g = Reference.batchNormTrainingBackward(x, scale: [1.5, 0.5], epsilon: 1e-5,
                                                    outputGradient: RefTensor(shape: x.shape, data: [Float](repeating: 2, count: 36)))
        expectClose(g.input.data, [Float](repeating: 0, count: 36), tolerance: 1e-5)
        expectClose(g.shift, [36, 36])
        expectClose(g.scale, [0, 0], tolerance: 1e-4)
    }

    @Test func runningStatistics() {
        var running: [Float] = [1, 0]
        Reference.updateRunningStatistics(running: &running, batch: [3, 10], momentum: 0.1)
        expectClose(running, [1.2, 1.0])
    }

    @Test func reluAndAdd() {
        let x = RefTensor(shape: [4], data: [-1, 0, 2, -0.5])
        #expect(Reference.relu(x).data == [0, 0, 2, 0])
        #expect(Reference.reluBackward(x, outputGradient: RefTensor(shape: [4], data: [5, 6, 7, 8])).data == [0, 0, 7, 0])
        let sum = Reference.add(RefTensor(shape: [1, 2], data: [1, 2]), RefTensor(shape: [1, 2], data: [3, -4]))
        #expect(sum == RefTensor(shape: [1, 2], data: [4, -2]))
    }

    @Test func padChannelsShapesAndZeros() {
        let x = RefTensor(shape: [2, 2, 5, 7], data: (0..<140).map(Float.init))
        let y = Reference.padChannels(x, to: 4, stride: 2)
        #expect(y.shape == [2, 4, 3, 4])  // ceil(5/2) = 3, ceil(7/2) = 4
        for n in 0..<2 { for c in 0..<4 { for h in 0..<3 { for w in 0..<4 {
            let expected: Float = c < 2 ? Float(((n * 2 + c) * 5 + 2 * h) * 7 + 2 * w) : 0
            #expect(y[n, c, h, w] == expected, "[\(n), \(c), \(h), \(w)]")
        } } } }
        // Stride 1 to the same channel count changes nothing.
        #expect(Reference.padChannels(x, to: 2, stride: 1) == x)
        // Backward: gradient at sampled positions of the real channels, zero elsewhere.
        let dx = Reference.padChannelsBackward(inputShape: [1, 1, 3, 3], stride: 2,
                                               outputGradient: RefTensor(shape: [1, 2, 2, 2], data: [1, 2, 3, 4, 9, 9, 9, 9]))
        #expect(dx.data == [1, 0, 2,
                            0, 0, 0,
                            3, 0, 4])
    }

    @Test func maxPoolValues() {
        let y = Reference.maxPool2d(ramp4x4, kernel: (2, 2), stride: (2, 2), padding: (0, 0))
        #expect(y == RefTensor(shape: [1, 1, 2, 2], data: [6, 8, 14, 16]))
        // Padding is -infinity, so it never wins even against negative values.
        let negative = RefTensor(shape: [1, 1, 4, 4], data: ramp4x4.data.map { -$0 })
        let p = Reference.maxPool2d(negative, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        #expect(p == RefTensor(shape: [1, 1, 2, 2], data: [-1, -2, -5, -6]))
        // Output size floor((5 + 2 - 3)/2) + 1 = 3 and floor((7 - 3)/2) + 1 = 3.
        #expect(Reference.maxPool2d(RefTensor(zeros: [1, 1, 5, 7]), kernel: (3, 3), stride: (2, 2),
                                    padding: (1, 0)).shape == [1, 1, 3, 3])
    }

    @Test("maxPool2dBackward sends the gradient to the first maximum")
    func maxPoolTies() {
        let x = RefTensor(shape: [1, 1, 2, 3], data: [1, 5, 5,
                                                      5, 2, 5])
        let dx = Reference.maxPool2dBackward(x, kernel: (2, 2), stride: (1, 1), padding: (0, 0),
                                             outputGradient: RefTensor(shape: [1, 1, 1, 2], data: [10, 20]))
        // Window 0 covers (0,0) (0,1) (1,0) (1,1): first 5 is (0,1). Window 1: first 5 is (0,1) too.
        #expect(dx.data == [0, 30, 0,
                            0, 0, 0])
        // Overlapping windows accumulate.
        let dy = Reference.maxPool2dBackward(ramp4x4, kernel: (3, 3), stride: (1, 1), padding: (1, 1),
                                             outputGradient: RefTensor(shape: [1, 1, 4, 4], data: [Float](repeating: 1, count: 16)))
        // Window (i, j) peaks at (min(i+1, 3), min(j+1, 3)); the last row and column win twice.
        #expect(dy.data == [0, 0, 0, 0,
                            0, 1, 1, 2,
                            0, 1, 1, 2,
                            0, 2, 2, 4])
    }

    @Test func avgPoolValues() {
        let y = Reference.avgPool2d(ramp4x4, kernel: (2, 2), stride: (2, 2), padding: (0, 0), countIncludesPadding: true)
        expectClose(y.data, [3.5, 5.5, 11.5, 13.5])
        // Top-left 3x3 window with padding 1 holds 1, 2, 5, 6 (sum 14) and five padding zeros.
        let included = Reference.avgPool2d(ramp4x4, kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludesPadding: true)
        let excluded = Reference.avgPool2d(ramp4x4, kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludesPadding: false)
        expectClose(included.data, [14.0 / 9, 30.0 / 9, 57.0 / 9, 99.0 / 9])
        expectClose(excluded.data, [14.0 / 4, 30.0 / 6, 57.0 / 6, 99.0 / 9])
        let dx = Reference.avgPool2dBackward(inputShape: [1, 1, 2, 2], kernel: (2, 2), stride: (1, 1), padding: (1, 1),
                                             countIncludesPadding: false,
                                             outputGradient: RefTensor(shape: [1, 1, 3, 3], data: [Float](repeating: 1, count: 9)))
        // Corner windows see 1 real element, edge windows 2, the centre 4.
        expectClose(dx.data, [Float](repeating: 1 + 0.5 + 0.5 + 0.25, count: 4))
    }

    @Test func globalAvgPoolValues() {
        let x = RefTensor(shape: [1, 2, 2, 2], data: [1, 2, 3, 4, -1, -1, 5, 5])
        #expect(Reference.globalAvgPool2d(x) == RefTensor(shape: [1, 2, 1, 1], data: [2.5, 2]))
        let dx = Reference.globalAvgPool2dBackward(inputShape: [1, 2, 2, 2],
                                                   outputGradient: RefTensor(shape: [1, 2, 1, 1], data: [4, -8]))
        #expect(dx.data == [1, 1, 1, 1, -2, -2, -2, -2])
        // Same as average pooling with a whole-image kernel.
        var rng = SplitMix64(seed: 22)
        let z = rng.tensor([2, 3, 5, 7])
        expectClose(Reference.globalAvgPool2d(z).data,
                    Reference.avgPool2d(z, kernel: (5, 7), stride: (5, 7), padding: (0, 0), countIncludesPadding: true).data)
    }

    @Test func linearValues() {
        let x = RefTensor(shape: [2, 3], data: [1, 2, 3,
                                                0, -1, 1])
        let w = RefTensor(shape: [2, 3], data: [1, 0, -1,
                                                2, 1, 0])
        let y = Reference.linear(x, weight: w, bias: [0.5, -1])
        #expect(y.shape == [2, 2])
        expectClose(y.data, [1 - 3 + 0.5, 2 + 2 - 1,
                             -1 + 0.5, -1 - 1])
        let g = Reference.linearBackward(x, weight: w, outputGradient: RefTensor(shape: [2, 2], data: [1, 0, 0, 2]), hasBias: true)
        expectClose(g.input.data, [1, 0, -1, 4, 2, 0])
        expectClose(g.weight.data, [1, 2, 3, 0, -2, 2])
        #expect(g.bias == [1, 2])
    }

    @Test func dropoutValues() {
        let x = RefTensor(shape: [1, 2, 1, 2], data: [1, 2, 3, 4])
        expectClose(Reference.dropout(x, mask: [1, 0, 1, 0], rate: 0.5).data, [2, 0, 6, 0])
        expectClose(Reference.channelDropout(x, mask: [0, 1], rate: 0.2).data, [0, 0, 3.75, 5])
        expectClose(Reference.dropoutBackward(mask: [1, 0, 1, 0], rate: 0.5, outputGradient: x).data, [2, 0, 6, 0])
        expectClose(Reference.channelDropoutBackward(mask: [1, 0], rate: 0.2, outputGradient: x).data, [1.25, 2.5, 0, 0])
    }

    @Test func softmaxValues() {
        let ln2 = Float(0.693147180559945)
        let y = Reference.softmax(RefTensor(shape: [3, 2], data: [0, ln2,
                                                                  1000, 1000,     // would overflow without the max shift
                                                                  -1000, 0]))
        expectClose(y.data, [1.0 / 3, 2.0 / 3, 0.5, 0.5, 0, 1])
        var rng = SplitMix64(seed: 23)
        let z = Reference.softmax(RefTensor(shape: [4, 7], data: rng.floats(28, -5, 5)))
        for row in 0..<4 {
            let sum = z.data[(row * 7)..<((row + 1) * 7)].reduce(0, +)
            #expect(abs(sum - 1) < 1e-6, "row \(row) sums to \(sum)")
        }
    }

    @Test func crossEntropyValues() {
        // Uniform logits: p = 1/K whatever the target, so the loss is log K.
        for smoothing: Float in [0, 0.1] {
            let loss = Reference.softmaxCrossEntropy(logits: RefTensor(shape: [2, 10], data: [Float](repeating: 3, count: 20)),
                                                     labels: [0, 7], labelSmoothing: smoothing)
            #expect(abs(loss - Float(2.302585092994046)) < 1e-6, "smoothing \(smoothing): \(loss)")
        }
        // Logits [0, ln 3]: p = [1/4, 3/4].
        let logits = RefTensor(shape: [1, 2], data: [0, Float(1.0986122886681098)])
        let plain = Reference.softmaxCrossEntropy(logits: logits, labels: [1], labelSmoothing: 0)
        #expect(abs(plain - Float(0.2876820724517809)) < 1e-6)  // -ln(3/4)
        // q = [0.05, 0.95]: -(0.05 ln 1/4 + 0.95 ln 3/4) = 0.0693147 + 0.2732980
        let smoothed = Reference.softmaxCrossEntropy(logits: logits, labels: [1], labelSmoothing: 0.1)
        #expect(abs(smoothed - Float(0.34261268688518637)) < 1e-6)
        // Gradient (p - q)/N.
        expectClose(Reference.softmaxCrossEntropyBackward(logits: logits, labels: [1], labelSmoothing: 0.1).data,
                    [0.25 - 0.05, 0.75 - 0.95])
        let uniform = Reference.softmaxCrossEntropyBackward(logits: RefTensor(zeros: [2, 4]), labels: [0, 3], labelSmoothing: 0)
        expectClose(uniform.data, [-0.375, 0.125, 0.125, 0.125,
                                   0.125, 0.125, 0.125, -0.375])
    }

    @Test func softmaxBackwardValues() {
        // y = [1/4, 3/4], dy = [1, 0]: sum(dy*y) = 1/4, dx = [1/4 * 3/4, 3/4 * -1/4].
        let dx = Reference.softmaxBackward(output: RefTensor(shape: [1, 2], data: [0.25, 0.75]),
                                           outputGradient: RefTensor(shape: [1, 2], data: [1, 0]))
        expectClose(dx.data, [0.1875, -0.1875])
    }

    @Test func numericalGradientOfKnownFunction() {
        // f(x) = x0^2 + 3 x0 x1 - x1^3, gradient [2 x0 + 3 x1, 3 x0 - 3 x1^2].
        let f: ([Float]) -> Double = { x in
            let a = Double(x[0]), b = Double(x[1])
            return a * a + 3 * a * b - b * b * b
        }
        let g = Reference.numericalGradient(of: f, at: [1.5, -2])
        expectClose(g, [3 - 6, 4.5 - 12], tolerance: 1e-3)
    }
}
