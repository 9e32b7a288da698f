import ArgumentParser
import Foundation
import ResNetInference
import ResNetTraining

/// `resnet export`: a model file that stands on its own.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model file: the weights and the model card (architecture, input, preprocessing, classes, provenance), without a run's optimizer state.",
        discussion: "The file is what `resnet predict` and `resnet evaluate` (and a Swift program, through ResNetInference) load; it needs neither the run directory nor the training data, even for ZCA models (the fitted whitening is stored).")

    @Argument(help: "A run directory (its best.safetensors), a checkpoint or a model file.") var model: String
    @Option(help: "The model file to write (.safetensors).") var out: String

    func run() throws {
        guard out.hasSuffix(".safetensors") else { throw UserError("--out must name a .safetensors file, got '\(out)'") }
        let trained = try TrainedModel(model)
        let source = trained.loaded.url.standardizedFileURL
        let destination = URL(fileURLWithPath: out).standardizedFileURL
        guard source.path != destination.path else { throw UserError("--out is the model being exported: choose another file") }
        var card = trained.loaded.card
        // A run's test figure belongs to its best checkpoint (train evaluates that one once).
        let test = source.deletingLastPathComponent().appendingPathComponent("test.json")
        if source.lastPathComponent == "best.safetensors", let data = try? Data(contentsOf: test),
           let result = try? JSONDecoder().decode(EvaluationResult.self, from: data), result.top1.isFinite, result.top5.isFinite {
            card.provenance.metrics["test_top1"] = result.top1
            card.provenance.metrics["test_top5"] = result.top5
        }
        try ModelFile.write(model: trained.loaded.model, card: card, whitening: trained.loaded.whitening, to: destination)
        let size = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int) ?? 0
        print("wrote \(destination.path): \(card.architecture.name), \(card.input.height)x\(card.input.width)x\(card.input.channels) input, \(card.classNames.count) classes, \(trained.loaded.model.trainableParameterCount) parameters, \(size / 1024) KiB")
    }
}
