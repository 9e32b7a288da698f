import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTensors

/// The paper's experiments as campaigns of runs on CIFAR-10 (45k/5k split, option A shortcuts,
/// He et al. 2016 section 4.2): each campaign is a list of ``ExperimentRun``s that an
/// ``ExperimentRunner`` trains one after another, resuming what was interrupted and never
/// redoing what finished, and an ``ExperimentReport`` draws its tables and figures from
/// whatever has finished.
public enum Experiment: String, CaseIterable, Sendable {
    /// Fig. 6: plain and residual networks of the same depths, he2016 recipe; training and
    /// test error against iterations.
    case degradation
    /// Table 6's column: ResNet-20/32/44/56, `fast` recipe, test error mean +- std over seeds.
    case depth
    /// Table 3's CIFAR analogue: ResNet-32 with shortcut options A, B and C, `fast` recipe.
    case shortcuts
    /// Transfer learning on real data: ResNet-20 pretrained on CIFAR-10's classes 0-4, then
    /// trained on classes 5-9 with 100 images per class, from those weights and from scratch
    /// (same recipe and budget), several seeds; test accuracy on all test images of 5-9.
    case transfer

    /// What `--depths` and `--seeds` default to.
    public var defaultDepths: [Int] {
        switch self {
        case .degradation: [20, 56]
        case .depth: [20, 32, 44, 56]
        case .shortcuts: [32]
        case .transfer: [20]
        }
    }
    public var defaultSeeds: [UInt64] {
        switch self {
        case .degradation: [0]
        case .depth, .shortcuts: [0, 1]
        case .transfer: [0, 1, 2]
        }
    }
    /// The schedule scale by default: the degradation figure at a quarter of the paper's 64k
    /// iterations (16k, the rate divided by 10 at 8k and 12k); the `fast` recipe as it is.
    public var defaultScheduleScale: Double { self == .degradation ? 0.25 : 1 }

    /// The paper's test errors (%) on the original CIFAR-10 (Table 6), by depth (110: the best
    /// of its five runs, as the table gives it; 1202: where depth stopped helping).
    public static let paperTable6: [Int: Double] = [20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93]

    /// The campaign's runs for these depths and seeds, with the recipe's schedule scaled by
    /// `scheduleScale` (he2016: iterations and milestones; fast: epochs).
    public func runs(depths: [Int]? = nil, seeds: [UInt64]? = nil, scheduleScale: Double? = nil) throws -> [ExperimentRun] {
        let depths = depths ?? defaultDepths, seeds = seeds ?? defaultSeeds
        let scale = scheduleScale ?? defaultScheduleScale
        guard scale.isFinite, scale > 0, scale <= 10 else {
            throw TrainingError.invalidOption("--schedule-scale must be in 0<..10, got \(scale)")
        }
        guard !depths.isEmpty, !seeds.isEmpty else { throw TrainingError.invalidOption("give at least one depth and one seed") }
        for depth in depths where depth < 8 || (depth - 2) % 6 != 0 || depth > 1_202 {
            throw TrainingError.invalidOption("depth \(depth): CIFAR networks have depth 6n+2, from 8 to 1202")
        }
        var runs: [ExperimentRun] = []
        if self == .transfer {
            for depth in depths {
                var pretrain = Self.request(recipe: .fast, scale: scale, seed: 0)
                pretrain.model = "resnet\(depth)"
                pretrain.classes = "0-4"
                pretrain.overrides.validation = 2_500
                let source = "pretrain-resnet\(depth)"
                runs.append(ExperimentRun(name: source, network: "resnet\(depth)", seed: 0, request: pretrain))
                for seed in seeds {
                    for fromPretrained in [true, false] {
                        var r = Self.request(recipe: .fast, scale: scale, seed: seed)
                        r.model = "resnet\(depth)"
                        r.classes = "5-9"
                        r.perClass = 100
                        r.overrides.validation = 50
                        r.overrides.batchSize = 64
                        runs.append(ExperimentRun(name: "\(fromPretrained ? "fine-tuned" : "scratch")-resnet\(depth)-seed\(seed)",
                                                  network: "resnet\(depth)", seed: seed, request: r,
                                                  startsFrom: fromPretrained ? source : nil))
                    }
                }
            }
            return runs
        }
        for depth in depths {
            for seed in seeds {
                switch self {
                case .transfer: break
                case .degradation:
                    for family in ["plain", "resnet"] {
                        var r = Self.request(recipe: .he2016, scale: scale, seed: seed)
                        r.model = "\(family)\(depth)"
                        r.monitorTest = true
                        runs.append(ExperimentRun(name: "\(family)\(depth)-seed\(seed)", network: "\(family)\(depth)", seed: seed, request: r))
                    }
                case .depth:
                    var r = Self.request(recipe: .fast, scale: scale, seed: seed)
                    r.model = "resnet\(depth)"
                    runs.append(ExperimentRun(name: "resnet\(depth)-seed\(seed)", network: "resnet\(depth)", seed: seed, request: r))
                case .shortcuts:
                    for option in ShortcutOption.allCases {
                        var r = Self.request(recipe: .fast, scale: scale, seed: seed)
                        r.model = "resnet\(depth)"
                        r.shortcut = option
                        // Option A is the depth campaign's run of the same depth and seed: at the
                        // default scales, ResNet-32's two seeds are ~1.8 hours not trained twice
                        // (`resnet experiment depth --dry-run`, 2-core VM, 2026-12-01).
                        runs.append(ExperimentRun(name: "resnet\(depth)-\(option)-seed\(seed)", network: "resnet\(depth)",
                                                  seed: seed, shortcut: option, request: r,
                                                  sameAs: option == .a ? "\(Experiment.depth.rawValue)/resnet\(depth)-seed\(seed)" : nil))
                    }
                }
            }
        }
        return runs
    }

