import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTensors
import ResNetTraining
import Testing

@Suite("Schedules, plateau, early stopping")
struct ScheduleTests {
    @Test("the paper's schedule: 0.1, 0.01 from 32k, 0.001 from 48k iterations; ResNet-110 warms up at 0.01")
    func paper() {
        let s = LearningRateSchedule.he2016
        #expect(s.learningRate(step: 0, stepsPerEpoch: 351) == 0.1)
        #expect(s.learningRate(step: 31_999, stepsPerEpoch: 351) == 0.1)
        #expect(abs(s.learningRate(step: 32_000, stepsPerEpoch: 351) - 0.01) < 1e-7)
        #expect(abs(s.learningRate(step: 48_000, stepsPerEpoch: 351) - 0.001) < 1e-8)
        let deep = Recipe.he2016.adapted(toDepth: 110).schedule
        #expect(deep.learningRate(step: 0, stepsPerEpoch: 351) == 0.01)
        #expect(deep.learningRate(step: 399, stepsPerEpoch: 351) == 0.01)
        #expect(deep.learningRate(step: 400, stepsPerEpoch: 351) == 0.1)
        #expect(Recipe.he2016.adapted(toDepth: 56).schedule == .he2016)
    }

    @Test("the Keras example's epoch schedule")
    func keras() {
        let s = LearningRateSchedule.kerasExample, n = 100
        func at(_ epoch: Int) -> Float { s.learningRate(step: epoch * n + 5, stepsPerEpoch: n) }
        #expect(at(0) == 1e-3 && at(80) == 1e-3)
        #expect(abs(at(81) - 1e-4) < 1e-10 && abs(at(120) - 1e-4) < 1e-10)
        #expect(abs(at(121) - 1e-5) < 1e-11)
        #expect(abs(at(161) - 1e-6) < 1e-12)
        #expect(abs(at(181) - 5e-7) < 1e-12)
    }

