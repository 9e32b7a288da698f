import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetModels
import ResNetTraining

/// `resnet predict`: classify image files with a trained checkpoint.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify JPEG or PNG images with a checkpoint: the top classes and their probabilities.",
        discussion: """
            Each image is converted to the checkpoint's channels (gray or RGB, as Pillow's convert), resized to its \
            height x width (Pillow's bilinear filter, aspect ratio not kept) and normalized as in training; the \
            network runs in evaluation mode (batch norm with its running statistics).
            """)

    @Argument(help: "A run directory (uses best.safetensors) or a .safetensors checkpoint.") var checkpoint: String
    @Argument(help: "JPEG or PNG images.") var images: [String] = []
    @Option(help: "Classes to show per image.") var top = 5
    @Flag(help: "Print JSON: an array of {file, predictions: [{class, index, probability}]}.") var json = false
    @OptionGroup var engine: EngineOptions

    /// One image's answer, as `--json` prints it.
    struct Result: Encodable {
        struct Prediction: Encodable {
            let className: String
            let index: Int
            let probability: Float
            enum CodingKeys: String, CodingKey { case className = "class", index, probability }
        }
        let file: String
        let predictions: [Prediction]
    }

    func run() throws {
        guard !images.isEmpty else { throw UserError("give at least one image file after the checkpoint") }
        guard top >= 1 else { throw UserError("--top must be at least 1, got \(top)") }
        engine.apply()
        do { try predict() } catch let error as TrainingError {
            throw UserError(error.description)
        } catch let error as ModelError {
            throw UserError(error.description)
        } catch let error as DataOptionError {
            throw UserError(error.description)
        }
    }

    private func predict() throws {
        let loaded = try LoadedCheckpoint(checkpoint)
        let c = loaded.configuration
        guard c.imageShape.count == 3, c.imageShape.allSatisfy({ $0 > 0 }) else {
            throw UserError("\(loaded.url.path): the checkpoint's image shape \(c.imageShape) is not CxHxW")
        }
        let (channels, height, width) = (c.imageShape[0], c.imageShape[1], c.imageShape[2])
        guard channels == 1 || channels == 3 else {
            throw UserError("\(loaded.url.path): the network takes \(channels)-channel images; image files give 1 (gray) or 3 (RGB)")
        }
        let classCount = c.classNames.count
        guard classCount > 0 else { throw UserError("\(loaded.url.path): the checkpoint names no classes") }

        // Decode every file first, so that a bad one stops us before any work.
        var pixels: [UInt8] = []
        pixels.reserveCapacity(images.count * channels * height * width)
        for path in images {
            let image: PlanarImage
            do { image = try readImage(path: path, channels: channels) } catch let error as DataError {
                throw UserError(error.description)
            }
            let sized = image.height == height && image.width == width ? image : resizeImage(image, height: height, width: width)
            pixels += sized.pixels
        }
        // The same path as evaluation: uint8 images, the run's normalization, an eval-mode graph.
        let dataset = ImageDataset(images: pixels, labels: [Int32](repeating: 0, count: images.count), channels: channels,
                                   height: height, width: width, classNames: c.classNames)
        var probabilities = [[Float]](repeating: [], count: images.count)
        let evaluator = Evaluator(model: loaded.model, imageShape: c.imageShape, classCount: classCount,
                                  batchSize: min(images.count, 64), whitening: try whitening(for: c, dataset: nil))
        _ = try evaluator.evaluate(dataset, normalization: c.normalization, onPrediction: { index, p in
            probabilities[index] = Array(p)
        })

        let k = min(top, classCount)
        let results = zip(images, probabilities).map { file, p in
            let ranked = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }.prefix(k)
            return Result(file: file, predictions: ranked.map { Result.Prediction(className: c.classNames[$0], index: $0, probability: p[$0]) })
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
            return
        }
        let nameWidth = c.classNames.map(\.count).max() ?? 5
        for result in results {
            print(result.file)
            for (rank, p) in result.predictions.enumerated() {
                let name = p.className.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                print(String(format: "  %2d. %@  %3d  %7.3f%%", rank + 1, name, p.index, 100 * Double(p.probability)))
            }
        }
    }
}
