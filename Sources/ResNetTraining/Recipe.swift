import Foundation
import ResNetData
import ResNetModels
import ResNetOptimizers

/// Every setting of a training run that is not the model or the data: a named preset that a
/// user can list (`resnet train --list-recipes`), load from a file and override flag by flag.
public struct Recipe: Codable, Sendable, Equatable {
    public enum OptimizerKind: String, Codable, Sendable, CaseIterable { case sgd, adam, adamw, rmsprop }

    /// How long to train.
    public enum Duration: Codable, Sendable, Equatable {
        case epochs(Int)
        case iterations(Int)

        /// "30 epochs", "16000 iterations".
        var length: String {
            switch self {
            case .epochs(let e): "\(e) epochs"
            case .iterations(let n): "\(n) iterations"
            }
        }
    }

    /// The PyTorch note's rule: evaluate every `everyBatches` batches and stop after
    /// `patience` evaluations without a better validation accuracy.
    public struct EarlyStop: Codable, Sendable, Equatable {
        public var patience: Int
        public var everyBatches: Int?
        public var minimumDelta: Float
        public init(patience: Int, everyBatches: Int? = nil, minimumDelta: Float = 0) {
            self.patience = patience
            self.everyBatches = everyBatches
            self.minimumDelta = minimumDelta
        }
    }

    public var name: String
    /// What it is and where it comes from.
    public var about: String
    public var optimizer: OptimizerKind
    public var momentum: Float
    public var nesterov: Bool
    /// L2 weight decay (coupled, as PyTorch's SGD/Adam `weight_decay`; decoupled for AdamW).
    public var weightDecay: Float
    public var schedule: LearningRateSchedule
    public var batchSize: Int
    public var duration: Duration
    public var labelSmoothing: Float
    public var augmentations: [Augmentation]
    public var normalization: Normalization.Kind
    /// Training images held out for validation (model selection, plateau, early stopping).
    public var validationCount: Int
    public var plateau: ReduceLROnPlateau?
    /// The monitored validation metric for plateau: `loss` or `accuracy`.
    public var plateauMonitor: String
    public var earlyStopping: EarlyStop?
    /// The shortcut option the recipe's source used for CIFAR networks (A for the paper's);
    /// `nil` leaves the model's default (B). ImageNet networks and a `--shortcut` flag ignore it.
    public var shortcut: ShortcutOption? = nil

    // MARK: - The presets

    /// He et al. 2016, section 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128, 0.1 divided
    /// by 10 at 32k and 48k iterations, 64k iterations, 45k/5k split, 4-pixel pad and crop with
    /// flips, per-pixel mean subtracted, shortcut option A (identity with zero-padded channels,
    /// the paper's choice for CIFAR-10). Networks of depth >= 110 warm up at 0.01 for 400
    /// iterations (``adapted(toDepth:)``).
    public static let he2016 = Recipe(
        name: "he2016", about: "He et al. 2016 sec. 4.2: SGD 0.1 (/10 at 32k, 48k), 64k iterations, batch 128, wd 1e-4, flip + pad-crop 4, per-pixel mean, shortcut A",
        optimizer: .sgd, momentum: 0.9, nesterov: false, weightDecay: 1e-4, schedule: .he2016, batchSize: 128,
        duration: .iterations(64_000), labelSmoothing: 0, augmentations: [.horizontalFlip, .padCrop(padding: 4, fill: .constant)],
        normalization: .pixel, validationCount: 5_000, plateau: nil, plateauMonitor: "loss", earlyStopping: nil,
        shortcut: .a)

    /// The Keras CIFAR-10 ResNet example: Adam 1e-3 with its epoch schedule, 200 epochs, batch 32,
    /// shifts of 0.1 and flips (nearest fill), per-pixel mean, L2 1e-4 on the loss (= weight decay
    /// 2e-4 on the gradient), ReduceLROnPlateau(sqrt(0.1), patience 5, min 0.5e-6) on the
    /// validation loss, composed with the schedule instead of being overridden by it. We validate
    /// on a held-out 5k split; the example validates on the test set.
    public static let kerasExample = Recipe(
        name: "keras-example", about: "Keras CIFAR-10 ResNet example: Adam 1e-3 + epoch schedule, 200 epochs, batch 32, shift 0.1 + flip, plateau",
        optimizer: .adam, momentum: 0, nesterov: false, weightDecay: 2e-4, schedule: .kerasExample, batchSize: 32,
        duration: .epochs(200), labelSmoothing: 0,
        augmentations: [.shift(width: 0.1, height: 0.1, fill: .nearest), .horizontalFlip],
        normalization: .pixel, validationCount: 5_000, plateau: ReduceLROnPlateau(), plateauMonitor: "loss", earlyStopping: nil)

    /// The PyTorch CIFAR-10 ResNet note: Adam 1e-3, weight decay 1e-4, early stopping on the
    /// validation accuracy checked every 200 batches with patience 10, best weights restored.
    public static let pytorchNote = Recipe(
        name: "pytorch-note", about: "PyTorch note: Adam 1e-3, wd 1e-4, early stopping (every 200 batches, patience 10), best weights",
        optimizer: .adam, momentum: 0, nesterov: false, weightDecay: 1e-4, schedule: .constant(1e-3), batchSize: 128,
        duration: .epochs(60), labelSmoothing: 0, augmentations: [.horizontalFlip, .padCrop(padding: 4, fill: .constant)],
        normalization: .channel, validationCount: 5_000, plateau: nil, plateauMonitor: "accuracy",
        earlyStopping: EarlyStop(patience: 10, everyBatches: 200))

