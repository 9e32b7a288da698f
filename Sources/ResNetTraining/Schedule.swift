import Foundation

/// When milestones count: epochs (the Keras example) or iterations (the paper).
public enum ScheduleUnit: String, Codable, Sendable { case epoch, iteration }

/// A learning rate as a function of the training step. Schedules compose: ``warmup`` wraps
/// another schedule, and ``ReduceLROnPlateau`` multiplies whatever the schedule gives.
public indirect enum LearningRateSchedule: Codable, Sendable, Equatable {
    /// The same rate throughout.
    case constant(Float)
    /// `base` times `multipliers[k]` from milestone `k` on (`x0.1` at 32k, `x0.01` at 48k
    /// iterations is the paper's). A milestone in epochs takes effect at the start of that
    /// (0-based) epoch.
    case multiStep(base: Float, milestones: [Int], multipliers: [Float], unit: ScheduleUnit)
    /// A fixed rate for the first `iterations`, linearly ramped from it to `then` when `linear`.
    /// The paper's ResNet-110 uses 0.01 for ~400 iterations, then 0.1 (not linear).
    case warmup(iterations: Int, learningRate: Float, linear: Bool, then: LearningRateSchedule)
    /// Cosine decay from `base` to `minimum` over `iterations` (SGDR without restarts).
    case cosine(base: Float, minimum: Float, iterations: Int)
    /// The one-cycle policy (Smith & Topin 2018): cosine from `maximum / divFactor` up to
    /// `maximum` over the first `warmupFraction`, then cosine down to
    /// `maximum / (divFactor * finalDivFactor)` at `iterations`, as PyTorch's `OneCycleLR`.
    case oneCycle(maximum: Float, iterations: Int, warmupFraction: Float, divFactor: Float, finalDivFactor: Float)

    /// The rate at 0-based iteration `step` with `stepsPerEpoch` iterations per epoch.
    public func learningRate(step: Int, stepsPerEpoch: Int) -> Float {
        switch self {
        case .constant(let rate):
            return rate
        case .multiStep(let base, let milestones, let multipliers, let unit):
            let position = unit == .epoch ? step / max(1, stepsPerEpoch) : step
            var rate = base
            for (milestone, multiplier) in zip(milestones, multipliers) where position >= milestone { rate = base * multiplier }
            return rate
        case .warmup(let iterations, let start, let linear, let then):
            guard step < iterations else { return then.learningRate(step: step, stepsPerEpoch: stepsPerEpoch) }
            guard linear else { return start }
            let target = then.learningRate(step: iterations, stepsPerEpoch: stepsPerEpoch)
            return start + (target - start) * Float(step) / Float(iterations)
        case .cosine(let base, let minimum, let iterations):
            let t = min(1, Float(step) / Float(max(1, iterations)))
            return minimum + (base - minimum) * (1 + cos(.pi * t)) / 2
        case .oneCycle(let maximum, let iterations, let warmupFraction, let divFactor, let finalDivFactor):
            let initial = maximum / divFactor, final = initial / finalDivFactor
            let peak = Float(iterations) * warmupFraction - 1
            let s = Float(min(step, iterations - 1))
            func anneal(_ from: Float, _ to: Float, _ t: Float) -> Float { to + (from - to) * (1 + cos(.pi * t)) / 2 }
            if s <= peak { return anneal(initial, maximum, peak > 0 ? s / peak : 1) }
            return anneal(maximum, final, (s - peak) / max(1, Float(iterations - 1) - peak))
        }
    }

    /// The paper's CIFAR schedule: 0.1, divided by 10 at 32k and 48k iterations (He et al. 2016, 4.2).
    public static let he2016 = LearningRateSchedule.multiStep(base: 0.1, milestones: [32_000, 48_000],
                                                              multipliers: [0.1, 0.01], unit: .iteration)

    /// The Keras CIFAR-10 example's `lr_schedule`: 1e-3, x0.1 after epoch 80, x0.01 after 120,
    /// x0.001 after 160, x0.0005 after 180 ("after epoch 80" = from 0-based epoch 81).
    public static let kerasExample = LearningRateSchedule.multiStep(base: 1e-3, milestones: [81, 121, 161, 181],
                                                                    multipliers: [0.1, 0.01, 0.001, 0.0005], unit: .epoch)

    /// One line for logs.
    public var summary: String {
        switch self {
        case .constant(let r): "constant \(r)"
        case .multiStep(let b, let m, let k, let u): "\(b) x \(k) at \(u)s \(m)"
        case .warmup(let i, let r, let linear, let then): "\(linear ? "linear " : "")warm-up \(r) for \(i) iterations, then \(then.summary)"
        case .cosine(let b, let m, let i): "cosine \(b) -> \(m) over \(i) iterations"
        case .oneCycle(let m, let i, let w, _, _): "one-cycle max \(m) over \(i) iterations (warm-up \(Int(w * 100))%)"
        }
    }
}

