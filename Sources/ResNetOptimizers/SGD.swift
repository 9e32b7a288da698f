import ResNetTensors

/// Stochastic gradient descent with optional momentum, Nesterov momentum,
/// dampening and L2 weight decay, exactly as PyTorch's `torch.optim.SGD`:
///
/// ```
/// g = grad + weightDecay * p
/// if momentum != 0:
///     buf = g                                       (first step)
///     buf = momentum * buf + (1 - dampening) * g    (later steps)
///     g = nesterov ? g + momentum * buf : buf
/// p -= learningRate * g
/// ```
///
/// `learningRate` is multiplied by each parameter's `learningRateScale` (1 unless set).
///
/// State: one `momentum` buffer per parameter (none when `momentum == 0`).
public final class SGD: Optimizer {
    /// The step size used by the next update (finite, `>= 0`).
    public var learningRate: Float { didSet { checkLearningRate(learningRate) } }
    /// Momentum factor (0 disables momentum and its state).
    public let momentum: Float
    /// Whether to use Nesterov momentum.
    public let nesterov: Bool
    /// L2 penalty added to the gradient.
    public let weightDecay: Float
    /// Dampening of the gradient's contribution to the momentum buffer.
    public let dampening: Float

    /// One `momentum` slot, or none without momentum.
    private let table: StateTable

    /// Throws ``OptimizerError`` for a negative or non-finite setting, a dampening
    /// outside `[0, 1]`, or Nesterov without `momentum > 0` and `dampening == 0`.
    public init(learningRate: Float, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0, dampening: Float = 0) throws {
        try validate("learningRate", learningRate, atLeast: 0)
        try validate("momentum", momentum, atLeast: 0)
        try validate("weightDecay", weightDecay, atLeast: 0)
        try validate("dampening", dampening, atLeast: 0, upTo: 1)
        if nesterov {
            guard momentum > 0 else { throw OptimizerError.nesterovRequiresMomentum(momentum: momentum) }
            guard dampening == 0 else { throw OptimizerError.nesterovRequiresZeroDampening(dampening: dampening) }
        }
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.dampening = dampening
        table = StateTable(slotNames: momentum == 0 ? [] : ["momentum"], savesStep: false)
    }

    public func update(_ parameters: [Parameter]) {
        let decay = weightDecay
        let m = momentum, keep = 1 - dampening, nesterov = nesterov
        // Each loop loads p[i] unconditionally and picks with selects, so it vectorizes.
        for parameter in parameters where parameter.isTrainable {
            let lr = learningRate * parameter.learningRateScale
            let n = parameter.count
            let p = parameter.value.floats
            let grad = UnsafePointer(parameter.gradient.floats)
            if m == 0 {
                for i in 0..<n {
                    let x = p[i]
                    let g = decay == 0 ? grad[i] : grad[i] + decay * x
                    p[i] = x - lr * g
                }
                continue
            }
            let state = table.state(for: parameter)
            let buffer = state.buffers[0]
            if state.step == 0 {
                for i in 0..<n {
                    let x = p[i]
                    let g = decay == 0 ? grad[i] : grad[i] + decay * x
                    buffer[i] = g
                    p[i] = x - lr * (nesterov ? g + m * g : g)
                }
            } else {
                for i in 0..<n {
                    let x = p[i]
                    let g = decay == 0 ? grad[i] : grad[i] + decay * x
                    let b = m * buffer[i] + keep * g
                    buffer[i] = b
                    p[i] = x - lr * (nesterov ? g + m * b : b)
                }
            }
            state.step += 1
        }
    }

    public func register(_ parameters: [Parameter]) { table.register(parameters) }

    public func stateDictionary() -> [String: [Float]] { table.stateDictionary() }

    public func loadStateDictionary(_ state: [String: [Float]]) throws { try table.load(state) }
}
