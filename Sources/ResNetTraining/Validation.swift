import Foundation
import ResNetData
import ResNetInference
import ResNetModels

// Everything a run reads back (config.json, a checkpoint's metadata, a run file) comes from
// outside: it is validated where it is decoded, so that an edited file ends in one line instead
// of a crash, a hang or a run at a negative learning rate.

/// The longest run a recipe may describe, in iterations (a billion steps is decades here).
public let maximumIterations = 1_000_000_000

extension LearningRateSchedule {
    /// The schedule if every rate it gives over a run is finite and non-negative, else the
    /// problem. Checked for the whole run before step 1, not as steps arrive.
    public func validated() throws -> LearningRateSchedule {
        func bad(_ why: String) -> TrainingError { .invalidOption("learning-rate schedule: \(why)") }
        func rate(_ r: Float, _ what: String) throws {
            guard r.isFinite, r >= 0 else { throw bad("\(what) \(r) is not a finite rate >= 0") }
        }
        switch self {
        case .constant(let r): try rate(r, "the rate")
        case .multiStep(let base, let milestones, let multipliers, _):
            try rate(base, "the base rate")
            guard milestones.count == multipliers.count else {
                throw bad("\(milestones.count) milestones but \(multipliers.count) multipliers")
            }
            guard milestones.allSatisfy({ $0 >= 0 && $0 <= maximumIterations }), zip(milestones, milestones.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw bad("milestones \(milestones) must increase, each in 0...\(maximumIterations)")
            }
            for m in multipliers { try rate(base * m, "the rate \(base) x \(m)") }
        case .warmup(let iterations, let r, _, let then):
            guard (0...maximumIterations).contains(iterations) else { throw bad("warm-up of \(iterations) iterations") }
            try rate(r, "the warm-up rate")
            _ = try then.validated()
        case .cosine(let base, let minimum, let iterations):
            try rate(base, "the base rate")
            try rate(minimum, "the minimum rate")
            guard (0...maximumIterations).contains(iterations) else { throw bad("cosine over \(iterations) iterations") }
        case .oneCycle(let maximum, let iterations, let warmup, let div, let finalDiv):
            try rate(maximum, "the maximum rate")
            guard (0...maximumIterations).contains(iterations) else { throw bad("one-cycle over \(iterations) iterations") }
            guard warmup >= 0, warmup <= 1 else { throw bad("warm-up fraction \(warmup) must be in 0...1") }
            guard div.isFinite, div >= 1, finalDiv.isFinite, finalDiv >= 1 else {
                throw bad("division factors \(div) and \(finalDiv) must be finite and >= 1")
            }
        }
        return self
    }
}

extension Recipe {
    /// The recipe if every setting is usable, else the first problem (one line).
    public func validated() throws -> Recipe {
        func bad(_ why: String) -> TrainingError { .invalidOption("recipe \(name): \(why)") }
        guard (1...65_536).contains(batchSize) else { throw bad("batch size \(batchSize) must be in 1...65536") }
        switch duration {
        case .epochs(let e): guard (1...1_000_000).contains(e) else { throw bad("\(e) epochs must be in 1...1000000") }
        case .iterations(let i): guard (1...maximumIterations).contains(i) else { throw bad("\(i) iterations must be in 1...\(maximumIterations)") }
        }
        guard momentum.isFinite, (0..<1).contains(momentum) else { throw bad("momentum \(momentum) must be in 0..<1") }
        guard weightDecay.isFinite, weightDecay >= 0, weightDecay < 1 else { throw bad("weight decay \(weightDecay) must be in 0..<1") }
        guard labelSmoothing.isFinite, (0..<1).contains(labelSmoothing) else { throw bad("label smoothing \(labelSmoothing) must be in 0..<1") }
        guard (0...10_000_000).contains(validationCount) else { throw bad("\(validationCount) validation images") }
        guard ["loss", "accuracy"].contains(plateauMonitor) else { throw bad("plateau monitor '\(plateauMonitor)' must be loss or accuracy") }
        if let p = plateau {
            guard p.factor.isFinite, p.factor > 0, p.factor < 1 else { throw bad("plateau factor \(p.factor) must be in 0<..<1") }
            guard p.patience >= 0, p.cooldown >= 0, p.minimumLearningRate.isFinite, p.minimumLearningRate >= 0, p.minimumDelta.isFinite,
                  p.multiplier.isFinite, p.multiplier > 0, p.multiplier <= 1 else {
                throw bad("plateau settings out of range (patience and cooldown >= 0, finite rates)")
            }
        }
        if let e = earlyStopping {
            guard e.patience >= 1, e.minimumDelta.isFinite, e.everyBatches.map({ $0 >= 1 }) ?? true else {
                throw bad("early stopping needs patience >= 1, a finite minimum delta and a positive interval")
            }
        }
        do { _ = try schedule.validated() } catch let error as TrainingError { throw bad(error.description) }
        // Augmentations decoded from a file are checked by the command line's parser, which
        // bounds every parameter: what it reads back must be what was decoded.
        let specification = augmentations.isEmpty ? "none" : augmentations.map(\.specification).joined(separator: ",")
        do {
            guard try Augmentation.parseList(specification) == augmentations else { throw bad("augmentations \(specification) do not read back") }
        } catch let error as DataOptionError {
            throw bad("augmentation: \(error.description)")
        }
        return self
    }
}