    @Test("cosine and one-cycle endpoints (PyTorch OneCycleLR conventions); linear warm-up")
    func continuous() {
        let cosine = LearningRateSchedule.cosine(base: 0.1, minimum: 0, iterations: 100)
        #expect(cosine.learningRate(step: 0, stepsPerEpoch: 10) == 0.1)
        #expect(abs(cosine.learningRate(step: 50, stepsPerEpoch: 10) - 0.05) < 1e-6)
        #expect(cosine.learningRate(step: 100, stepsPerEpoch: 10) < 1e-7)
        let one = LearningRateSchedule.oneCycle(maximum: 0.4, iterations: 1000, warmupFraction: 0.3, divFactor: 25, finalDivFactor: 1e4)
        #expect(abs(one.learningRate(step: 0, stepsPerEpoch: 10) - 0.016) < 1e-7)
        #expect(abs(one.learningRate(step: 299, stepsPerEpoch: 10) - 0.4) < 1e-6)
        #expect(abs(one.learningRate(step: 999, stepsPerEpoch: 10) - 0.016 / 1e4) < 1e-9)
        #expect(one.learningRate(step: 150, stepsPerEpoch: 10) > one.learningRate(step: 100, stepsPerEpoch: 10))
        #expect(one.learningRate(step: 700, stepsPerEpoch: 10) < one.learningRate(step: 500, stepsPerEpoch: 10))
        let warm = LearningRateSchedule.warmup(iterations: 10, learningRate: 0, linear: true, then: .constant(0.5))
        #expect(abs(warm.learningRate(step: 5, stepsPerEpoch: 1) - 0.25) < 1e-7)
        #expect(LearningRateSchedule.oneCycle(maximum: 1, iterations: 0, warmupFraction: 0.5, divFactor: 10, finalDivFactor: 10)
            .resolvingLength(200) == .oneCycle(maximum: 1, iterations: 200, warmupFraction: 0.5, divFactor: 10, finalDivFactor: 10))
    }

    @Test("--lr rescales a schedule so that its largest rate is the given one, keeping its shape")
    func scaledToPeak() {
        let deep = Recipe.he2016.adapted(toDepth: 110).schedule
        #expect(abs(deep.peak - 0.1) < 1e-7)
        let scaled = deep.scaled(toPeak: 0.2)
        #expect(abs(scaled.peak - 0.2) < 1e-7)
        #expect(abs(scaled.learningRate(step: 0, stepsPerEpoch: 10) - 0.02) < 1e-7, "the warm-up scales too")
        #expect(abs(scaled.learningRate(step: 40_000, stepsPerEpoch: 10) - 0.02) < 1e-7)
        let one = LearningRateSchedule.oneCycle(maximum: 0.4, iterations: 100, warmupFraction: 0.3, divFactor: 25, finalDivFactor: 1e4)
        #expect(one.scaled(toPeak: 0.1) == .oneCycle(maximum: 0.1, iterations: 100, warmupFraction: 0.3, divFactor: 25, finalDivFactor: 1e4))
    }

    @Test("plateau multiplies the schedule: a later schedule drop still applies, and a reduction survives it")
    func plateauComposes() {
        let schedule = LearningRateSchedule.multiStep(base: 0.1, milestones: [5], multipliers: [0.1], unit: .epoch)
        var plateau = ReduceLROnPlateau(factor: 0.5, patience: 2, cooldown: 1, minimumLearningRate: 1e-6)
        var rates: [Float] = []
        let losses: [Float] = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.99]
        for (epoch, loss) in losses.enumerated() {
            let scheduled = schedule.learningRate(step: epoch, stepsPerEpoch: 1)
            rates.append(scheduled * plateau.multiplier)
            plateau.record(loss, scheduled: scheduled)
        }
        // epochs 0-3 at 0.1; two bad evaluations (2, 3) halve it; cooldown 1; the schedule's x0.1 at 5.
        #expect(rates[0...3].allSatisfy { abs($0 - 0.1) < 1e-7 })
        #expect(abs(rates[4] - 0.05) < 1e-7)
        #expect(abs(rates[5] - 0.005) < 1e-8, "schedule drop and plateau reduction compose")
        #expect(plateau.multiplier <= 0.25 + 1e-7, "kept reducing after the cooldown")
        var floor = ReduceLROnPlateau(factor: 0.1, patience: 1, minimumLearningRate: 0.01)
        for loss: Float in [1, 2, 3, 4, 5] { floor.record(loss, scheduled: 0.1) }
        #expect(abs(floor.multiplier * 0.1 - 0.01) < 1e-8, "never below the minimum rate")
    }

    @Test("early stopping waits `patience` evaluations without improvement")
    func earlyStopping() {
        var rule = EarlyStopping(patience: 3)
        let decisions = [0.5, 0.6, 0.6, 0.55, 0.61, 0.6, 0.6, 0.6].map { rule.record(Float($0)) }
        #expect(decisions == [false, false, false, false, false, false, false, true])
        #expect(rule.best == 0.61)
    }
}

@Suite("Checkpoints")
struct CheckpointTests {
    func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-test-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("safetensors round trip, the standard header layout, atomic write leaves no temporary file")
    func roundTrip() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")
        let tensors = ["conv.weight": SafeTensors.Tensor(shape: [2, 1, 1, 3], values: [1, -2, 3.5, 4, 5, .pi]),
                       "fc.bias": SafeTensors.Tensor(shape: [2], values: [0.25, -0.5])]
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: url)
        let (read, metadata) = try SafeTensors.read(url)
        #expect(read == tensors)
        #expect(metadata == ["format": "pt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["w.safetensors"])
        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        #expect(headerLength % 8 == 0)
        #expect(bytes.count == 8 + headerLength + 4 * 8)
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        #expect((header["conv.weight"] as? [String: Any])?["dtype"] as? String == "F32")
    }

    @Test("corrupt and truncated files name the file and the problem")
    func corrupt() throws {
        let tensors = ["w": SafeTensors.Tensor(shape: [4], values: [1, 2, 3, 4])]
        let good = try SafeTensors.encode(tensors)
        func message(_ data: Data) -> String {
            do { _ = try SafeTensors.decode(data, path: "x.safetensors"); return "" } catch { return "\(error)" }
        }
        #expect(message(good.prefix(good.count - 3)).contains("truncated"))
        #expect(message(Data([1, 2, 3])).contains("x.safetensors"))
        #expect(message(Data(repeating: 0xFF, count: 64)).contains("header length"))
        var bogus = good
        bogus[9] = 0x7B; bogus[10] = 0x7B
        #expect(message(bogus).contains("x.safetensors"))
        // Random mutations never crash, and every refusal is a one-line ModelFileError naming the file.
        var random = DataRandom(seed: 3)
        var refused = 0
        for _ in 0..<2_000 {
            var m = good
            for _ in 0..<3 { m[Int(random.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: random.next()) }
            do {
                _ = try SafeTensors.decode(m.prefix(Int(random.next() % UInt64(m.count + 1))), path: "fuzz")
            } catch let error as ModelFileError {
                refused += 1
                #expect(error.description.hasPrefix("fuzz: ") && !error.description.contains("\n"), "\(error)")
            } catch {
                Issue.record("not a ModelFileError: \(error)")
            }
        }
        #expect(refused > 1_000, "most mutations (and every truncation) must be refused, \(refused) were")
    }
}

