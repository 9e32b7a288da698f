import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTensors
import Yams

/// Recipe settings a user overrides one by one (flags, or keys of a run file); `nil` keeps the
/// recipe's.
public struct RecipeOverrides: Sendable, Equatable {
    public var epochs: Int?
    public var iterations: Int?
    public var batchSize: Int?
    /// The peak learning rate: the schedule is scaled so that its largest rate is this.
    public var lr: Float?
    public var optimizer: Recipe.OptimizerKind?
    public var momentum: Float?
    public var nesterov: Bool?
    public var weightDecay: Float?
    public var labelSmoothing: Float?
    /// Augmentations as the command line writes them (`flip,crop:4`).
    public var augment: String?
    public var normalization: Normalization.Kind?
    /// ZCA's epsilon on pixels scaled to 0...1 (default ``Normalization/defaultZCAEpsilon``,
    /// 0.1; the Keras tutorial uses 1e-6, which amplifies pixel noise far more).
    public var zcaEpsilon: Float?
    public var validation: Int?
    /// ReduceLROnPlateau: `none`, or `FACTOR:PATIENCE[:COOLDOWN[:MIN_LR]]` (the Keras example's
    /// is `0.316:5:0:5e-7`).
    public var plateau: String?
    /// The validation metric plateau watches: `loss` or `accuracy`.
    public var plateauMonitor: String?
    /// Early stopping on validation accuracy: `none`, or `PATIENCE[:EVERY_BATCHES]` (evaluations
    /// at epochs' ends, or every that many batches, as the PyTorch note's `5:50`).
    public var earlyStopping: String?

    public init() {}

    /// The settings given, as the command line names them.
    public var given: [String] {
        [("--epochs", epochs != nil), ("--iterations", iterations != nil), ("--batch-size", batchSize != nil), ("--lr", lr != nil),
         ("--optimizer", optimizer != nil), ("--momentum", momentum != nil), ("--nesterov", nesterov != nil),
         ("--weight-decay", weightDecay != nil), ("--label-smoothing", labelSmoothing != nil), ("--augment", augment != nil),
         ("--normalization", normalization != nil), ("--zca-epsilon", zcaEpsilon != nil), ("--validation", validation != nil),
         ("--plateau", plateau != nil), ("--plateau-monitor", plateauMonitor != nil), ("--early-stopping", earlyStopping != nil)]
            .filter(\.1).map(\.0)
    }

    /// Each setting of `self`, else of `other`.
    public func over(_ other: RecipeOverrides) -> RecipeOverrides {
        var r = self
        r.epochs = epochs ?? other.epochs
        r.iterations = iterations ?? other.iterations
        r.batchSize = batchSize ?? other.batchSize
        r.lr = lr ?? other.lr
        r.optimizer = optimizer ?? other.optimizer
        r.momentum = momentum ?? other.momentum
        r.nesterov = nesterov ?? other.nesterov
        r.weightDecay = weightDecay ?? other.weightDecay
        r.labelSmoothing = labelSmoothing ?? other.labelSmoothing
        r.augment = augment ?? other.augment
        r.normalization = normalization ?? other.normalization
        r.zcaEpsilon = zcaEpsilon ?? other.zcaEpsilon
        r.validation = validation ?? other.validation
        r.plateau = plateau ?? other.plateau
        r.plateauMonitor = plateauMonitor ?? other.plateauMonitor
        r.earlyStopping = earlyStopping ?? other.earlyStopping
        return r
    }