    /// A request for `recipe` with its length scaled, shortcut A, fp32 (every run of a campaign
    /// in the same precision, whichever machine resumes it). The runner evaluates the test set
    /// once at each run's end, with the checkpoint chosen on validation.
    private static func request(recipe: Recipe, scale: Double, seed: UInt64) -> RunRequest {
        var r = RunRequest()
        r.recipe = recipe.name
        r.seed = seed
        r.shortcut = .a
        r.precision = .fp32
        switch recipe.duration {
        case .iterations(let n):
            let scaled = { (k: Int) in max(1, Int((Double(k) * scale).rounded())) }
            r.overrides.iterations = scaled(n)
            if case .multiStep(let base, let milestones, let multipliers, .iteration) = recipe.schedule {
                r.schedule = .multiStep(base: base, milestones: milestones.map(scaled), multipliers: multipliers, unit: .iteration)
            }
        case .epochs(let e):
            r.overrides.epochs = max(1, Int((Double(e) * scale).rounded()))
        }
        return r
    }
}

/// One run of a campaign: a `resnet train` request and the directory name it runs in.
public struct ExperimentRun: Sendable, Equatable {
    public var name: String
    /// The network as the zoo names it (`plain56`).
    public var network: String
    public var seed: UInt64
    public var shortcut: ShortcutOption = .a
    public var request: RunRequest
    /// The campaign run whose best checkpoint this one starts from (`--from`).
    public var startsFrom: String? = nil
    /// A run of another campaign in the same runs folder (`depth/resnet32-seed0`) that may train
    /// exactly this configuration. If it has finished, with the same settings, before this run
    /// starts, this run *is* that one: its directory becomes a link to it, and it is not trained
    /// twice (``ExperimentRunner/reusableRun(for:planned:)``).
    public var sameAs: String? = nil
}

/// Where a run of a campaign stands, read from its directory.
public struct ExperimentRunStatus: Sendable {
    public enum Stage: String, Sendable { case notStarted = "not started", partial, finished }
    public var stage: Stage
    public var step: Int
    public var totalSteps: Int?
    public var history: [EpochRecord]
    public var configuration: RunConfiguration?
    public var bestEpoch: Int?
    /// The validation that chose `best.safetensors` (within an epoch for early stopping's
    /// `everyBatches`).
    public var best: ValidationRecord?

    /// A run without a checkpoint.
    public static let notStarted = ExperimentRunStatus(stage: .notStarted, step: 0, totalSteps: nil, history: [], configuration: nil,
                                                       bestEpoch: nil, best: nil)