/// Keeps the bytes of `last.safetensors` as written at the end of epoch `epoch`.
final class CheckpointKeeper: TrainingCallback {
    let epoch: Int
    var saved: Data?
    init(epoch: Int) { self.epoch = epoch }
    func epochDidEnd(_ trainer: Trainer, _ record: EpochRecord) throws {
        if record.epoch == epoch { saved = try Data(contentsOf: trainer.runDirectory.appendingPathComponent("last.safetensors")) }
    }
}

/// Where Debian's dataset-fashion-mnist puts the data.
private let fashionMNIST = "/usr/share/datasets/fashion-mnist"

@Suite("Training runs", .serialized,
       .enabled(if: FileManager.default.fileExists(atPath: fashionMNIST),
                "needs Fashion-MNIST: apt-get install dataset-fashion-mnist (scripts/install-deps.sh does)"))
struct TrainingRunTests {
    static let fashion = fashionMNIST

    /// 1,024 training and 256 validation images of Fashion-MNIST, ResNet-8 (1 block per stage).
    func setUp(recipe: Recipe, dir: URL, seed: UInt64 = 5) throws -> (RunConfiguration, ImageDataset, ImageDataset)? {
        guard FileManager.default.fileExists(atPath: Self.fashion) else { return nil }
        let all = try FashionMNIST.load(directory: Self.fashion, split: .train).prefix(1_280)
        let (t, v) = try all.stratifiedSplit(validationCount: 256, seed: 0)
        let train = all.subset(t), validation = all.subset(v)
        let configuration = RunConfiguration(
            model: "cifar-resnet8", modelOptions: ModelOptions(shortcut: .a), imageShape: [1, 28, 28],
            classNames: FashionMNIST.classNames, dataset: "fashion-mnist", dataPath: nil, recipe: recipe, seed: seed,
            normalization: Normalization.fit(recipe.normalization, on: train), trainingCount: train.count,
            validationCount: validation.count, threads: 2, deterministic: true)
        return (configuration, train, validation)
    }

    func smallRecipe() -> Recipe {
        var r = Recipe.fast
        r.duration = .epochs(3)
        r.batchSize = 64
        r.validationCount = 256
        return r
    }

    func weights(_ dir: URL) throws -> [String: SafeTensors.Tensor] {
        try SafeTensors.read(dir.appendingPathComponent("last.safetensors")).tensors
    }

