import Foundation
import ResNetData
import ResNetInference
import ResNetModels

extension RunConfiguration {
    /// The model card of this run's network: its architecture, input, preprocessing and classes,
    /// and where it comes from (`metrics` such as `validation_top1`, the epoch and step of the
    /// weights).
    public func modelCard(run: String?, epoch: Int?, step: Int?, metrics: [String: Double] = [:]) -> ModelCard {
        let channels = imageShape.first ?? 0
        return ModelCard(
            architecture: .init(name: model, options: modelOptions),
            input: .init(channels: channels, height: imageShape.count == 3 ? imageShape[1] : 0,
                         width: imageShape.count == 3 ? imageShape[2] : 0, channelOrder: channels == 1 ? .gray : .rgb),
            preprocessing: .init(resize: .stretch, normalization: normalization),
            classNames: classNames,
            provenance: .init(origin: .trained, dataset: dataset, dataPath: dataPath, recipe: recipe.name, seed: seed, run: run,
                              epoch: epoch, step: step, metrics: metrics, software: "SwiftResNet \(SwiftResNetVersion.current)",
                              created: ISO8601DateFormatter().string(from: Date())))
    }

    /// The run's training and validation indices into its data set's training split: the
    /// stratified split of ``Recipe/validationCount`` images. Its seed is fixed (0), not the
    /// run's, so that runs with different seeds are compared on the same validation images.
    public func split(_ train: ImageDataset) throws -> (train: [Int], validation: [Int]) {
        try trainingSplit(train, validationCount: recipe.validationCount)
    }
}

/// The stratified train/validation split every run uses (see ``RunConfiguration/split(_:)``).
public func trainingSplit(_ train: ImageDataset, validationCount: Int) throws -> (train: [Int], validation: [Int]) {
    guard validationCount > 0 else { return (Array(0..<train.count), []) }
    do { return try train.stratifiedSplit(validationCount: validationCount, seed: 0) } catch let e as DataOptionError {
        throw TrainingError.invalidOption(e.description)
    }
}

/// The SwiftResNet release a card or `--version` names.
public enum SwiftResNetVersion {
    public static let current = "0.9.0"
}

/// A model file or a training run's directory, loaded: any model card file, and also
/// checkpoints written before cards existed, whose card comes from their run configuration.
public struct TrainedModel {
    public let loaded: LoadedModel
    /// The training run the file belongs to, when it has one.
    public let run: RunConfiguration?

    /// Loads `path` (a model file, a checkpoint, or a run directory: its best checkpoint).
    ///
    /// A ZCA model whose file stores no whitening (a checkpoint from before cards) has it fitted
    /// again on the run's training split, which needs the run's data set.
    public init(_ path: String) throws {
        var run: RunConfiguration?
        var loaded = try ModelFile.load(path, legacyCard: { metadata, url in
            guard let json = metadata["resnet.config"] else { return nil }
            let configuration = try Trainer.decodeConfiguration(Data(json.utf8), path: url.path)
            run = configuration
            return configuration.modelCard(run: url.deletingLastPathComponent().path, epoch: nil, step: nil)
        })
        if run == nil, let json = loaded.metadata["resnet.config"] {
            run = try Trainer.decodeConfiguration(Data(json.utf8), path: loaded.url.path)
        }
        if case .zca(let epsilon) = loaded.card.preprocessing.normalization, loaded.whitening == nil {
            guard let run else {
                throw ModelFileError.invalidCard("\(loaded.url.path): the model whitens its inputs (ZCA) but the file stores no whitening")
            }
            let whitening = try Self.fitWhitening(run, epsilon: epsilon)
            loaded = LoadedModel(url: loaded.url, card: loaded.card, model: loaded.model, whitening: whitening, metadata: loaded.metadata)
        }
        self.loaded = loaded
        self.run = run
    }

