import Foundation
import ResNetEngine
import ResNetReference
@testable import ResNetTensors
import Testing

/// Deterministic test data.
struct TestRandom {
    var generator: SeededGenerator
    init(_ seed: UInt64) { generator = SeededGenerator(seed: seed) }
    mutating func uniform(_ count: Int, _ range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<count).map { _ in range.lowerBound + (range.upperBound - range.lowerBound) * generator.nextUnitFloat() }
    }
    /// Values at least `gap` apart in random order (no ties, no kinks for ReLU / max).
    mutating func spaced(_ count: Int, gap: Float = 0.01) -> [Float] {
        var v = (0..<count).map { Float($0 - count / 2) * gap + gap / 2 }
        v.shuffle(using: &generator)
        return v
    }
}

/// Norm-wise relative error ‖a − b‖ / ‖b‖ (elementwise relative error is meaningless near zero).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        diff += Double(a[i] - b[i]) * Double(a[i] - b[i])
        norm += Double(b[i]) * Double(b[i])
    }
    return (diff / max(norm, 1e-30)).squareRoot()
}

/// The layouts an op is tested in: plain NCHW and the engine's blocked nChw16c.
enum TestLayout: CaseIterable, CustomStringConvertible {
    case plain, blocked16
    var description: String { self == .plain ? "nchw" : "nChw16c" }
}

/// Builds a one-op graph, checks forward and backward against the reference, and checks the
/// oneDNN backward against central finite differences of the oneDNN forward.
struct OpCheck {
    var inputShape: [Int]
    var layout: TestLayout = .plain
    /// At bf16 the op reads a bfloat16 copy of the input and computes in bfloat16; the
    /// reference sees the unrounded input, so the tolerance is bfloat16's (8 bits, ~0.4%).
    var precision: Precision = .fp32
    var input: [Float]
    var parameters: [Parameter] = []
    var inputNeedsGradient = true
    var build: (Tensor) throws -> Tensor
    var reference: ([Float]) -> RefTensor
    /// Reference gradients (input, then one per trainable parameter) for output gradient `dy`.
    var referenceBackward: (([Float], RefTensor) -> (input: [Float]?, parameters: [[Float]]))?
    var tolerance = 1e-4
    var finiteDifferenceTolerance = 2e-2
    /// Small enough that no input crosses a kink of ReLU or max (test inputs are spaced apart).
    var finiteDifferenceStep: Float = 1e-2

    func run(seed: UInt64 = 7) throws {
        let graph = Graph(seed: seed, precision: precision)
        let x = graph.input(inputShape, requiresGradient: inputNeedsGradient)
        let layoutDescriptor = MemoryDescriptor(inputShape, layout == .blocked16 ? .blocked16 : .plain).with(precision.activationType)
        let laidOut = graph.converted(x, to: layoutDescriptor, label: "test")
        let y = try build(laidOut)
        let tolerance = precision == .bf16 ? max(self.tolerance, 2e-2) : self.tolerance
        try graph.plan(loss: y, keep: [y])
        try graph.setInput(x, input)
        graph.forward()
        let output = try graph.read(y)
        let expected = reference(input)
        #expect(y.shape == expected.shape, "output shape")
        let forwardError = relativeError(output, expected.data)
        #expect(forwardError < tolerance, "forward relative error \(forwardError)")

        guard let referenceBackward else { return }
        var random = TestRandom(seed &+ 1)
        let seedGradient = random.uniform(expected.count)
        graph.backward(seed: seedGradient)
        let trainable = parameters.filter(\.isTrainable)
        let (inputGradient, parameterGradients) = referenceBackward(input, RefTensor(shape: expected.shape, data: seedGradient))
        var analytic: [[Float]] = []
        if inputNeedsGradient, let inputGradient {
            let got = try graph.gradient(of: x)
            let error = relativeError(got, inputGradient)
            #expect(error < tolerance, "input gradient relative error \(error)")
            analytic.append(got)
        }
        // Every parameter is checked: a reference that returns fewer gradients would leave some out.
        #expect(parameterGradients.count == trainable.count, "the reference gives \(parameterGradients.count) parameter gradients for \(trainable.count) parameters")
        #expect(!inputNeedsGradient || inputGradient != nil, "the reference gives no input gradient")
        for (p, expectedGradient) in zip(trainable, parameterGradients) {
            let error = relativeError(p.gradients, expectedGradient)
            #expect(error < tolerance, "\(p.shape) parameter gradient relative error \(error)")
            analytic.append(p.gradients)
        }

        // Finite differences of the oneDNN forward along a random direction, for the input
        // and every parameter: d/dε Σ seed·y(θ + εv) ≈ ⟨∇θ, v⟩. Not at bf16: its forward is
        // too coarse to difference, and the fp32 run of the same op already checks the math.
        guard precision == .fp32 else { return }
        func objective() throws -> Double {
            graph.forward()
            let out = try graph.read(y)
            return zip(out, seedGradient).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var targets: [(get: () -> [Float], set: ([Float]) throws -> Void)] = []
        if inputNeedsGradient && inputGradient != nil { targets.append(({ input }, { try graph.setInput(x, $0) })) }
        for p in trainable { targets.append(({ p.values }, { p.values = $0 })) }
        for (target, gradient) in zip(targets, analytic) {
            let base = target.get()
            let direction = random.uniform(base.count)
            let step = finiteDifferenceStep
            try target.set(zip(base, direction).map { $0 + step * $1 })
            let plus = try objective()
            try target.set(zip(base, direction).map { $0 - step * $1 })
            let minus = try objective()
            try target.set(base)
            let numeric = (plus - minus) / (2 * Double(step))
            let exact = zip(gradient, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let error = abs(numeric - exact) / max(abs(exact), 1e-3)
            #expect(error < finiteDifferenceTolerance, "finite difference \(numeric) vs backward \(exact)")
        }
    }
}

func parameter(_ shape: [Int], _ values: [Float], trainable: Bool = true) -> Parameter {
    let p = Parameter(shape: shape, isTrainable: trainable)
    p.values = values
    return p
}