    /// Reads `directory` (a run's); a directory without a checkpoint has not started.
    public static func read(_ directory: URL) throws -> ExperimentRunStatus {
        let last = directory.appendingPathComponent("last.safetensors")
        guard FileManager.default.fileExists(atPath: last.path) else { return .notStarted }
        let configuration = try Trainer.loadConfiguration(directory)
        let metadata = try SafeTensors.read(last).metadata
        guard let json = metadata["resnet.state"] else { throw TrainingError.checkpoint("\(last.path): no run state") }
        let decoded: RunState
        do { decoded = try Trainer.decoder.decode(RunState.self, from: Data(json.utf8)) } catch let error as DecodingError {
            throw TrainingError.checkpoint("\(last.path): unreadable run state (\(error.summary))")
        }
        let total = configuration.recipe.totalIterations(trainingCount: configuration.trainingCount)
        let state: RunState
        do {
            state = try decoded.validated(totalSteps: total, stepsPerEpoch: max(1, configuration.trainingCount / configuration.recipe.batchSize),
                                          recipe: configuration.recipe)
        } catch let error as TrainingError {
            throw TrainingError.checkpoint("\(last.path): \(error.description)")
        }
        return ExperimentRunStatus(stage: state.finished ? .finished : .partial, step: state.step, totalSteps: total,
                                   history: state.history, configuration: configuration, bestEpoch: state.bestEpoch,
                                   best: (state.validations ?? Trainer.validations(from: state.history)).last { $0.best })
    }
}

/// What is left of one run of a campaign (``ExperimentRunner/estimate(data:dataPath:threads:speeds:)``).
public struct ExperimentRunEstimate: Sendable {
    public var run: ExperimentRun
    public var status: ExperimentRunStatus
    /// The run's steps in all.
    public var totalSteps: Int
    /// Training images per second measured for its network here (nil for a run with no steps
    /// left: finished, or another campaign's finished run, is not timed).
    public var imagesPerSecond: Double?
    /// Estimated wall seconds to finish it on this machine, alone: 0 when it has finished or is
    /// another campaign's finished run (``reused``).
    public var secondsLeft: Double
    /// The other campaign's finished run this one will be, not trained again.
    public var reused: String? = nil
    /// The other campaign's run, started with the same settings but not finished, that this one
    /// will be if it finishes before this run starts (its time is counted here all the same).
    public var reusableIfFinishedFirst: String? = nil
}

/// Trains a campaign's runs one after another in `directory/NAME`, resuming a partial run and
/// skipping a finished one. Creating a file named `PAUSE` in the campaign folder pauses the
/// run in progress after its current step until the file is removed (for measuring speed on a
/// shared machine); SIGSTOP/SIGCONT of the process works too.
public final class ExperimentRunner {
    public let experiment: Experiment
    public let runs: [ExperimentRun]
    public let folder: URL
    /// Settings applied to every run (tests shorten runs with them).
    public var overrides = RecipeOverrides()
    public var log: (String) -> Void = { print($0) }
    /// Added to every run's trainer (a progress display).
    public var callbacks: () -> [any TrainingCallback] = { [] }
    public let interruption = Interruption()

    public init(experiment: Experiment, runs: [ExperimentRun], directory: URL) {
        self.experiment = experiment
        self.runs = runs
        folder = directory.appendingPathComponent(experiment.rawValue)
    }

    /// The run's directory.
    public func directory(of run: ExperimentRun) -> URL { folder.appendingPathComponent(run.name) }

    /// Measures the test error of a finished run that has none: one stopped between its last
    /// checkpoint and its test evaluation, or one whose `test.json` is not a valid result (the
    /// weights it measures are intact). A `test.json` that cannot be read at all (a directory,
    /// a device, no permission) is an error for the user to see, not something to overwrite.
    private func measureTestErrorIfMissing(of directory: URL, status: ExperimentRunStatus, data: LoadedDataset) throws {
        guard let configuration = status.configuration else { return }
        var damage: TrainingError?
        do {
            if try readTestResult(of: directory, classCount: configuration.classNames.count) != nil { return }
        } catch let error as TrainingError where error.isInvalidTestResult {
            damage = error
        }
        guard let test = try configuration.prepared(data).split("test") else { return }
        if let damage { log("  \(damage): measuring its test error again") }
        try evaluateTestSplit(of: directory, test: test)
    }