    @Test("an interrupted and resumed run ends with exactly the weights of an uninterrupted one; so does a restart from an older checkpoint (a kill between checkpoints)")
    func exactResume() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let whole = base.appendingPathComponent("whole"), split = base.appendingPathComponent("split")
        guard let (configuration, train, validation) = try setUp(recipe: smallRecipe(), dir: whole) else {
            Issue.record("Fashion-MNIST disappeared during the run"); return
        }
        let reference = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: whole, resume: false)
        reference.log = { _ in }
        let finished = try reference.run()
        #expect(finished.state.finished && finished.state.history.count == 3)
        #expect(FileManager.default.fileExists(atPath: whole.appendingPathComponent("best.safetensors").path))
        let csv = try String(contentsOf: whole.appendingPathComponent("metrics.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 4)
        #expect(csv.hasPrefix("epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,images_per_second,cpu_seconds\n"))
        // Every epoch records the CPU time of its steps; a busy process uses about its wall time or more.
        #expect(finished.state.history.allSatisfy { ($0.cpuSeconds ?? 0) > 0.3 * $0.seconds })

        // Interrupted in the middle of epoch 2 (Ctrl-C), then resumed. The checkpoint written at
        // epoch 1's end is kept aside: a run killed before its next checkpoint restarts from it.
        let first = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: split, resume: false)
        first.log = { _ in }
        let keeper = CheckpointKeeper(epoch: 1)
        first.callbacks.append(keeper)
        first.callbacks.append(ProgressCallback { p in if p.epoch == 2 && p.batch == 7 { first.interruption.set() } })
        let stopped = try first.run()
        #expect(stopped.interrupted && stopped.state.step == 16 + 7)
        let saved = try #require(keeper.saved)
        #expect((stopped.state.partialCPUSeconds ?? 0) > 0, "the interrupted epoch's CPU time is checkpointed")

        // The checkpoint's run state with `edit` applied (to plant CPU times, or to remove them as
        // runs made before they were recorded have none).
        func editState(_ file: URL, _ edit: (inout [String: Any]) -> Void) throws {
            let (tensors, metadata) = try SafeTensors.read(file)
            var object = try JSONSerialization.jsonObject(with: Data((metadata["resnet.state"] ?? "").utf8)) as? [String: Any] ?? [:]
            edit(&object)
            var edited = metadata
            edited["resnet.state"] = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            try SafeTensors.write(tensors, metadata: edited, to: file)
        }
        func withoutCPUTimes(_ state: inout [String: Any]) {
            state["partialCPUSeconds"] = nil
            state["history"] = (state["history"] as? [[String: Any]])?.map { $0.filter { $0.key != "cpu_seconds" } }
        }
        // A mid-epoch checkpoint of a run made before CPU times were recorded: that epoch has
        // none (its first part is unknown), the next has its own.
        let older = base.appendingPathComponent("older")
        try FileManager.default.copyItem(at: split, to: older)
        try editState(older.appendingPathComponent("last.safetensors"), withoutCPUTimes)
        let olderRun = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: older, resume: true)
        olderRun.log = { _ in }
        let olderHistory = try olderRun.run().state.history
        #expect(olderHistory.map { $0.cpuSeconds == nil } == [true, true, false])

        // The interrupted epoch's CPU time carries over to its end: planted large, it shows.
        try editState(split.appendingPathComponent("last.safetensors")) { $0["partialCPUSeconds"] = 1_000.0 }
        let second = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: split, resume: true)
        second.log = { _ in }
        #expect(second.state.partialCPUSeconds == 1_000)
        _ = try second.run()
        #expect(try weights(split) == weights(whole), "resumed from mid-epoch")
        #expect(try ExperimentRunStatus.read(split).history.map { ($0.cpuSeconds ?? 0) >= 1_000 } == [false, true, false])

        // A run killed -9 after epoch 1's checkpoint and before the next restarts from epoch 1's
        // end; from a run made before CPU times were recorded, the next epochs have theirs.
        try saved.write(to: split.appendingPathComponent("last.safetensors"))
        try editState(split.appendingPathComponent("last.safetensors"), withoutCPUTimes)
        let third = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: split, resume: true)
        #expect(third.state.step == 16 && third.state.batchInEpoch == 0 && third.state.partialCPUSeconds == nil)
        third.log = { _ in }
        #expect(try third.run().state.history.map { $0.cpuSeconds == nil } == [true, false, false])
        #expect(try weights(split) == weights(whole), "restarted from an older checkpoint")
    }

    @Test("a run learns; bad requests fail with one line and overwrite nothing")
    func learnsAndRefuses() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        guard let (configuration, train, validation) = try setUp(recipe: smallRecipe(), dir: dir) else {
            Issue.record("Fashion-MNIST disappeared during the run"); return
        }
        let trainer = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: dir, resume: false)
        trainer.log = { _ in }
        let outcome = try trainer.run()
        #expect((outcome.state.bestValidationAccuracy ?? 0) > 0.5, "chance is 0.1")
        let before = try Data(contentsOf: dir.appendingPathComponent("last.safetensors"))

        func message(_ body: () throws -> Any) -> String { do { _ = try body(); return "" } catch { return "\(error)" } }
        #expect(message { try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: dir, resume: false) }
            .contains("already holds a run"))
        var other = configuration
        other.model = "cifar-resnet14"
        #expect(message { try Trainer(configuration: other, training: train, validation: validation, runDirectory: dir, resume: true) }
            .contains("other settings"))
        #expect(message { try Trainer(configuration: configuration, training: train, validation: validation,
                                      runDirectory: dir.appendingPathComponent("missing"), resume: true) }.contains("no run to resume"))
        #expect(try Data(contentsOf: dir.appendingPathComponent("last.safetensors")) == before, "nothing overwritten")

        // A checkpoint for another architecture.
        let wrong = try other.buildModel()
        #expect(message { try loadWeights(try SafeTensors.read(dir.appendingPathComponent("best.safetensors")).tensors, into: wrong, path: "best") }
            .contains("another architecture"))

        // The best checkpoint is a model file: its card says what the logs call best.
        let best = try TrainedModel(dir.path)
        #expect(best.loaded.url.lastPathComponent == "best.safetensors")
        #expect(best.run == configuration)
        #expect(best.loaded.card.provenance.metrics["validation_top1"] == outcome.state.bestValidationAccuracy)
        #expect(best.loaded.card.provenance.epoch == outcome.state.bestEpoch)
        #expect(best.loaded.card.architecture.name == "cifar-resnet8" && best.loaded.card.input.channelOrder == .gray)
        // A checkpoint from before model cards loads through its run configuration.
        let (tensors, metadata) = try SafeTensors.read(dir.appendingPathComponent("best.safetensors"))
        var legacy = metadata
        legacy[ModelCard.metadataKey] = nil
        let old = dir.appendingPathComponent("old.safetensors")
        try SafeTensors.write(tensors, metadata: legacy, to: old)
        let loaded = try TrainedModel(old.path)
        #expect(loaded.loaded.card.architecture == best.loaded.card.architecture && loaded.loaded.card.classNames == configuration.classNames)
        #expect(loaded.loaded.model.namedParameters().map { $0.1.values } == best.loaded.model.namedParameters().map { $0.1.values })

        // Edited run state and optimizer buffers are refused on resume, with one line.
        let last = dir.appendingPathComponent("last.safetensors")
        let (lastTensors, lastMetadata) = try SafeTensors.read(last)
        func resumeWith(_ tensors: [String: SafeTensors.Tensor], _ metadata: [String: String]) -> String {
            let copy = dir.appendingPathComponent("edited")
            try? FileManager.default.removeItem(at: copy)
            try? FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
            try? FileManager.default.copyItem(at: dir.appendingPathComponent("config.json"), to: copy.appendingPathComponent("config.json"))
            try? SafeTensors.write(tensors, metadata: metadata, to: copy.appendingPathComponent("last.safetensors"))
            return message { try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: copy, resume: true) }
        }
        #expect(resumeWith(lastTensors, lastMetadata) == "", "an unedited copy resumes")
        var negative = lastMetadata
        negative["resnet.state"] = lastMetadata["resnet.state"]!.replacingOccurrences(of: "\"step\" : \(outcome.state.step)", with: "\"step\" : -5")
        #expect(negative != lastMetadata)
        #expect(resumeWith(lastTensors, negative).contains("run state: step -5 outside"))
        var nanBest = lastMetadata
        nanBest["resnet.state"] = lastMetadata["resnet.state"]!.replacingOccurrences(of: "\"bestValidationAccuracy\" : ", with: "\"bestValidationAccuracy\" : \"nan\", \"was\" : ")
        #expect(resumeWith(lastTensors, nanBest).contains("best validation accuracy nan"))
        var noMomentum = lastTensors
        let momentum = lastTensors.keys.sorted().first { $0.hasPrefix("optimizer/") }!
        noMomentum[momentum] = nil
        #expect(resumeWith(noMomentum, lastMetadata).contains("does not cover every trainable parameter"))
    }

    @Test("validations within an epoch are logged, and best.safetensors is the last best row of validation.csv")
    func midEpochValidations() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-mid-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var recipe = smallRecipe()
        recipe.duration = .epochs(1)
        recipe.earlyStopping = .init(patience: 100, everyBatches: 5)
        guard let (configuration, train, validation) = try setUp(recipe: recipe, dir: dir) else {
            Issue.record("Fashion-MNIST disappeared during the run"); return
        }
        let trainer = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: dir, resume: false)
        var lines: [String] = []
        trainer.log = { lines.append($0) }
        let outcome = try trainer.run()
        let validations = try #require(outcome.state.validations)
        #expect(validations.map(\.step) == [5, 10, 15, 16], "three within the epoch of 16 steps, one at its end")
        #expect(lines.filter { $0.contains("validation at step") }.count == 3)
        let best = try #require(validations.last { $0.best })
        #expect(best.accuracy == outcome.state.bestValidationAccuracy && best.step == outcome.state.bestStep)
        let card = try ModelFile.load(dir.path).card
        #expect(card.provenance.step == best.step && card.provenance.metrics["validation_top1"] == best.accuracy)
        let csv = try String(contentsOf: dir.appendingPathComponent("validation.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 5 && csv.hasPrefix("epoch,step,val_loss,val_accuracy,best"))
    }

    @Test("a diverging run stops with a clear message and keeps the last good checkpoint")
    func divergence() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-nan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var recipe = smallRecipe()
        recipe.schedule = .multiStep(base: 0.05, milestones: [1], multipliers: [1e30], unit: .epoch)
        recipe.optimizer = .sgd
        recipe.labelSmoothing = 0
        guard let (configuration, train, validation) = try setUp(recipe: recipe, dir: dir) else {
            Issue.record("Fashion-MNIST disappeared during the run"); return
        }
        let trainer = try Trainer(configuration: configuration, training: train, validation: validation, runDirectory: dir, resume: false)
        trainer.log = { _ in }
        var message = ""
        do { _ = try trainer.run() } catch { message = "\(error)" }
        #expect(message.contains("diverged"))
        let last = try SafeTensors.read(dir.appendingPathComponent("last.safetensors"))
        #expect(last.tensors.values.allSatisfy { $0.values.allSatisfy(\.isFinite) })
    }
}