extension LearningRateSchedule {
    /// The same shape with every rate scaled so that the largest is `peak`.
    public func scaled(toPeak peak: Float) -> LearningRateSchedule {
        let factor = peak / self.peak
        switch self {
        case .constant(let r): return .constant(r * factor)
        case .multiStep(let b, let m, let k, let u): return .multiStep(base: b * factor, milestones: m, multipliers: k, unit: u)
        case .warmup(let i, let r, let l, let then): return .warmup(iterations: i, learningRate: r * factor, linear: l, then: then.scaled(toPeak: peak))
        case .cosine(let b, let m, let i): return .cosine(base: b * factor, minimum: m * factor, iterations: i)
        case .oneCycle(let m, let i, let w, let d, let f): return .oneCycle(maximum: m * factor, iterations: i, warmupFraction: w, divFactor: d, finalDivFactor: f)
        }
    }

    /// The largest rate the schedule reaches.
    public var peak: Float {
        switch self {
        case .constant(let r): return r
        case .multiStep(let b, _, let k, _): return max(b, (k.map { b * $0 }.max() ?? b))
        case .warmup(_, let r, _, let then): return max(r, then.peak)
        case .cosine(let b, _, _): return b
        case .oneCycle(let m, _, _, _, _): return m
        }
    }
}

/// Keras's `ReduceLROnPlateau`, as a multiplier on the schedule (so neither silently overrides
/// the other: the Keras example sets the rate from its schedule every epoch, undoing any
/// reduction).
public struct ReduceLROnPlateau: Codable, Sendable, Equatable {
    public var factor: Float
    /// Evaluations without improvement before reducing.
    public var patience: Int
    /// Evaluations to wait after a reduction before counting again.
    public var cooldown: Int
    /// The smallest rate the product may reach.
    public var minimumLearningRate: Float
    /// The smallest change that counts as an improvement.
    public var minimumDelta: Float
    /// Whether larger is better (accuracy) or smaller (loss).
    public var maximize: Bool

    /// The current multiplier.
    public private(set) var multiplier: Float = 1
    public private(set) var best: Float?
    public private(set) var waited = 0
    public private(set) var cooldownLeft = 0

    public init(factor: Float = Float(0.1).squareRoot(), patience: Int = 5, cooldown: Int = 0, minimumLearningRate: Float = 5e-7,
                minimumDelta: Float = 1e-4, maximize: Bool = false) {
        self.factor = factor
        self.patience = patience
        self.cooldown = cooldown
        self.minimumLearningRate = minimumLearningRate
        self.minimumDelta = minimumDelta
        self.maximize = maximize
    }

    /// Records one evaluation of the monitored metric; `scheduled` is the schedule's current rate.
    public mutating func record(_ value: Float, scheduled: Float) {
        let improved = best.map { maximize ? value > $0 + minimumDelta : value < $0 - minimumDelta } ?? true
        if cooldownLeft > 0 { cooldownLeft -= 1 }
        if improved {
            best = value
            waited = 0
            return
        }
        if cooldownLeft > 0 { return }
        waited += 1
        if waited >= patience {
            let floor = scheduled > 0 ? minimumLearningRate / scheduled : multiplier
            multiplier = max(multiplier * factor, min(multiplier, floor))
            cooldownLeft = cooldown
            waited = 0
        }
    }
}

/// Stops training after `patience` evaluations without improvement of the monitored metric.
public struct EarlyStopping: Codable, Sendable, Equatable {
    public var patience: Int
    public var minimumDelta: Float
    public var maximize: Bool
    public private(set) var best: Float?
    public private(set) var waited = 0

    public init(patience: Int, minimumDelta: Float = 0, maximize: Bool = true) {
        self.patience = patience
        self.minimumDelta = minimumDelta
        self.maximize = maximize
    }

    /// Records an evaluation; returns `true` when training should stop.
    public mutating func record(_ value: Float) -> Bool {
        if best.map({ maximize ? value > $0 + minimumDelta : value < $0 - minimumDelta }) ?? true {
            best = value
            waited = 0
            return false
        }
        waited += 1
        return waited >= patience
    }
}