    /// The finished run of another campaign that `run` can be (``ExperimentRun/sameAs``): only
    /// while `run`'s own directory is absent or empty, and only if that run finished, was
    /// evaluated on the test set, and trained exactly `planned` (``sameRunOnSameData(_:_:)``). A run that
    /// is unreadable or differs is not reused; this one then trains as usual.
    public func reusableRun(for run: ExperimentRun, planned: RunConfiguration) -> URL? {
        guard let other = run.sameAs, ownFolderIsFree(run) else { return nil }
        let candidate = folder.deletingLastPathComponent().appendingPathComponent(other)
        guard let status = try? ExperimentRunStatus.read(candidate), status.stage == .finished,
              let configuration = status.configuration, Self.sameRunOnSameData(configuration, planned),
              FileManager.default.fileExists(atPath: candidate.appendingPathComponent("test.json").path) else { return nil }
        return candidate
    }

    /// `run`'s progress as this campaign sees it. A link to another campaign's run stands for
    /// that run only once it has finished; a link to one still training, restarted, removed or
    /// unreadable reads as not started, because ``run(data:dataPath:threads:)`` would replace it
    /// with a folder of its own and train (so `--dry-run` and `--report` do not show another
    /// campaign's progress as this one's).
    ///
    /// A run directory (or a link to a finished run) that holds another network, seed, shortcut
    /// option or length (epochs or iterations, from `--schedule-scale`) than `run` is an error,
    /// as it is to ``run(data:dataPath:threads:)``: a report must not put a moved or mislinked
    /// run in the wrong row, nor runs of another schedule under this one's name.
    public func status(of run: ExperimentRun) throws -> ExperimentRunStatus {
        let directory = directory(of: run)
        let status: ExperimentRunStatus
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: directory.path)) != nil {
            guard let linked = try? ExperimentRunStatus.read(directory), linked.stage == .finished else { return .notStarted }
            status = linked
        } else {
            status = try ExperimentRunStatus.read(directory)
        }
        guard let c = status.configuration else { return status }
        if c.model != run.network || c.seed != run.seed || c.modelOptions.shortcut != run.shortcut {
            throw TrainingError.checkpoint("\(directory.path) holds a run of \(c.model), seed \(c.seed), shortcut \(c.modelOptions.shortcut.rawValue), not the campaign's \(run.name): move it away or choose another --runs")
        }
        // The length the plan gives it (from --schedule-scale): a report of runs of another
        // length would be headed by this plan's settings.
        let planned = overrides.over(run.request.overrides)
        if let length = planned.iterations.map(Recipe.Duration.iterations) ?? planned.epochs.map(Recipe.Duration.epochs), c.recipe.duration != length {
            throw TrainingError.checkpoint("\(directory.path) holds a run of \(c.recipe.duration.length); the campaign plans \(length.length) for \(run.name) (repeat its --schedule-scale)")
        }
        return status
    }

    /// The run `run`'s directory links to when it was reused (``ExperimentRun/sameAs``), else nil.
    public func reusedRun(of run: ExperimentRun) -> String? {
        guard let other = run.sameAs, (try? FileManager.default.destinationOfSymbolicLink(atPath: directory(of: run).path)) == "../" + other else {
            return nil
        }
        return other
    }

    /// The configuration `run` trains with on `data` (CIFAR-10).
    public func configuration(of run: ExperimentRun, data: LoadedDataset, dataPath: String?, threads: Int) throws -> RunConfiguration {
        var request = run.request
        request.overrides = overrides.over(request.overrides)
        if let source = run.startsFrom {
            let start = folder.appendingPathComponent(source)
            // Before its source has finished, a run is planned as if from scratch (estimates only).
            if (try? ExperimentRunStatus.read(start))?.stage == .finished { request.from = start.path }
        }
        return try request.configuration(data: data, dataset: "cifar10", dataPath: dataPath, isSample: false, threads: threads)
    }

    /// Trains every run that has not finished. Returns false when interrupted.
    public func run(data: LoadedDataset, dataPath: String?, threads: Int) throws -> Bool {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (k, run) in runs.enumerated() {
            let directory = directory(of: run)
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: directory.path),
               (try? ExperimentRunStatus.read(directory))?.stage != .finished {
                // A link stands for a finished run only. One whose run was removed, restarted or
                // is still training elsewhere is not this campaign's to resume (two processes
                // would write one checkpoint): this run trains itself, in a folder of its own.
                try FileManager.default.removeItem(at: directory)   // the link, not what it named
                log("[\(k + 1)/\(runs.count)] \(run.name): the run it was linked to (\(target)) is gone or has not finished")
            }
            var status = try ExperimentRunStatus.read(directory)
            let planned = try configuration(of: run, data: data, dataPath: dataPath, threads: threads)
            try Self.check(status, holds: planned, in: directory, for: run)
            if status.stage == .notStarted, let shared = reusableRun(for: run, planned: planned) {
                try? FileManager.default.removeItem(at: directory)   // empty (reusableRun checked)
                try FileManager.default.createSymbolicLink(atPath: directory.path, withDestinationPath: "../" + run.sameAs!)
                // The link is relative to where the campaign folder really is: if that does not
                // reach the run just checked (a campaign folder that is itself a link), train.
                if let linked = realPath(directory.path), linked == realPath(shared.path) {
                    log("[\(k + 1)/\(runs.count)] \(run.name): finished, as \(shared.path) (the same settings), not trained again")
                    try measureTestErrorIfMissing(of: directory, status: ExperimentRunStatus.read(directory), data: data)
                    continue
                }
                try FileManager.default.removeItem(at: directory)
                status = try ExperimentRunStatus.read(directory)
            }
            if status.stage == .finished {
                log("[\(k + 1)/\(runs.count)] \(run.name): finished\(reusedRun(of: run).map { " (the same run as \($0))" } ?? "")")
                try measureTestErrorIfMissing(of: directory, status: status, data: data)
                continue
            }
            let configuration = status.configuration ?? planned
            if let source = run.startsFrom, configuration.transfer == nil {
                throw TrainingError.checkpoint("\(run.name) starts from \(source), which has not finished")
            }
            let runData = try configuration.prepared(data)
            guard let train = runData.split("train") else { throw TrainingError.invalidOption("\(data.name) has no training split") }
            log("[\(k + 1)/\(runs.count)] \(run.name): \(status.stage == .partial ? "resuming at step \(status.step)" : "starting"), \(configuration.recipe.schedule.resolvingLength(configuration.recipe.totalIterations(trainingCount: configuration.trainingCount)).summary)")
            let (t, v) = try configuration.split(train)
            let trainer = try Trainer(configuration: configuration, training: train.subset(t), validation: v.isEmpty ? nil : train.subset(v),
                                      test: runData.split("test"), runDirectory: directory, resume: status.stage == .partial)
            trainer.log = { [log] in log("  " + $0) }
            trainer.callbacks.append(InterruptionRelay(from: interruption))
            trainer.callbacks.append(PauseCallback(file: folder.appendingPathComponent("PAUSE"), interruption: interruption, log: log))
            trainer.callbacks += callbacks()
            let outcome = try trainer.run()
            if outcome.interrupted { return false }
            // Every campaign run ends as `resnet train` ends: the test split once, with the
            // checkpoint chosen on validation.
            if let test = runData.split("test") {
                try evaluateTestSplit(of: directory, test: test, whitening: trainer.whitening, batchSize: trainer.evaluationBatchSize)
            }
        }
        return true
    }

    /// Whether a finished run can stand for `planned` in another campaign: ``sameRun(_:_:)`` on
    /// the same data too (data set, split sizes, the normalization measured on the training
    /// images, class subset), the same start and the same batch splitting.
    static func sameRunOnSameData(_ a: RunConfiguration, _ b: RunConfiguration) -> Bool {
        sameRun(a, b) && a.dataset == b.dataset && a.trainingCount == b.trainingCount && a.validationCount == b.validationCount
            && a.normalization == b.normalization && a.dataSubset == b.dataSubset && a.transfer == b.transfer
            && (a.microBatches ?? 1) == (b.microBatches ?? 1)
    }

    /// Whether two configurations train the same run (paths and thread counts aside).
    static func sameRun(_ a: RunConfiguration, _ b: RunConfiguration) -> Bool {
        a.model == b.model && a.modelOptions == b.modelOptions && a.recipe == b.recipe && a.seed == b.seed
            && (a.precision ?? .fp32) == (b.precision ?? .fp32) && a.imageShape == b.imageShape && a.classNames == b.classNames
    }

    /// What is left of each run, for `resnet experiment NAME --dry-run`: its progress, and the
    /// time its remaining steps take at `speeds` (training images/s of each configuration it is
    /// given, those of the runs with steps left; ``measureSpeed(of:minimumSeconds:)`` unless a
    /// test passes its own). A run folder the runner would refuse (another network, seed,
    /// shortcut or settings) is refused here too.
    ///
    /// A run that another campaign has already trained with the same settings
    /// (``reusableRun(for:planned:)``) costs nothing. One whose ``ExperimentRun/sameAs`` run has
    /// started with the same settings but not finished is counted in full, since it trains here
    /// unless that run finishes first; ``ExperimentRunEstimate/reusableIfFinishedFirst`` names it.
    public func estimate(data: LoadedDataset, dataPath: String?, threads: Int,
                         speeds: ([RunConfiguration]) throws -> [Double] = { try ExperimentRunner.measureSpeed(of: $0) })
        throws -> [ExperimentRunEstimate] {
        // Every run's state first, so that a folder the runner would refuse is refused before
        // anything is timed; then only the networks with steps left are timed.
        var estimates: [ExperimentRunEstimate] = []
        var timed: [(index: Int, configuration: RunConfiguration, steps: Int)] = []
        for run in runs {
            let configuration = try configuration(of: run, data: data, dataPath: dataPath, threads: threads)
            let status = try status(of: run)
            try Self.check(status, holds: configuration, in: directory(of: run), for: run)
            let steps = configuration.recipe.totalIterations(trainingCount: configuration.trainingCount)
            var estimate = ExperimentRunEstimate(run: run, status: status, totalSteps: steps, imagesPerSecond: nil, secondsLeft: 0)
            if status.stage == .notStarted, reusableRun(for: run, planned: configuration) != nil {
                estimate.reused = run.sameAs
            } else if status.stage != .finished {
                if status.stage == .notStarted { estimate.reusableIfFinishedFirst = pendingReuse(for: run, planned: configuration) }
                timed.append((estimates.count, configuration, steps - status.step))
            }
            estimates.append(estimate)
        }
        if !timed.isEmpty {
            log("measuring the training speed here of each network with steps left (a few seconds each) ...")
        }
        let measured = try speeds(timed.map(\.configuration))
        guard measured.count == timed.count else { throw TrainingError.invalidOption("\(measured.count) speeds for \(timed.count) runs") }
        for (t, speed) in zip(timed, measured) {
            let overhead = t.configuration.monitorsTest == true ? Self.evaluationOverheadWithTest : Self.evaluationOverhead
            estimates[t.index].imagesPerSecond = speed
            estimates[t.index].secondsLeft = speed > 0 ? Double(t.steps * t.configuration.recipe.batchSize) / speed * overhead : .infinity
        }
        return estimates
    }

    /// Whether `run`'s own folder is absent or empty: the only case in which it may become a
    /// link to another campaign's run.
    private func ownFolderIsFree(_ run: ExperimentRun) -> Bool {
        let own = directory(of: run)
        guard FileManager.default.fileExists(atPath: own.path) else { return true }
        return (try? FileManager.default.contentsOfDirectory(atPath: own.path))?.isEmpty == true
    }

    /// The other campaign's run that `run` will be if it finishes first: started there with
    /// exactly `planned`'s settings and data, not finished, while `run`'s own folder is absent or
    /// empty (what ``reusableRun(for:planned:)`` will ask of it then). (A campaign folder that is
    /// itself a link is not foreseen; the runner then trains the run, see ``run(data:dataPath:threads:)``.)
    func pendingReuse(for run: ExperimentRun, planned: RunConfiguration) -> String? {
        guard let other = run.sameAs, ownFolderIsFree(run) else { return nil }
        let shared = folder.deletingLastPathComponent().appendingPathComponent(other)
        guard let status = try? ExperimentRunStatus.read(shared), status.stage == .partial, let configuration = status.configuration,
              Self.sameRunOnSameData(configuration, planned) else { return nil }
        return other
    }

    /// Refuses a run folder whose run was started with other settings than `planned` (another
    /// `--schedule-scale`, batch size, ...): the runner will not resume it, nor may a dry run
    /// count its steps against the plan's.
    static func check(_ status: ExperimentRunStatus, holds planned: RunConfiguration, in directory: URL, for run: ExperimentRun) throws {
        if let existing = status.configuration, !sameRun(existing, planned) {
            throw TrainingError.checkpoint("\(directory.path) holds a run with other settings than the campaign's \(run.name) (another --schedule-scale?): move it away or choose another --runs")
        }
    }

    /// How much longer a run takes than its steps timed by ``measureSpeed(of:minimumSeconds:)``.
    /// Measured on depth's resnet20-seed0 (2026-12-02, 2-core AMD EPYC VM; the wall time between
    /// the epochs' TensorBoard events against their training `seconds`): the validation after
    /// every epoch, the checkpoint and the curves add 3.3%. The rest of the 8% is a margin for
    /// what the timed steps leave out (the data pipeline: they train on constant images) and
    /// for the machine's noise (two dry runs minutes apart timed ResNet-44 at 480 and 574
    /// img/s). With the test split monitored every epoch too (degradation), 10,000 more images
    /// forward.
    static let evaluationOverhead = 1.08, evaluationOverheadWithTest = 1.2

    /// Training images/s of each run configuration, in the order given: a few steps of each
    /// distinct model (zoo name and options), batch size, image shape and class count, timed.
    /// The options count: option C adds a projection to every block, so the shortcut campaign's
    /// B and C runs are not timed as option A's network; nor are the transfer campaign's
    /// fine-tuning runs timed at its pretraining's batch size.
    ///
    /// Each is timed over at least 3 steps and at least `minimumSeconds`, after one untimed step
    /// that creates the primitives, so that no figure rests on a fraction of a second (three
    /// steps of ResNet-20 took about a third of one). The machine's own noise remains: see
    /// ``evaluationOverhead``.
    public static func measureSpeed(of configurations: [RunConfiguration], minimumSeconds: Double = 2) throws -> [Double] {
        var measured: [(configuration: RunConfiguration, speed: Double)] = []
        func same(_ a: RunConfiguration, _ b: RunConfiguration) -> Bool {
            a.model == b.model && a.modelOptions == b.modelOptions && a.recipe.batchSize == b.recipe.batchSize
                && a.imageShape == b.imageShape && a.classNames.count == b.classNames.count
        }
        return try configurations.map { wanted in
            if let known = measured.first(where: { same($0.configuration, wanted) }) { return known.speed }
            let shape = wanted.imageShape, batchSize = wanted.recipe.batchSize, classes = wanted.classNames.count
            let model = try ModelDefinition(name: wanted.model, options: wanted.modelOptions)
                .build(input: ImageShape(height: shape[1], width: shape[2], channels: shape[0]), classes: classes)
            let optimizer = try Recipe.he2016.makeOptimizer()
            let step = try TrainingStep(model: model, optimizer: optimizer, imageShape: shape, classCount: classes,
                                        batchSize: batchSize, seed: 1)
            let images = [Float](repeating: 0.1, count: batchSize * shape.reduce(1, *))
            let labels = (0..<batchSize).map { Int32($0 % classes) }
            func once() throws {
                _ = try images.withUnsafeBufferPointer { x in try labels.withUnsafeBufferPointer { l in try step(images: x, labels: l, learningRate: 0.01) } }
            }
            try once()
            let start = Date()
            var steps = 0
            repeat {
                try once()
                steps += 1
            } while steps < 3 || -start.timeIntervalSinceNow < minimumSeconds
            let speed = Double(steps * batchSize) / max(-start.timeIntervalSinceNow, 1e-9)
            measured.append((wanted, speed))
            return speed
        }
    }
}