    /// The Wide ResNet recipe (Zagoruyko & Komodakis 2016): SGD Nesterov 0.1, momentum 0.9, weight
    /// decay 5e-4, x0.2 at epochs 60, 120, 160, 200 epochs, batch 128, reflect pad-crop and flips.
    public static let wrn = Recipe(
        name: "wrn", about: "Wide ResNet paper: SGD Nesterov 0.1 (x0.2 at 60, 120, 160), 200 epochs, wd 5e-4, flip + reflect pad-crop",
        optimizer: .sgd, momentum: 0.9, nesterov: true, weightDecay: 5e-4,
        schedule: .multiStep(base: 0.1, milestones: [60, 120, 160], multipliers: [0.2, 0.04, 0.008], unit: .epoch),
        batchSize: 128, duration: .epochs(200), labelSmoothing: 0,
        augmentations: [.horizontalFlip, .padCrop(padding: 4, fill: .reflect)],
        normalization: .channel, validationCount: 5_000, plateau: nil, plateauMonitor: "loss", earlyStopping: nil)

    /// Ours, for good CIFAR-10 accuracy in little CPU time: one-cycle SGD Nesterov with label
    /// smoothing, 30 epochs. ResNet-20 (shortcut B) reaches 87.0% test top-1 in 27.5 minutes on
    /// 2 cores (20.4 with `--precision bf16`). Tuned on the validation split (docs/tuning-fast.md):
    /// weight decay 2e-4, peak rate 0.4, no label smoothing, batch 256 and 20 epochs did no better
    /// than the seed noise; 45 epochs buys about a point of accuracy for 1.5x the time.
    public static let fast = Recipe(
        name: "fast", about: "ours: one-cycle SGD Nesterov (max 0.2), 30 epochs, batch 128, wd 5e-4, label smoothing 0.1, flip + pad-crop 4",
        optimizer: .sgd, momentum: 0.9, nesterov: true, weightDecay: 5e-4,
        schedule: .oneCycle(maximum: 0.2, iterations: 0, warmupFraction: 0.15, divFactor: 10, finalDivFactor: 100),
        batchSize: 128, duration: .epochs(30), labelSmoothing: 0.1,
        augmentations: [.horizontalFlip, .padCrop(padding: 4, fill: .constant)],
        normalization: .channel, validationCount: 5_000, plateau: nil, plateauMonitor: "loss", earlyStopping: nil)

    /// Every preset, by name.
    public static let presets: [Recipe] = [he2016, kerasExample, pytorchNote, wrn, fast]

    /// The preset called `name`.
    public static func named(_ name: String) throws -> Recipe {
        guard let recipe = presets.first(where: { $0.name == name.lowercased() }) else {
            throw TrainingError.invalidOption("unknown recipe '\(name)'; known recipes: \(presets.map(\.name).joined(separator: ", "))")
        }
        return recipe
    }

    /// The paper's adjustment for very deep networks: 0.01 for the first 400 iterations when
    /// depth >= 110 (He et al. 2016, 4.2), for the `he2016` recipe.
    public func adapted(toDepth depth: Int?) -> Recipe {
        guard name == "he2016", let depth, depth >= 110 else { return self }
        var recipe = self
        if case .warmup = schedule { return self }
        recipe.schedule = .warmup(iterations: 400, learningRate: 0.01, linear: false, then: schedule)
        return recipe
    }

    /// Total iterations for `trainingCount` images.
    public func totalIterations(trainingCount: Int) -> Int {
        switch duration {
        case .iterations(let n): return n
        case .epochs(let e): return e * max(1, trainingCount / batchSize)
        }
    }

    /// The optimizer this recipe describes.
    public func makeOptimizer() throws -> any Optimizer {
        let rate = schedule.learningRate(step: 0, stepsPerEpoch: 1)
        switch optimizer {
        case .sgd: return try SGD(learningRate: rate, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
        case .adam: return try Adam(learningRate: rate, weightDecay: weightDecay)
        case .adamw: return try AdamW(learningRate: rate, weightDecay: weightDecay)
        // Keras's decay rate (rho 0.9), as the Keras tutorial's small VGG trains with; the
        // epsilon is PyTorch's (1e-8, outside the root), not Keras's (1e-7, inside).
        case .rmsprop: return try RMSprop(learningRate: rate, alpha: 0.9, weightDecay: weightDecay)
        }
    }
}

/// A bad training request: one line for the user.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case invalidOption(String)
    case checkpoint(String)
    case diverged(String)
    /// A run's `test.json` that is readable but not a valid test result (``readTestResult(of:classCount:)``).
    case invalidTestResult(String)

    public var description: String {
        switch self {
        case .invalidOption(let m), .checkpoint(let m), .diverged(let m), .invalidTestResult(let m): m
        }
    }

    /// Whether this is ``invalidTestResult(_:)``.
    public var isInvalidTestResult: Bool {
        if case .invalidTestResult = self { true } else { false }
    }
}
