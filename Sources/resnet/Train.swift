import ArgumentParser
import Dispatch
import Foundation
import ResNetData
import ResNetInference
import ResNetEngine
import ResNetModels
import ResNetTensors
import ResNetTraining
import Yams

extension Normalization.Kind: ExpressibleByArgument {}
extension Recipe.OptimizerKind: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--dataset NAME --data PATH`, shared by train, evaluate and dataset-info.
struct DataChoice: ParsableArguments {
    @Option(help: "Data set: cifar10 (default), cifar100, fashion-mnist, mnist or folder.")
    var dataset: String?

    @Option(help: "Where the data set is: a folder, a .tar.gz or IDX files (default: the per-user cache, see `resnet download`).")
    var data: String?

    /// The data set's name, `cifar10` unless given.
    var name: String { dataset ?? "cifar10" }

    func load() throws -> LoadedDataset { try loadDatasetForUser(name, data) }
}

/// Every recipe setting as an optional flag: a flag given overrides the recipe (and the config file).
struct RecipeOverrides: ParsableArguments {
    @Option(help: "Epochs (replaces the recipe's length).") var epochs: Int?
    @Option(help: "Iterations (replaces the recipe's length).") var iterations: Int?
    @Option(help: "Batch size.") var batchSize: Int?
    @Option(help: "Peak learning rate: scales the recipe's schedule so that its largest rate is this.") var lr: Float?
    @Option(help: "Optimizer: sgd, adam or adamw.") var optimizer: Recipe.OptimizerKind?
    @Option(help: "SGD momentum.") var momentum: Float?
    @Option(help: "Nesterov momentum (true/false).") var nesterov: Bool?
    @Option(help: "Weight decay.") var weightDecay: Float?
    @Option(help: "Label smoothing (0 to 1).") var labelSmoothing: Float?
    @Option(help: "Augmentations, e.g. flip,crop:4 or flip,shift:0.1:nearest,rotate:15,zoom:0.1,cutout:8, or none.") var augment: String?
    @Option(help: "Input normalization fitted on the training split: none, channel, pixel or zca (epsilon 0.1).") var normalization: Normalization.Kind?
    @Option(help: "Training images held out for validation (0: no validation, no best checkpoint).") var validation: Int?

    func apply(to recipe: inout Recipe) throws {
        if let epochs { guard epochs > 0 else { throw UserError("--epochs must be positive") }; recipe.duration = .epochs(epochs) }
        if let iterations { guard iterations > 0 else { throw UserError("--iterations must be positive") }; recipe.duration = .iterations(iterations) }
        if let batchSize { guard batchSize > 0 else { throw UserError("--batch-size must be positive") }; recipe.batchSize = batchSize }
        if let lr {
            guard lr > 0, lr.isFinite else { throw UserError("--lr must be positive") }
            recipe.schedule = recipe.schedule.scaled(toPeak: lr)
        }
        if let optimizer { recipe.optimizer = optimizer }
        if let momentum { recipe.momentum = momentum }
        if let nesterov { recipe.nesterov = nesterov }
        if let weightDecay { recipe.weightDecay = weightDecay }
        if let labelSmoothing {
            guard (0..<1).contains(labelSmoothing) else { throw UserError("--label-smoothing must be in 0..<1") }
            recipe.labelSmoothing = labelSmoothing
        }
        if let augment {
            do { recipe.augmentations = try Augmentation.parseList(augment) } catch let e as DataOptionError { throw UserError(e.description) }
        }
        if let normalization { recipe.normalization = normalization }
        if let validation { guard validation >= 0 else { throw UserError("--validation must be >= 0") }; recipe.validationCount = validation }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a network (default: ResNet-20 on CIFAR-10 with the he2016 recipe).",
        discussion: "Recipes: \(Recipe.presets.map { "\($0.name) (\($0.about))" }.joined(separator: "; ")).")

    @Option(help: "The network (default resnet20; see `resnet summary --help`).") var model: String?
    @Option(help: "Shortcut option A, B or C (default: the recipe's, A for he2016, otherwise B).") var shortcut: ShortcutOption?
    @OptionGroup var data: DataChoice
    @Option(help: "Recipe: \(Recipe.presets.map(\.name).joined(separator: ", ")) (default he2016).") var recipe: String?
    @Option(help: "A run file (YAML or JSON) with any of these options as keys (batch_size, lr, augment, ...); flags override it.")
    var config: String?
    @OptionGroup var overrides: RecipeOverrides
    @Option(help: "Random seed: weights, split, order, augmentation, dropout (default 0).") var seed: UInt64?
    @Option(help: "Run directory (default: runs/MODEL-DATASET-RECIPE-TIME).") var runDir: String?
    @Option(help: "Continue the run in this directory.") var resume: String?
    @Flag(help: "Pin everything that affects the result (thread count included) so a resumed run ends with the same weights.")
    var deterministic = false
    @Option(help: "Training precision: fp32, or bf16 (mixed: bfloat16 activations and convolutions, float32 master weights, statistics and loss). Evaluation is fp32.")
    var precision: Precision?
    @Flag(help: "Do not evaluate the test set at the end, e.g. while tuning a recipe on the validation split; evaluate the chosen run once later with `resnet evaluate RUN_DIR --split test`.")
    var skipTest = false
    @Flag(help: "Evaluate the test split at every epoch's end and log it (test_loss, test_accuracy in metrics.csv), as the paper's Fig. 6 plots test error during training. Never used to choose the checkpoint, reduce the rate or stop.")
    var monitorTest = false
    @Flag(help: "List the recipes and exit.") var listRecipes = false
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        if listRecipes {
            for r in Recipe.presets { print("\(r.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(r.about)") }
            return
        }
        try engine.apply()
        do { try train() } catch let error as TrainingError {
            throw UserError(error.description)
        } catch let error as ModelError {
            throw UserError(error.description)
        }
    }

    private func train() throws {
        let directory: URL
        let configuration: RunConfiguration
        let loaded: LoadedDataset
        if let resume {
            let o = overrides
            let given: [(String, Bool)] = [
                ("--model", model != nil), ("--shortcut", shortcut != nil), ("--dataset", data.dataset != nil), ("--data", data.data != nil),
                ("--recipe", recipe != nil), ("--config", config != nil), ("--seed", seed != nil), ("--run-dir", runDir != nil),
                ("--epochs", o.epochs != nil), ("--iterations", o.iterations != nil), ("--batch-size", o.batchSize != nil),
                ("--lr", o.lr != nil), ("--optimizer", o.optimizer != nil), ("--momentum", o.momentum != nil),
                ("--nesterov", o.nesterov != nil), ("--weight-decay", o.weightDecay != nil), ("--label-smoothing", o.labelSmoothing != nil),
                ("--augment", o.augment != nil), ("--normalization", o.normalization != nil), ("--validation", o.validation != nil),
                ("--deterministic", deterministic), ("--precision", precision != nil), ("--monitor-test", monitorTest),
            ]
            let changed = given.filter(\.1).map(\.0)
            guard changed.isEmpty else {
                throw UserError("\(changed.joined(separator: ", ")) cannot change a run being resumed: --resume continues it exactly as configured (start a new run to change it)")
            }
            directory = URL(fileURLWithPath: resume)
            configuration = try Trainer.loadConfiguration(directory)
            if configuration.deterministic { ComputeEngine.shared.setThreadCount(configuration.threads) }
            loaded = try loadDatasetForUser(configuration.dataset, configuration.dataPath)
        } else {
            let file = try config.map(RunFile.load) ?? RunFile()
            let model = self.model ?? file.model ?? "resnet20"
            let seed = self.seed ?? file.seed ?? 0
            var recipe = try Recipe.named(self.recipe ?? file.recipe ?? "he2016")
            // A recipe's shortcut is its source's CIFAR choice; ImageNet networks keep B unless asked.
            let cifar = try ModelDefinition(name: model).configuration?.stem == .cifar
            let shortcut = try self.shortcut ?? file.shortcut.map(RunFile.shortcut) ?? (cifar ? recipe.shortcut : nil) ?? .b
            if let schedule = file.schedule { recipe.schedule = schedule }
            try file.overrides?.apply(to: &recipe)
            try overrides.apply(to: &recipe)
            var data = self.data
            if data.dataset == nil { data.dataset = file.dataset }
            if data.data == nil { data.data = file.data }
            let requested = data.dataset
            loaded = try loadWithFallback(&data)
            guard let train = loaded.split("train") else { throw UserError("\(loaded.name) has no training split") }
            if data.dataset != requested, data.dataset == "folder" {
                // The shipped sample is a tenth of CIFAR-10: keep a tenth for validation and a short
                // run, unless the user chose otherwise.
                let o = file.overrides
                if overrides.validation == nil && o?.validation == nil { recipe.validationCount = train.count / 10 }
                if overrides.epochs == nil && overrides.iterations == nil && o?.epochs == nil && o?.iterations == nil {
                    recipe.duration = .epochs(15)
                    if case .multiStep(let base, _, _, .iteration) = recipe.schedule {
                        recipe.schedule = .multiStep(base: base, milestones: [10, 13], multipliers: [0.1, 0.01], unit: .epoch)
                    }
                }
                let length: String
                switch recipe.duration {
                case .epochs(let e): length = "\(e) epochs"
                case .iterations(let i): length = "\(i) iterations"
                }
                say("on the sample: \(recipe.validationCount) validation images, \(length)")
            }
            let depth = try ModelDefinition(name: model).configuration?.depth
            recipe = recipe.adapted(toDepth: depth)
            recipe = try recipe.validated()
            let (trainIndices, _) = try trainingSplit(train, validationCount: recipe.validationCount)
            let normalization = Normalization.fit(recipe.normalization, on: train.subset(trainIndices))
            configuration = RunConfiguration(
                model: model, modelOptions: ModelOptions(shortcut: shortcut),
                imageShape: [train.channels, train.height, train.width], classNames: loaded.classNames,
                dataset: data.name, dataPath: data.data.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
                recipe: recipe, seed: seed, normalization: normalization, trainingCount: trainIndices.count,
                validationCount: recipe.validationCount, threads: ComputeEngine.shared.threadCount, deterministic: deterministic,
                precision: try precision ?? file.precision.map(RunFile.precision) ?? .fp32,
                monitorsTest: monitorTest || file.monitorTest == true ? true : nil)
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            directory = URL(fileURLWithPath: runDir ?? file.runDir ?? "runs/\(model)-\(data.name)-\(recipe.name)-\(stamp)")
        }
        guard let train = loaded.split("train") else { throw UserError("\(loaded.name) has no training split") }
        let (trainIndices, validationIndices) = try configuration.split(train)
        let trainer = try Trainer(configuration: configuration, training: train.subset(trainIndices),
                                  validation: validationIndices.isEmpty ? nil : train.subset(validationIndices),
                                  test: configuration.monitorsTest == true ? loaded.split("test") : nil,
                                  runDirectory: directory, resume: resume != nil)
        let r = configuration.recipe
        if !json {
            say("\(configuration.model) on \(configuration.dataset): \(trainIndices.count) training / \(validationIndices.count) validation images, \(trainer.model.trainableParameterCount) parameters, \(ComputeEngine.shared.threadCount) threads, \((configuration.precision ?? .fp32).rawValue), shortcut \(configuration.modelOptions.shortcut)")
            say("recipe \(r.name): \(r.optimizer) batch \(r.batchSize), \(r.schedule.resolvingLength(r.totalIterations(trainingCount: trainIndices.count)).summary), augment \(r.augmentations.map(\.specification).joined(separator: ",")), run \(directory.path)")
        }
        let terminal = isatty(1) == 1 && !json
        var lastDraw = Date.distantPast
        trainer.log = { line in
            if terminal { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
            if !json { say(line) }
        }
        if terminal {
            trainer.progress = { batch, batches, loss, accuracy, rate, lr in
                guard -lastDraw.timeIntervalSinceNow > 0.25 || batch == batches else { return }
                lastDraw = Date()
                let eta = Double(batches - batch) * (Double(r.batchSize) / max(rate, 1))
                let width = 24, filled = width * batch / max(1, batches)
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                let line = String(format: "\r\u{1B}[K[%@] %d/%d  loss %.4f  acc %.2f%%  lr %.4g  %.0f img/s  ETA %.0fs",
                                  bar, batch, batches, loss, 100 * accuracy, lr, rate, eta)
                FileHandle.standardOutput.write(Data(line.utf8))
            }
        }
        if !terminal && !json {
            // Not a terminal (a log file, CI): a plain line at each quarter of an epoch.
            trainer.progress = { batch, batches, loss, accuracy, rate, lr in
                guard batches >= 8, batch < batches, batch % (batches / 4) == 0 else { return }
                say(String(format: "  batch %d/%d  loss %.4f  acc %.2f%%  lr %.4g  %.0f img/s", batch, batches, loss, 100 * accuracy, lr, rate))
            }
        }
        let interruption = trainer.interruption
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            if interruption.isSet { _exit(130) }
            interruption.set()
            FileHandle.standardError.write(Data("\nstopping after this step (Ctrl-C again to quit at once)\n".utf8))
        }
        source.resume()
        let outcome = try trainer.run()
        source.cancel()
        if outcome.interrupted { throw ExitCode(130) }

        // The test set is used once, by the checkpoint chosen on validation accuracy.
        var test: EvaluationResult?
        if skipTest, !json { say("test set not evaluated (--skip-test)") }
        if !skipTest, let testSet = loaded.split("test") {
            let chosen = try TrainedModel(directory.path).loaded
            let sampler = PredictionSampler(labels: testSet.labels)
            test = try Evaluator(model: chosen.model, imageShape: configuration.imageShape, classCount: configuration.classNames.count,
                                 whitening: trainer.whitening)
                .evaluate(testSet, normalization: configuration.normalization, onPrediction: sampler.record)
            if let test {
                try writeAtomically(try JSONEncoder().encode(test), to: directory.appendingPathComponent("test.json"))
                try writeConfusionMatrix(test, to: directory.appendingPathComponent("confusion_matrix.png").path)
                try writePredictionGallery(images: testSet, predictions: sampler.predictions,
                                           to: directory.appendingPathComponent("predictions.png").path)
                if !json {
                    say(String(format: "test accuracy %.2f%% (top-5 %.2f%%, loss %.4f) with %@ (epoch %d, validation %.2f%%)",
                                 100 * test.top1, 100 * test.top5, test.loss, chosen.url.lastPathComponent,
                                 outcome.state.bestEpoch ?? outcome.state.epoch, 100 * (outcome.state.bestValidationAccuracy ?? .nan)))
                }
            }
        }
        if json {
            var result: [String: Any] = ["run_dir": directory.path, "model": configuration.model, "recipe": r.name,
                                         "epochs": outcome.state.epoch, "steps": outcome.state.step,
                                         "stop_reason": outcome.state.stopReason ?? ""]
            if let v = outcome.state.bestValidationAccuracy { result["best_val_accuracy"] = v }
            if let test { result["test_top1"] = test.top1; result["test_top5"] = test.top5; result["test_loss"] = test.loss }
            let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

/// Loads a data set, turning data errors into one-line user errors.
func loadDatasetForUser(_ name: String, _ path: String?) throws -> LoadedDataset {
    do { return try loadDataset(named: name, from: path) } catch let error as DataError {
        throw UserError(error.description)
    } catch let error as DataOptionError {
        throw UserError(error.description)
    }
}

/// Loads a data set by name, detecting its format from `path`.
func loadDataset(named name: String, from path: String?) throws -> LoadedDataset {
    guard let kind = DatasetName(rawValue: name.lowercased()) else {
        throw DataOptionError("unknown data set '\(name)'; known: \(DatasetName.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return try LoadedDataset.load(kind, from: path)
}

/// Prints a line at once, unbuffered (so that `nohup resnet train > log` shows progress), in
/// order with the progress bar's writes.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Loads the data set; when CIFAR-10/100 or Fashion-MNIST is not on disk and no path was given,
/// downloads it, and when that fails for CIFAR-10, trains on the sample the repository ships.
func loadWithFallback(_ choice: inout DataChoice) throws -> LoadedDataset {
    do {
        return try loadDataset(named: choice.name, from: choice.data)
    } catch DataError.datasetNotFound(let name, _, _) where choice.data == nil {
        guard let kind = DatasetName(rawValue: name), let download = DatasetDownload.standard(kind) else { throw UserError("\(name) not found") }
        say("\(name) is not in \(kind.cacheDirectory): downloading it")
        do {
            try Downloader(log: { say($0) }).download(download, to: kind.cacheDirectory)
            return try loadDatasetForUser(choice.name, nil)
        } catch {
            guard kind == .cifar10 else { throw UserError("\(error)") }
            let sample = try extractShippedSample()
            say("download failed (\(error)); training on the CIFAR-10 sample shipped with SwiftResNet (5,000 training, 1,000 test images): far too small for the paper's accuracy")
            choice.dataset = "folder"
            choice.data = sample
            return try loadDatasetForUser("folder", sample)
        }
    } catch let error as DataError {
        throw UserError(error.description)
    }
}

/// Unpacks `data/cifar10-sample.tar.gz` of the source tree (or `RESNET_SAMPLE`) into the cache once.
func extractShippedSample() throws -> String {
    let environment = ProcessInfo.processInfo.environment
    let archive = environment["RESNET_SAMPLE"] ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("data/cifar10-sample.tar.gz").path
    let destination = DatasetName.folder.cacheDirectory
    let root = destination + "/cifar10-sample"
    if FileManager.default.fileExists(atPath: root + "/train") { return root }
    guard FileManager.default.fileExists(atPath: archive) else {
        throw UserError("CIFAR-10 is not on disk, cannot be downloaded, and the shipped sample \(archive) is missing: run `resnet download cifar10` or pass --data")
    }
    try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
    let tar = Process()
    tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
    tar.arguments = ["-xzf", archive, "-C", destination]
    try tar.run()
    tar.waitUntilExit()
    guard tar.terminationStatus == 0 else { throw UserError("\(archive): cannot unpack the sample (tar exit \(tar.terminationStatus))") }
    return root
}

/// A run file (`--config run.yaml` or `.json`): the options of `resnet train` as keys, in
/// snake_case (`batch_size: 64`), plus an optional full `schedule` in its JSON form.
struct RunFile: Decodable {
    var model: String?
    var shortcut: String?
    var dataset: String?
    var data: String?
    var recipe: String?
    var seed: UInt64?
    var precision: String?
    var runDir: String?
    var monitorTest: Bool?
    var schedule: LearningRateSchedule?
    /// Every recipe option, each set (to nil when absent): decoded files only.
    var overrides: RecipeOverrides?

    enum CodingKeys: String, CodingKey {
        case model, shortcut, dataset, data, recipe, seed, precision, schedule, runDir = "run_dir", monitorTest = "monitor_test"
        case epochs, iterations, batchSize = "batch_size", lr, optimizer, momentum, nesterov
        case weightDecay = "weight_decay", labelSmoothing = "label_smoothing", augment, normalization, validation
    }

    init() {}

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        shortcut = try c.decodeIfPresent(String.self, forKey: .shortcut)
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset)
        data = try c.decodeIfPresent(String.self, forKey: .data)
        recipe = try c.decodeIfPresent(String.self, forKey: .recipe)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        precision = try c.decodeIfPresent(String.self, forKey: .precision)
        runDir = try c.decodeIfPresent(String.self, forKey: .runDir)
        monitorTest = try c.decodeIfPresent(Bool.self, forKey: .monitorTest)
        schedule = try c.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule)
        var o = RecipeOverrides()
        o.epochs = try c.decodeIfPresent(Int.self, forKey: .epochs)
        o.iterations = try c.decodeIfPresent(Int.self, forKey: .iterations)
        o.batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize)
        o.lr = try c.decodeIfPresent(Float.self, forKey: .lr)
        o.optimizer = try c.decodeIfPresent(String.self, forKey: .optimizer).map { name in
            guard let kind = Recipe.OptimizerKind(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .optimizer, in: c, debugDescription: "optimizer must be sgd, adam or adamw")
            }
            return kind
        }
        o.momentum = try c.decodeIfPresent(Float.self, forKey: .momentum)
        o.nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov)
        o.weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay)
        o.labelSmoothing = try c.decodeIfPresent(Float.self, forKey: .labelSmoothing)
        o.augment = try c.decodeIfPresent(String.self, forKey: .augment)
        o.normalization = try c.decodeIfPresent(String.self, forKey: .normalization).map { name in
            guard let kind = Normalization.Kind(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .normalization, in: c, debugDescription: "normalization must be none, channel, pixel or zca")
            }
            return kind
        }
        o.validation = try c.decodeIfPresent(Int.self, forKey: .validation)
        overrides = o
    }

    /// Reads a YAML (`.yaml`, `.yml`) or JSON file; unknown keys are errors, not ignored.
    static func load(_ path: String) throws -> RunFile {
        guard let bytes = FileManager.default.contents(atPath: path) else { throw UserError("\(path): cannot read the run file") }
        let text = String(decoding: bytes, as: UTF8.self)
        let yaml = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        do {
            let keys: [String]
            if yaml {
                guard let object = try Yams.load(yaml: text) as? [String: Any] else { throw UserError("\(path): expected a mapping of options") }
                keys = Array(object.keys)
            } else {
                guard let object = try JSONSerialization.jsonObject(with: bytes) as? [String: Any] else { throw UserError("\(path): expected a JSON object of options") }
                keys = Array(object.keys)
            }
            let known = Set(["model", "shortcut", "dataset", "data", "recipe", "seed", "precision", "schedule", "run_dir", "monitor_test", "epochs", "iterations",
                             "batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay", "label_smoothing", "augment",
                             "normalization", "validation"])
            if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
                throw UserError("\(path): unknown option '\(unknown)'; known: \(known.sorted().joined(separator: ", "))")
            }
            return yaml ? try YAMLDecoder().decode(RunFile.self, from: text) : try JSONDecoder().decode(RunFile.self, from: bytes)
        } catch let error as UserError {
            throw error
        } catch let error as DecodingError {
            throw UserError("\(path): \(error.summary)")
        } catch {
            throw UserError("\(path): not valid \(yaml ? "YAML" : "JSON") (\(error))")
        }
    }

    static func precision(_ text: String) throws -> Precision {
        guard let precision = Precision(rawValue: text) else { throw UserError("precision must be fp32 or bf16, got '\(text)'") }
        return precision
    }

    static func shortcut(_ text: String) throws -> ShortcutOption {
        guard let option = ShortcutOption(argument: text) else { throw UserError("shortcut must be A, B or C, got '\(text)'") }
        return option
    }
}