/// The canonical absolute path (`realpath(3)`: every link followed), or nil if it does not resolve.
func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// Waits while a pause file exists (checked every 16 steps with one `stat`, no allocation);
/// an interruption (Ctrl-C on the campaign) ends the wait.
final class PauseCallback: TrainingCallback {
    let path: String
    let interruption: Interruption
    let log: (String) -> Void
    init(file: URL, interruption: Interruption, log: @escaping (String) -> Void) {
        path = file.path
        self.interruption = interruption
        self.log = log
    }

    private var exists: Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws {
        guard trainer.state.step % 16 == 0, exists else { return }
        log("  paused at step \(trainer.state.step): \(path) exists (remove it to continue)")
        let start = Date()
        while exists, !interruption.isSet, !trainer.interruption.isSet { usleep(200_000) }
        if interruption.isSet { trainer.interruption.set() }
        // The pause is not training time.
        trainer.state.partialSeconds += start.timeIntervalSinceNow
        log("  resumed after \(Int(-start.timeIntervalSinceNow)) s")
    }
}

/// Passes an interruption (Ctrl-C on the campaign) to the run in progress.
final class InterruptionRelay: TrainingCallback {
    let source: Interruption
    init(from source: Interruption) { self.source = source }
    func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws {
        if source.isSet { trainer.interruption.set() }
    }
}
