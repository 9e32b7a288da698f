import ArgumentParser
import Foundation
import ResNetData

/// `resnet dataset-info`: what a data set holds, and the statistics used to normalize it.
struct DatasetInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset-info",
        abstract: "Print a data set's classes, image shape, per-split and per-class counts, and the training split's per-channel mean and std.")

    @Option(help: "cifar10, cifar100, fashion-mnist, mnist or folder.")
    var dataset: String

    @Option(help: "Where the data set is: a folder, the CIFAR .tar.gz, or an image folder (default: the download cache).")
    var data: String?

    @Flag(help: "CIFAR-100: the 20 coarse labels instead of the 100 fine ones.")
    var coarseLabels = false

    @Option(help: "Image folders (and CIFAR-10 given as one, like the shipped sample): bring every image to HxW (e.g. 32x32), each side at most \(DataLimits.maximumImageSide).")
    var imageSize: String?

    @Flag(help: "Print JSON (keys classes, image_shape, splits, mean, std).")
    var json = false

    /// The JSON document.
    struct Report: Encodable {
        struct Split: Encodable {
            let count: Int
            let per_class: [Int]
        }
        let classes: [String]
        let image_shape: [Int]
        let splits: [String: Split]
        let mean: [Float]
        let std: [Float]
    }

    func run() throws {
        let name = try datasetKind(dataset)
        var options = DatasetOptions(cifar100Labels: coarseLabels ? .coarse : .fine)
        if let imageSize {
            guard name == .folder || name == .cifar10 else {
                throw UserError("--image-size applies to image folders (--dataset folder, or cifar10 given as one), not \(name.rawValue)")
            }
            do { options.imageSize = try DatasetOptions.parseImageSize(imageSize) } catch let error as DataOptionError {
                throw UserError("--image-size: \(error.description)")
            }
        }
        let resolved: LoadedDataset.Resolved
        let start = Date()
        do {
            // Like `resnet train`, CIFAR-10 missing from the cache falls back to the shipped sample;
            // unlike it, an information command does not start a 170 MB download. Notes go to
            // stderr so that --json output stays a JSON document.
            resolved = try LoadedDataset.loadWithFallback(name, from: data, options: options, download: false) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        } catch let error as DataError {
            throw UserError(error.description)
        }
        let loaded = resolved.dataset
        let loadTime = -start.timeIntervalSinceNow
        guard let first = loaded.splits.first?.data else { throw UserError("\(dataset): the data set has no splits") }
        let training = loaded.split("train") ?? first
        let (mean, std) = training.channelStatistics()
        var perSplit: [(String, Report.Split)] = []
        for (splitName, split) in loaded.splits {
            var perClass = [Int](repeating: 0, count: loaded.classNames.count)
            for label in split.labels where perClass.indices.contains(Int(label)) { perClass[Int(label)] += 1 }
            perSplit.append((splitName, Report.Split(count: split.count, per_class: perClass)))
        }
        let report = Report(classes: loaded.classNames, image_shape: [first.channels, first.height, first.width],
                            splits: Dictionary(perSplit, uniquingKeysWith: { a, _ in a }), mean: mean, std: std)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("Data set: \(loaded.name)\(resolved.path.map { " from \($0)" } ?? ""), loaded in \(String(format: "%.2f", loadTime)) s")
        print("Image shape: \(first.channels)x\(first.height)x\(first.width) (channels x height x width)")
        print("Classes: \(loaded.classNames.count)")
        let width = max(5, loaded.classNames.map(\.count).max() ?? 0)
        let header = ["class".padding(toLength: width, withPad: " ", startingAt: 0)] + perSplit.map { pad($0.0, 8) }
        print("  " + header.joined(separator: " "))
        for (index, className) in loaded.classNames.enumerated() {
            let row = [className.padding(toLength: width, withPad: " ", startingAt: 0)] + perSplit.map { pad(String($0.1.per_class[index]), 8) }
            print("  " + row.joined(separator: " "))
        }
        let totals = ["total".padding(toLength: width, withPad: " ", startingAt: 0)] + perSplit.map { pad(String($0.1.count), 8) }
        print("  " + totals.joined(separator: " "))
        let format = { (values: [Float]) in values.map { String(format: "%.4f", $0) }.joined(separator: ", ") }
        print("Per-channel mean of \(loaded.split("train") == nil ? loaded.splits[0].name : "train") (pixels in 0...1): [\(format(mean))]")
        print("Per-channel std: [\(format(std))]")
    }

    private func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
