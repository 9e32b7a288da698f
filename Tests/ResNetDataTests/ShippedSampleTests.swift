import Foundation
import Testing
@testable import ResNetData

/// Lines logged by a loader, collected across threads.
private final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ line: String) { lock.withLock { stored.append(line) } }
    var lines: [String] { lock.withLock { stored } }
}

@Suite("Image-folder archives and the shipped CIFAR-10 sample")
struct ShippedSampleTests {
    /// The repository's `data/cifar10-sample.tar.gz`.
    static let repositorySample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/cifar10-sample.tar.gz").path

    /// A `.tar.gz` of an image folder `top/{train,test}/<class>/*.png`, one solid colour per
    /// class (red = 10 * class + 1), and the same files as `(relative path, bytes)`.
    static func folderArchive(top: String, classes: [String], perClass: Int = 2)
        throws -> (archive: [UInt8], files: [(String, [UInt8])]) {
        var files: [(String, [UInt8])] = []
        for split in ["train", "test"] {
            for (c, name) in classes.enumerated() {
                for i in 0..<(split == "train" ? perClass : 1) {
                    files.append(("\(split)/\(name)/\(i).png", try solidPNG((UInt8(10 * c + 1), UInt8(i), 0))))
                }
            }
        }
        let prefix = top.isEmpty ? "" : top + "/"
        var entries = files.map { (name: prefix + $0.0, bytes: $0.1) }
        // macOS tar adds AppleDouble files; they are hidden and skipped like on disk.
        entries.append((name: prefix + "train/\(classes[0])/._0.png", bytes: Array("not a png".utf8)))
        let directories = top.isEmpty ? [] : [top, top + "/train", top + "/test"]
        return (gzip(makeTar(entries, directories: directories)), files)
    }

    @Test("An image folder's .tar.gz loads like the folder itself, without unpacking")
    func archiveEqualsFolder() throws {
        try withTemporaryDirectory { dir in
            let (archive, files) = try Self.folderArchive(top: "pets", classes: ["cat", "dog", "emu"])
            let path = try write(archive, to: dir, name: "pets.tar.gz")
            let folder = try makeTree(dir + "/unpacked/pets", files)
            let fromArchive = try ImageFolder.load(root: path)
            let fromFolder = try ImageFolder.load(root: folder)
            #expect(fromArchive.name == "pets" && fromFolder.name == "pets")
            #expect(fromArchive.classNames == ["cat", "dog", "emu"])
            #expect(fromArchive.splits.map(\.name) == ["train", "test"])
            for split in ["train", "test"] {
                #expect(fromArchive.split(split)?.images == fromFolder.split(split)?.images)
                #expect(fromArchive.split(split)?.labels == fromFolder.split(split)?.labels)
            }
            #expect(fromArchive.split("train")?.labels == [0, 0, 1, 1, 2, 2])
            // Through the data-set loader, as `--dataset folder --data pets.tar.gz`.
            #expect(try LoadedDataset.load(.folder, from: path).split("test")?.count == 3)
            #expect(!FileManager.default.fileExists(atPath: dir + "/pets"), "nothing is unpacked")
        }
    }

