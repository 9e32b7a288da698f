import Foundation
import ResNetData
import ResNetInference
import ResNetLayers
import ResNetModels
import ResNetOptimizers
import ResNetTensors

/// What a run is: model, data, recipe, seed. Saved as `config.json` in the run directory and in
/// every checkpoint's metadata; a resumed run must match it.
public struct RunConfiguration: Codable, Sendable, Equatable {
    public var model: String
    public var modelOptions: ModelOptions
    /// `[C, H, W]`.
    public var imageShape: [Int]
    public var classNames: [String]
    public var dataset: String
    public var dataPath: String?
    public var recipe: Recipe
    public var seed: UInt64
    /// Fitted on the training split (never on validation or test images).
    public var normalization: Normalization
    /// Sizes of the training and validation parts after the seeded split.
    public var trainingCount: Int
    public var validationCount: Int
    /// oneDNN threads; a deterministic run resumes with the same count.
    public var threads: Int
    public var deterministic: Bool
    /// Training precision; `nil` (runs made before bf16 existed) means fp32. Evaluation
    /// always runs in fp32 on the float32 master weights.
    public var precision: Precision?
    /// Evaluate the test split at every epoch's end and log it beside the training and validation
    /// metrics, as the paper's Fig. 6 plots test error during training. Never used to choose a
    /// checkpoint, to reduce a rate or to stop. `nil` (runs made before it existed) means no.
    public var monitorsTest: Bool?
    /// Leave the test split untouched at the end (tuning on the validation split); remembered
    /// so that a resumed run does the same. `nil` means no.
    public var skipsTest: Bool?
    /// `[H, W]` the data set's images were brought to when loaded (`--image-size`), so that a
    /// resume or an evaluation loads them the same way; `nil`: as stored.
    public var loadedImageSize: [Int]?
    /// Transfer learning: the model the run starts from and what stays frozen; `nil`: from
    /// scratch.
    public var transfer: TransferSettings?
    /// Only some classes of the data set, and at most so many training images of each.
    public var dataSubset: DataSubset?
    /// Batch norm's statistics: each global batch is normalized in this many equal contiguous
    /// parts, as one process with `--micro-batches` this many would (under mpirun: ranks x
    /// micro-batches per rank; 1 with synchronized batch norm). Recorded because it changes the
    /// result, unlike the rank count, which a resume may change
    /// (``batchNormLaunch(processes:microBatches:synchronizesBatchNorm:)``). `nil`: 1 (runs
    /// record it only when it is not 1, so runs made before it was recorded read as 1).
    public var microBatches: Int?
    /// `--sync-bn`: under mpirun, batch norm normalizes with the global batch's statistics
    /// (``microBatches`` is then 1); a resume keeps it. `nil`: no (recorded only when set).
    public var synchronizesBatchNorm: Bool?

    public init(model: String, modelOptions: ModelOptions, imageShape: [Int], classNames: [String], dataset: String,
                dataPath: String?, recipe: Recipe, seed: UInt64, normalization: Normalization, trainingCount: Int,
                validationCount: Int, threads: Int, deterministic: Bool, precision: Precision = .fp32, monitorsTest: Bool? = nil,
                skipsTest: Bool? = nil, loadedImageSize: [Int]? = nil, transfer: TransferSettings? = nil,
                dataSubset: DataSubset? = nil, microBatches: Int? = nil, synchronizesBatchNorm: Bool? = nil) {
        self.model = model
        self.modelOptions = modelOptions
        self.imageShape = imageShape
        self.classNames = classNames
        self.dataset = dataset
        self.dataPath = dataPath
        self.recipe = recipe
        self.seed = seed
        self.normalization = normalization
        self.trainingCount = trainingCount
        self.validationCount = validationCount
        self.threads = threads
        self.deterministic = deterministic
        self.precision = precision
        self.monitorsTest = monitorsTest
        self.skipsTest = skipsTest
        self.loadedImageSize = loadedImageSize
        self.transfer = transfer
        self.dataSubset = dataSubset
        self.microBatches = microBatches
        self.synchronizesBatchNorm = synchronizesBatchNorm
    }

    /// The configuration with the batch-norm settings at their defaults (1 part, not
    /// synchronized) written as `nil`, as runs record them: such a run's `config.json` is the
    /// one it had before they were recorded.
    var recordingBatchNormDefaultsAsNil: RunConfiguration {
        var c = self
        if c.microBatches == 1 { c.microBatches = nil }
        if c.synchronizesBatchNorm == false { c.synchronizesBatchNorm = nil }
        return c
    }