    /// Applies the settings given to `recipe`, each checked (the whole recipe is validated
    /// afterwards, with its schedule).
    public func apply(to recipe: inout Recipe) throws {
        func bad(_ message: String) -> TrainingError { .invalidOption(message) }
        if let epochs { guard epochs > 0 else { throw bad("--epochs must be positive, got \(epochs)") }; recipe.duration = .epochs(epochs) }
        if let iterations { guard iterations > 0 else { throw bad("--iterations must be positive, got \(iterations)") }; recipe.duration = .iterations(iterations) }
        if let batchSize { guard batchSize > 0 else { throw bad("--batch-size must be positive, got \(batchSize)") }; recipe.batchSize = batchSize }
        if let lr {
            guard lr > 0, lr.isFinite else { throw bad("--lr must be a positive number, got \(lr)") }
            recipe.schedule = recipe.schedule.scaled(toPeak: lr)
        }
        if let optimizer { recipe.optimizer = optimizer }
        if let momentum { guard momentum.isFinite, (0..<1).contains(momentum) else { throw bad("--momentum must be in 0..<1, got \(momentum)") }; recipe.momentum = momentum }
        if let nesterov { recipe.nesterov = nesterov }
        if let weightDecay { guard weightDecay.isFinite, (0..<1).contains(weightDecay) else { throw bad("--weight-decay must be in 0..<1, got \(weightDecay)") }; recipe.weightDecay = weightDecay }
        if let labelSmoothing {
            guard labelSmoothing.isFinite, (0..<1).contains(labelSmoothing) else { throw bad("--label-smoothing must be in 0..<1, got \(labelSmoothing)") }
            recipe.labelSmoothing = labelSmoothing
        }
        if let augment {
            do { recipe.augmentations = try Augmentation.parseList(augment) } catch let e as DataOptionError { throw bad(e.description) }
        }
        if let normalization { recipe.normalization = normalization }
        if let zcaEpsilon {
            guard zcaEpsilon.isFinite, zcaEpsilon > 0 else { throw bad("--zca-epsilon must be a positive number, got \(zcaEpsilon)") }
            guard recipe.normalization == .zca else { throw bad("--zca-epsilon applies to --normalization zca only") }
        }
        if let validation { guard validation >= 0 else { throw bad("--validation must be >= 0, got \(validation)") }; recipe.validationCount = validation }
        if let plateauMonitor {
            guard ["loss", "accuracy"].contains(plateauMonitor) else { throw bad("--plateau-monitor must be loss or accuracy, got '\(plateauMonitor)'") }
            recipe.plateauMonitor = plateauMonitor
        }
        if let plateau {
            if plateau == "none" {
                recipe.plateau = nil
            } else {
                let parts = plateau.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                guard (2...4).contains(parts.count), let factor = Float(parts[0]), factor.isFinite, factor > 0, factor < 1,
                      let patience = Int(parts[1]), patience >= 0,
                      let cooldown = parts.count > 2 ? Int(parts[2]) : 0, cooldown >= 0,
                      let minimum = parts.count > 3 ? Float(parts[3]) : 0, minimum.isFinite, minimum >= 0 else {
                    throw bad("--plateau must be none or FACTOR:PATIENCE[:COOLDOWN[:MIN_LR]] with 0 < FACTOR < 1, e.g. 0.316:5:0:5e-7; got '\(plateau)'")
                }
                recipe.plateau = ReduceLROnPlateau(factor: factor, patience: patience, cooldown: cooldown, minimumLearningRate: minimum)
            }
        }
        if var p = recipe.plateau { p.maximize = recipe.plateauMonitor == "accuracy"; recipe.plateau = p }
        if let earlyStopping {
            if earlyStopping == "none" {
                recipe.earlyStopping = nil
            } else {
                let parts = earlyStopping.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                let every = parts.count > 1 ? Int(parts[1]) : nil
                guard (1...2).contains(parts.count), let patience = Int(parts[0]), patience >= 1, parts.count == 1 || (every ?? 0) >= 1 else {
                    throw bad("--early-stopping must be none or PATIENCE[:EVERY_BATCHES], e.g. 5 or 5:50; got '\(earlyStopping)'")
                }
                recipe.earlyStopping = Recipe.EarlyStop(patience: patience, everyBatches: every)
            }
        }
    }
}

/// What a user asks `resnet train` for, from flags and a run file; every field is optional and
/// ``configuration(data:dataset:dataPath:isSample:threads:log:)`` fills in the defaults.
public struct RunRequest: Sendable, Equatable {
    public var model: String?
    public var shortcut: ShortcutOption?
    public var dataset: String?
    public var data: String?
    /// `HxW`: image folders are brought to this size when loaded (`--image-size`).
    public var imageSize: String?
    public var recipe: String?
    public var seed: UInt64?
    public var precision: PrecisionChoice?
    public var runDirectory: String?
    public var monitorTest: Bool?
    public var skipTest: Bool?
    public var deterministic: Bool?
    /// Model options (``ModelOptions``): dropout, the convolutions' initializer, bottlenecks
    /// striding their first 1x1, zero-initialized last batch norm of each residual branch.
    public var dropout: Float?
    public var initializer: String?
    public var strideOnFirst1x1: Bool?
    public var zeroInitializedResidual: Bool?
    /// Transfer learning (`--from MODEL`, `--head new|keep`, `--freeze ...`).
    public var from: String?
    public var head: String?
    public var freeze: String?
    /// `--backbone-lr-scale`: the learning-rate factor of every layer but the classifier.
    public var backboneLearningRateScale: Float?
    /// Only these classes (`5-9`, `0,2,4`) and at most `perClass` training images of each.
    public var classes: String?
    public var perClass: Int?
    /// A whole schedule (run files only), replacing the recipe's before the overrides apply.
    public var schedule: LearningRateSchedule?
    public var overrides = RecipeOverrides()