    @Test("Archives without a wrapper folder, and errors naming archive members")
    func archiveLayouts() throws {
        try withTemporaryDirectory { dir in
            let flat = try write(gzip(makeTar([("a/1.png", try solidPNG((1, 0, 0))), ("b/1.png", try solidPNG((2, 0, 0)))])),
                                 to: dir, name: "flat.tgz")
            let loaded = try ImageFolder.load(root: flat)
            #expect(loaded.name == "flat" && loaded.classNames == ["a", "b"] && loaded.splits.map(\.name) == ["train"])
            // A single class folder of files is a class, not a wrapper to descend into.
            let one = try write(makeTar([("only/1.png", try solidPNG((1, 0, 0)))]), to: dir, name: "one.tar")
            #expect(try ImageFolder.load(root: one).classNames == ["only"])

            let stray = try write(gzip(makeTar([("top/train/a/1.png", try solidPNG((1, 0, 0))), ("top/train/a/notes.txt", [1])])),
                                  to: dir, name: "stray.tar.gz")
            #expect(throws: DataError.notAnImage(path: stray + ":top/train/a/notes.txt",
                                                 reason: "the file name does not end in .jpg, .jpeg or .png")) {
                try ImageFolder.load(root: stray)
            }
            let broken = try write(gzip(makeTar([("top/train/a/1.png", Array("<html>".utf8) + [0, 1, 2])])), to: dir, name: "broken.tar.gz")
            expectDescription(of: { try ImageFolder.load(root: broken) }, contains: [broken + ":top/train/a/1.png", "not an image"])
            let notTar = try write(gzip(Array("hello".utf8) + [UInt8](repeating: 7, count: 600)), to: dir, name: "nottar.tar.gz")
            expectDescription(of: { try ImageFolder.load(root: notTar) }, contains: [notTar, "not a tar"])
        }
    }

    @Test("A CIFAR-10 image folder (the sample's layout) is named CIFAR-10 (sample) and loads as cifar10 too")
    func sampleNaming() throws {
        try withTemporaryDirectory { dir in
            let (archive, files) = try Self.folderArchive(top: ShippedSample.folderName, classes: ShippedSample.classNames, perClass: 1)
            let path = try write(archive, to: dir, name: "my-copy.tar.gz")
            let folder = try makeTree(dir + "/x/" + ShippedSample.folderName, files)
            for loaded in [try ImageFolder.load(root: path), try ImageFolder.load(root: folder),
                           try LoadedDataset.load(.folder, from: path), try LoadedDataset.load(.cifar10, from: path),
                           try LoadedDataset.load(.cifar10, from: folder)] {
                #expect(loaded.name == ShippedSample.datasetName)
                #expect(loaded.classNames == ShippedSample.classNames)
                #expect(loaded.split("train")?.count == 10 && loaded.split("test")?.count == 10)
            }
            // Another name is just a folder; other classes are not CIFAR-10.
            let renamed = try makeTree(dir + "/y/cifar-10-jpeg", files)
            #expect(try LoadedDataset.load(.cifar10, from: renamed).name == "cifar-10-jpeg")
            let (pets, _) = try Self.folderArchive(top: "pets", classes: ["cat", "dog"])
            let petsPath = try write(pets, to: dir, name: "pets.tar.gz")
            let error = #expect(throws: DataError.self) { try LoadedDataset.load(.cifar10, from: petsPath) }
            guard case .datasetNotFound(let name, let searched, let hint)? = error else {
                Issue.record("expected datasetNotFound, got \(String(describing: error))")
                return
            }
            #expect(name == "cifar10" && searched == [petsPath] && hint.contains("data_batch_1"), "\(hint)")
        }
    }

    @Test("The repository's sample loads from its archive as --dataset folder and as cifar10")
    func repositorySample() throws {
        #expect(ShippedSample.archivePath(environment: [:]) == Self.repositorySample)
        #expect(FileManager.default.fileExists(atPath: Self.repositorySample))
        for name in [DatasetName.folder, .cifar10] {
            let loaded = try LoadedDataset.load(name, from: Self.repositorySample)
            #expect(loaded.name == "CIFAR-10 (sample)")
            #expect(loaded.classNames == ShippedSample.classNames)
            let train = try #require(loaded.split("train")), test = try #require(loaded.split("test"))
            #expect(train.count == 5_000 && test.count == 1_000)
            #expect(train.channels == 3 && train.height == 32 && train.width == 32)
        }
    }

    @Test("CIFAR-10 missing from the cache falls back to the sample, unpacked once into the cache")
    func fallback() throws {
        try withTemporaryDirectory { dir in
            let (archive, _) = try Self.folderArchive(top: ShippedSample.folderName, classes: ShippedSample.classNames, perClass: 1)
            let sample = try write(archive, to: dir, name: "sample.tar.gz")
            let environment = ["HOME": dir, "XDG_CACHE_HOME": dir + "/cache", ShippedSample.environmentVariable: sample]
            let log = LogLines()
            let resolved = try LoadedDataset.loadWithFallback(.cifar10, from: nil, download: false, environment: environment,
                                                              log: log.append)
            let root = ShippedSample.extractedPath(environment: environment)
            #expect(root == dir + "/cache/swiftresnet/folder/cifar10-sample")
            #expect(resolved.isSample && resolved.name == .folder && resolved.path == root)
            #expect(resolved.dataset.name == ShippedSample.datasetName && resolved.dataset.split("train")?.count == 10)
            #expect(log.lines.count == 1 && log.lines[0].contains("sample") && log.lines[0].contains(dir + "/cache/swiftresnet/cifar10"),
                    "\(log.lines)")
            // Unpacked once: the archive is no longer needed.
            try FileManager.default.removeItem(atPath: sample)
            #expect(try ShippedSample.extract(environment: environment) == root)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir + "/cache/swiftresnet/folder")
            #expect(leftovers == [ShippedSample.folderName], "\(leftovers)")

            // Data that is there is loaded as usual.
            let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
            try writeFiles(layout.files, to: dir + "/cache/swiftresnet/cifar10/cifar-10-batches-bin")
            let real = try LoadedDataset.loadWithFallback(.cifar10, from: nil, download: false, environment: environment, log: { _ in })
            #expect(!real.isSample && real.name == .cifar10 && real.dataset.name == "cifar10")
        }
    }

    @Test("Without the sample, and for data sets that have none, the not-found error names every place")
    func noSample() throws {
        try withTemporaryDirectory { dir in
            let missing = dir + "/no-sample.tar.gz"
            let environment = ["HOME": dir, "XDG_CACHE_HOME": dir + "/cache", ShippedSample.environmentVariable: missing]
            let error = #expect(throws: DataError.self) {
                try LoadedDataset.loadWithFallback(.cifar10, from: nil, download: false, environment: environment, log: { _ in })
            }
            guard case .datasetNotFound(let name, let searched, let hint)? = error else {
                Issue.record("expected datasetNotFound, got \(String(describing: error))")
                return
            }
            #expect(name == "cifar10" && searched == [dir + "/cache/swiftresnet/cifar10", missing] && hint.contains("resnet download cifar10"))
            for other in [DatasetName.cifar100, .mnist] {
                #expect(throws: DataError.self) {
                    try LoadedDataset.loadWithFallback(other, from: nil, download: false, environment: environment, log: { _ in })
                }
            }
            // A path that was given is never replaced by the sample.
            expectDescription(of: {
                try LoadedDataset.loadWithFallback(.cifar10, from: dir + "/absent", download: false, environment: environment, log: { _ in })
            }, contains: [dir + "/absent", "not found"])
        }
    }
}
