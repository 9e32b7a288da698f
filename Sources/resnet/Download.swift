import ArgumentParser
import Foundation
import ResNetData

/// `resnet download NAME`: fetch a data set, check its published MD5, unpack it.
struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download a data set (cifar10, cifar100 or fashion-mnist), check its published checksum and unpack it.",
        discussion: "Interrupted downloads resume when run again. Without network, put the file named in the error message where it says, and run again.")

    @Argument(help: "cifar10, cifar100 or fashion-mnist.")
    var dataset: String

    @Option(help: "Destination folder (default: $XDG_CACHE_HOME/swiftresnet/NAME or ~/.cache/swiftresnet/NAME, where the other commands look).")
    var to: String?

    @Flag(help: "Keep the .tar.gz after unpacking it.")
    var keepArchive = false

    @Option(help: "Seconds without progress before a connection is given up (above 0, at most 3600).")
    var timeout: Double = 30

    func run() throws {
        // Checked before anything else: Foundation stops the program on a NaN or infinite timeout.
        do { try Downloader.checkTimeout(timeout) } catch let error as DataOptionError {
            throw UserError("--" + error.description)
        }
        let downloadable = DatasetName.allCases.filter { DatasetDownload.standard($0) != nil }.map(\.rawValue)
        guard let name = DatasetName(rawValue: dataset), let files = DatasetDownload.standard(name) else {
            throw UserError("cannot download '\(dataset)': choose one of \(downloadable.joined(separator: ", "))")
        }
        let directory = to ?? name.cacheDirectory
        let downloader = Downloader(timeout: timeout, keepArchives: keepArchive) { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        do {
            try downloader.download(files, to: directory)
            let loaded = try LoadedDataset.load(name, from: directory)
            let counts = loaded.splits.map { "\($0.data.count) \($0.name)" }.joined(separator: ", ")
            print("\(name.rawValue) is ready in \(directory): \(counts) images, \(loaded.classNames.count) classes")
        } catch let error as DataError {
            throw UserError(error.description)
        } catch let error as DataOptionError {
            throw UserError(error.description)
        }
    }
}
