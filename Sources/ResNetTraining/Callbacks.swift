import Foundation
import ResNetData
import ResNetInference

/// Something that happens around the steps of a ``Trainer``'s run. The trainer calls its
/// ``Trainer/callbacks`` in order at each event; every method has a default that does nothing.
///
/// A callback reads ``Trainer/state`` and ``Trainer/plan``, may stop the run with
/// ``Trainer/requestStop(_:)``, and adds what it measures at an epoch's end to the record that
/// goes into the history, the metrics files and the logs.
public protocol TrainingCallback: AnyObject {
    /// Before the first step this process takes (a fresh start or a resume).
    func runWillStart(_ trainer: Trainer) throws
    /// After each optimizer step (``RunState/step`` counts it); `epochStart` is when this
    /// process began the epoch.
    func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws
    /// At an epoch's end (or the run's, or an early stop), before the record enters the history.
    func epochWillEnd(_ trainer: Trainer, _ record: inout EpochRecord) throws
    /// After the record is in the history and `last.safetensors` is written.
    func epochDidEnd(_ trainer: Trainer, _ record: EpochRecord) throws
    /// When ``Trainer/run()`` returns: finished, stopped early, or interrupted.
    func runDidEnd(_ trainer: Trainer, _ outcome: Trainer.Outcome) throws
}

extension TrainingCallback {
    public func runWillStart(_ trainer: Trainer) throws {}
    public func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws {}
    public func epochWillEnd(_ trainer: Trainer, _ record: inout EpochRecord) throws {}
    public func epochDidEnd(_ trainer: Trainer, _ record: EpochRecord) throws {}
    public func runDidEnd(_ trainer: Trainer, _ outcome: Trainer.Outcome) throws {}
}

/// Model selection on the validation split: evaluates it at every epoch's end (and every
/// `everyBatches` steps when the recipe's early stopping says so, as the PyTorch note does),
/// writes `best.safetensors` when the accuracy is the best so far, feeds ReduceLROnPlateau and
/// early stopping. Every evaluation is logged and kept in ``RunState/validations``.
public final class ValidationCallback: TrainingCallback {
    let evaluator: Evaluator
    let validation: ImageDataset

    init(evaluator: Evaluator, validation: ImageDataset) {
        self.evaluator = evaluator
        self.validation = validation
    }

    public func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws {
        guard let rule = trainer.recipe.earlyStopping, let every = rule.everyBatches, trainer.state.step % every == 0 else { return }
        let evaluation = try trainer.evaluate(evaluator, validation)
        try trainer.noteValidation(evaluation, record: nil)
        trainer.log(String(format: "  validation at step %d (epoch %d): loss %.4f  acc %.2f%%%@", trainer.state.step, trainer.state.epoch + 1,
                           evaluation.loss, 100 * evaluation.top1, trainer.state.validations?.last?.best == true ? "  (best: best.safetensors)" : ""))
        if trainer.state.earlyStopping?.record(Float(evaluation.top1)) == true {
            trainer.requestStop("early stopping: validation accuracy did not improve for \(rule.patience) evaluations")
        }
    }

    public func epochWillEnd(_ trainer: Trainer, _ record: inout EpochRecord) throws {
        let evaluation = try trainer.evaluate(evaluator, validation)
        record.validationLoss = evaluation.loss
        record.validationAccuracy = evaluation.top1
        try trainer.noteValidation(evaluation, record: record)
        if var plateau = trainer.state.plateau, let plan = trainer.plan {
            let monitored = trainer.recipe.plateauMonitor == "accuracy" ? Float(evaluation.top1) : Float(evaluation.loss)
            plateau.record(monitored, scheduled: plan.schedule.learningRate(step: trainer.state.step, stepsPerEpoch: plan.stepsPerEpoch))
            trainer.state.plateau = plateau
        }
        if let rule = trainer.recipe.earlyStopping, rule.everyBatches == nil, trainer.state.stopReason == nil,
           trainer.state.earlyStopping?.record(Float(evaluation.top1)) == true {
            trainer.requestStop("early stopping: validation accuracy did not improve for \(rule.patience) epochs")
        }
    }
}

/// Evaluates the test split at every epoch's end for the record (`--monitor-test`: the paper's
/// Fig. 6 curves). Decides nothing.
public final class TestMonitorCallback: TrainingCallback {
    let evaluator: Evaluator
    let test: ImageDataset

    init(evaluator: Evaluator, test: ImageDataset) {
        self.evaluator = evaluator
        self.test = test
    }

    public func epochWillEnd(_ trainer: Trainer, _ record: inout EpochRecord) throws {
        let evaluation = try trainer.evaluate(evaluator, test)
        record.testLoss = evaluation.loss
        record.testAccuracy = evaluation.top1
    }
}

