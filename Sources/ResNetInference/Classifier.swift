import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors

extension ModelCard {
    /// An image of any size as the network's input bytes, before normalization: channels in the
    /// card's order, then resized (and cropped) as ``Preprocessing/resize`` says.
    ///
    /// - Parameter image: decoded with ``Input/channels`` channels (RGB or gray), e.g. by
    ///   ``Classifier/decodeImage(path:)``.
    public func prepare(_ image: PlanarImage) throws -> PlanarImage {
        guard image.channels == input.channels else {
            throw ModelFileError.invalidCard("an image of \(image.channels) channels for a network that takes \(input.channels)")
        }
        guard image.height > 0, image.width > 0 else { throw DataError.corruptImage(path: "image", reason: "it has no pixels") }
        var image = image
        if input.channelOrder == .bgr {
            let plane = image.height * image.width
            image.pixels.withUnsafeMutableBufferPointer { p in
                for i in 0..<plane { p.swapAt(i, 2 * plane + i) }
            }
        }
        let (height, width) = (input.height, input.width)
        switch preprocessing.resize {
        case .stretch:
            return image.height == height && image.width == width ? image : resizeImage(image, height: height, width: width)
        case .shorterSideThenCenterCrop(let shorter):
            // torchvision's Resize(int): the shorter side becomes `shorter`, the longer one
            // `int(shorter * long / short)` (truncated); CenterCrop rounds its offsets half to even
            // as Python's round does.
            let short = min(image.height, image.width), long = max(image.height, image.width)
            let scaledLong = max(shorter, shorter * long / short)
            let (h, w) = image.height <= image.width ? (shorter, scaledLong) : (scaledLong, shorter)
            let resized = image.height == h && image.width == w ? image : resizeImage(image, height: h, width: w)
            let top = Int((Double(h - height) / 2).rounded(.toNearestOrEven))
            let left = Int((Double(w - width) / 2).rounded(.toNearestOrEven))
            var pixels = [UInt8](repeating: 0, count: input.channels * height * width)
            resized.pixels.withUnsafeBufferPointer { source in
                for c in 0..<input.channels {
                    for y in 0..<height {
                        let from = c * h * w + (top + y) * w + left
                        let to = (c * height + y) * width
                        for x in 0..<width { pixels[to + x] = source[from + x] }
                    }
                }
            }
            return PlanarImage(pixels: pixels, channels: input.channels, height: height, width: width)
        }
    }
}

/// Classifies images with a loaded model: decoding, resizing and normalization exactly as the
/// model was trained (or as its importer's preprocessing defines), then the network in
/// evaluation mode (batch norm folded into the convolutions, one planned graph per batch size,
/// reused across calls).
///
/// ```swift
/// let classifier = try Classifier(ModelFile.load("runs/resnet20/best.safetensors"))
/// for prediction in try classifier.classify(files: ["cat.jpg"], top: 3)[0] {
///     print(prediction.className, prediction.probability)
/// }
/// ```
///
/// Not thread-safe: one classifier drives oneDNN from one thread at a time. The model's
/// parameters are taken as constant: the weights are folded and reordered for oneDNN once, at
/// the first image; a program that changes them makes a new classifier.
public final class Classifier {
    /// One class of an answer.
    public struct Prediction: Codable, Sendable, Equatable {
        public var className: String
        public var index: Int
        public var probability: Float
        public init(className: String, index: Int, probability: Float) {
            self.className = className
            self.index = index
            self.probability = probability
        }
        enum CodingKeys: String, CodingKey { case className = "class", index, probability }
    }

    public let loaded: LoadedModel
    public var card: ModelCard { loaded.card }
    /// The largest batch one forward pass takes; more images run in several.
    public let maximumBatchSize: Int
    private let evaluator: Evaluator

    /// The number format the network runs in (``Precision``).
    public var precision: Precision { evaluator.precision }

