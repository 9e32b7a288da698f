import Foundation
import ResNetOptimizers
import ResNetTensors
import Testing

/// A 1-D parameter holding `values`.
func makeParameter(_ values: [Float], trainable: Bool = true) -> Parameter {
    let parameter = Parameter(shape: [values.count], isTrainable: trainable)
    parameter.values = values
    return parameter
}

/// Writes `values` into the parameter's gradient, as a backward pass would.
func setGradient(_ parameter: Parameter, _ values: [Float]) {
    precondition(values.count == parameter.count)
    for i in values.indices { parameter.gradient.floats[i] = values[i] }
}

/// A fixed, step-dependent gradient with mixed signs and magnitudes (and an occasional zero).
func syntheticGradient(step: Int, count: Int, salt: Int = 0) -> [Float] {
    (0..<count).map { i in
        let k = (step * 7 + i * 13 + salt * 5) % 11
        return Float(k - 5) * 0.1 + 0.03 * Float(i) - 0.02 * Float(salt)
    }
}

/// Expects `actual` to match `expected` within `tolerance` (absolute plus relative).
func expectClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 1e-5,
                 _ comment: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, sourceLocation: sourceLocation)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let ok = abs(Double(a) - e) <= tolerance * (1 + abs(e))
        #expect(ok, "\(comment()) element \(i): got \(a), expected \(e)", sourceLocation: sourceLocation)
    }
}

/// `torch.optim.SGD`, written out independently in Double.
struct ReferenceSGD {
    var learningRate: Double
    var momentum: Double = 0
    var dampening: Double = 0
    var weightDecay: Double = 0
    var nesterov = false
    var buffer: [Double]? = nil

    init(learningRate: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.learningRate = Double(learningRate)
        self.momentum = Double(momentum)
        self.dampening = Double(dampening)
        self.weightDecay = Double(weightDecay)
        self.nesterov = nesterov
    }

    mutating func step(_ p: inout [Double], gradient: [Double]) {
        var d = zip(gradient, p).map { g, x in g + weightDecay * x }
        if momentum != 0 {
            if let previous = buffer {
                buffer = zip(previous, d).map { b, g in momentum * b + (1 - dampening) * g }
            } else {
                buffer = d
            }
            d = nesterov ? zip(d, buffer!).map { g, b in g + momentum * b } : buffer!
        }
        p = zip(p, d).map { x, g in x - learningRate * g }
    }
}

/// `torch.optim.Adam` / `torch.optim.AdamW`, written out independently in Double.
struct ReferenceAdam {
    var learningRate, beta1, beta2, epsilon, weightDecay: Double
    var decoupled: Bool
    var t = 0
    var m: [Double] = []
    var v: [Double] = []

    init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
         weightDecay: Float = 0, decoupled: Bool) {
        self.learningRate = Double(learningRate)
        self.beta1 = Double(beta1)
        self.beta2 = Double(beta2)
        self.epsilon = Double(epsilon)
        self.weightDecay = Double(weightDecay)
        self.decoupled = decoupled
    }

    mutating func step(_ p: inout [Double], gradient: [Double]) {
        if m.isEmpty {
            m = Array(repeating: 0, count: p.count)
            v = Array(repeating: 0, count: p.count)
        }
        t += 1
        var g = gradient
        if decoupled {
            p = p.map { $0 * (1 - learningRate * weightDecay) }
        } else {
            g = zip(g, p).map { $0 + weightDecay * $1 }
        }
        for i in p.indices {
            m[i] = beta1 * m[i] + (1 - beta1) * g[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
            let mHat = m[i] / (1 - pow(beta1, Double(t)))
            let vHat = v[i] / (1 - pow(beta2, Double(t)))
            p[i] -= learningRate * mHat / (vHat.squareRoot() + epsilon)
        }
    }
}

/// Runs `steps` steps of `optimizer` and of a Double reference side by side on a few
/// parameters with synthetic gradients, checking the values after every step.
func checkTrajectory(
    _ optimizer: Optimizer, steps: Int = 6, tolerance: Double = 1e-5,
    sourceLocation: SourceLocation = #_sourceLocation,
    reference makeReference: () -> (inout [Double], [Double]) -> Void
) {
    // The 19-element parameter covers the 8-lane vector paths and a scalar tail.
    let initial: [[Float]] = [[1, -2, 0.5, 3], [0.25, -0.75, 1.5], (0..<19).map { Float($0 % 7) * 0.4 - 1.1 }]
    let parameters = initial.map { makeParameter($0) }
    var expected = initial.map { $0.map(Double.init) }
    let references = initial.map { _ in makeReference() }
    for step in 0..<steps {
        for (k, parameter) in parameters.enumerated() {
            setGradient(parameter, syntheticGradient(step: step, count: parameter.count, salt: k))
        }
        optimizer.update(parameters)
        for (k, parameter) in parameters.enumerated() {
            let gradient = parameter.gradients.map(Double.init)
            references[k](&expected[k], gradient)
            expectClose(parameter.values, expected[k], tolerance: tolerance, "step \(step) parameter \(k)",
                        sourceLocation: sourceLocation)
        }
    }
}

/// Wraps a reference optimizer value as a stepping closure.
func stepper(_ sgd: ReferenceSGD) -> (inout [Double], [Double]) -> Void {
    var state = sgd
    return { p, g in state.step(&p, gradient: g) }
}

func stepper(_ adam: ReferenceAdam) -> (inout [Double], [Double]) -> Void {
    var state = adam
    return { p, g in state.step(&p, gradient: g) }
}