    public init() {}

    /// `self` (the flags) over `file`: a setting given as a flag wins over the run file's.
    public func over(_ file: RunRequest) -> RunRequest {
        var r = self
        r.model = model ?? file.model
        r.shortcut = shortcut ?? file.shortcut
        r.dataset = dataset ?? file.dataset
        r.data = data ?? file.data
        r.imageSize = imageSize ?? file.imageSize
        r.recipe = recipe ?? file.recipe
        r.seed = seed ?? file.seed
        r.precision = precision ?? file.precision
        r.runDirectory = runDirectory ?? file.runDirectory
        r.monitorTest = monitorTest ?? file.monitorTest
        r.skipTest = skipTest ?? file.skipTest
        r.deterministic = deterministic ?? file.deterministic
        r.dropout = dropout ?? file.dropout
        r.initializer = initializer ?? file.initializer
        r.strideOnFirst1x1 = strideOnFirst1x1 ?? file.strideOnFirst1x1
        r.zeroInitializedResidual = zeroInitializedResidual ?? file.zeroInitializedResidual
        r.from = from ?? file.from
        r.head = head ?? file.head
        r.freeze = freeze ?? file.freeze
        r.backboneLearningRateScale = backboneLearningRateScale ?? file.backboneLearningRateScale
        r.classes = classes ?? file.classes
        r.perClass = perClass ?? file.perClass
        r.schedule = schedule ?? file.schedule
        r.overrides = overrides.over(file.overrides)
        return r
    }

    /// The settings given that would change a run, as the command line names them: `--resume`
    /// refuses them, because a resumed run continues exactly as it was configured.
    public var settingsThatChangeARun: [String] {
        let given: [(String, Bool)] = [
            ("--model", model != nil), ("--shortcut", shortcut != nil), ("--dataset", dataset != nil), ("--data", data != nil),
            ("--image-size", imageSize != nil), ("--recipe", recipe != nil), ("--seed", seed != nil), ("--run-dir", runDirectory != nil),
            ("--precision", precision != nil), ("--monitor-test", monitorTest != nil), ("--deterministic", deterministic != nil),
            ("--dropout", dropout != nil), ("--initializer", initializer != nil), ("--stride-on-first1x1", strideOnFirst1x1 != nil),
            ("--zero-init-residual", zeroInitializedResidual != nil), ("--from", from != nil), ("--head", head != nil),
            ("--freeze", freeze != nil), ("--backbone-lr-scale", backboneLearningRateScale != nil), ("--classes", classes != nil), ("--per-class", perClass != nil), ("schedule", schedule != nil),
        ]
        return given.filter(\.1).map(\.0) + overrides.given
    }

    /// The shortcut option: the one asked for; else, for CIFAR networks, the recipe's (A for
    /// he2016, as the paper); else B. ImageNet networks keep B unless asked.
    public static func shortcut(requested: ShortcutOption?, model: String, recipe: Recipe) throws -> ShortcutOption {
        if let requested { return requested }
        let cifar = try ModelDefinition(name: model).configuration?.stem == .cifar
        return (cifar ? recipe.shortcut : nil) ?? .b
    }

