import ArgumentParser
import Dispatch
import Foundation
import ResNetData
import ResNetDistributed
import ResNetInference
import ResNetEngine
import ResNetModels
import ResNetTensors
import ResNetTraining
import Yams

extension Normalization.Kind: ExpressibleByArgument {}
extension Recipe.OptimizerKind: ExpressibleByArgument {}
extension PrecisionChoice: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--dataset NAME --data PATH [--image-size HxW]`, as `train` takes them.
struct DataChoice: ParsableArguments {
    @Option(help: "Data set: cifar10 (default), cifar100, fashion-mnist, mnist or folder.")
    var dataset: String?

    @Option(help: "Where the data set is: a folder, a .tar.gz or IDX files (default: the per-user cache, see `resnet download`).")
    var data: String?

    @Option(help: "Image folders: bring every image to HxW (e.g. 32x32; default: the first image's size), each side at most \(DataLimits.maximumImageSide).")
    var imageSize: String?

    /// The data set's name, `cifar10` unless given.
    var name: String { dataset ?? "cifar10" }
}

/// Every recipe setting as an optional flag: a flag given overrides the recipe (and the run file).
struct RecipeFlags: ParsableArguments {
    @Option(help: "Epochs (replaces the recipe's length).") var epochs: Int?
    @Option(help: "Iterations (replaces the recipe's length).") var iterations: Int?
    @Option(help: "Batch size.") var batchSize: Int?
    @Option(help: "Peak learning rate: scales the recipe's schedule so that its largest rate is this.") var lr: Float?
    @Option(help: "Optimizer: sgd, adam, adamw or rmsprop.") var optimizer: Recipe.OptimizerKind?
    @Option(help: "SGD momentum.") var momentum: Float?
    @Option(help: "Nesterov momentum (true/false).") var nesterov: Bool?
    @Option(help: "Weight decay.") var weightDecay: Float?
    @Option(help: "Label smoothing (0 to 1).") var labelSmoothing: Float?
    @Option(help: "Augmentations, e.g. flip,crop:4 or flip,shift:0.1:nearest,rotate:15,zoom:0.1,cutout:8, or none.") var augment: String?
    @Option(help: "Input normalization fitted on the training split: none, channel, pixel or zca.") var normalization: Normalization.Kind?
    @Option(help: "ZCA's epsilon, on pixels scaled to 0...1 (default 0.1; the Keras tutorial's 1e-6 amplifies noise).") var zcaEpsilon: Float?
    @Option(help: "Training images held out for validation (0: no validation, no best checkpoint).") var validation: Int?
    @Option(help: "ReduceLROnPlateau on a validation metric: none, or FACTOR:PATIENCE[:COOLDOWN[:MIN_LR]] (the Keras example's: 0.316:5:0:5e-7).") var plateau: String?
    @Option(help: "The metric plateau watches: loss or accuracy.") var plateauMonitor: String?
    @Option(help: "Early stopping on validation accuracy: none, or PATIENCE[:EVERY_BATCHES] (PATIENCE evaluations without improvement, at epochs' ends or every EVERY_BATCHES batches; the PyTorch note's: 5:50).") var earlyStopping: String?

    /// The library's overrides.
    var overrides: RecipeOverrides {
        var o = RecipeOverrides()
        o.epochs = epochs
        o.iterations = iterations
        o.batchSize = batchSize
        o.lr = lr
        o.optimizer = optimizer
        o.momentum = momentum
        o.nesterov = nesterov
        o.weightDecay = weightDecay
        o.labelSmoothing = labelSmoothing
        o.augment = augment
        o.normalization = normalization
        o.zcaEpsilon = zcaEpsilon
        o.validation = validation
        o.plateau = plateau
        o.plateauMonitor = plateauMonitor
        o.earlyStopping = earlyStopping
        return o
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a network (default: ResNet-20 on CIFAR-10 with the he2016 recipe).",
        discussion: "Recipes: \(Recipe.presets.map { "\($0.name) (\($0.about))" }.joined(separator: "; ")).")

    @Option(help: "The network (default resnet20; see `resnet summary --help`).") var model: String?
    @Option(help: "Shortcut option A, B or C (default: the recipe's, A for he2016, otherwise B).") var shortcut: ShortcutOption?
    @Option(help: "Keep only these classes of the data set: a range (5-9) or a list (0,2,4) of labels, renumbered from 0.") var classes: String?
    @Option(help: "With --classes: at most this many training images of each class (a seeded choice).") var perClass: Int?
    @Option(help: "Start from this model's weights (a model file, e.g. from `resnet convert`, or a run directory): transfer learning.") var from: String?
    @Option(help: "With --from: new (a new classifier for the data's classes, the default) or keep (the model's, same classes).") var head: String?
    @Option(help: "With --from: none (default), stem, stages:K (the stem and the first K stages) or backbone (all but the classifier) stay frozen: no learning, batch norm in evaluation mode.") var freeze: String?
    @Option(name: .customLong("backbone-lr-scale"), help: "With --from: the learning rate of every layer but the classifier is the recipe's times this (0 to 1; default 1), so the pretrained layers move less than the new head.") var backboneLRScale: Float?
    @Option(help: "Dropout of Wide ResNets (default 0.3) and svgg's dense layer (default 0.5).") var dropout: Float?
    @Option(help: "Convolution weights: he-normal-fan-out (default, torchvision's), he-normal-fan-in (Keras's he_normal) or glorot-uniform.") var initializer: String?
    @Flag(help: "Bottlenecks stride their first 1x1 (the paper's original ImageNet model) instead of the 3x3.") var strideOnFirst1x1 = false
    @Flag(help: "Start each residual branch's last batch-norm scale at 0 (Goyal et al. 2017; not in the paper).") var zeroInitResidual = false
    @OptionGroup var data: DataChoice
    @Option(help: "Recipe: \(Recipe.presets.map(\.name).joined(separator: ", ")) (default he2016).") var recipe: String?
    @Option(help: "A run file (YAML or JSON) with any of these options as keys (batch_size, lr, augment, ...); flags override it.")
    var config: String?
    @OptionGroup var recipeFlags: RecipeFlags
    @Option(help: "Random seed: weights, split, order, augmentation, dropout (default 0).") var seed: UInt64?
    @Option(help: "Run directory (default: runs/MODEL-DATASET-RECIPE-TIME).") var runDir: String?
    @Option(help: "Continue the run in this directory.") var resume: String?
    @Flag(help: "Pin everything that affects the result (thread count included) so a resumed run ends with the same weights.")
    var deterministic = false
    @Option(help: "Training precision: auto (default: bf16 where the CPU has native bf16, else fp32), fp32, or bf16 (mixed: bfloat16 activations and convolutions, float32 master weights, statistics and loss). Evaluation is fp32.")
    var precision: PrecisionChoice?
    @Flag(help: "Do not evaluate the test set at the end, e.g. while tuning a recipe on the validation split; evaluate the chosen run once later with `resnet evaluate RUN_DIR --split test`.")
    var skipTest = false
    @Flag(help: "Evaluate the test split at every epoch's end and log it (test_loss, test_accuracy in metrics.csv), as the paper's Fig. 6 plots test error during training. Never used to choose the checkpoint, reduce the rate or stop.")
    var monitorTest = false
    @Option(help: "Train each batch as K equal micro-batches (batch-norm statistics per micro-batch, gradients averaged): less memory for the same batch, and a single process's equivalent of K ranks without synchronized batch norm. Recorded (as ranks x K) and kept by --resume, which refuses a value that would change batch norm's statistics.")
    var microBatches: Int?
    @Flag(name: .customLong("sync-bn"), help: "Under mpirun: batch norm normalizes with the statistics of the whole global batch (sums all-reduced in forward and backward; fp32 only) instead of each rank's shard. Accepted and without effect in one process. Recorded and kept by --resume.")
    var syncBatchNorm = false
    @Option(help: "Under mpirun: seconds a rank waits for the others at a collective before the job ends with an error (a rank died or hangs).")
    var mpiTimeout: Double = 300
    @Option(name: .customLong("mpi-bucket-mb"), help: "Under mpirun: largest gradient all-reduce bucket in MiB (default 4; each starts as soon as backward has finished its gradients). With 2 ranks any size gives the same result; with more, Open MPI may sum in another order.")
    var mpiBucketMB: Double = 4
    @Flag(help: "List the recipes and exit.") var listRecipes = false
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        if listRecipes {
            for r in Recipe.presets { print("\(r.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(r.about)") }
            return
        }
        // Checked in one process too (where they do nothing), so that a command line that runs
        // alone runs under mpirun.
        guard mpiTimeout.isFinite, mpiTimeout >= 1 else { throw UserError("--mpi-timeout must be at least 1 second, got \(mpiTimeout)") }
        guard mpiBucketMB.isFinite, mpiBucketMB >= 1.0 / 1024, mpiBucketMB <= 1024 else {
            throw UserError("--mpi-bucket-mb must be between 1/1024 (1 KiB) and 1024, got \(mpiBucketMB)")
        }
        var group: MPICommunicator?
        if MPICommunicator.isLaunchedByMPI {
            do { group = try MPICommunicator(timeout: mpiTimeout) } catch let error as DistributedError { throw UserError(error.description) }
            group!.bucketBytes = Int(mpiBucketMB * 1_048_576) / 4 * 4
            sayIsSilent = group!.rank != 0
            // One rank per core by default: the cores of this host shared among its ranks.
            let environment = ProcessInfo.processInfo.environment
            if engine.threads == nil, environment["RESNET_THREADS"] == nil,
               let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init), local > 1 {
                ComputeEngine.shared.setThreadCount(max(1, ComputeEngine.coreCount / local))
            }
        }
        try engine.apply()
        do { try train(group: group) } catch let error as TrainingError {
            throw UserError(error.description)
        } catch let error as ModelError {
            throw UserError(error.description)
        } catch let error as DistributedError {
            throw UserError(error.description)
        } catch let error as RankFailure {
            throw UserError(error.description, ownRankFailure: true)
        } catch is PeerFailure {
            MPICommunicator.exitAfterPeerFailure()   // the rank that failed says why
        }
        group?.finalize()
    }

    /// The flags given, as a request (the run file's settings come under them).
    private var request: RunRequest {
        var r = RunRequest()
        r.model = model
        r.shortcut = shortcut
        r.dataset = data.dataset
        r.data = data.data
        r.imageSize = data.imageSize
        r.recipe = recipe
        r.seed = seed
        r.precision = precision
        r.runDirectory = runDir
        r.monitorTest = monitorTest ? true : nil
        r.skipTest = skipTest ? true : nil
        r.deterministic = deterministic ? true : nil
        r.classes = classes
        r.perClass = perClass
        r.from = from
        r.head = head
        r.freeze = freeze
        r.backboneLearningRateScale = backboneLRScale
        r.dropout = dropout
        r.initializer = initializer
        r.strideOnFirst1x1 = strideOnFirst1x1 ? true : nil
        r.zeroInitializedResidual = zeroInitResidual ? true : nil
        r.overrides = recipeFlags.overrides
        return r
    }

    private func train(group communicator: MPICommunicator?) throws {
        let group = (communicator?.size ?? 1) > 1 ? communicator : nil
        if let microBatches, microBatches < 1 { throw UserError("--micro-batches must be at least 1, got \(microBatches)") }
        let directory: URL
        let configuration: RunConfiguration
        var loaded: LoadedDataset
        if let resume {
            let changed = (config != nil ? ["--config"] : []) + request.settingsThatChangeARun
            guard changed.isEmpty else {
                throw UserError("\(changed.joined(separator: ", ")) cannot change a run being resumed: --resume continues it exactly as configured (start a new run to change it)")
            }
            directory = URL(fileURLWithPath: resume)
            if let group {
                // Rank 0's copy: the other hosts need no access to the run directory.
                let bytes = try group.broadcast(group.rank == 0 ? [UInt8](try Self.readConfiguration(directory)) : [])
                configuration = try Trainer.decodeConfiguration(Data(bytes), path: directory.appendingPathComponent("config.json").path)
            } else {
                configuration = try Trainer.loadConfiguration(directory)
            }
            if configuration.deterministic {
                if configuration.threads > ComputeEngine.coreCount {
                    FileHandle.standardError.write(Data("warning: this deterministic run was made with \(configuration.threads) threads and this machine has \(ComputeEngine.coreCount) cores: it resumes with \(ComputeEngine.coreCount), so its weights will not be bitwise those of an uninterrupted run\n".utf8))
                }
                ComputeEngine.shared.setThreadCount(configuration.threads)
            }
            loaded = try loadDatasetForUser(configuration.dataset, configuration.dataPath, imageSize: configuration.loadedImageSize)
        } else {
            let asked = request.over(try config.map { try RunRequest.load(runFile: $0) } ?? RunRequest())
            let resolved = try resolveDataset(asked.dataset ?? "cifar10", path: asked.data, imageSize: asked.imageSize)
            loaded = resolved.dataset
            configuration = try asked.configuration(data: loaded, dataset: resolved.name.rawValue, dataPath: resolved.path,
                                                    isSample: resolved.isSample,
                                                    threads: ComputeEngine.shared.threadCount, log: { say($0) })
            directory = asked.directory(for: configuration)
        }
        if let warning = (configuration.precision ?? .fp32).warning {
            FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
        }
        let skipTest = self.skipTest || configuration.skipsTest == true
        loaded = try configuration.prepared(loaded)   // its classes, when the run keeps some only
        guard let train = loaded.split("train") else { throw UserError("\(loaded.name) has no training split") }
        let (trainIndices, validationIndices) = try configuration.split(train)
        if case .zca(let epsilon) = configuration.normalization, !json {
            say("fitting ZCA whitening (epsilon \(epsilon)) on \(trainIndices.count) training images: a \(train.elementsPerImage)x\(train.elementsPerImage) eigen-decomposition, about 20 s")
        }
        let trainer = try Trainer(configuration: configuration, training: train.subset(trainIndices),
                                  validation: validationIndices.isEmpty ? nil : train.subset(validationIndices),
                                  test: configuration.monitorsTest == true ? loaded.split("test") : nil,
                                  runDirectory: directory, resume: resume != nil, group: group, microBatches: microBatches,
                                  synchronizesBatchNorm: syncBatchNorm)
        let r = configuration.recipe
        if !json {
            say("\(configuration.model) on \(loaded.name): \(trainIndices.count) training / \(validationIndices.count) validation images, \(trainer.model.trainableParameterCount) parameters, \(ComputeEngine.shared.threadCount) threads, \((configuration.precision ?? .fp32).rawValue), shortcut \(configuration.modelOptions.shortcut)")
            if let group {
                say("data parallel: \(group.size) ranks x \(ComputeEngine.shared.threadCount) threads, \(r.batchSize / group.size) images per rank and step\(trainer.microBatches > 1 ? " in \(trainer.microBatches) micro-batches" : "")\(trainer.synchronizesBatchNorm ? ", synchronized batch norm" : "")")
            } else if trainer.microBatches > 1 {
                say("\(trainer.microBatches) micro-batches of \(r.batchSize / trainer.microBatches) images per step")
            }
            say("recipe \(r.name): \(r.optimizer) batch \(r.batchSize), \(r.schedule.resolvingLength(r.totalIterations(trainingCount: trainIndices.count)).summary), augment \(r.augmentations.map(\.specification).joined(separator: ",")), run \(directory.path)")
        }
        let terminal = isatty(1) == 1 && !json && !sayIsSilent
        var lastDraw = Date.distantPast
        trainer.log = { line in
            if terminal { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
            if !json { say(line) }
        }
        if terminal {
            trainer.callbacks.append(ProgressCallback { p in
                guard -lastDraw.timeIntervalSinceNow > 0.25 || p.batch == p.batches else { return }
                lastDraw = Date()
                let width = 24, filled = width * p.batch / max(1, p.batches)
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                let line = String(format: "\r\u{1B}[K[%@] epoch %d/%d  %d/%d  loss %.4f  acc %.2f%%  lr %.4g  %.0f img/s  run ETA %@",
                                  bar, p.epoch, p.epochs, p.batch, p.batches, p.loss, 100 * p.accuracy, p.learningRate, p.imagesPerSecond,
                                  duration(p.remainingSeconds))
                FileHandle.standardOutput.write(Data(line.utf8))
            })
        }
        if let plateau = r.plateau, !json {
            say(String(format: "plateau: x%.3g after %d evaluations without a better validation %@ (cooldown %d, minimum rate %g)",
                       plateau.factor, plateau.patience, r.plateauMonitor, plateau.cooldown, plateau.minimumLearningRate))
        }
        if let stop = r.earlyStopping, !json {
            say("early stopping: after \(stop.patience) evaluations without a better validation accuracy, evaluated \(stop.everyBatches.map { "every \($0) batches" } ?? "at each epoch's end")")
        }
        if !terminal && !json && !sayIsSilent {
            // Not a terminal (a log file, CI): a plain line at each quarter of an epoch.
            trainer.callbacks.append(ProgressCallback { p in
                guard p.batches >= 8, p.batch < p.batches, p.batch % (p.batches / 4) == 0 else { return }
                say(String(format: "  epoch %d/%d  batch %d/%d  loss %.4f  acc %.2f%%  lr %.4g  %.0f img/s  run ETA %@", p.epoch, p.epochs,
                           p.batch, p.batches, p.loss, 100 * p.accuracy, p.learningRate, p.imagesPerSecond, duration(p.remainingSeconds)))
            })
        }
        let source = stopOnControlC(trainer.interruption)
        let started = Date()
        let outcome = try trainer.run()
        source.cancel()
        if let group, let communicator, communicator.reductions > 0, !json {
            let seconds = -started.timeIntervalSinceNow
            say(String(format: "all-reduce: %.1f%% of the training time (%.2f ms per step, %.2f MB per rank and step, %d ranks); sums (step losses, waiting for the slower rank): %.2f ms per step",
                       100 * communicator.reductionSeconds / max(seconds, 1e-9), 1000 * communicator.reductionSeconds / Double(communicator.reductions),
                       Double(communicator.reducedFloats * 4) / 1e6, group.size, 1000 * communicator.sumSeconds / Double(communicator.reductions)))
        }
        if outcome.interrupted { throw ExitCode(130) }
        // Rank 0 alone evaluates the test set and reports; the others are done.
        if let group, group.rank != 0 { return }

        // The test set is used once, by the checkpoint chosen on validation accuracy.
        var test: EvaluationResult?
        if skipTest, !json { say("test set not evaluated (--skip-test)") }
        if !skipTest, let testSet = loaded.split("test") {
            let (result, checkpoint) = try evaluateTestSplit(of: directory, test: testSet, whitening: trainer.whitening,
                                                             batchSize: trainer.evaluationBatchSize)
            test = result
            if !json {
                say(String(format: "test accuracy %.2f%% (top-5 %.2f%%, loss %.4f) with %@ (epoch %d, validation %.2f%%)",
                           100 * result.top1, 100 * result.top5, result.loss, checkpoint.lastPathComponent,
                           outcome.state.bestEpoch ?? outcome.state.epoch, 100 * (outcome.state.bestValidationAccuracy ?? .nan)))
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

extension Train {
    /// A run directory's `config.json`, read by rank 0 to hand to the others.
    static func readConfiguration(_ directory: URL) throws -> Data {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("config.json")) else {
            throw UserError("\(directory.path): no run to resume here (config.json is missing or unreadable)")
        }
        return data
    }
}

/// The data set a user named, or one line listing the known ones.
func datasetKind(_ name: String) throws -> DatasetName {
    guard let kind = DatasetName(rawValue: name.lowercased()) else {
        throw UserError("unknown data set '\(name)'; known: \(DatasetName.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return kind
}

/// Loads the data set a user named, as `train` and `probe` do: `imageSize` (`HxW`) for image
/// folders; with no path, the cache, a download, and for CIFAR-10 the shipped sample.
func resolveDataset(_ name: String, path: String?, imageSize: String?) throws -> LoadedDataset.Resolved {
    let kind = try datasetKind(name)
    do {
        let size = try imageSize.map(DatasetOptions.parseImageSize)
        return try LoadedDataset.loadWithFallback(kind, from: path, options: DatasetOptions(imageSize: size), download: true, log: { say($0) })
    } catch let error as DataError {
        throw UserError(error.description)
    } catch let error as DataOptionError {
        throw UserError("--image-size: \(error.description)")
    }
}

/// Loads a data set, turning data errors into one-line user errors; `imageSize` (`[H, W]`)
/// brings an image folder's images to one size, as the run that trained on it did.
func loadDatasetForUser(_ name: String, _ path: String?, imageSize: [Int]? = nil) throws -> LoadedDataset {
    let kind = try datasetKind(name)
    let size = imageSize.flatMap { $0.count == 2 ? (height: $0[0], width: $0[1]) : nil }
    do { return try LoadedDataset.load(kind, from: path, options: DatasetOptions(imageSize: size)) } catch let error as DataError {
        throw UserError(error.description)
    } catch let error as DataOptionError {
        throw UserError(error.description)
    }
}

/// `1h05m`, `12m30s` or `45s`.
func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3_600 { return String(format: "%dh%02dm", s / 3_600, s % 3_600 / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}

/// Set on the ranks other than 0 of a data-parallel run: rank 0 alone speaks.
nonisolated(unsafe) var sayIsSilent = false

/// Prints a line at once, unbuffered (so that `nohup resnet train > log` shows progress), in
/// order with the progress bar's writes.
func say(_ line: String) {
    if sayIsSilent { return }
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