/// Writes `metrics.csv`, `metrics.jsonl`, `validation.csv` and `curves.png` after every epoch.
public final class MetricsFilesCallback: TrainingCallback {
    public init() {}

    public func epochDidEnd(_ trainer: Trainer, _ record: EpochRecord) throws {
        func f(_ v: Double?) -> String { v.map { String($0) } ?? "" }
        let state = trainer.state, directory = trainer.runDirectory
        var csv = "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,images_per_second,cpu_seconds\n"
        var lines = ""
        let compact = JSONEncoder()
        compact.outputFormatting = [.sortedKeys]
        for r in state.history {
            csv += "\(r.epoch),\(r.step),\(r.learningRate),\(r.trainLoss),\(r.trainAccuracy),\(f(r.validationLoss)),\(f(r.validationAccuracy)),\(f(r.testLoss)),\(f(r.testAccuracy)),\(r.seconds),\(r.imagesPerSecond),\(f(r.cpuSeconds))\n"
            lines += String(decoding: try compact.encode(r), as: UTF8.self) + "\n"
        }
        try writeAtomically(Data(csv.utf8), to: directory.appendingPathComponent("metrics.csv"))
        try writeAtomically(Data(lines.utf8), to: directory.appendingPathComponent("metrics.jsonl"))
        if let validations = state.validations, !validations.isEmpty {
            var table = "epoch,step,val_loss,val_accuracy,best\n"
            for v in validations { table += "\(v.epoch),\(v.step),\(v.loss),\(v.accuracy),\(v.best ? 1 : 0)\n" }
            try writeAtomically(Data(table.utf8), to: directory.appendingPathComponent("validation.csv"))
        }
        do { try writeTrainingCurves(state.history, to: directory.appendingPathComponent("curves.png").path) } catch {
            trainer.log("could not draw curves.png: \(error)")
        }
    }
}

/// Scalars for `tensorboard --logdir RUN/tensorboard` after every epoch.
public final class TensorBoardCallback: TrainingCallback {
    let writer: TensorBoardWriter

    init(writer: TensorBoardWriter) { self.writer = writer }

    public func epochDidEnd(_ trainer: Trainer, _ record: EpochRecord) throws {
        var scalars: [(tag: String, value: Float)] = [("train/loss", Float(record.trainLoss)), ("train/accuracy", Float(record.trainAccuracy)),
                                                      ("learning_rate", record.learningRate), ("images_per_second", Float(record.imagesPerSecond))]
        if let l = record.validationLoss, let a = record.validationAccuracy { scalars += [("val/loss", Float(l)), ("val/accuracy", Float(a))] }
        if let l = record.testLoss, let a = record.testAccuracy { scalars += [("test/loss", Float(l)), ("test/accuracy", Float(a))] }
        writer.scalars(scalars, step: record.epoch)
    }
}

/// Where a run stands within an epoch, for a progress display.
public struct TrainingProgress: Sendable {
    /// The epoch in progress (1-based) of ``epochs``.
    public var epoch: Int
    public var epochs: Int
    /// Batches done in this epoch, of ``batches``.
    public var batch: Int
    public var batches: Int
    public var step: Int
    public var totalSteps: Int
    /// Running means over this epoch's batches.
    public var loss: Double
    public var accuracy: Double
    public var imagesPerSecond: Double
    public var learningRate: Float
    /// Seconds to the run's end at this epoch's pace (evaluations not counted).
    public var remainingSeconds: Double
}

/// Reports ``TrainingProgress`` after every step.
public final class ProgressCallback: TrainingCallback {
    let report: (TrainingProgress) -> Void

    public init(_ report: @escaping (TrainingProgress) -> Void) { self.report = report }

    public func stepDidEnd(_ trainer: Trainer, _ result: TrainingStep.Result, epochStart: Date) throws {
        guard let plan = trainer.plan else { return }
        let s = trainer.state
        let elapsed = max(s.partialSeconds - epochStart.timeIntervalSinceNow, 1e-9)
        let rate = Double(s.partialSeen) / elapsed
        let batchSize = Double(trainer.recipe.batchSize)
        report(TrainingProgress(epoch: s.epoch + 1, epochs: plan.epochs, batch: s.batchInEpoch, batches: plan.stepsPerEpoch,
                                step: s.step, totalSteps: plan.totalSteps,
                                loss: s.partialLoss / Double(max(1, s.partialSeen)),
                                accuracy: Double(s.partialCorrect) / Double(max(1, s.partialSeen)),
                                imagesPerSecond: rate, learningRate: trainer.optimizer.learningRate,
                                remainingSeconds: Double(plan.totalSteps - s.step) * batchSize / max(rate, 1e-9)))
    }
}