    /// The run configuration this request makes on `data` (loaded from `dataPath` as `dataset`).
    ///
    /// - Parameters:
    ///   - isSample: the data is the CIFAR-10 sample shipped with SwiftResNet, standing in for
    ///     CIFAR-10: unless the request says otherwise it holds out a tenth for validation and
    ///     trains 15 epochs (the rate divided by 10 at 10 and 13), as the full recipes are far too
    ///     long for 5,000 images.
    ///   - log: receives one line about such adjustments.
    public func configuration(data: LoadedDataset, dataset: String, dataPath: String?, isSample: Bool, threads: Int,
                              log: (String) -> Void = { _ in }) throws -> RunConfiguration {
        // Transfer learning: the starting model's architecture (and, unless asked, its
        // shortcut and its normalization: the statistics its weights learned with).
        var transfer: TransferSettings?
        var start: ModelCard?
        if let from {
            guard ["new", "keep", nil].contains(head) else { throw TrainingError.invalidOption("--head must be new or keep, got '\(head!)'") }
            start = try TrainedModel(from).loaded.card
            transfer = try TransferSettings(model: URL(fileURLWithPath: from).standardizedFileURL.path, newHead: head != "keep",
                                        freeze: try freeze.map(TransferSettings.Freeze.init(parsing:)) ?? TransferSettings.Freeze.none,
                                        backboneLearningRateScale: backboneLearningRateScale ?? 1).validated()
        } else if head != nil || freeze != nil || backboneLearningRateScale != nil {
            throw TrainingError.invalidOption("--head, --freeze and --backbone-lr-scale need --from MODEL (the model to start from)")
        }
        var subset: DataSubset?
        if let classes { subset = try DataSubset(parsing: classes, perClass: perClass) } else if perClass != nil {
            throw TrainingError.invalidOption("--per-class needs --classes")
        }
        let data = try subset?.apply(to: data, seed: seed ?? 0) ?? data
        let model = self.model ?? start?.architecture.name ?? "resnet20"
        var recipe = try Recipe.named(self.recipe ?? "he2016")
        let inherited = start?.architecture.options
        let shortcut = try self.shortcut ?? inherited?.shortcut ?? Self.shortcut(requested: nil, model: model, recipe: recipe)
        if let schedule { recipe.schedule = schedule }
        try overrides.apply(to: &recipe)
        guard let train = data.split("train") else { throw TrainingError.invalidOption("\(data.name) has no training split") }
        if isSample {
            if overrides.validation == nil { recipe.validationCount = train.count / 10 }
            if overrides.epochs == nil && overrides.iterations == nil {
                recipe.duration = .epochs(15)
                // The recipe's own iteration milestones, scaled to the short run; a schedule the
                // request gave is kept as given.
                if schedule == nil, case .multiStep(let base, _, _, .iteration) = recipe.schedule {
                    recipe.schedule = .multiStep(base: base, milestones: [10, 13], multipliers: [0.1, 0.01], unit: .epoch)
                }
            }
            log("on the sample: \(recipe.validationCount) validation images, \(recipe.duration.length)")
        }
        recipe = try recipe.adapted(toDepth: ModelDefinition(name: model).configuration?.depth).validated()
        let (trainIndices, _) = try trainingSplit(train, validationCount: recipe.validationCount)
        var normalization = Normalization.fit(recipe.normalization, on: train.subset(trainIndices))
        if case .zca = normalization, let epsilon = overrides.zcaEpsilon { normalization = .zca(epsilon: epsilon) }
        if let start, overrides.normalization == nil {
            switch start.preprocessing.normalization {
            case .perChannel, .none: normalization = start.preprocessing.normalization
            case .perPixelMean, .zca: break   // tied to the old data's image size: refitted on this data
            }
        }
        let precision = (self.precision ?? .auto).resolved
        return try RunConfiguration(
            model: model, modelOptions: ModelOptions(shortcut: shortcut, strideOnFirst1x1: strideOnFirst1x1 ?? inherited?.strideOnFirst1x1 ?? false,
                                                     zeroInitializedResidual: zeroInitializedResidual ?? inherited?.zeroInitializedResidual ?? false,
                                                     dropout: dropout ?? inherited?.dropout, initializer: initializer ?? inherited?.initializer),
            imageShape: [train.channels, train.height, train.width], classNames: data.classNames,
            dataset: dataset, dataPath: dataPath.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
            recipe: recipe, seed: seed ?? 0, normalization: normalization, trainingCount: trainIndices.count,
            validationCount: recipe.validationCount, threads: threads, deterministic: deterministic ?? false,
            precision: precision, monitorsTest: monitorTest == true ? true : nil, skipsTest: skipTest == true ? true : nil,
            loadedImageSize: imageSize == nil ? nil : [train.height, train.width], transfer: transfer, dataSubset: subset).validated()
    }