    /// Builds the network this configuration describes (weights from `seed`).
    public func buildModel() throws -> any Layer {
        let definition = try ModelDefinition(name: model, options: modelOptions)
        let model = try definition.build(input: ImageShape(height: imageShape[1], width: imageShape[2], channels: imageShape[0]),
                                         classes: classNames.count)
        model.initializeParameters(seed: seed)
        return model
    }
}

/// The CPU time this process has used so far, all threads, in seconds.
func processCPUSeconds() -> Double {
    var time = timespec()
    guard clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time) == 0 else { return 0 }
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// One line of the metrics history.
public struct EpochRecord: Codable, Sendable, Equatable {
    public var epoch: Int
    public var step: Int
    public var learningRate: Float
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    /// The test split's, when the run monitors it (``RunConfiguration/monitorsTest``).
    public var testLoss: Double?
    public var testAccuracy: Double?
    /// Wall time of the epoch's training steps: the evaluations at its end and
    /// ``PauseCallback`` pauses are not counted; validations within the epoch (early stopping's
    /// `everyBatches`), a SIGSTOP and a machine shared with other work are.
    public var seconds: Double
    public var imagesPerSecond: Double
    /// CPU time of this process (all its threads: compute and data loading) over the same
    /// steps: unlike `seconds`, it does not grow while the process is stopped, and barely
    /// while it waits for a core (OpenMP threads spin a little before they sleep), so it
    /// measures the training's compute on a shared machine. In a data-parallel run it is rank
    /// 0's, whose wait for the other ranks' gradients polls and counts. `nil` in runs made
    /// before it was recorded, and for an epoch resumed mid-way from such a run's checkpoint.
    public var cpuSeconds: Double? = nil

    enum CodingKeys: String, CodingKey {
        case epoch, step, learningRate = "lr", trainLoss = "train_loss", trainAccuracy = "train_accuracy"
        case validationLoss = "val_loss", validationAccuracy = "val_accuracy", seconds, imagesPerSecond = "images_per_second"
        case testLoss = "test_loss", testAccuracy = "test_accuracy", cpuSeconds = "cpu_seconds"
    }
}

/// One evaluation of the validation split during a run.
public struct ValidationRecord: Codable, Sendable, Equatable {
    /// The epoch in progress (1-based) and the steps taken when it was measured.
    public var epoch: Int
    public var step: Int
    public var loss: Double
    public var accuracy: Double
    /// Whether it was the best so far: `best.safetensors` holds the weights of the last such row.
    public var best: Bool
}

/// Where a run stands: everything besides weights and optimizer buffers that an exact resume needs.
public struct RunState: Codable, Sendable, Equatable {
    /// The epoch in progress (0-based) and the next batch in it.
    public var epoch = 0
    public var batchInEpoch = 0
    /// Optimizer steps taken.
    public var step = 0
    public var plateau: ReduceLROnPlateau?
    public var earlyStopping: EarlyStopping?
    public var bestValidationAccuracy: Double?
    public var bestEpoch: Int?
    /// The step of the best validation (`nil` in runs made before it was recorded).
    public var bestStep: Int?
    public var history: [EpochRecord] = []
    /// Every validation, at epochs' ends and within epochs (early stopping's `everyBatches`), in
    /// order; `nil` in runs made before it was recorded.
    public var validations: [ValidationRecord]?
    /// The dropout generator of the training graph.
    public var dropoutState: [UInt64] = []
    /// Sums of the epoch in progress: loss x images, correct, images, seconds.
    public var partialLoss = 0.0
    public var partialCorrect = 0
    public var partialSeen = 0
    public var partialSeconds = 0.0
    /// The epoch in progress's CPU seconds (``EpochRecord/cpuSeconds``); `nil` when its start
    /// was made before they were recorded.
    public var partialCPUSeconds: Double? = 0
    public var finished = false
    public var stopReason: String?

    public init() {}
}

