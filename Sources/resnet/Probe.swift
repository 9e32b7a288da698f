import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetTraining

/// `resnet probe`: a linear probe of a model on a data set.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train only a new classifier on a model's features (computed once): a linear probe, in seconds; writes a model file.")

    @Option(help: "The model whose features are probed (a model file or a run directory).") var from: String
    @OptionGroup var data: DataChoice
    @Option(help: "Keep only these classes (5-9, or 0,2,4).") var classes: String?
    @Option(help: "With --classes: at most this many training images per class.") var perClass: Int?
    @Option(help: "Training images held out for validation.") var validation = 0
    @Option(help: "Epochs over the features.") var epochs = 100
    @Option(help: "Batch size.") var batchSize = 64
    @Option(help: "Peak learning rate (cosine decay).") var lr: Float = 0.1
    @Option(help: "Weight decay.") var weightDecay: Float = 5e-4
    @Option(help: "Seed of the classifier, the batch order and the per-class choice.") var seed: UInt64 = 0
    @Option(help: "The model file to write (.safetensors).") var out: String
    @OptionGroup var engine: EngineOptions

    func run() throws {
        guard out.hasSuffix(".safetensors") else { throw UserError("--out must name a .safetensors file, got '\(out)'") }
        guard (1...100_000).contains(epochs), (1...65_536).contains(batchSize), lr.isFinite, lr > 0, weightDecay.isFinite, weightDecay >= 0,
              validation >= 0 else {
            throw UserError("--epochs, --batch-size, --lr, --weight-decay and --validation must be positive (weight decay and validation may be 0)")
        }
        try engine.apply()
        let start = try TrainedModel(from).loaded
        var loaded = try resolveDataset(data.name, path: data.data, imageSize: data.imageSize).dataset
        if let classes { loaded = try DataSubset(parsing: classes, perClass: perClass).apply(to: loaded, seed: seed) }
        let outcome = try LinearProbe.probe(start, on: loaded, datasetName: data.name, validationCount: validation, epochs: epochs,
                                            batchSize: batchSize, learningRate: lr, weightDecay: weightDecay, seed: seed)
        try ModelFile.write(model: outcome.model.model, card: outcome.model.card, whitening: nil, to: URL(fileURLWithPath: out))
        var line = "linear probe of \(start.card.architecture.name) on \(outcome.trainingImages) images, \(loaded.classNames.count) classes, \(epochs) epochs, \(String(format: "%.1f", outcome.seconds)) s"
        if let v = outcome.validationAccuracy { line += String(format: ": validation %.2f%%", 100 * v) }
        if let t = outcome.testAccuracy { line += String(format: ", test %.2f%%", 100 * t) }
        print(line)
        print("wrote \(out)")
    }
}