    /// Fits a run's ZCA whitening again on its training part (for checkpoints that do not store it).
    static func fitWhitening(_ run: RunConfiguration, epsilon: Float) throws -> ZCAWhitening {
        let source: LoadedDataset
        do {
            guard let kind = DatasetName(rawValue: run.dataset) else { throw DataOptionError("unknown data set '\(run.dataset)'") }
            let size = run.loadedImageSize.flatMap { $0.count == 2 ? (height: $0[0], width: $0[1]) : nil }
            source = try LoadedDataset.load(kind, from: run.dataPath, options: DatasetOptions(imageSize: size))
        } catch {
            throw TrainingError.checkpoint("the run whitens its inputs (ZCA), fitted on its training data, and its checkpoint predates stored whitening: \(run.dataset) at \(run.dataPath ?? "the default place") could not be loaded (\(error))")
        }
        guard let train = try run.prepared(source).split("train") else { throw TrainingError.checkpoint("\(run.dataset) has no training split to fit ZCA on") }
        do { return try ZCAWhitening.fit(train.subset(try run.split(train).train), epsilon: epsilon) } catch let e as DataOptionError {
            throw TrainingError.invalidOption(e.description)
        }
    }
}

/// The test result of the run in `directory` (its `test.json`, written by
/// ``evaluateTestSplit(of:test:whitening:batchSize:)``), or nil when the run has none.
///
/// - Parameter classCount: the run's number of classes, which bounds the file's size
///   (``EvaluationResult/maximumFileBytes(classCount:)``).
/// - Throws: ``TrainingError/invalidTestResult(_:)`` naming the file when it is not a valid
///   result (``EvaluationResult/init(from:)`` checks its figures); a `DataError` when it is not
///   a regular file, is too large or cannot be read.
public func readTestResult(of directory: URL, classCount: Int) throws -> EvaluationResult? {
    let file = directory.appendingPathComponent("test.json")
    guard FileManager.default.fileExists(atPath: file.path) else { return nil }
    let bytes = try readFileBytes(path: file.path, limit: EvaluationResult.maximumFileBytes(classCount: classCount),
                                  format: "a test result written by resnet")
    do { return try JSONDecoder().decode(EvaluationResult.self, from: Data(bytes)) } catch let error as DecodingError {
        throw TrainingError.invalidTestResult("\(file.path): not a valid test result (\(error.summary))")
    }
}

/// The end of a run: the test split evaluated once, with the checkpoint chosen on validation
/// (`best.safetensors`, else `last.safetensors`), written as `test.json`, `confusion_matrix.png`
/// and `predictions.png` (right and wrong predictions across the classes) in the run directory.
///
/// - Parameters:
///   - whitening: the run's fitted ZCA whitening, when its normalization is ZCA (else the
///     checkpoint's stored one is used).
///   - batchSize: images per forward pass (lower it for large inputs).
/// - Returns: the result and the file it was measured with.
@discardableResult
public func evaluateTestSplit(of directory: URL, test: ImageDataset, whitening: ZCAWhitening? = nil,
                              batchSize: Int = 500) throws -> (result: EvaluationResult, checkpoint: URL) {
    let chosen = try TrainedModel(directory.path).loaded
    let card = chosen.card
    let sampler = PredictionSampler(labels: test.labels)
    let result = try Evaluator(model: chosen.model, imageShape: card.input.shape, classCount: card.classNames.count,
                               batchSize: batchSize, whitening: whitening ?? chosen.whitening)
        .evaluate(test, normalization: card.preprocessing.normalization, onPrediction: sampler.record)
    try writeAtomically(try JSONEncoder().encode(result), to: directory.appendingPathComponent("test.json"))
    try writeConfusionMatrix(result, to: directory.appendingPathComponent("confusion_matrix.png").path)
    try writePredictionGallery(images: test, predictions: sampler.predictions, to: directory.appendingPathComponent("predictions.png").path)
    return (result, chosen.url)
}