/// Trains a model by a recipe, with validation, checkpoints, logs and exact resume.
///
/// The loop is the paper's: each step is a ``TrainingStep`` (inputs, forward, finite loss,
/// backward, ``gradientHook``, update); everything else is a ``TrainingCallback`` in
/// ``callbacks``, called in order: validation with the best checkpoint, plateau and early
/// stopping (``ValidationCallback``), the test monitor, metrics files and curves, TensorBoard,
/// and whatever a caller appends (progress display, a metrics server). The one thing the loop
/// keeps is `last.safetensors`, written at every epoch's end and on interruption, because exact
/// resume depends on it.
///
/// A run directory holds `config.json`, `last.safetensors` (weights, model card, optimizer
/// buffers under `optimizer/`, and the run state in the metadata), `best.safetensors` (the model
/// of the best validation accuracy, with the metrics in its card), `metrics.csv`,
/// `metrics.jsonl` and `validation.csv`. Every file is written atomically.
public final class Trainer {
    public let configuration: RunConfiguration
    public let runDirectory: URL
    public let model: any Layer
    /// Where the run stands; callbacks may set ``RunState/stopReason`` through ``requestStop(_:)``.
    public internal(set) var state = RunState()
    /// Receives one line per event (epoch summaries, checkpoints, stops).
    public var log: (String) -> Void = { print($0) }
    /// Everything around the steps, in the order it runs at each event.
    public var callbacks: [any TrainingCallback] = []
    /// Called between backward and the update of every step (``TrainingStep/gradientHook``).
    public var gradientHook: (([Parameter]) throws -> Void)?
    /// Set (from a signal handler) to stop after the current step with a checkpoint.
    public let interruption = Interruption()

    /// The run's length and schedule, known once ``run()`` has started.
    public struct Plan: Sendable {
        public let stepsPerEpoch: Int
        public let totalSteps: Int
        /// Epochs the run takes (the last one may be partial).
        public var epochs: Int { (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch }
        public let schedule: LearningRateSchedule
    }
    public private(set) var plan: Plan?
    /// A data-parallel run's interruption, once all ranks know of it (after the same step).
    private var agreedInterruption = false
    /// Whether the run stops for an interruption: this process's signal, or in a data-parallel
    /// run the ranks' agreement, so that all stop after the same step.
    private var interrupted: Bool { group == nil ? interruption.isSet : agreedInterruption }

    let training: ImageDataset
    let validation: ImageDataset?
    let monitoredTest: ImageDataset?
    /// Fitted on the training part when the normalization is ZCA.
    public let whitening: ZCAWhitening?
    /// Images per evaluation pass: 500, or fewer when the input is large (memory).
    public let evaluationBatchSize: Int
    let optimizer: any Optimizer
    private let parameters: [Parameter]
    var recipe: Recipe { configuration.recipe }
    /// The processes of a data-parallel run (`nil`: this one alone). Each trains on its shard of
    /// every global batch of ``Recipe/batchSize`` images; rank 0 alone writes files.
    public let group: (any DataParallelGroup)?
    /// Each process's part of a batch is trained as this many micro-batches (``TrainingStep/microBatches``).
    public let microBatches: Int
    /// Data-parallel runs: batch norm normalizes with the statistics of the global batch (the
    /// group must be a ``BatchNormSynchronizer``). Without a group it changes nothing.
    public let synchronizesBatchNorm: Bool
    /// Whether this process writes the run's files: rank 0, or the only process.
    public var isPrimary: Bool { (group?.rank ?? 0) == 0 }

