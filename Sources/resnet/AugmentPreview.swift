import ArgumentParser
import Foundation
import ResNetData
import ResNetTraining

/// `resnet augment-preview`: what the augmentation does to a few training images.
struct AugmentPreview: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment-preview",
        abstract: "Draw a PNG grid of training images: each original, then augmented copies as training would see them.",
        discussion: """
            Copy n of image i is augmented exactly as epoch n of a training run with the same --seed and \
            augmentation list augments it (the random stream depends only on seed, epoch and image index). \
            The images are chosen at random with --seed.
            """)

    @OptionGroup var data: DataChoice
    @Option(help: "Where to write the PNG.") var out: String
    @Option(help: "Augmentations, e.g. flip,crop:4 or flip,shift:0.1:nearest,rotate:15,zoom:0.1,cutout:8.") var augment = "flip,crop:4"
    @Option(help: "Training images (rows).") var count = 8
    @Option(help: "Augmented copies per image (columns after the original).") var copies = 5
    @Option(help: "Seed of the image choice and of the augmentation (a training run's --seed).") var seed: UInt64 = 0
    @Option(help: "Upscaling factor (default: to about 96 pixels).") var scale: Int?

    /// The largest grid drawn: 64 megapixels, a 192 MB canvas (the default 8 x 6 grid of
    /// CIFAR-10 at scale 3 is 0.4 megapixels).
    static let maximumGridPixels = 64_000_000

    func run() throws {
        guard (1...256).contains(count) else { throw UserError("--count must be between 1 and 256, got \(count)") }
        guard (1...64).contains(copies) else { throw UserError("--copies must be between 1 and 64, got \(copies)") }
        if let scale, !(1...16).contains(scale) { throw UserError("--scale must be between 1 and 16, got \(scale)") }
        let augmentations: [Augmentation]
        do { augmentations = try Augmentation.parseList(augment) } catch let error as DataOptionError {
            throw UserError(error.description)
        }
        let name = try datasetKind(data.name)
        let loaded: LoadedDataset
        do {
            // CIFAR-10 missing from the cache falls back to the shipped sample, as in `resnet train`
            // (without the download a preview should not start).
            let size = try data.imageSize.map(DatasetOptions.parseImageSize)
            loaded = try LoadedDataset.loadWithFallback(name, from: data.data, options: DatasetOptions(imageSize: size), download: false) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }.dataset
        } catch let error as DataError {
            throw UserError(error.description)
        } catch let error as DataOptionError {
            throw UserError("--image-size: \(error.description)")
        }
        guard let train = loaded.split("train") ?? loaded.splits.first?.data, train.count > 0 else {
            throw UserError("\(loaded.name) has no training images")
        }
        guard train.channels == 1 || train.channels == 3 else {
            throw UserError("\(loaded.name): \(train.channels)-channel images cannot be drawn (1 or 3)")
        }
        // The grid is drawn in memory: bound it before any image is copied. Tiles are drawn at
        // the images' own size times the scale (writeImageGrid's default scales images up to
        // about 96 pixels and leaves those above 128 at their size).
        let side = max(train.height, train.width)
        let tileScale = scale ?? (side > 128 ? 1 : max(1, Int((96.0 / Double(side)).rounded())))
        let tiles = min(count, train.count) * (copies + 1)
        guard let gridPixels = DataLimits.product([tiles, train.height * tileScale, train.width * tileScale]),
              gridPixels <= Self.maximumGridPixels else {
            throw UserError("\(loaded.name): a grid of \(tiles) images of \(train.height)x\(train.width) at scale \(tileScale) exceeds \(Self.maximumGridPixels / 1_000_000) megapixels; use fewer --count or --copies, a smaller --scale, or smaller images")
        }

        var random = DataRandom(seed: seed ^ 0xA06_9E5)
        let chosen = Array((0..<train.count).shuffled(using: &random).prefix(count)).sorted()
        let augmenter = Augmenter(augmentations, channels: train.channels, height: train.height, width: train.width)
        let perImage = train.elementsPerImage
        var rows: [[PlanarImage]] = []
        var labels: [String] = []
        train.images.withUnsafeBufferPointer { pixels in
            for index in chosen {
                let source = pixels.baseAddress! + index * perImage
                let original = Array(UnsafeBufferPointer(start: source, count: perImage))
                var row = [PlanarImage(pixels: original, channels: train.channels, height: train.height, width: train.width)]
                for epoch in 0..<copies {
                    var copy = [UInt8](repeating: 0, count: perImage)
                    var generator = DataRandom(seed: seed, epoch: epoch, index: index)
                    copy.withUnsafeMutableBufferPointer { augmenter.apply(source, to: $0.baseAddress!, using: &generator) }
                    row.append(PlanarImage(pixels: copy, channels: train.channels, height: train.height, width: train.width))
                }
                rows.append(row)
                let label = Int(train.labels[index])
                labels.append(train.classNames.indices.contains(label) ? train.classNames[label] : "class \(label)")
            }
        }
        let list = augmentations.isEmpty ? "none" : augmentations.map(\.specification).joined(separator: ",")
        let title = "\(loaded.name) augmentation: \(list) (seed \(seed))"
        do {
            try writeImageGrid(rows, rowLabels: labels, columnLabels: ["original"] + (1...copies).map { "epoch \($0)" },
                               title: title, to: out, scale: scale)
        } catch let error as DataError {
            throw UserError(error.description)
        }
        say("wrote \(out): \(rows.count) images x \(copies) augmented copies (\(list))")
    }
}