    /// The run directory: the one asked for, else `runs/MODEL-DATASET-RECIPE-TIME`.
    public func directory(for configuration: RunConfiguration, now: Date = Date()) -> URL {
        if let runDirectory { return URL(fileURLWithPath: runDirectory) }
        let stamp = ISO8601DateFormatter().string(from: now).replacingOccurrences(of: ":", with: "")
        return URL(fileURLWithPath: "runs/\(configuration.model)-\(configuration.dataset)-\(configuration.recipe.name)-\(stamp)")
    }

    // MARK: - Run files

    /// The keys a run file may hold: `resnet train`'s options in snake_case.
    public static let runFileKeys = [
        "model", "shortcut", "dataset", "data", "image_size", "recipe", "seed", "precision", "schedule", "run_dir", "monitor_test", "skip_test",
        "deterministic", "from", "head", "freeze", "backbone_lr_scale", "classes", "per_class", "dropout", "initializer", "stride_on_first1x1", "zero_init_residual", "plateau", "plateau_monitor",
        "early_stopping", "epochs", "iterations", "batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay",
        "label_smoothing", "augment", "normalization", "zca_epsilon", "validation",
    ]
    /// A run file is a page of options: larger files, or more nesting, are refused before parsing.
    public static let maximumRunFileBytes = 65_536
    static let maximumRunFileNodes = 10_000

    /// Reads a run file (`.yaml`/`.yml` or `.json`); unknown keys are errors, not ignored.
    ///
    /// YAML anchors and aliases are allowed but bounded: a file whose expansion exceeds
    /// 10,000 nodes (a "billion laughs" file) is refused before it is decoded.
    public static func load(runFile path: String) throws -> RunRequest {
        func bad(_ why: String) -> TrainingError { .invalidOption("\(path): \(why)") }
        var info = stat()
        guard stat(path, &info) == 0 else { throw bad("cannot read the run file (\(String(cString: strerror(errno))))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw bad("not a regular file") }
        guard info.st_size <= maximumRunFileBytes else { throw bad("\(info.st_size) bytes; a run file has at most \(maximumRunFileBytes)") }
        guard let bytes = FileManager.default.contents(atPath: path), bytes.count <= maximumRunFileBytes else {
            throw bad("cannot read the run file")
        }
        guard bytes.filter({ $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "{") }).count <= 1_000 else {
            throw bad("more than 1,000 nested brackets: not a run file")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let yaml = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        let file: RunFile
        do {
            let keys: [String]
            if yaml {
                guard let node = try Yams.compose(yaml: text) else { throw bad("empty run file") }
                var budget = maximumRunFileNodes
                guard countNodes(node, budget: &budget) else {
                    throw bad("the YAML expands to more than \(maximumRunFileNodes) values (aliases of aliases?): not a run file")
                }
                guard let mapping = node.mapping else { throw bad("expected a mapping of options") }
                keys = mapping.keys.compactMap(\.string)
                file = try YAMLDecoder().decode(RunFile.self, from: node)
            } else {
                guard let object = try JSONSerialization.jsonObject(with: bytes) as? [String: Any] else { throw bad("expected a JSON object of options") }
                keys = Array(object.keys)
                file = try JSONDecoder().decode(RunFile.self, from: bytes)
            }
            let known = Set(runFileKeys)
            if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
                throw bad("unknown option '\(unknown)'; known: \(runFileKeys.sorted().joined(separator: ", "))")
            }
        } catch let error as TrainingError {
            throw error
        } catch let error as DecodingError {
            throw bad(error.summary)
        } catch {
            throw bad("not valid \(yaml ? "YAML" : "JSON") (\(String(describing: error).split(separator: "\n").first ?? ""))")
        }
        return try file.request(path: path)
    }

    /// Counts `node`'s values (aliases expanded) against `budget`; false when it runs out.
    private static func countNodes(_ node: Node, budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar, .alias: return true
        case .sequence(let sequence): return sequence.allSatisfy { countNodes($0, budget: &budget) }
        case .mapping(let mapping): return mapping.allSatisfy { countNodes($0.key, budget: &budget) && countNodes($0.value, budget: &budget) }
        }
    }
}