@Suite("Validation of what a run reads back")
struct ValidationTests {
    func message(_ body: () throws -> Any) -> String { do { _ = try body(); return "" } catch { return "\(error)" } }

    @Test("a schedule that turns negative or infinite late in the run is refused before step 1")
    func schedules() {
        let late = LearningRateSchedule.multiStep(base: 0.1, milestones: [100, 200], multipliers: [0.1, -1], unit: .iteration)
        #expect(message { try late.validated() }.contains("-0.1 is not a finite rate >= 0"))
        #expect(message { try LearningRateSchedule.constant(.nan).validated() }.contains("not a finite rate"))
        #expect(message { try LearningRateSchedule.warmup(iterations: 10, learningRate: 0.01, linear: false, then: .constant(-1)).validated() }
            .contains("-1.0 is not"))
        #expect(message { try LearningRateSchedule.multiStep(base: 0.1, milestones: [200, 100], multipliers: [0.1, 0.01], unit: .epoch).validated() }
            .contains("must increase"))
        #expect(message { try LearningRateSchedule.he2016.validated() } == "")
        var recipe = Recipe.he2016
        recipe.schedule = late
        #expect(message { try recipe.validated() }.contains("recipe he2016: learning-rate schedule"))
    }

    @Test("absurd recipes and configurations are refused with one line")
    func configurations() throws {
        var recipe = Recipe.fast
        recipe.duration = .epochs(Int.max)
        #expect(message { try recipe.validated() }.contains("epochs must be in 1...1000000"))
        recipe = .fast
        recipe.batchSize = 0
        #expect(message { try recipe.validated() }.contains("batch size 0"))
        recipe = .fast
        recipe.augmentations = [.padCrop(padding: -4, fill: .constant)]
        #expect(message { try recipe.validated() }.contains("recipe fast: augmentation"))
        for r in Recipe.presets { #expect(message { try r.validated() } == "", "\(r.name)") }

        // A run state whose plateau rule was edited (a NaN factor would make the rate NaN).
        var state = RunState()
        state.plateau = ReduceLROnPlateau(factor: .nan)
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .kerasExample) }.contains("plateau rule differs"))
        state.plateau = Recipe.kerasExample.plateau
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .kerasExample) } == "")
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) }.contains("where the recipe has none"))

        // Times that reports add up are finite and not negative; runs made before CPU time was
        // recorded decode without it.
        state = RunState()
        state.partialCPUSeconds = -1
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) }.contains("sums of the epoch in progress"))
        state.partialCPUSeconds = nil
        var record = PlotTests.history(1)[0]
        record.seconds = 3
        record.cpuSeconds = 5.5
        for bad in [Double.nan, -2] {
            state.history = [record]
            state.history[0].cpuSeconds = bad
            #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) }.contains("a time or an accuracy out of range"))
        }
        state.history = [record]
        state.history[0].seconds = .infinity
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) }.contains("a time or an accuracy out of range"))
        // Accuracies whose errors reports average are fractions; a NaN evaluation loss is kept.
        for edit: (inout EpochRecord) -> Void in [{ $0.trainAccuracy = 1.5 }, { $0.validationAccuracy = -0.25 },
                                                  { $0.testAccuracy = .nan }, { $0.testAccuracy = 7 }] {
            state.history = [record]
            edit(&state.history[0])
            #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) }.contains("a time or an accuracy out of range"))
        }
        state.history = [record]
        state.history[0].validationLoss = .nan
        state.history[0].testAccuracy = 0.9
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) } == "")
        state.history = [record]
        #expect(message { try state.validated(totalSteps: 100, stepsPerEpoch: 10, recipe: .he2016) } == "")
        let encoded = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        #expect(encoded.contains("\"cpu_seconds\":5.5") && encoded.contains("\"partialCPUSeconds\"") == false)
        var object = try #require(try JSONSerialization.jsonObject(with: Data(encoded.utf8)) as? [String: Any])
        object["history"] = (object["history"] as? [[String: Any]])?.map { $0.filter { $0.key != "cpu_seconds" } }
        let older = try JSONDecoder().decode(RunState.self, from: try JSONSerialization.data(withJSONObject: object))
        #expect(older.history[0].cpuSeconds == nil && older.partialCPUSeconds == nil && older.history[0].seconds == 3)

        let good = RunConfiguration(model: "resnet20", modelOptions: ModelOptions(), imageShape: [3, 32, 32],
                                    classNames: (0..<10).map(String.init), dataset: "cifar10", dataPath: nil, recipe: .he2016, seed: 0,
                                    normalization: .none, trainingCount: 45_000, validationCount: 5_000, threads: 2, deterministic: false)
        #expect(message { try good.validated() } == "")
        let json = String(decoding: try JSONEncoder().encode(good), as: UTF8.self)
        #expect(message { try Trainer.decodeConfiguration(Data(json.utf8), path: "c") } == "")
        func edited(_ from: String, _ to: String) -> String {
            let text = json.replacingOccurrences(of: from, with: to)
            #expect(text != json, "the edit \(from) applies")
            return message { try Trainer.decodeConfiguration(Data(text.utf8), path: "config.json") }
        }
        #expect(edited("\"imageShape\":[3,32,32]", "\"imageShape\":[]").contains("config.json: run configuration: image shape []"))
        #expect(edited("\"imageShape\":[3,32,32]", "\"imageShape\":[3,1099511627776,32]").contains("each side must be in 1...4096"))
        #expect(edited("\"batchSize\":128", "\"batchSize\":0").contains("batch size 0"))
        #expect(edited("\"trainingCount\":45000", "\"trainingCount\":-1").contains("-1 training images"))
        #expect(edited("\"model\":\"resnet20\"", "\"model\":\"resnet99999999999999999999\"").contains("config.json"))
        #expect(message { try Trainer.decodeConfiguration(Data("{".utf8), path: "config.json") }.contains("config.json: not a run configuration"))
    }
}

