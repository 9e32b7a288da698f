import ArgumentParser
import Foundation
import ResNetInference
import ResNetTensors
import ResNetTraining

/// `resnet predict`: classify image files with a model.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify JPEG or PNG images with a model: the top classes and their probabilities.",
        discussion: """
            Each image is prepared as the model card says: converted to the network's channels (gray or RGB, as \
            Pillow's convert), resized (Pillow's bilinear filter; stretched to the input size for models trained \
            here, shorter side then center crop for ImageNet models) and normalized as in training; the network \
            runs in evaluation mode (batch norm with its running statistics).
            """)

    @Argument(help: "A model file (.safetensors with a model card), a run's checkpoint, or a run directory (its best.safetensors).")
    var model: String
    @Argument(help: "JPEG or PNG images.") var images: [String] = []
    @Option(help: "Classes to show per image.") var top = 5
    @Flag(help: "Print JSON: an array of {file, predictions: [{class, index, probability}]}.") var json = false
    @OptionGroup var engine: EngineOptions
    @OptionGroup var number: InferencePrecisionOption

    /// One image's answer, as `--json` prints it.
    struct Result: Encodable {
        let file: String
        let predictions: [Classifier.Prediction]
    }

    func run() throws {
        guard !images.isEmpty else { throw UserError("give at least one image file after the model") }
        guard top >= 1 else { throw UserError("--top must be at least 1, got \(top)") }
        try engine.apply()
        let trained = try TrainedModel(model)
        let classifier = try Classifier(trained.loaded, maximumBatchSize: min(images.count, 32), precision: try number.resolved())
        let card = classifier.card
        // Decode and prepare every file first (keeping only input-sized images), so that a bad
        // one stops us before any network work.
        let prepared = try images.map(classifier.prepareImage(path:))
        if number.quantizes {
            let measured = try calibrationImages(for: trained, folder: number.calibration, count: number.calibrationImages)
            try classifier.quantize(calibratingOn: measured.pixels, count: measured.count)
        }
        var results: [Result] = []
        for start in stride(from: 0, to: prepared.count, by: classifier.maximumBatchSize) {
            let end = min(prepared.count, start + classifier.maximumBatchSize)
            let answers = try classifier.classify(Array(prepared[start..<end]), top: top, prepared: true)
            results += zip(images[start..<end], answers).map { Result(file: $0, predictions: $1) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
            return
        }
        let nameWidth = card.classNames.map(\.count).max() ?? 5
        for result in results {
            print(result.file)
            for (rank, p) in result.predictions.enumerated() {
                let name = p.className.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                print(String(format: "  %2d. %@  %3d  %7.3f%%", rank + 1, name, p.index, 100 * Double(p.probability)))
            }
        }
    }
}