    /// - Parameters:
    ///   - training, validation: the split (the validation part may be empty: no model selection).
    ///   - test: the test split, evaluated at each epoch's end only when the configuration
    ///     ``RunConfiguration/monitorsTest``; logged, never used for any decision.
    ///   - resume: continue the run in `runDirectory` instead of starting one.
    ///   - group: a data-parallel run's processes; every rank must pass the same configuration
    ///     (checked against rank 0's). Rank 0 alone reads and writes the run directory; a
    ///     resume hands its checkpoint to the others.
    ///   - microBatches: train each process's part of a batch in this many micro-batches
    ///     (`--micro-batches`; `nil`: 1 in a new run, what the run records on a resume).
    ///   - synchronizesBatchNorm: `--sync-bn` (a resume keeps what the run records).
    ///
    /// A new run records both in its configuration (``RunConfiguration/microBatches``: ranks x
    /// micro-batches); a resume takes them from it, or refuses settings that would change batch
    /// norm's statistics (``RunConfiguration/batchNormLaunch(processes:microBatches:synchronizesBatchNorm:)``).
    public init(configuration given: RunConfiguration, training: ImageDataset, validation: ImageDataset?,
                test: ImageDataset? = nil, runDirectory: URL, resume: Bool,
                group: (any DataParallelGroup)? = nil, microBatches: Int? = nil, synchronizesBatchNorm: Bool = false) throws {
        self.group = group?.size ?? 1 > 1 ? group : nil
        let processes = self.group?.size ?? 1, batch = given.recipe.batchSize
        var configuration = try given.validated().recordingBatchNormDefaultsAsNil
        if !resume {
            let parts = synchronizesBatchNorm ? 1 : processes * (microBatches ?? 1)
            configuration.microBatches = parts
            configuration.synchronizesBatchNorm = synchronizesBatchNorm
            configuration = configuration.recordingBatchNormDefaultsAsNil
        }
        // The ranks' configurations are compared first; the checks after it then fail alike on
        // every rank, and rank 0 alone says so.
        if let group = self.group { try Self.checkSameConfiguration(configuration, group: group) }
        let quiet = (self.group?.rank ?? 0) != 0
        func refuse(_ message: String) -> any Error { quiet ? PeerFailure() : TrainingError.invalidOption(message) }
        if let microBatches, microBatches < 1 { throw refuse("\(microBatches) micro-batches (at least 1)") }
        guard processes <= batch else {
            throw refuse("\(processes) processes for a global batch of \(batch) images: every process needs at least one image of each batch (use at most \(batch) ranks or a larger --batch-size)")
        }
        let launch: (microBatches: Int, synchronizesBatchNorm: Bool)
        do {
            launch = try configuration.batchNormLaunch(processes: processes, microBatches: resume ? microBatches : microBatches ?? 1,
                                                       synchronizesBatchNorm: synchronizesBatchNorm)
        } catch let error as TrainingError { throw refuse(error.description) }
        self.microBatches = launch.microBatches
        self.synchronizesBatchNorm = launch.synchronizesBatchNorm
        guard batch % (processes * launch.microBatches) == 0 else {
            throw refuse(processes > 1
                ? "the global batch of \(batch) images cannot be split evenly over \(processes) processes\(launch.microBatches > 1 ? " x \(launch.microBatches) micro-batches" : ""): use a batch size that is a multiple of \(processes * launch.microBatches)"
                : "a batch of \(batch) images cannot be split into \(launch.microBatches) equal micro-batches")
        }
        // Checked in one process too, so that a command line that runs alone runs under mpirun.
        if launch.synchronizesBatchNorm {
            if let group = self.group, !(group is any BatchNormSynchronizer) { throw refuse("this process group cannot synchronize batch norm") }
            guard (configuration.precision ?? .fp32) == .fp32 else { throw refuse("synchronized batch norm needs fp32 training: add --precision fp32") }
        }
        self.configuration = try configuration.validated()
        self.runDirectory = runDirectory
        self.training = training
        self.validation = validation?.count == 0 ? nil : validation
        if configuration.monitorsTest == true {
            guard let test, test.count > 0 else {
                throw TrainingError.invalidOption("the run monitors the test split, but the data set has none")
            }
            monitoredTest = test
        } else {
            monitoredTest = nil
        }
        guard training.count >= configuration.recipe.batchSize else {
            throw TrainingError.invalidOption("\(training.count) training images cannot fill one batch of \(configuration.recipe.batchSize)")
        }
        if case .zca(let epsilon) = configuration.normalization {
            do { whitening = try ZCAWhitening.fit(training, epsilon: epsilon) } catch let e as DataOptionError {
                throw TrainingError.invalidOption(e.description)
            }
        } else {
            whitening = nil
        }
        model = try configuration.buildModel()
        let shape = configuration.imageShape
        let summary = try ModelSummary(of: model, name: configuration.model, input: ImageShape(height: shape[1], width: shape[2], channels: shape[0]),
                                       classes: configuration.classNames.count)
        try summary.checkFits(batchSize: configuration.recipe.batchSize, training: true)
        evaluationBatchSize = try summary.largestFittingBatch(upTo: 500, training: false)
        // Frozen layers are frozen before the optimizer sees the parameters; the starting
        // weights of a new run come from the model it transfers from (a resume restores its own).
        if let transfer = configuration.transfer {
            try transfer.freeze.apply(to: model)
            transfer.applyLearningRateScale(to: model)
            if !resume { try transfer.loadStartingWeights(into: model) }
        }
        parameters = model.trainableParameters
        optimizer = try configuration.recipe.makeOptimizer()
        optimizer.register(parameters)
        let files = FileManager.default
        let last = runDirectory.appendingPathComponent("last.safetensors")
        if let group = self.group, group.rank != 0 {
            // Rank 0 checks and owns the directory; a resume's checkpoint comes from it.
            state.plateau = recipe.plateau
            state.earlyStopping = recipe.earlyStopping.map { EarlyStopping(patience: $0.patience, minimumDelta: $0.minimumDelta, maximize: true) }
            state.validations = []
            if resume {
                let bytes = try group.broadcast([])
                try restore(try SafeTensors.decode(Data(bytes), path: last.path), path: last.path)
            }
        } else {
            for name in removeStaleTemporaryFiles(in: runDirectory) { log("removed \(name), left by an interrupted checkpoint write") }
            if resume {
                guard files.fileExists(atPath: last.path) else {
                    throw TrainingError.checkpoint("\(runDirectory.path): no run to resume (no last.safetensors)")
                }
                let saved = try Self.loadConfiguration(runDirectory).recordingBatchNormDefaultsAsNil
                guard saved == configuration else {
                    throw TrainingError.checkpoint("\(runDirectory.path): the run was made with other settings (model, data or recipe); resume without changing them")
                }
                if let group = self.group {
                    let bytes: Data
                    do { bytes = try Data(contentsOf: last) } catch {
                        throw TrainingError.checkpoint("\(last.path): unreadable (\(error.localizedDescription))")
                    }
                    _ = try group.broadcast([UInt8](bytes))
                    try restore(try SafeTensors.decode(bytes, path: last.path), path: last.path)
                } else {
                    try restore(from: last)
                }
            } else {
                if files.fileExists(atPath: last.path) {
                    throw TrainingError.checkpoint("\(runDirectory.path) already holds a run: pass --resume to continue it or choose another --run-dir")
                }
                do { try files.createDirectory(at: runDirectory, withIntermediateDirectories: true) } catch {
                    throw TrainingError.checkpoint("\(runDirectory.path): cannot create the run directory (\(error.localizedDescription))")
                }
                guard files.isWritableFile(atPath: runDirectory.path) else {
                    throw TrainingError.checkpoint("\(runDirectory.path): the run directory is not writable")
                }
                state.plateau = recipe.plateau
                state.earlyStopping = recipe.earlyStopping.map { EarlyStopping(patience: $0.patience, minimumDelta: $0.minimumDelta, maximize: true) }
                state.validations = []
                try writeAtomically(try Self.encoder.encode(configuration), to: runDirectory.appendingPathComponent("config.json"))
            }
        }
        if let validation {
            callbacks.append(ValidationCallback(evaluator: Evaluator(model: model, imageShape: configuration.imageShape,
                                                                     classCount: configuration.classNames.count,
                                                                     batchSize: evaluationBatchSize, whitening: whitening),
                                                validation: validation))
        }
        if let monitoredTest {
            callbacks.append(TestMonitorCallback(evaluator: Evaluator(model: model, imageShape: configuration.imageShape,
                                                                      classCount: configuration.classNames.count,
                                                                      batchSize: evaluationBatchSize, whitening: whitening),
                                                 test: monitoredTest))
        }
        guard isPrimary else { return }
        callbacks.append(MetricsFilesCallback())
        if let board = try? TensorBoardWriter(directory: runDirectory.appendingPathComponent("tensorboard")) {
            callbacks.append(TensorBoardCallback(writer: board))
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }()
    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }()

