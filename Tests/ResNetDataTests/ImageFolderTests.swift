import Foundation
import Testing
@testable import ResNetData

/// Writes `files` (paths relative to `root`, parent folders created) and returns `root`.
@discardableResult
func makeTree(_ root: String, _ files: [(String, [UInt8])]) throws -> String {
    for (relative, bytes) in files {
        let url = URL(fileURLWithPath: root + "/" + relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }
    return root
}

/// A solid RGB PNG of `height` x `width`.
func solidPNG(_ rgb: (UInt8, UInt8, UInt8), height: Int = 4, width: Int = 3) throws -> [UInt8] {
    try encodePNG(pixels: (0..<(height * width)).flatMap { _ in [rgb.0, rgb.1, rgb.2] }, width: width, height: height, channels: 3)
}

/// The labels and first red byte of every image of `data`.
func summary(_ data: ImageDataset) -> [(Int32, UInt8)] {
    (0..<data.count).map { (data.labels[$0], data.images[$0 * data.elementsPerImage]) }
}

@Suite("Image folders")
struct ImageFolderTests {
    @Test("Flat folder: classes sorted, files in name order, subfolders and any-case extensions")
    func flat() throws {
        try withTemporaryDirectory { dir in
            let root = try makeTree(dir + "/pets", [
                ("cat/2.png", try solidPNG((20, 0, 0))), ("cat/10.PNG", try solidPNG((10, 0, 0))),
                ("ant/b.Jpeg", Fixtures.colorJPEG), ("ant/a.JPG", Fixtures.colorJPEG),
                ("bee/x.png", try solidPNG((30, 1, 2))), ("bee/deeper/y.png", try solidPNG((40, 0, 0))),
                ("bee/a/z.png", try solidPNG((50, 0, 0))),
                ("README.txt", Array("not a class".utf8)),  // files in the root are ignored
            ])
            let loaded = try ImageFolder.load(root: root + "/", imageSize: (4, 3))
            #expect(loaded.name == "pets")
            #expect(loaded.classNames == ["ant", "bee", "cat"])
            #expect(loaded.splits.count == 1 && loaded.splits[0].name == ImageFolder.flatSplitName)
            let data = loaded.splits[0].data
            #expect(data.channels == 3 && data.height == 4 && data.width == 3 && data.classNames == loaded.classNames)
            #expect(data.labels == [0, 0, 1, 1, 1, 2, 2])
            // "10.PNG" < "2.png" by name; a class folder's files come before its subfolders'.
            #expect(summary(data).dropFirst(2).map(\.1) == [30, 50, 40, 10, 20])
            let bee = Array(data.images[(2 * 36)..<(3 * 36)])
            #expect(bee == [UInt8](repeating: 30, count: 12) + [UInt8](repeating: 1, count: 12) + [UInt8](repeating: 2, count: 12))
            // The JPEGs are 16x16, resized to 4x3 like resizeImage does it.
            let jpeg = resizeImage(try decodeImage(Fixtures.colorJPEG, path: "a.jpg"), height: 4, width: 3)
            #expect(Array(data.images[0..<36]) == jpeg.pixels && Array(data.images[36..<72]) == jpeg.pixels)
        }
    }

    @Test("train/val/test splits share the union of the classes")
    func splits() throws {
        try withTemporaryDirectory { dir in
            let root = try makeTree(dir + "/data", [
                ("train/b/1.png", try solidPNG((10, 0, 0))), ("train/a/1.png", try solidPNG((20, 0, 0))),
                ("train/c/1.png", try solidPNG((30, 0, 0))), ("train/c/2.png", try solidPNG((40, 0, 0))),
                ("test/c/1.png", try solidPNG((50, 0, 0))), ("test/a/1.png", try solidPNG((60, 0, 0))),
                ("val/b/1.png", try solidPNG((70, 0, 0))),
                ("train/notes.md", Array("ignored".utf8)),
            ])
            let loaded = try ImageFolder.load(root: root, imageSize: nil, channels: 1)
            #expect(loaded.classNames == ["a", "b", "c"])
            #expect(loaded.splits.map(\.name) == ["train", "val", "test"])
            let train = loaded.split("train")!, val = loaded.split("val")!, test = loaded.split("test")!
            #expect(summary(train).map(\.0) == [0, 1, 2, 2] && summary(train).map(\.1) == [20, 10, 30, 40].map { luma($0, 0, 0) })
            #expect(summary(val).map(\.0) == [1] && summary(test).map(\.0) == [0, 2])
            #expect(summary(test).map(\.1) == [luma(60, 0, 0), luma(50, 0, 0)])
            #expect(test.channels == 1 && test.height == 4 && test.width == 3 && test.classNames == ["a", "b", "c"])
        }
    }

    @Test("Images of other sizes are resized to the first image's size or to the one asked")
    func sizes() throws {
        try withTemporaryDirectory { dir in
            var rng = SplitMix64(seed: 7)
            let big = randomBytes(10 * 14 * 3, using: &rng)
            let root = try makeTree(dir + "/sizes", [
                ("a/1.png", try solidPNG((9, 9, 9), height: 6, width: 5)),
                ("a/2.png", try encodePNG(pixels: big, width: 14, height: 10, channels: 3)),
            ])
            let natural = try ImageFolder.load(root: root, imageSize: nil).splits[0].data
            #expect(natural.height == 6 && natural.width == 5 && natural.count == 2)
            let source = PlanarImage(pixels: planar(big, channels: 3), channels: 3, height: 10, width: 14)
            #expect(Array(natural.images[90...]) == resizeImage(source, height: 6, width: 5).pixels)

            let asked = try ImageFolder.load(root: root, imageSize: (height: 7, width: 20)).splits[0].data
            #expect(asked.height == 7 && asked.width == 20)
            #expect(Array(asked.images[420...]) == resizeImage(source, height: 7, width: 20).pixels)
            #expect(asked.images[..<420].allSatisfy { $0 == 9 })
        }
    }

    @Test("Hidden files and folders are skipped")
    func hidden() throws {
        try withTemporaryDirectory { dir in
            let garbage = Array("garbage".utf8)
            let root = try makeTree(dir + "/h", [
                ("a/1.png", try solidPNG((1, 2, 3))), ("a/.DS_Store", garbage), ("a/._1.png", garbage),
                ("a/.thumbs/x.png", garbage), (".git/config", garbage), (".hiddenclass/1.png", try solidPNG((0, 0, 0))),
                ("b/1.png", try solidPNG((4, 5, 6))), (".DS_Store", garbage),
            ])
            let loaded = try ImageFolder.load(root: root, imageSize: nil)
            #expect(loaded.classNames == ["a", "b"] && loaded.splits[0].data.count == 2)
        }
    }

    @Test("A file that is not an image is named; the first one in file order is reported")
    func notImages() throws {
        try withTemporaryDirectory { dir in
            let root = try makeTree(dir + "/n", [
                ("a/1.png", try solidPNG((1, 2, 3))), ("b/notes.txt", Array("hi".utf8)),
            ])
            #expect(throws: DataError.notAnImage(path: root + "/b/notes.txt",
                                                 reason: "the file name does not end in .jpg, .jpeg or .png")) {
                try ImageFolder.load(root: root, imageSize: nil)
            }
            try FileManager.default.removeItem(atPath: root + "/b/notes.txt")
            // 40 good files, then a text file named .png and a cut-short JPEG later in the order.
            var files: [(String, [UInt8])] = try (0..<40).map { ("b/\(100 + $0).png", try solidPNG((UInt8($0), 0, 0))) }
            files += [("b/200.png", Array("<html></html>".utf8)), ("b/300.jpg", Array(Fixtures.colorJPEG.prefix(400)))]
            try makeTree(root, files)
            do {
                _ = try ImageFolder.load(root: root, imageSize: (2, 2))
                Issue.record("loaded a folder with a bad file")
            } catch let error as DataError {
                guard case .notAnImage(let path, _) = error else { Issue.record("unexpected \(error)"); return }
                #expect(path == root + "/b/200.png")
                #expect(error.description.hasPrefix(root + "/b/200.png: not an image: "))
            }
            try FileManager.default.removeItem(atPath: root + "/b/200.png")
            do {
                _ = try ImageFolder.load(root: root, imageSize: (2, 2))
                Issue.record("loaded a folder with a truncated JPEG")
            } catch let error as DataError {
                guard case .corruptImage(let path, _) = error else { Issue.record("unexpected \(error)"); return }
                #expect(path == root + "/b/300.jpg")
            }
        }
    }

    @Test("Empty class folders, missing classes and bad layouts are reported by path")
    func layoutErrors() throws {
        try withTemporaryDirectory { dir in
            let png = try solidPNG((1, 1, 1))
            let empty = try makeTree(dir + "/empty", [("a/1.png", png), ("b/.DS_Store", [1])])
            #expect(throws: DataError.emptyClassFolder(path: empty + "/b")) { try ImageFolder.load(root: empty, imageSize: nil) }

            let none = try makeTree(dir + "/none", [("readme.txt", [1]), (".x/1.png", png)])
            #expect(throws: DataError.noClasses(path: none)) { try ImageFolder.load(root: none, imageSize: nil) }
            expectDescription(of: { try ImageFolder.load(root: none, imageSize: nil) }, contains: [none, "no class folders"])

            let orphan = try makeTree(dir + "/orphan", [("train/a/1.png", png), ("test/a/1.png", png), ("test/z/1.png", png)])
            #expect(throws: DataError.invalidLayout(
                path: orphan + "/test/z",
                reason: "class 'z' has no folder in \(orphan)/train/, so it has no training images")) {
                try ImageFolder.load(root: orphan, imageSize: nil)
            }

            let stray = try makeTree(dir + "/stray", [("train/a/1.png", png), ("tset/a/1.png", png)])
            #expect(throws: DataError.self) { try ImageFolder.load(root: stray, imageSize: nil) }
            expectDescription(of: { try ImageFolder.load(root: stray, imageSize: nil) }, contains: [stray + "/tset", "not a split"])

            let emptyTest = try makeTree(dir + "/emptytest", [("train/a/1.png", png)])
            try FileManager.default.createDirectory(atPath: emptyTest + "/test", withIntermediateDirectories: true)
            #expect(throws: DataError.noClasses(path: emptyTest + "/test")) { try ImageFolder.load(root: emptyTest, imageSize: nil) }

            #expect(throws: DataError.fileNotFound(path: dir + "/missing")) { try ImageFolder.load(root: dir + "/missing", imageSize: nil) }
            #expect(throws: DataError.readFailed(path: empty + "/a/1.png", reason: "not a folder")) {
                try ImageFolder.load(root: empty + "/a/1.png", imageSize: nil)
            }
            #expect(throws: DataError.self) { try ImageFolder.load(root: empty, imageSize: nil, channels: 4) }
            #expect(throws: DataError.self) { try ImageFolder.load(root: empty, imageSize: (0, 3)) }
        }
    }

    @Test("Parallel decoding keeps file order")
    func manyFiles() throws {
        try withTemporaryDirectory { dir in
            let perClass = 25  // 75 files: more than the 8 chunks per core of a small machine
            var files: [(String, [UInt8])] = []
            var expected: [UInt8] = []
            for c in 0..<3 {
                for i in 0..<perClass {
                    files.append(("c\(c)/\(1000 + i).png", try solidPNG((UInt8(c), UInt8(i), 0), height: 2, width: 2)))
                    expected += [UInt8](repeating: UInt8(c), count: 4) + [UInt8](repeating: UInt8(i), count: 4) + [0, 0, 0, 0]
                }
            }
            let root = try makeTree(dir + "/many", files)
            let data = try ImageFolder.load(root: root, imageSize: nil).splits[0].data
            #expect(data.images == expected)
            #expect(data.labels == (0..<(3 * perClass)).map { Int32($0 / perClass) })
        }
    }

    /// `../shared/data/cifar-10-jpeg.tar.gz` next to the repository.
    static let cifarArchive = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/cifar-10-jpeg.tar.gz").path
    static let cifarAvailable = FileManager.default.fileExists(atPath: cifarArchive)

    /// Extracts the archive once into `~/.cache/swiftresnet-test/cifar-10-jpeg` (through a
    /// temporary folder renamed into place, so an interrupted run leaves no half copy).
    static func extractedCIFAR() throws -> String {
        let cache = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftresnet-test").path
        let destination = cache + "/cifar-10-jpeg"
        if FileManager.default.fileExists(atPath: destination + "/test") { return destination }
        let temporary = cache + "/.cifar-10-jpeg-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.arguments = ["-xzf", cifarArchive, "-C", temporary]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw DataError.readFailed(path: cifarArchive, reason: "tar exited with status \(tar.terminationStatus)")
        }
        if (try? FileManager.default.moveItem(atPath: temporary, toPath: destination)) == nil {
            try? FileManager.default.removeItem(atPath: temporary)  // another run got there first
        }
        return destination
    }

    @Test("Loads the real CIFAR-10 JPEG folder",
          .enabled(if: cifarAvailable, "\(cifarArchive) not found (it is in ../shared/data next to the repository); skipping"))
    func realCIFAR() throws {
        let root = try Self.extractedCIFAR()
        let clock = ContinuousClock()
        var loaded: LoadedDataset?
        let time = try clock.measure { loaded = try ImageFolder.load(root: root, imageSize: nil) }
        let cifar = try #require(loaded)
        print("CIFAR-10 JPEG folder: \(cifar.splits.map { "\($0.name) \($0.data.count)" }.joined(separator: ", ")) images loaded in \(time)")
        #expect(cifar.name == "cifar-10-jpeg")
        #expect(cifar.classNames == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
        #expect(cifar.splits.map(\.name) == ["train", "test"])
        for (split, perClass) in [("train", 5_000), ("test", 1_000)] {
            let data = try #require(cifar.split(split))
            #expect(data.channels == 3 && data.height == 32 && data.width == 32)
            #expect(data.count == 10 * perClass && data.images.count == data.count * 3072)
            var counts = [Int](repeating: 0, count: 10)
            for label in data.labels { counts[Int(label)] += 1 }
            #expect(counts == [Int](repeating: perClass, count: 10))
        }
        // Pillow 9.4 (`Image.open(f).convert("RGB")`) gives exactly these per-channel sums.
        for (split, expected) in [("train", [6_413_765_015, 6_294_170_581, 5_829_777_341]),
                                  ("test", [1_290_104_439, 1_266_598_065, 1_176_037_503])] {
            let data = cifar.split(split)!
            var sums = [0, 0, 0]
            data.images.withUnsafeBufferPointer { pixels in  // plain loops: tests build at -Onone
                var index = 0
                for _ in 0..<data.count {
                    for c in 0..<3 {
                        var sum = 0
                        for _ in 0..<1024 {
                            sum &+= Int(pixels[index])
                            index &+= 1
                        }
                        sums[c] &+= sum
                    }
                }
            }
            #expect(sums == expected, "\(split)")
        }
    }
}