    /// - Parameters:
    ///   - maximumBatchSize: images per forward pass (1...1024).
    ///   - precision: fp32 (the default: the model's own numbers), or bf16 where the CPU has
    ///     native bf16 (ResNet-50 at batch 1 ran 1.9x faster on a Zen 5; probabilities differ
    ///     by up to ~1e-2, see docs/performance.md).
    public init(_ loaded: LoadedModel, maximumBatchSize: Int = 32, precision: Precision = .fp32) throws {
        guard (1...1_024).contains(maximumBatchSize) else {
            throw ModelFileError.invalidCard("a classifier's batch size must be in 1...1024, got \(maximumBatchSize)")
        }
        if case .zca = loaded.card.preprocessing.normalization, loaded.whitening == nil {
            throw ModelFileError.invalidCard("\(loaded.url.path): the model whitens its inputs (ZCA) but the file stores no whitening")
        }
        let input = ImageShape(height: loaded.card.input.height, width: loaded.card.input.width, channels: loaded.card.input.channels)
        do {
            try ModelSummary(of: loaded.model, name: loaded.card.architecture.name, input: input, classes: loaded.card.classNames.count)
                .checkFits(batchSize: maximumBatchSize, training: false)
        } catch let error as ModelError {
            throw ModelFileError.invalidCard("\(loaded.url.path): \(error.description)")
        }
        self.loaded = loaded
        self.maximumBatchSize = maximumBatchSize
        evaluator = Evaluator(model: loaded.model, imageShape: loaded.card.input.shape, classCount: loaded.card.classNames.count,
                              batchSize: maximumBatchSize, whitening: loaded.whitening, parametersAreConstant: true, precision: precision)
    }

    /// Whether the network runs in 8-bit integers (``quantize(calibratingOn:count:)``).
    public var isQuantized: Bool { evaluator.isQuantized }

    /// Runs the network in 8-bit integers from now on, with scales measured on `count` prepared
    /// images (``prepareImage(path:)``'s pixels, one image after another): a few hundred images
    /// like those it will classify. ResNet-20 on CIFAR-10 lost 0.03 points of test accuracy
    /// (docs/performance.md). fp32 classifiers only. The images are measured at the next
    /// classification, on the thread that classifies (``Evaluator/quantize(calibratingOn:count:normalization:)``).
    public func quantize(calibratingOn pixels: [UInt8], count: Int) throws {
        try pixels.withUnsafeBufferPointer {
            try evaluator.quantize(calibratingOn: $0, count: count, normalization: card.preprocessing.normalization)
        }
    }

    /// Decodes a JPEG or PNG file with the channels the network takes (gray or RGB, converted
    /// as Pillow's `convert` does); ``probabilities(_:)`` prepares it.
    public func decodeImage(path: String) throws -> PlanarImage {
        try ResNetData.readImage(path: path, channels: card.input.channels)
    }

    /// Decodes and prepares an image file (``ModelCard/prepare(_:)``): only the input-sized
    /// result is kept, so that many large photos do not add up in memory.
    public func prepareImage(path: String) throws -> PlanarImage {
        try card.prepare(decodeImage(path: path))
    }

    /// Softmax probabilities of each image, in order: images of any size, prepared here, or
    /// already `prepared` (``prepareImage(path:)``).
    public func probabilities(_ images: [PlanarImage], prepared: Bool = false) throws -> [[Float]] {
        guard !images.isEmpty else { return [] }
        let input = card.input
        let classes = card.classNames.count
        // Buffers kept between calls: a server classifies batch after batch.
        pixels.removeAll(keepingCapacity: true)
        for image in images {
            if prepared {
                guard image.channels == input.channels, image.height == input.height, image.width == input.width else {
                    throw ModelFileError.invalidCard("a prepared image of \(image.channels)x\(image.height)x\(image.width) for a network that takes \(input.shape.map(String.init).joined(separator: "x"))")
                }
                pixels += image.pixels
            } else {
                pixels += try card.prepare(image).pixels
            }
        }
        if output.count < images.count * classes { output = [Float](repeating: 0, count: images.count * classes) }
        try pixels.withUnsafeBufferPointer { bytes in
            try output.withUnsafeMutableBufferPointer { out in
                try evaluator.probabilities(ofPrepared: bytes, count: images.count, normalization: card.preprocessing.normalization,
                                            into: UnsafeMutableBufferPointer(rebasing: out[..<(images.count * classes)]))
            }
        }
        return (0..<images.count).map { Array(output[($0 * classes)..<(($0 + 1) * classes)]) }
    }

    /// The prepared images of the last call and their probabilities.
    private var pixels: [UInt8] = []
    private var output: [Float] = []

    /// The `top` most probable classes of each image, most probable first (ties: lower index).
    public func classify(_ images: [PlanarImage], top: Int = 5, prepared: Bool = false) throws -> [[Prediction]] {
        try probabilities(images, prepared: prepared).map { ranked($0, top: top) }
    }

    /// Reads, prepares and classifies image files; a file that cannot be decoded stops the call
    /// before any network work.
    public func classify(files: [String], top: Int = 5) throws -> [[Prediction]] {
        try classify(try files.map(prepareImage(path:)), top: top, prepared: true)
    }

    /// The `top` classes of one probability vector.
    public func ranked(_ p: [Float], top: Int) -> [Prediction] {
        let k = max(0, min(top, p.count))
        return p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }.prefix(k)
            .map { Prediction(className: card.classNames[$0], index: $0, probability: p[$0]) }
    }
}