    /// Decodes and validates a configuration saved by a run (`config.json`, or a checkpoint's
    /// `resnet.config`); `path` names the file in errors.
    public static func decodeConfiguration(_ data: Data, path: String) throws -> RunConfiguration {
        let configuration: RunConfiguration
        do { configuration = try decoder.decode(RunConfiguration.self, from: data) } catch let error as DecodingError {
            throw TrainingError.checkpoint("\(path): not a run configuration (\(error.summary))")
        } catch {
            throw TrainingError.checkpoint("\(path): not a run configuration (not JSON)")
        }
        do { return try configuration.validated() } catch let error as TrainingError {
            throw TrainingError.checkpoint("\(path): \(error.description)")
        }
    }

    /// The configuration saved in a run directory.
    public static func loadConfiguration(_ runDirectory: URL) throws -> RunConfiguration {
        let url = runDirectory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url) else {
            throw TrainingError.checkpoint("\(runDirectory.path): no run to resume here (config.json is missing or unreadable)")
        }
        return try decodeConfiguration(data, path: url.path)
    }

    // MARK: - Checkpoints

    func saveLast() throws {
        guard isPrimary else { return }
        var tensors: [String: SafeTensors.Tensor] = [:]
        for (key, values) in optimizer.stateDictionary() {
            tensors["optimizer/" + key] = SafeTensors.Tensor(shape: [values.count], values: values)
        }
        let metadata = ["resnet.config": String(decoding: try Self.encoder.encode(configuration), as: UTF8.self),
                        "resnet.state": String(decoding: try Self.encoder.encode(state), as: UTF8.self)]
        let card = configuration.modelCard(run: runDirectory.path, epoch: state.epoch, step: state.step)
        try ModelFile.write(model: model, card: card, whitening: whitening, extraTensors: tensors, metadata: metadata,
                            to: runDirectory.appendingPathComponent("last.safetensors"))
    }