extension RunConfiguration {
    /// The configuration if it describes a network that can be built and a run that can be
    /// trained, else the first problem (one line).
    public func validated() throws -> RunConfiguration {
        func bad(_ why: String) -> TrainingError { .invalidOption("run configuration: \(why)") }
        guard imageShape.count == 3 else { throw bad("image shape \(imageShape) is not [C, H, W]") }
        guard imageShape[0] == 1 || imageShape[0] == 3 else { throw bad("\(imageShape[0]) image channels (1 or 3)") }
        do { _ = try modelCard(run: nil, epoch: nil, step: nil).validated() } catch let error as ModelFileError {
            throw bad(error.description)
        }
        _ = try recipe.validated()
        _ = try transfer?.validated()
        guard (1...100_000_000).contains(trainingCount), trainingCount >= recipe.batchSize else {
            throw bad("\(trainingCount) training images for batches of \(recipe.batchSize)")
        }
        guard validationCount >= 0, validationCount == recipe.validationCount else {
            throw bad("\(validationCount) validation images where the recipe holds out \(recipe.validationCount)")
        }
        guard recipe.totalIterations(trainingCount: trainingCount) <= maximumIterations else {
            throw bad("the run would take more than \(maximumIterations) iterations")
        }
        guard threads >= 1, threads <= 1_024 else { throw bad("\(threads) threads") }
        if let microBatches, microBatches < 1 || recipe.batchSize % microBatches != 0 {
            throw bad("\(microBatches) micro-batches for batches of \(recipe.batchSize)")
        }
        if synchronizesBatchNorm == true, (microBatches ?? 1) != 1 { throw bad("synchronized batch norm with \(microBatches!) micro-batches") }
        return self
    }

    /// How `processes` ranks (1: one process) train this run so that batch norm sees the
    /// statistics the run records (``microBatches``, ``synchronizesBatchNorm``): the micro-batches
    /// per rank, and whether the ranks synchronize batch norm.
    ///
    /// `microBatches` and `synchronizesBatchNorm` are what the command line asked (`nil`, false:
    /// nothing). What the run records wins: a setting not given is taken from it (2 recorded
    /// parts on 2 ranks: 1 micro-batch each; alone: 2), and one that would change the statistics
    /// is refused in one line instead of changing the training in silence.
    public func batchNormLaunch(processes: Int, microBatches requested: Int?,
                                synchronizesBatchNorm requestedSync: Bool) throws -> (microBatches: Int, synchronizesBatchNorm: Bool) {
        let parts = microBatches ?? 1, batch = recipe.batchSize
        let synchronized = requestedSync || synchronizesBatchNorm == true
        func refuse(_ why: String) -> TrainingError { .invalidOption("this run normalizes batch norm \(why)") }
        let recorded = parts == 1 ? "over each whole batch of \(batch) images" : "in \(parts) parts of \(batch / parts) images (\(parts) micro-batches or ranks)"
        if synchronized {
            if let requested, requested != 1 { throw TrainingError.invalidOption("synchronized batch norm works on whole shards: use --micro-batches 1") }
            guard parts == 1 else {
                throw refuse("\(recorded); --sync-bn would normalize over the whole batch: resume without --sync-bn")
            }
            return (1, true)
        }
        if let requested {
            guard requested >= 1 else { throw TrainingError.invalidOption("\(requested) micro-batches (at least 1)") }
            guard processes * requested == parts else {
                let asked = "\(processes > 1 ? "\(processes) ranks x " : "")\(requested) micro-batches"
                let fix = parts % processes == 0 ? "--micro-batches \(parts / processes)" : parts == 1 ? "--sync-bn" : "a rank count that divides \(parts)"
                throw refuse("\(recorded), \(asked) would change that: use \(fix), or leave --micro-batches out")
            }
            return (requested, false)
        }
        guard parts % processes == 0 else {
            throw refuse("\(recorded); \(processes) ranks cannot keep that: \(parts == 1 ? "add --sync-bn" : "use a rank count that divides \(parts)")")
        }
        return (parts / processes, false)
    }
}

