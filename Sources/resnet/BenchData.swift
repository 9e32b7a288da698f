import ArgumentParser
import Foundation
import ResNetData

/// Times the input pipeline on its own: augmentation, normalization and batching, one core.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-data",
        abstract: "Measure augmentation + batching throughput on one core (images/s).")

    @Option(help: "Data set to time on (default: 50,000 random 32x32x3 images, the size of CIFAR-10).") var dataset: String?
    @Option(help: "Where the data set is.") var data: String?
    @Option(help: "Augmentations.") var augment = "flip,crop:4"
    @Option(help: "Batch size (1 to 8192, at most the number of images).") var batchSize = 128
    @Option(help: "Epochs to time, median reported (1 to 100).") var repeats = 3
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        // Bounds before anything is allocated or timed: a batch is batchSize x C x H x W floats,
        // and each repeat is a whole epoch (about 4 s on CIFAR-10 with flip,crop:4).
        guard (1...8_192).contains(batchSize) else { throw UserError("--batch-size must be between 1 and 8192, got \(batchSize)") }
        guard (1...100).contains(repeats) else { throw UserError("--repeats must be between 1 and 100, got \(repeats)") }
        let augmentations: [Augmentation]
        do { augmentations = try Augmentation.parseList(augment) } catch let e as DataOptionError { throw UserError(e.description) }
        let images: ImageDataset
        if let dataset {
            guard let train = try loadDatasetForUser(dataset, data).split("train") else { throw UserError("\(dataset) has no training split") }
            images = train
        } else {
            var random = DataRandom(seed: 1)
            let pixels = (0..<(50_000 * 3072)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            images = ImageDataset(images: pixels, labels: (0..<50_000).map { Int32($0 % 10) }, channels: 3, height: 32, width: 32,
                                  classNames: (0..<10).map(String.init))
        }
        let normalization = Normalization.fit(.channel, on: images)
        let loader: BatchLoader
        do {
            loader = try BatchLoader(dataset: images, batchSize: batchSize, shuffle: true, dropLast: true,
                                     augmentations: augmentations, normalization: normalization, seed: 1)
        } catch let e as DataOptionError {
            throw UserError("--batch-size: \(e.description)")
        }
        var rates: [Double] = []
        for epoch in 0..<repeats {
            let start = Date()
            let count = loader.timeEpochOnThisThread(epoch)
            rates.append(Double(count) / -start.timeIntervalSinceNow)
        }
        let median = rates.sorted()[rates.count / 2]
        if json {
            let out: [String: Any] = ["augment": augment, "batch_size": batchSize, "images": images.count,
                                      "images_per_second": median.rounded(), "threads": 1]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "%@ on %d images of %dx%dx%d, batch %d, one core: %.0f images/s (median of %d epochs: %@)",
                         augment, images.count, images.height, images.width, images.channels, batchSize, median, rates.count,
                         rates.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
        }
    }
}