    /// Writes `best.safetensors`: the model now, with the validation that made it best.
    func saveBest(_ record: EpochRecord) throws {
        guard isPrimary else { return }
        let metadata = ["resnet.config": String(decoding: try Self.encoder.encode(configuration), as: UTF8.self),
                        "resnet.metrics": String(decoding: try Self.encoder.encode(record), as: UTF8.self)]
        var metrics: [String: Double] = [:]
        if let accuracy = record.validationAccuracy { metrics["validation_top1"] = accuracy }
        if let loss = record.validationLoss { metrics["validation_loss"] = loss }
        let card = configuration.modelCard(run: runDirectory.path, epoch: record.epoch, step: record.step, metrics: metrics)
        try ModelFile.write(model: model, card: card, whitening: whitening, metadata: metadata,
                            to: runDirectory.appendingPathComponent("best.safetensors"))
    }

    private func restore(from url: URL) throws {
        try restore(try SafeTensors.read(url), path: url.path)
    }

    private func restore(_ file: (tensors: [String: SafeTensors.Tensor], metadata: [String: String]), path: String) throws {
        let (tensors, metadata) = file
        try loadWeights(tensors, into: model, path: path)
        guard let json = metadata["resnet.state"] else { throw TrainingError.checkpoint("\(path): no run state in the metadata") }
        let restored: RunState
        do { restored = try Self.decoder.decode(RunState.self, from: Data(json.utf8)) } catch let error as DecodingError {
            throw TrainingError.checkpoint("\(path): unreadable run state (\(error.summary))")
        }
        let steps = configuration.recipe.totalIterations(trainingCount: configuration.trainingCount)
        let perEpoch = max(1, configuration.trainingCount / configuration.recipe.batchSize)
        do { state = try restored.validated(totalSteps: steps, stepsPerEpoch: perEpoch, recipe: configuration.recipe) } catch let error as TrainingError {
            throw TrainingError.checkpoint("\(path): \(error.description)")
        }
        var optimizerState: [String: [Float]] = [:]
        for (key, t) in tensors where key.hasPrefix("optimizer/") { optimizerState[String(key.dropFirst(10))] = t.values }
        if let bad = optimizerState.first(where: { $0.value.contains { !$0.isFinite } }) {
            throw TrainingError.checkpoint("\(path): optimizer buffer '\(bad.key)' is not finite")
        }
        do { try optimizer.loadStateDictionary(optimizerState) } catch {
            throw TrainingError.checkpoint("\(path): optimizer state: \(error)")
        }
        // After the first step every trainable parameter has its buffers: one missing would be
        // reset to zero in silence.
        if state.step > 0 {
            let saved = Set(optimizer.stateDictionary().keys)
            let uncovered = model.namedParameters().filter { name, p in p.isTrainable && !saved.contains { $0.hasPrefix(name + ".") } }
            guard saved == Set(optimizerState.keys), uncovered.isEmpty else {
                throw TrainingError.checkpoint("\(path): the optimizer state does not cover every trainable parameter; the checkpoint was edited or is from another run")
            }
        }
    }

    // MARK: - Training

    /// The result of ``run()``.
    public struct Outcome: Sendable {
        public var state: RunState
        public var interrupted: Bool
    }

    /// Stops the run at the end of the current step (the epoch is closed and checkpointed as
    /// usual); the first reason given is kept.
    public func requestStop(_ reason: String) {
        if state.stopReason == nil { state.stopReason = reason }
    }

    /// The learning rate of step `step`: the schedule's, times the plateau's multiplier.
    func learningRate(step: Int, plan: Plan) -> Float {
        plan.schedule.learningRate(step: step, stepsPerEpoch: plan.stepsPerEpoch) * (state.plateau?.multiplier ?? 1)
    }

