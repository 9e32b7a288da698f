import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetLayers
import ResNetModels
import ResNetTensors
import ResNetTraining

/// A checkpoint and the run configuration stored with it.
struct LoadedCheckpoint {
    let url: URL
    let configuration: RunConfiguration
    let model: any Layer

    /// Opens `path`: a run directory (its `best.safetensors`, else `last.safetensors`) or a file.
    init(_ path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw UserError("\(path): no such run directory or checkpoint") }
        var url = URL(fileURLWithPath: path)
        if isDirectory.boolValue {
            let best = url.appendingPathComponent("best.safetensors")
            url = FileManager.default.fileExists(atPath: best.path) ? best : url.appendingPathComponent("last.safetensors")
        }
        do {
            let (tensors, metadata) = try SafeTensors.read(url)
            guard let json = metadata["resnet.config"] else { throw UserError("\(url.path): no run configuration in the checkpoint's metadata") }
            configuration = try Trainer.decodeConfiguration(Data(json.utf8))
            model = try configuration.buildModel()
            try loadWeights(tensors, into: model, path: url.path)
        } catch let error as TrainingError {
            throw UserError(error.description)
        } catch let error as DecodingError {
            throw UserError("\(url.path): unreadable run configuration (\(error))")
        }
        self.url = url
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint: loss, top-1, top-5, per-class accuracy and the confusion matrix.")

    @Argument(help: "A run directory (uses best.safetensors) or a .safetensors checkpoint.") var checkpoint: String
    @Option(help: "Data set (default: the one the run trained on).") var dataset: String?
    @Option(help: "Where the data set is (default: the run's).") var data: String?
    @Option(help: "test, or val (the run's held-out validation split).") var split = "test"
    @Option(help: "Batch norm in evaluation: running (statistics from training) or batch (each batch's own).") var bn = "running"
    @Option(help: "Batch size.") var batchSize = 500
    @Flag(help: "Print JSON (loss, top1, top5 as fractions, per_class, confusion_matrix).") var json = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        engine.apply()
        let loaded = try LoadedCheckpoint(checkpoint)
        let c = loaded.configuration
        let source = try loadDatasetForUser(dataset ?? c.dataset, data ?? (dataset == nil ? c.dataPath : nil))
        let images: ImageDataset
        switch split {
        case "test":
            guard let test = source.split("test") else { throw UserError("\(source.name) has no test split") }
            images = test
        case "val", "validation":
            guard c.validationCount > 0, let train = source.split("train") else { throw UserError("the run has no validation split") }
            images = train.subset(try splitIndices(train, recipe: c.recipe).validation)
        default:
            throw UserError("--split must be test or val, got '\(split)'")
        }
        guard [images.channels, images.height, images.width] == c.imageShape else {
            throw UserError("the data has \(images.channels)x\(images.height)x\(images.width) images; the checkpoint expects \(c.imageShape.map(String.init).joined(separator: "x")) (CxHxW)")
        }
        guard images.classNames.count <= c.classNames.count else {
            throw UserError("the data has \(images.classNames.count) classes; the checkpoint was trained on \(c.classNames.count)")
        }
        let statistics: BatchNormStatistics
        switch bn {
        case "running": statistics = .running
        case "batch": statistics = .batch
        default: throw UserError("--bn must be running or batch, got '\(bn)'")
        }
        let start = Date()
        let result = try Evaluator(model: loaded.model, imageShape: c.imageShape, classCount: c.classNames.count,
                                   batchSize: batchSize, statistics: statistics,
                                   whitening: try whitening(for: c, dataset: dataset == nil ? source : nil))
            .evaluate(images, normalization: c.normalization)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
            return
        }
        print("\(c.model) from \(loaded.url.path) on \(source.name) \(split) (\(result.count) images, batch norm: \(bn) statistics, \(String(format: "%.1f", -start.timeIntervalSinceNow)) s)")
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
