import Foundation
import ResNetTensors

/// The bias-corrected Adam step that ``Adam`` and ``AdamW`` share.
final class AdamCore {
    let beta1: Float
    let beta2: Float
    let epsilon: Float
    let weightDecay: Float
    /// `true`: AdamW's decoupled decay; `false`: Adam's L2 term added to the gradient.
    let decoupled: Bool
    let table = StateTable(slotNames: ["exp_avg", "exp_avg_sq"], savesStep: true)

    init(learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, decoupled: Bool) throws {
        try validate("learningRate", learningRate, atLeast: 0)
        try validate("beta1", beta1, atLeast: 0, below: 1)
        try validate("beta2", beta2, atLeast: 0, below: 1)
        try validate("epsilon", epsilon, atLeast: 0)
        try validate("weightDecay", weightDecay, atLeast: 0)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
    }

    func update(_ parameters: [Parameter], learningRate lr: Float) {
        let b1 = beta1, b2 = beta2, eps = epsilon
        let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
        for parameter in parameters where parameter.isTrainable {
            let state = table.state(for: parameter)
            state.step += 1
            let n = parameter.count
            let p = parameter.value.floats
            let grad = UnsafePointer(parameter.gradient.floats)
            let m = state.buffers[0], v = state.buffers[1]
            // Bias corrections in Double: beta^step underflows gracefully and stays accurate.
            let step = Double(state.step)
            let correction1 = 1 - pow(Double(b1), step)
            let correction2 = 1 - pow(Double(b2), step)
            let stepSize = Float(Double(lr) / correction1)
            let inverseRoot2 = Float(1 / correction2.squareRoot())
            let l2: Float = decoupled ? 0 : weightDecay
            if decoupled && weightDecay != 0 {
                let shrink = 1 - lr * weightDecay
                for i in 0..<n { p[i] *= shrink }
            }
            if l2 == 0 {
                for i in 0..<n {
                    let g = grad[i]
                    let mi = b1 * m[i] + oneMinusB1 * g
                    let vi = b2 * v[i] + oneMinusB2 * (g * g)
                    m[i] = mi
                    v[i] = vi
                    p[i] -= stepSize * mi / (vi.squareRoot() * inverseRoot2 + eps)
                }
            } else {
                for i in 0..<n {
                    let g = grad[i] + l2 * p[i]
                    let mi = b1 * m[i] + oneMinusB1 * g
                    let vi = b2 * v[i] + oneMinusB2 * (g * g)
                    m[i] = mi
                    v[i] = vi
                    p[i] -= stepSize * mi / (vi.squareRoot() * inverseRoot2 + eps)
                }
            }
        }
    }
}

/// Adam as PyTorch's `torch.optim.Adam` (no AMSGrad): weight decay is an L2 term
/// added to the gradient, and each parameter has its own step counter.
///
/// ```
/// t += 1
/// g = grad + weightDecay * p
/// m = beta1 * m + (1 - beta1) * g
/// v = beta2 * v + (1 - beta2) * g * g
/// p -= learningRate / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)
/// ```
///
/// State per parameter: `exp_avg` (m), `exp_avg_sq` (v) and `step` (t).
public final class Adam: Optimizer {
    /// The step size used by the next update (finite, `>= 0`).
    public var learningRate: Float { didSet { checkLearningRate(learningRate) } }
    /// Decay rate of the first-moment average.
    public var beta1: Float { core.beta1 }
    /// Decay rate of the second-moment average.
    public var beta2: Float { core.beta2 }
    /// Added to the denominator for numerical stability.
    public var epsilon: Float { core.epsilon }
    /// L2 penalty added to the gradient.
    public var weightDecay: Float { core.weightDecay }

    private let core: AdamCore

    /// Throws ``OptimizerError`` for a negative or non-finite setting or a beta outside `[0, 1)`.
    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) throws {
        core = try AdamCore(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                            weightDecay: weightDecay, decoupled: false)
        self.learningRate = learningRate
    }

    public func update(_ parameters: [Parameter]) { core.update(parameters, learningRate: learningRate) }
    public func register(_ parameters: [Parameter]) { core.table.register(parameters) }
    public func stateDictionary() -> [String: [Float]] { core.table.stateDictionary() }
    public func loadStateDictionary(_ state: [String: [Float]]) throws { try core.table.load(state) }
}

/// AdamW as PyTorch's `torch.optim.AdamW` (no AMSGrad): decoupled weight decay
/// `p -= learningRate * weightDecay * p` before the ``Adam`` step (which then has no L2 term).
///
/// State per parameter: `exp_avg`, `exp_avg_sq` and `step`, as for ``Adam``.
public final class AdamW: Optimizer {
    /// The step size used by the next update (finite, `>= 0`).
    public var learningRate: Float { didSet { checkLearningRate(learningRate) } }
    /// Decay rate of the first-moment average.
    public var beta1: Float { core.beta1 }
    /// Decay rate of the second-moment average.
    public var beta2: Float { core.beta2 }
    /// Added to the denominator for numerical stability.
    public var epsilon: Float { core.epsilon }
    /// Decoupled weight decay factor.
    public var weightDecay: Float { core.weightDecay }

    private let core: AdamCore

    /// Throws ``OptimizerError`` for a negative or non-finite setting or a beta outside `[0, 1)`.
    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) throws {
        core = try AdamCore(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                            weightDecay: weightDecay, decoupled: true)
        self.learningRate = learningRate
    }

    public func update(_ parameters: [Parameter]) { core.update(parameters, learningRate: learningRate) }
    public func register(_ parameters: [Parameter]) { core.table.register(parameters) }
    public func stateDictionary() -> [String: [Float]] { core.table.stateDictionary() }
    public func loadStateDictionary(_ state: [String: [Float]]) throws { try core.table.load(state) }
}