    /// Trains until the recipe's end, an early stop, a divergence (throws) or an interruption.
    public func run() throws -> Outcome {
        if state.finished { log("the run has already finished (\(state.stopReason ?? "done"))"); return Outcome(state: state, interrupted: false) }
        let batchSize = recipe.batchSize
        let rank = group?.rank ?? 0, processes = group?.size ?? 1
        let loader = try BatchLoader(dataset: training, batchSize: batchSize, shuffle: true, dropLast: true,
                                     augmentations: recipe.augmentations, normalization: configuration.normalization,
                                     whitening: whitening, seed: configuration.seed, shard: (rank, processes))
        let totalSteps = recipe.totalIterations(trainingCount: training.count)
        let plan = Plan(stepsPerEpoch: loader.batchesPerEpoch, totalSteps: totalSteps, schedule: recipe.schedule.resolvingLength(totalSteps))
        self.plan = plan
        // Each rank draws its own dropout masks (rank 0 those of a single process).
        let step = try TrainingStep(model: model, optimizer: optimizer, imageShape: configuration.imageShape,
                                    classCount: configuration.classNames.count, batchSize: loader.imagesPerBatch,
                                    labelSmoothing: recipe.labelSmoothing, precision: configuration.precision ?? .fp32,
                                    seed: configuration.seed &+ 17 &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15,
                                    microBatches: microBatches, group: group,
                                    batchNormSynchronizer: synchronizesBatchNorm ? group as? any BatchNormSynchronizer : nil)
        step.gradientHook = gradientHook
        step.localStopRequest = { [interruption] in interruption.isSet }
        if state.dropoutState.count == 4 { step.dropoutState = state.dropoutState }
        if state.validations == nil { state.validations = Self.validations(from: state.history) }
        for callback in callbacks { try callback.runWillStart(self) }

        while state.step < totalSteps {
            let epoch = loader.epoch(state.epoch, startingAt: state.batchInEpoch)
            defer { epoch.cancel() }
            // An epoch started by a run made before CPU time was recorded has none; a new one has.
            if state.batchInEpoch == 0, state.partialSeen == 0 { state.partialCPUSeconds = 0 }
            let epochStart = Date(), epochStartCPU = processCPUSeconds()
            // A stop requested in the step before an interruption's checkpoint takes effect at once.
            while state.step < totalSteps, state.stopReason == nil, let batch = epoch.next() {
                let rate = learningRate(step: state.step, plan: plan)
                let result: TrainingStep.Result
                do { result = try step(images: batch.images, labels: batch.labels, learningRate: rate) } catch let error as TrainingStep.NonFiniteLoss {
                    state.stopReason = "loss became \(error.value) at step \(state.step + 1) (learning rate \(rate))"
                    throw TrainingError.diverged("training diverged: \(state.stopReason!); the last good checkpoint is \(runDirectory.appendingPathComponent("last.safetensors").path)")
                }
                if result.stopRequested { agreedInterruption = true }
                state.step += 1
                state.batchInEpoch += 1
                state.partialLoss += Double(result.loss) * Double(batchSize)
                state.partialCorrect += result.correct
                state.partialSeen += batchSize
                for callback in callbacks { try callback.stepDidEnd(self, result, epochStart: epochStart) }
                if state.stopReason != nil || interrupted { break }
            }
            // The wall clock can step back (NTP, a restored VM): a time is never negative.
            let epochSeconds = max(0, state.partialSeconds - epochStart.timeIntervalSinceNow)
            let epochCPUSeconds = state.partialCPUSeconds.map { $0 + processCPUSeconds() - epochStartCPU }
            if interrupted && state.batchInEpoch < plan.stepsPerEpoch && state.step < totalSteps {
                state.partialSeconds = epochSeconds
                state.partialCPUSeconds = epochCPUSeconds
                state.dropoutState = step.dropoutState
                try saveLast()
                log("interrupted at step \(state.step) (epoch \(state.epoch + 1), batch \(state.batchInEpoch)): checkpoint written; continue with --resume")
                return try end(interrupted: true)
            }
            // End of an epoch (or of the run, or an early stop).
            var record = EpochRecord(epoch: state.epoch + 1, step: state.step,
                                     learningRate: optimizer.learningRate,
                                     trainLoss: state.partialLoss / Double(max(1, state.partialSeen)),
                                     trainAccuracy: Double(state.partialCorrect) / Double(max(1, state.partialSeen)),
                                     seconds: epochSeconds, imagesPerSecond: Double(state.partialSeen) / max(epochSeconds, 1e-9),
                                     cpuSeconds: epochCPUSeconds)
            for callback in callbacks { try callback.epochWillEnd(self, &record) }
            state.history.append(record)
            state.epoch += 1
            state.batchInEpoch = 0
            state.partialLoss = 0; state.partialCorrect = 0; state.partialSeen = 0; state.partialSeconds = 0
            state.partialCPUSeconds = 0
            if state.step >= totalSteps || state.stopReason != nil {
                state.finished = true
                if state.stopReason == nil { state.stopReason = "completed \(totalSteps) iterations" }
            }
            state.dropoutState = step.dropoutState
            try saveLast()
            for callback in callbacks { try callback.epochDidEnd(self, record) }
            log(describe(record, epochs: plan.epochs))
            if state.finished { break }
            if interrupted {
                log("interrupted after epoch \(state.epoch): checkpoint written; continue with --resume")
                return try end(interrupted: true)
            }
        }
        if !state.finished {
            state.finished = true
            state.stopReason = state.stopReason ?? "completed \(totalSteps) iterations"
            try saveLast()
        }
        log("finished: \(state.stopReason ?? "done")")
        return try end(interrupted: false)
    }

