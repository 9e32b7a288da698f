import ResNetTensors

/// RMSprop as PyTorch's `torch.optim.RMSprop` (no momentum, not centered), the optimizer of the
/// Keras tutorial's small VGG:
///
/// ```
/// g = grad + weightDecay * p
/// v = alpha * v + (1 - alpha) * g * g
/// p -= learningRate * g / (sqrt(v) + epsilon)
/// ```
///
/// Keras's `RMSprop` differs in two constants and one place: `rho` = 0.9 (PyTorch's `alpha` =
/// 0.99), `epsilon` = 1e-7, added inside the square root (`sqrt(v + epsilon)`); pass
/// `alpha: 0.9` for Keras's decay. State: one `square_avg` buffer per parameter.
public final class RMSprop: Optimizer {
    /// The step size used by the next update (finite, `>= 0`).
    public var learningRate: Float { didSet { checkLearningRate(learningRate) } }
    /// Decay of the running average of squared gradients.
    public let alpha: Float
    /// Added to the root of the average, so that a zero average does not divide by zero.
    public let epsilon: Float
    /// L2 penalty added to the gradient.
    public let weightDecay: Float

    private let table = StateTable(slotNames: ["square_avg"], savesStep: false)

    /// Throws ``OptimizerError`` for a negative or non-finite setting or an `alpha` outside `[0, 1)`.
    public init(learningRate: Float = 1e-2, alpha: Float = 0.99, epsilon: Float = 1e-8, weightDecay: Float = 0) throws {
        try validate("learningRate", learningRate, atLeast: 0)
        try validate("alpha", alpha, atLeast: 0, below: 1)
        try validate("epsilon", epsilon, atLeast: 0)
        try validate("weightDecay", weightDecay, atLeast: 0)
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    public func update(_ parameters: [Parameter]) {
        let decay = weightDecay, a = alpha, keep = 1 - alpha, eps = epsilon
        for parameter in parameters where parameter.isTrainable {
            let lr = learningRate * parameter.learningRateScale
            let n = parameter.count
            let p = parameter.value.floats
            let grad = UnsafePointer(parameter.gradient.floats)
            let state = table.state(for: parameter)
            let average = state.buffers[0]
            for i in 0..<n {
                let x = p[i]
                let g = decay == 0 ? grad[i] : grad[i] + decay * x
                let v = a * average[i] + keep * g * g
                average[i] = v
                p[i] = x - lr * g / (v.squareRoot() + eps)
            }
            state.step += 1
        }
    }

    public func register(_ parameters: [Parameter]) { table.register(parameters) }

    public func stateDictionary() -> [String: [Float]] { table.stateDictionary() }

    public func loadStateDictionary(_ state: [String: [Float]]) throws { try table.load(state) }
}