/// The keys of a run file, as decoded.
private struct RunFile: Decodable {
    var model: String?
    var shortcut: String?
    var dataset: String?
    var data: String?
    var imageSize: String?
    var recipe: String?
    var seed: UInt64?
    var precision: String?
    var runDir: String?
    var monitorTest: Bool?
    var skipTest: Bool?
    var deterministic: Bool?
    var from: String?
    var head: String?
    var freeze: String?
    var backboneLearningRateScale: Float?
    var classes: String?
    var perClass: Int?
    var dropout: Float?
    var initializer: String?
    var strideOnFirst1x1: Bool?
    var zeroInitializedResidual: Bool?
    var plateau: String?
    var plateauMonitor: String?
    var earlyStopping: String?
    var schedule: LearningRateSchedule?
    var epochs: Int?
    var iterations: Int?
    var batchSize: Int?
    var lr: Float?
    var optimizer: String?
    var momentum: Float?
    var nesterov: Bool?
    var weightDecay: Float?
    var labelSmoothing: Float?
    var augment: String?
    var normalization: String?
    var zcaEpsilon: Float?
    var validation: Int?

    enum CodingKeys: String, CodingKey {
        case model, shortcut, dataset, data, imageSize = "image_size", recipe, seed, precision, schedule, runDir = "run_dir", monitorTest = "monitor_test"
        case skipTest = "skip_test", deterministic, from, head, freeze, backboneLearningRateScale = "backbone_lr_scale", classes, perClass = "per_class", dropout, initializer, strideOnFirst1x1 = "stride_on_first1x1"
        case zeroInitializedResidual = "zero_init_residual", plateau, plateauMonitor = "plateau_monitor", earlyStopping = "early_stopping", epochs, iterations, batchSize = "batch_size", lr, optimizer, momentum, nesterov
        case weightDecay = "weight_decay", labelSmoothing = "label_smoothing", augment, normalization, zcaEpsilon = "zca_epsilon", validation
    }

    func request(path: String) throws -> RunRequest {
        func bad(_ why: String) -> TrainingError { .invalidOption("\(path): \(why)") }
        var r = RunRequest()
        r.model = model
        if let shortcut {
            guard let option = ShortcutOption(rawValue: shortcut.uppercased()) else { throw bad("shortcut must be A, B or C, got '\(shortcut)'") }
            r.shortcut = option
        }
        r.dataset = dataset
        r.data = data
        r.imageSize = imageSize
        r.recipe = recipe
        r.seed = seed
        if let precision {
            guard let choice = PrecisionChoice(rawValue: precision) else { throw bad("precision must be auto, fp32 or bf16, got '\(precision)'") }
            r.precision = choice
        }
        r.runDirectory = runDir
        r.monitorTest = monitorTest
        r.skipTest = skipTest
        r.deterministic = deterministic
        r.from = from
        r.head = head
        r.freeze = freeze
        r.backboneLearningRateScale = backboneLearningRateScale
        r.classes = classes
        r.perClass = perClass
        r.dropout = dropout
        r.initializer = initializer
        r.strideOnFirst1x1 = strideOnFirst1x1
        r.zeroInitializedResidual = zeroInitializedResidual
        if let schedule {
            do { r.schedule = try schedule.validated() } catch let error as TrainingError { throw bad(error.description) }
        }
        var o = RecipeOverrides()
        o.epochs = epochs
        o.iterations = iterations
        o.batchSize = batchSize
        o.lr = lr
        if let optimizer {
            guard let kind = Recipe.OptimizerKind(rawValue: optimizer) else { throw bad("optimizer must be sgd, adam, adamw or rmsprop, got '\(optimizer)'") }
            o.optimizer = kind
        }
        o.momentum = momentum
        o.nesterov = nesterov
        o.weightDecay = weightDecay
        o.labelSmoothing = labelSmoothing
        o.augment = augment
        if let normalization {
            guard let kind = Normalization.Kind(rawValue: normalization) else { throw bad("normalization must be none, channel, pixel or zca, got '\(normalization)'") }
            o.normalization = kind
        }
        o.zcaEpsilon = zcaEpsilon
        o.validation = validation
        o.plateau = plateau
        o.plateauMonitor = plateauMonitor
        o.earlyStopping = earlyStopping
        r.overrides = o
        return r
    }
}