    private func end(interrupted: Bool) throws -> Outcome {
        let outcome = Outcome(state: state, interrupted: interrupted)
        for callback in callbacks { try callback.runDidEnd(self, outcome) }
        return outcome
    }

    /// Records a validation; when it is the best so far, writes `best.safetensors` (with
    /// `record`, or a record of this validation alone within an epoch).
    func noteValidation(_ result: EvaluationResult, record: EpochRecord?) throws {
        let best = state.bestValidationAccuracy.map { result.top1 > $0 } ?? true
        state.validations = state.validations ?? []
        state.validations!.append(ValidationRecord(epoch: state.epoch + 1, step: state.step, loss: result.loss, accuracy: result.top1, best: best))
        guard best else { return }
        state.bestValidationAccuracy = result.top1
        state.bestEpoch = state.epoch + 1
        state.bestStep = state.step
        let r = record ?? EpochRecord(epoch: state.epoch + 1, step: state.step, learningRate: optimizer.learningRate,
                                      trainLoss: 0, trainAccuracy: 0, validationLoss: result.loss,
                                      validationAccuracy: result.top1, seconds: 0, imagesPerSecond: 0)
        try saveBest(r)
    }

    /// The validations of a run made before they were recorded: its epochs' ends.
    static func validations(from history: [EpochRecord]) -> [ValidationRecord] {
        var best = -Double.infinity
        return history.compactMap { r in
            guard let loss = r.validationLoss, let accuracy = r.validationAccuracy else { return nil }
            defer { best = max(best, accuracy) }
            return ValidationRecord(epoch: r.epoch, step: r.step, loss: loss, accuracy: accuracy, best: accuracy > best)
        }
    }

    private func describe(_ r: EpochRecord, epochs: Int) -> String {
        var line = String(format: "epoch %3d/%d  step %6d  lr %.4g  loss %.4f  acc %.2f%%", r.epoch, epochs, r.step, r.learningRate, r.trainLoss, 100 * r.trainAccuracy)
        if let vl = r.validationLoss, let va = r.validationAccuracy { line += String(format: "  val loss %.4f  val acc %.2f%%", vl, 100 * va) }
        if let ta = r.testAccuracy { line += String(format: "  (test acc %.2f%%)", 100 * ta) }
        line += String(format: "  %.1f s  %.0f img/s", r.seconds, r.imagesPerSecond)
        return line
    }
}

/// A flag a signal handler sets and the training loop polls.
public final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    public init() {}
    public var isSet: Bool { lock.withLock { flag } }
    public func set() { lock.withLock { flag = true } }
}

extension LearningRateSchedule {
    /// Replaces a length of 0 in cosine and one-cycle schedules with the run's length.
    public func resolvingLength(_ iterations: Int) -> LearningRateSchedule {
        switch self {
        case .cosine(let b, let m, 0): return .cosine(base: b, minimum: m, iterations: iterations)
        case .oneCycle(let m, 0, let w, let d, let f):
            return .oneCycle(maximum: m, iterations: iterations, warmupFraction: w, divFactor: d, finalDivFactor: f)
        case .warmup(let i, let r, let l, let then): return .warmup(iterations: i, learningRate: r, linear: l, then: then.resolvingLength(iterations))
        default: return self
        }
    }
}