@Suite("TensorBoard")
struct TensorBoardTests {
    @Test("event files are TFRecords of Event protos with valid masked CRC-32C")
    func eventFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try TensorBoardWriter(directory: dir)
        writer.scalars([("train/loss", 1.5), ("val/accuracy", 0.75)], step: 3)
        let bytes = [UInt8](try Data(contentsOf: writer.url))
        var offset = 0, records: [[UInt8]] = []
        while offset < bytes.count {
            let length = Int(bytes[offset..<(offset + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
            let lengthCRC = bytes[(offset + 8)..<(offset + 12)].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            #expect(lengthCRC == TensorBoardTesting.maskedCRC(Array(bytes[offset..<(offset + 8)])))
            let payload = Array(bytes[(offset + 12)..<(offset + 12 + length)])
            let payloadCRC = bytes[(offset + 12 + length)..<(offset + 16 + length)].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            #expect(payloadCRC == TensorBoardTesting.maskedCRC(payload))
            records.append(payload)
            offset += 16 + length
        }
        #expect(records.count == 2)
        #expect(String(decoding: records[0], as: UTF8.self).contains("brain.Event:2"))
        #expect(String(decoding: records[1], as: UTF8.self).contains("val/accuracy"))
        #expect(TensorBoardTesting.crc(Array("123456789".utf8)) == 0xE306_9283)
    }
}
