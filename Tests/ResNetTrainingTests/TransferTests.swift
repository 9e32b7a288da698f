import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTraining
import Testing

@Suite("Transfer learning: --from, --head, --freeze", .serialized)
struct TransferTests {
    /// `tinyDataset` with its labels folded onto two classes.
    func twoClasses() -> LoadedDataset {
        let three = tinyDataset()
        let relabel = { (d: ImageDataset) in
            ImageDataset(images: d.images, labels: d.labels.map { $0 % 2 }, channels: d.channels, height: d.height, width: d.width,
                         classNames: ["x", "y"])
        }
        return LoadedDataset(name: "folder", classNames: ["x", "y"],
                             splits: [("train", relabel(three.split("train")!)), ("test", relabel(three.split("test")!))])
    }

    func train(_ request: RunRequest, data: LoadedDataset, in directory: URL) throws -> Trainer {
        let configuration = try request.configuration(data: data, dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        let train = data.split("train")!
        let (t, v) = try configuration.split(train)
        let trainer = try Trainer(configuration: configuration, training: train.subset(t), validation: train.subset(v),
                                  runDirectory: directory, resume: false)
        trainer.log = { _ in }
        return trainer
    }

    /// A resnet8 trained for `iterations` steps on the tiny 3-class data: a model to start from.
    func pretrain(in directory: URL, iterations: Int = 10) throws {
        var request = RunRequest()
        request.model = "resnet8"
        request.overrides.iterations = iterations
        request.overrides.batchSize = 16
        request.overrides.validation = 30
        _ = try train(request, data: tinyDataset(), in: directory).run()
    }

    @Test func aNewHeadOnAFrozenBackboneLearnsOnlyTheClassifier() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("transfer-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var pretrain = RunRequest()
        pretrain.model = "resnet8"
        pretrain.overrides.iterations = 20
        pretrain.overrides.batchSize = 16
        pretrain.overrides.validation = 30
        pretrain.recipe = "fast"
        let source = try train(pretrain, data: tinyDataset(), in: root.appendingPathComponent("pretrain"))
        _ = try source.run()
        let start = try TrainedModel(root.appendingPathComponent("pretrain").path).loaded
        let before = Dictionary(uniqueKeysWithValues: start.model.namedParameters().map { ($0.0, $0.1.values) })

        var fineTune = RunRequest()
        fineTune.from = root.appendingPathComponent("pretrain").path
        fineTune.freeze = "backbone"
        fineTune.recipe = "fast"
        fineTune.overrides.iterations = 15
        fineTune.overrides.batchSize = 16
        fineTune.overrides.validation = 30
        let trainer = try train(fineTune, data: twoClasses(), in: root.appendingPathComponent("fine-tune"))
        #expect(trainer.configuration.model == "resnet8" && trainer.configuration.modelOptions.shortcut == start.card.architecture.options.shortcut)
        #expect(trainer.configuration.transfer?.newHead == true && trainer.configuration.transfer?.freeze == .backbone)
        // Starting weights: the model's, the classifier aside (2 classes now).
        for (name, p) in trainer.model.namedParameters() where !name.hasPrefix("fc.") { #expect(p.values == before[name], "\(name)") }
        #expect(trainer.model.trainableParameters.count == 2, "only fc.weight and fc.bias learn")
        let classifierBefore = trainer.model.namedParameters().first { $0.0 == "fc.weight" }!.1.values
        _ = try trainer.run()
        for (name, p) in trainer.model.namedParameters() where !name.hasPrefix("fc.") {
            #expect(p.values == before[name], "\(name) is frozen (batch-norm statistics included)")
        }
        #expect(trainer.model.namedParameters().first { $0.0 == "fc.weight" }!.1.values != classifierBefore)

        // Keeping a 3-class head for 2-class data is refused with what to do.
        var keep = fineTune
        keep.head = "keep"
        #expect(throws: TrainingError.self) { try train(keep, data: twoClasses(), in: root.appendingPathComponent("keep")) }
        var bad = fineTune
        bad.freeze = "stages:9"
        #expect(throws: TrainingError.self) { try train(bad, data: twoClasses(), in: root.appendingPathComponent("bad")) }
        var orphan = RunRequest()
        orphan.freeze = "stem"
        #expect(throws: TrainingError.self) {
            try orphan.configuration(data: twoClasses(), dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        }
    }

    @Test func theBackboneLearningRateScaleSlowsEveryLayerButTheClassifier() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("transfer-lr-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try pretrain(in: root.appendingPathComponent("pretrain"))
        let start = try TrainedModel(root.appendingPathComponent("pretrain").path).loaded
        let before = Dictionary(uniqueKeysWithValues: start.model.namedParameters().map { ($0.0, $0.1.values) })

        // Scale 0: the backbone's weights keep their values (weight decay scales too) while the
        // new classifier learns; batch norms still update their running statistics.
        var fineTune = RunRequest()
        fineTune.from = root.appendingPathComponent("pretrain").path
        fineTune.backboneLearningRateScale = 0
        fineTune.recipe = "fast"
        fineTune.overrides.iterations = 8
        fineTune.overrides.batchSize = 16
        fineTune.overrides.validation = 30
        let trainer = try train(fineTune, data: twoClasses(), in: root.appendingPathComponent("scaled"))
        #expect(trainer.configuration.transfer?.backboneLearningRateScale == 0)
        let weights = trainer.model.namedParameters().filter { $0.1.isTrainable }
        #expect(weights.allSatisfy { $0.1.learningRateScale == ($0.0.hasPrefix("fc.") ? 1 : 0) })
        let headBefore = trainer.model.namedParameters().first { $0.0 == "fc.weight" }!.1.values
        _ = try trainer.run()
        for (name, p) in trainer.model.namedParameters() where p.isTrainable && !name.hasPrefix("fc.") {
            #expect(p.values == before[name], "\(name)")
        }
        #expect(trainer.model.namedParameters().first { $0.0 == "fc.weight" }!.1.values != headBefore)
        #expect(trainer.model.namedParameters().contains { $0.0.hasSuffix("runningMean") && $0.1.values != before[$0.0] })

        // Recorded in the run's configuration, so a resume continues with it.
        let saved = try Trainer.loadConfiguration(root.appendingPathComponent("scaled"))
        #expect(saved.transfer?.backboneLearningRateScale == 0)

        for bad: Float in [-0.1, 1.5, .nan, .infinity] {
            var r = fineTune
            r.backboneLearningRateScale = bad
            #expect(throws: TrainingError.self, "\(bad)") {
                try r.configuration(data: twoClasses(), dataset: "folder", dataPath: nil, isSample: false, threads: 1)
            }
        }
        var orphan = RunRequest()
        orphan.backboneLearningRateScale = 0.1
        #expect(throws: TrainingError.self) {
            try orphan.configuration(data: twoClasses(), dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        }
        #expect(fineTune.settingsThatChangeARun.contains("--backbone-lr-scale"))
    }

    @Test func transferSettingsWrittenBeforeTheScaleExistedDecodeWithOneRate() throws {
        let old = #"{"model":"/m.safetensors","newHead":true,"freeze":{"backbone":{}}}"#
        let settings = try JSONDecoder().decode(TransferSettings.self, from: Data(old.utf8))
        #expect(settings.backboneLearningRateScale == 1 && settings.freeze == .backbone)
        let roundTrip = try JSONDecoder().decode(TransferSettings.self, from: JSONEncoder().encode(
            TransferSettings(model: "/m", newHead: false, freeze: .stages(2), backboneLearningRateScale: 0.1)))
        #expect(roundTrip.backboneLearningRateScale == 0.1 && roundTrip.freeze == .stages(2) && !roundTrip.newHead)
    }

    @Test func aLinearProbeTrainsOnlyANewClassifierOnFeaturesComputedOnce() throws {
        // The classifier alone: separable features are learnt exactly.
        var features: [Float] = [], labels: [Int32] = []
        for i in 0..<120 {
            let c = i % 3
            var row = [Float](repeating: 0.1, count: 8)
            row[c] = 2 + Float(i % 7) / 7
            features += row
            labels.append(Int32(c))
        }
        let head = try LinearProbe.trainClassifier(features: features, labels: labels, featureCount: 8, classes: 3, epochs: 30,
                                                   batchSize: 16, learningRate: 0.1, weightDecay: 0, seed: 1)
        #expect(LinearProbe.accuracy(of: head, features: features, labels: labels, featureCount: 8) == 1)

        // The whole probe: the starting network's features, a new 2-class head, a model file.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("probe-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try pretrain(in: root.appendingPathComponent("pretrain"))
        let start = try TrainedModel(root.appendingPathComponent("pretrain").path).loaded
        let outcome = try LinearProbe.probe(start, on: twoClasses(), datasetName: "folder", validationCount: 20, epochs: 5)
        #expect(outcome.model.card.classNames == ["x", "y"] && outcome.trainingImages == 280)
        #expect(outcome.validationAccuracy != nil && outcome.testAccuracy != nil)
        let original = Dictionary(uniqueKeysWithValues: start.model.namedParameters().map { ($0.0, $0.1.values) })
        for (name, p) in outcome.model.model.namedParameters() {
            if name.hasPrefix("fc.") { #expect(p.shape.first == 2) } else { #expect(p.values == original[name], "\(name)") }
        }
        let file = root.appendingPathComponent("probe.safetensors")
        try ModelFile.write(model: outcome.model.model, card: outcome.model.card, whitening: nil, to: file)
        #expect(try ModelFile.load(file.path).card.provenance.metrics["test_top1"] == outcome.testAccuracy)
    }

    @Test func freezingStagesKeepsTheirBatchNormsInEvaluationMode() throws {
        let model = try ModelDefinition(name: "resnet14").build(classes: 3)
        try TransferSettings.Freeze(parsing: "stages:1-1").apply(to: model)
        model.train()
        let frozen = model.namedParameters().filter { $0.1.isFrozen }.map(\.0)
        #expect(frozen.allSatisfy { $0.hasPrefix("stem.") || $0.hasPrefix("stage1.") } && frozen.contains("stage1.block1.bn1.scale"))
        #expect(!model.namedParameters().contains { $0.0.hasPrefix("stage2.") && $0.1.isFrozen })
        let resnet = try #require(model as? ResNet)
        #expect(!resnet.stages[0].isTraining && resnet.stages[1].isTraining)
        #expect(throws: TrainingError.self) { try TransferSettings.Freeze(parsing: "stages:0") }
    }
}
