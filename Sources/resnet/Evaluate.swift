import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTensors
import ResNetTraining

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: loss, top-1, top-5, per-class accuracy and the confusion matrix.")

    @Argument(help: "A model file (.safetensors with a model card), a run's checkpoint, or a run directory (its best.safetensors).")
    var model: String
    @Option(help: "Data set (default: the one the model was trained on).") var dataset: String?
    @Option(help: "Where the data set is (default: where the model was trained from).") var data: String?
    @Option(help: "test, or val (the run's held-out validation split; runs only).") var split = "test"
    @Option(help: "Batch norm in evaluation: running (statistics from training) or batch (each batch's own).") var bn = "running"
    @Option(help: "Batch size (1...4096).") var batchSize = 500
    @Flag(help: "Print JSON (loss, top1, top5 as fractions, per_class, confusion_matrix).") var json = false
    @OptionGroup var engine: EngineOptions
    @OptionGroup var number: InferencePrecisionOption

    func run() throws {
        guard (1...4_096).contains(batchSize) else { throw UserError("--batch-size must be in 1...4096, got \(batchSize)") }
        let statistics: BatchNormStatistics
        switch bn {
        case "running": statistics = .running
        case "batch": statistics = .batch
        default: throw UserError("--bn must be running or batch, got '\(bn)'")
        }
        guard ["test", "val", "validation"].contains(split) else { throw UserError("--split must be test or val, got '\(split)'") }
        try engine.apply()
        let trained = try TrainedModel(model)
        let card = trained.loaded.card
        guard let name = dataset ?? card.provenance.dataset else {
            throw UserError("\(trained.loaded.url.path): the model card names no data set: pass --dataset and --data")
        }
        var source = try loadDatasetForUser(name, data ?? (dataset == nil ? card.provenance.dataPath : nil), imageSize: trained.run?.loadedImageSize)
        if let run = trained.run, dataset == nil { source = try run.prepared(source) }   // the run's classes
        let images: ImageDataset
        if split == "test" {
            guard let test = source.split("test") else { throw UserError("\(source.name) has no test split") }
            images = test
        } else {
            guard let run = trained.run, run.validationCount > 0, let train = source.split("train") else {
                throw UserError("\(trained.loaded.url.path): no training run with a validation split: evaluate --split test")
            }
            images = train.subset(try run.split(train).validation)
        }
        guard [images.channels, images.height, images.width] == card.input.shape else {
            throw UserError("the data has \(images.channels)x\(images.height)x\(images.width) images; the model takes \(card.input.shape.map(String.init).joined(separator: "x")) (CxHxW)")
        }
        guard images.classNames.count <= card.classNames.count else {
            throw UserError("the data has \(images.classNames.count) classes; the model has \(card.classNames.count)")
        }
        try ModelSummary(of: trained.loaded.model, name: card.architecture.name,
                         input: ImageShape(height: card.input.height, width: card.input.width, channels: card.input.channels),
                         classes: card.classNames.count).checkFits(batchSize: min(batchSize, images.count), training: false)
        let start = Date()
        let evaluator = Evaluator(model: trained.loaded.model, imageShape: card.input.shape, classCount: card.classNames.count,
                                  batchSize: batchSize, statistics: statistics, whitening: trained.loaded.whitening,
                                  parametersAreConstant: number.quantizes, precision: try number.resolved())
        var calibration = ""
        if number.quantizes {
            // Scales come from training images (a run's training part, never its validation or
            // the test images scored here), or the images of --calibration.
            let measured: (pixels: [UInt8], count: Int, source: String)
            if number.calibration != nil {
                measured = try calibrationImages(for: trained, folder: number.calibration, count: number.calibrationImages)
            } else {
                guard let train = source.split("train") else { throw UserError("\(source.name) has no training split to calibrate int8 on: give --calibration DIR") }
                measured = try calibrationImages(training: train, run: trained.run, count: number.calibrationImages, expecting: card.input.shape)
            }
            try measured.pixels.withUnsafeBufferPointer {
                try evaluator.quantize(calibratingOn: $0, count: measured.count, normalization: card.preprocessing.normalization)
            }
            calibration = ", int8 scaled on \(measured.source)"
        }
        let result = try evaluator.evaluate(images, normalization: card.preprocessing.normalization)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
            return
        }
        print("\(card.architecture.name) from \(trained.loaded.url.path) on \(source.name) \(split) (\(result.count) images, batch norm: \(bn) statistics\(calibration), \(String(format: "%.1f", -start.timeIntervalSinceNow)) s)")
        print(String(format: "loss %.4f  top-1 %.2f%%  top-5 %.2f%%", result.loss, 100 * result.top1, 100 * result.top5))
        print(confusionTable(result))
    }
}

/// Per-class accuracy and the confusion matrix (rows: true class, columns: predicted).
func confusionTable(_ r: EvaluationResult) -> String {
    let names = r.classNames.count == r.perClass.count ? r.classNames : r.perClass.indices.map(String.init)
    let nameWidth = max(5, names.map(\.count).max() ?? 5)
    let cell = max(5, String(r.confusionMatrix.flatMap { $0 }.max() ?? 0).count + 1)
    var lines = ["true \\ predicted".padding(toLength: nameWidth + 9, withPad: " ", startingAt: 0)
        + names.indices.map { String(repeating: " ", count: cell - String($0).count) + String($0) }.joined()]
    for (k, row) in r.confusionMatrix.enumerated() {
        let label = "\(k) \(names[k])".padding(toLength: nameWidth + 2, withPad: " ", startingAt: 0)
        let accuracy = String(format: "%6.2f%%", 100 * r.perClass[k])
        lines.append(label + accuracy + row.map { String(repeating: " ", count: max(1, cell - String($0).count)) + String($0) }.joined())
    }
    return lines.joined(separator: "\n")
}