extension RunState {
    /// Whether every epoch record's wall seconds are finite and its CPU seconds finite and not
    /// negative, and its accuracies (training, validation, test) fractions in 0...1: reports
    /// add up the times and average the errors. (A negative wall time is left alone: runs made
    /// before it was clamped at zero could record one when the clock stepped back, and reports
    /// count it as zero. A NaN validation or test loss is left alone too: a network can
    /// produce one in evaluation mode, and no report adds losses up.)
    ///
    /// Kept out of ``validated(totalSteps:stepsPerEpoch:recipe:)`` on purpose: with this loop
    /// inlined there, Swift 6.3.1's release build (-O) used r12, the register that carries a
    /// thrown error, as scratch in the loop and did not clear it on a normal return, so every
    /// caller read a garbage error and crashed (SIGSEGV in swift_retain after the call;
    /// `resnet compare RUN` and `resnet train --resume RUN` of a finished run; the debug build
    /// was fine). `scripts/release-robustness.py` caught it; 2-core VM, 2026-12-02. A
    /// non-throwing function of its own saves and restores r12 like any other register.
    @inline(never)
    var epochRecordsAreInRange: Bool {
        for record in history {
            guard record.seconds.isFinite else { return false }
            if let cpu = record.cpuSeconds, !(cpu.isFinite && cpu >= 0) { return false }
            for accuracy in [record.trainAccuracy, record.validationAccuracy ?? 0, record.testAccuracy ?? 0] where !(0...1).contains(accuracy) {
                return false
            }
        }
        return true
    }

    /// The state if it is one a run of `recipe` with `totalSteps` steps (`stepsPerEpoch` per
    /// epoch) can be in: counters in range, and the plateau and early-stopping rules the
    /// recipe's (only their progress may differ).
    public func validated(totalSteps: Int, stepsPerEpoch: Int, recipe: Recipe) throws -> RunState {
        func bad(_ why: String) -> TrainingError { .invalidOption("run state: \(why); the checkpoint was edited or is damaged") }
        guard step >= 0, step <= totalSteps else { throw bad("step \(step) outside 0...\(totalSteps)") }
        guard epoch >= 0, epoch <= totalSteps / max(1, stepsPerEpoch) + 1 else { throw bad("epoch \(epoch) for step \(step)") }
        guard batchInEpoch >= 0, batchInEpoch <= stepsPerEpoch else { throw bad("batch \(batchInEpoch) of a \(stepsPerEpoch)-batch epoch") }
        guard partialLoss.isFinite, partialLoss >= 0, partialCorrect >= 0, partialSeen >= 0, partialCorrect <= partialSeen,
              partialSeconds.isFinite, partialSeconds >= 0, partialCPUSeconds.map({ $0.isFinite && $0 >= 0 }) ?? true else {
            throw bad("the sums of the epoch in progress are out of range")
        }
        // Reports add these up; NaN or negative times, or accuracies above 1, would pass into their figures.
        guard epochRecordsAreInRange else { throw bad("an epoch record with a time or an accuracy out of range") }
        if let best = bestValidationAccuracy { guard best.isFinite, (0...1).contains(best) else { throw bad("best validation accuracy \(best)") } }
        if let bestEpoch { guard bestEpoch >= 0, bestEpoch <= epoch + 1 else { throw bad("best epoch \(bestEpoch)") } }
        guard dropoutState.isEmpty || dropoutState.count == 4 else { throw bad("\(dropoutState.count) dropout generator words (0 or 4)") }
        switch (plateau, recipe.plateau) {
        case (nil, nil): break
        case (let p?, let rule?):
            guard p.factor == rule.factor, p.patience == rule.patience, p.cooldown == rule.cooldown,
                  p.minimumLearningRate == rule.minimumLearningRate, p.minimumDelta == rule.minimumDelta, p.maximize == rule.maximize else {
                throw bad("the plateau rule differs from the recipe's")
            }
            guard p.multiplier.isFinite, p.multiplier > 0, p.multiplier <= 1, p.best.map(\.isFinite) ?? true,
                  p.waited >= 0, p.cooldownLeft >= 0 else {
                throw bad("plateau progress out of range (multiplier \(p.multiplier))")
            }
        default: throw bad("a plateau rule where the recipe has \(recipe.plateau == nil ? "none" : "one")")
        }
        switch (earlyStopping, recipe.earlyStopping) {
        case (nil, nil): break
        case (let e?, let rule?):
            guard e.patience == rule.patience, e.minimumDelta == rule.minimumDelta, e.maximize else {
                throw bad("the early-stopping rule differs from the recipe's")
            }
            guard e.best.map(\.isFinite) ?? true, e.waited >= 0 else { throw bad("early-stopping progress out of range") }
        default: throw bad("an early-stopping rule where the recipe has \(recipe.earlyStopping == nil ? "none" : "one")")
        }
        if let validations {
            guard validations.allSatisfy({ (0...1).contains($0.accuracy) && $0.step >= 0 && $0.step <= step }) else {
                throw bad("a validation record out of range")
            }
        }
        return self
    }
}
