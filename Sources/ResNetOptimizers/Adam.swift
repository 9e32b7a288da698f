import Foundation
import ResNetTensors
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

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

    func update(_ parameters: [Parameter], learningRate: Float) {
        let b1 = beta1, b2 = beta2, eps = epsilon
        let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
        let l2: Float = decoupled ? 0 : weightDecay
        for parameter in parameters where parameter.isTrainable {
            let lr = learningRate * parameter.learningRateScale
            // AdamW scales p by `shrink` first; Adam adds `l2 * p` to the gradient. The
            // other factor is neutral (x * 1 == x exactly).
            let shrink: Float = decoupled ? 1 - lr * weightDecay : 1
            let state = table.state(for: parameter)
            state.step += 1
            // Bias corrections in Double (beta^t for large t stays accurate).
            let t = Double(state.step)
            let stepSize = Float(Double(lr) / (1 - pow(Double(b1), t)))
            let inverseRoot2 = Float(1 / (1 - pow(Double(b2), t)).squareRoot())

            let n = parameter.count
            let p = parameter.value.floats
            let grad = UnsafePointer(parameter.gradient.floats)
            let m = state.buffers[0], v = state.buffers[1]

            // Eight lanes at a time with an explicit SIMD square root: on Linux a scalar
            // `squareRoot()` is a `sqrtf` call (math errno) that blocks auto-vectorization.
            let vectorEnd = n & ~7
            let pRaw = UnsafeMutableRawPointer(p), gRaw = UnsafeRawPointer(grad)
            let mRaw = UnsafeMutableRawPointer(m), vRaw = UnsafeMutableRawPointer(v)
            var i = 0
            while i < vectorEnd {
                let offset = i &* MemoryLayout<Float>.stride
                let x = pRaw.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) * shrink
                var g = gRaw.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                if l2 != 0 { g += l2 * x }
                let mi = b1 * mRaw.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) + oneMinusB1 * g
                let vi = b2 * vRaw.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) + oneMinusB2 * (g * g)
                mRaw.storeBytes(of: mi, toByteOffset: offset, as: SIMD8<Float>.self)
                vRaw.storeBytes(of: vi, toByteOffset: offset, as: SIMD8<Float>.self)
                let update = stepSize * mi / (vectorSquareRoot(vi) * inverseRoot2 + eps)
                pRaw.storeBytes(of: x - update, toByteOffset: offset, as: SIMD8<Float>.self)
                i &+= 8
            }
            // The same arithmetic, one element at a time, for the last `n % 8`.
            while i < n {
                let x = p[i] * shrink
                let g = l2 == 0 ? grad[i] : grad[i] + l2 * x
                let mi = b1 * m[i] + oneMinusB1 * g
                let vi = b2 * v[i] + oneMinusB2 * (g * g)
                m[i] = mi
                v[i] = vi
                p[i] = x - stepSize * mi / (vi.squareRoot() * inverseRoot2 + eps)
                i &+= 1
            }
        }
    }
}

/// Lane-wise, correctly rounded square root (the same values as `Float.squareRoot()`).
@inline(__always)
func vectorSquareRoot(_ x: SIMD8<Float>) -> SIMD8<Float> {
    #if arch(x86_64)
    return SIMD8(lowHalf: _mm_sqrt_ps(x.lowHalf), highHalf: _mm_sqrt_ps(x.highHalf))
    #else
    return x.squareRoot()
    #endif
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
