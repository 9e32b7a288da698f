import CZlib
import Foundation
import Testing
@testable import ResNetData

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value written by another thread and read after it signalled.
private final class Box<T>: @unchecked Sendable {
    var value: T?
}

/// Runs `body` on its own thread and waits at most `seconds` for it: a reader that blocks (on a
/// FIFO, say) fails the test instead of hanging the run. Returns the error `body` threw, if a
/// ``DataError``; records an issue and returns `nil` when it did not finish or threw another type.
func dataError(within seconds: Double = 5, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
               _ body: @escaping @Sendable () throws -> Void) -> DataError? {
    let done = DispatchSemaphore(value: 0)
    let box = Box<Result<Void, any Error>>()
    Thread {
        box.value = Result { try body() }
        done.signal()
    }.start()
    guard done.wait(timeout: .now() + seconds) == .success else {
        Issue.record("\(what) did not finish within \(seconds) s (blocked or unbounded read)", sourceLocation: sourceLocation)
        return nil
    }
    switch box.value {
    case .failure(let error as DataError)?:
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
        return error
    case .failure(let error)?:
        Issue.record("\(what): unexpected error \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    default:
        Issue.record("\(what): read without an error", sourceLocation: sourceLocation)
    }
    return nil
}

/// Creates a sparse file of `size` bytes (no disk blocks are written).
@discardableResult
func sparseFile(_ path: String, size: Int) throws -> String {
    #expect(FileManager.default.createFile(atPath: path, contents: nil))
    #expect(truncate(path, off_t(size)) == 0)
    return path
}

/// `copies` gzip members of `memberSize` zero bytes each: a small file that inflates to a lot.
func gzipBomb(memberSize: Int, copies: Int) -> [UInt8] {
    let member = gzip([UInt8](repeating: 0, count: memberSize), level: 9)
    return Array([[UInt8]](repeating: member, count: copies).joined())
}

@Suite("Inputs from outside: no crash, hang or unbounded allocation")
struct InputBoundsTests {
    // MARK: Non-regular files

    @Test("Every reader refuses a device, a FIFO or a folder before reading it")
    func nonRegularFiles() throws {
        try withTemporaryDirectory { dir in
            let fifo = dir + "/fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let readers: [(String, @Sendable (String) throws -> Void)] = [
                ("readImage", { _ = try readImage(path: $0) }),
                ("IDXArray.read", { _ = try IDXArray.read(path: $0) }),
                ("Pickle.load", { _ = try Pickle.load(path: $0) }),
                ("TarArchive.read", { _ = try TarArchive.read(path: $0) }),
                ("readFileDecompressingIfGzip", { _ = try readFileDecompressingIfGzip(path: $0) }),
                ("MD5.hexDigest", { _ = try MD5.hexDigest(ofFile: $0) }),
            ]
            for (path, kind) in [("/dev/zero", "character device"), ("/dev/null", "character device"), (fifo, "FIFO"), (dir, "folder")] {
                for (name, read) in readers {
                    let error = dataError("\(name)(\(path))") { try read(path) }
                    guard case .notARegularFile(let errorPath, let errorKind)? = error else {
                        Issue.record("\(name)(\(path)): expected notARegularFile, got \(String(describing: error))")
                        continue
                    }
                    #expect(errorPath == path && errorKind.contains(kind), "\(name): \(errorKind)")
                    #expect(error?.description.hasPrefix(path + ": not a regular file") == true)
                }
            }
        }
    }

    @Test("A CIFAR batch that is /dev/zero, a FIFO or a folder is refused, not read forever")
    func cifarBatchNotAFile() throws {
        let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files, to: dir)
            let batch = dir + "/data_batch_3.bin"
            for make in ["zero", "fifo", "folder"] {
                try FileManager.default.removeItem(atPath: batch)
                switch make {
                case "zero": try FileManager.default.createSymbolicLink(atPath: batch, withDestinationPath: "/dev/zero")
                case "fifo": #expect(mkfifo(batch, 0o600) == 0)
                default: try FileManager.default.createDirectory(atPath: batch, withIntermediateDirectories: false)
                }
                let error = dataError("CIFAR batch \(make)") { _ = try CIFAR.load(.cifar10, from: dir) }
                guard case .notARegularFile(let path, _)? = error else {
                    Issue.record("\(make): expected notARegularFile, got \(String(describing: error))")
                    continue
                }
                #expect(path == batch)
            }
            // The whole data set given as /dev/zero (read as an archive) is refused the same way.
            #expect(dataError("cifar10 from /dev/zero") { _ = try LoadedDataset.load(.cifar10, from: "/dev/zero") }
                    == .notARegularFile(path: "/dev/zero", kind: "a character device"))
        }
    }

    // MARK: Size bounds before reading

    @Test("Files larger than their format allows are refused from their size, before reading")
    func oversizedFiles() throws {
        try withTemporaryDirectory { dir in
            let clock = ContinuousClock()
            let elapsed = try clock.measure {
                // Sparse files: the sizes are real, the disk blocks are not written.
                let image = try sparseFile(dir + "/huge.png", size: DataLimits.imageFileBytes + 1)
                expectTooLarge(try readImage(path: image), path: image, limit: DataLimits.imageFileBytes)

                let idx = try sparseFile(dir + "/huge-idx3-ubyte", size: DataLimits.idxFileBytes + 1)
                expectTooLarge(try IDXArray.read(path: idx), path: idx, limit: DataLimits.idxFileBytes)

                let tar = try sparseFile(dir + "/huge.tar", size: DataLimits.archiveBytes + 512)
                expectTooLarge(try TarArchive.read(path: tar), path: tar, limit: DataLimits.archiveBytes)

                let pickle = try sparseFile(dir + "/huge.pkl", size: DataLimits.batchFileBytes + 1)
                expectTooLarge(try Pickle.load(path: pickle), path: pickle, limit: DataLimits.batchFileBytes)

                // A CIFAR batch a whole number of records long, so only its size is wrong; the loader
                // must not reserve room for it either.
                let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
                try writeFiles(layout.files, to: dir + "/cifar")
                let records = DataLimits.batchFileBytes / 3073 + 1
                let batch = try sparseFile(dir + "/cifar/data_batch_2.bin", size: records * 3073)
                expectTooLarge(try CIFAR.load(.cifar10, from: dir + "/cifar"), path: batch, limit: DataLimits.batchFileBytes)
            }
            #expect(elapsed < .seconds(2), "refusing oversized files took \(elapsed): were they read?")
        }
    }

    func expectTooLarge<T>(_ body: @autoclosure () throws -> T, path: String, limit: Int,
                           sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: DataError.self, sourceLocation: sourceLocation) { _ = try body() }
        guard case .tooLarge(let errorPath, _, let errorLimit, _)? = error else {
            Issue.record("expected tooLarge, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(errorPath == path && errorLimit == min(limit, DataLimits.memoryBudget), sourceLocation: sourceLocation)
        #expect(error?.description.contains(path) == true && error?.description.contains("\n") == false, sourceLocation: sourceLocation)
    }

    @Test("Decompression stops at the limit: a gzip bomb is refused, data at the limit is read")
    func gzipBombs() throws {
        let bomb = gzipBomb(memberSize: 1 << 20, copies: 8)  // 8 MiB of zeros in about 8 KB
        #expect(bomb.count < 16_384)
        expectTooLarge(try GzipReader.decompress(bomb, path: "bomb.gz", maximumSize: 4 << 20), path: "bomb.gz", limit: 4 << 20)
        expectTooLarge(try GzipReader.decompress(bomb, path: "bomb.gz", maximumSize: (8 << 20) - 1), path: "bomb.gz", limit: (8 << 20) - 1)
        #expect(try GzipReader.decompress(bomb, path: "ok.gz", maximumSize: 8 << 20).count == 8 << 20)
        try withTemporaryDirectory { dir in
            let path = try write(bomb, to: dir, name: "train-images-idx3-ubyte.gz")
            expectTooLarge(try IDXArray.read(path: path, limit: 1 << 20), path: path, limit: 1 << 20)
            let tar = try write(bomb, to: dir, name: "bomb.tar.gz")
            expectTooLarge(try TarArchive.read(path: tar, limit: 1 << 20), path: tar, limit: 1 << 20)
            // A CIFAR batch is bounded by its own limit, whatever its compressed size.
            let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
            try writeFiles(layout.files, to: dir + "/cifar")
            let batch = try write(gzipBomb(memberSize: 16 << 20, copies: DataLimits.batchFileBytes / (16 << 20) + 1),
                                  to: dir + "/cifar", name: "data_batch_1.bin")
            expectTooLarge(try CIFAR.load(.cifar10, from: dir + "/cifar"), path: batch, limit: DataLimits.batchFileBytes)
        }
    }

    // MARK: Image folders

    /// A valid PNG header declaring `width` x `height` (its image data is a few bytes of garbage):
    /// a reader that sizes from the header without decoding takes it at its word.
    static func pngHeader(width: UInt32, height: UInt32) throws -> [UInt8] {
        var png = try solidPNG((1, 2, 3), height: 1, width: 1)
        func put(_ value: UInt32, at offset: Int) {
            for i in 0..<4 { png[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
        }
        put(width, at: 16)
        put(height, at: 20)
        let crc = png[12..<29].withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
        put(crc, at: 29)
        return png
    }

    @Test("A folder whose first image is huge is refused before anything is allocated, naming --image-size")
    func hugeFirstImage() throws {
        try withTemporaryDirectory { dir in
            var files = [("a/0000.png", try Self.pngHeader(width: 10_000, height: 10_000))]
            for i in 1...5 { files.append(("a/\(1000 + i).png", try solidPNG((UInt8(i), 0, 0)))) }
            let root = try makeTree(dir + "/big", files)
            // 6 images of 3x10000x10000 bytes are 1.7 GiB: more than a 1 GiB budget.
            let error = #expect(throws: DataError.self) { try ImageFolder.load(root: root, memoryBudget: 1 << 30) }
            guard case .tooLarge(let path, let what, let limit, let hint)? = error else {
                Issue.record("expected tooLarge, got \(String(describing: error))")
                return
            }
            #expect(path == root && limit == 1 << 30)
            #expect(what.contains("6 images of 3x10000x10000"), "\(what)")
            #expect(hint.contains("--image-size") && hint.contains(root + "/a/0000.png"), "\(hint)")
            // Resized, the same folder fits; the fake image is then decoded and found damaged.
            #expect(throws: DataError.self) { try ImageFolder.load(root: root, imageSize: (32, 32), memoryBudget: 1 << 30) }
            try FileManager.default.removeItem(atPath: root + "/a/0000.png")
            #expect(try ImageFolder.load(root: root, imageSize: (32, 32), memoryBudget: 1 << 30).splits[0].data.count == 5)
        }
    }

    @Test("The budget bounds the whole data set, and each image's pixels while decoding")
    func budget() throws {
        try withTemporaryDirectory { dir in
            var files: [(String, [UInt8])] = []
            for i in 0..<3 { files.append(("c/\(i).png", try solidPNG((9, 9, 9), height: 64, width: 64))) }
            let root = try makeTree(dir + "/f", files)
            expectDescription(of: { try ImageFolder.load(root: root, memoryBudget: 10_000) },
                              contains: [root, "3 images of 3x64x64 bytes = 36 KiB", "limit of 9.8 KiB", "--image-size"])
            #expect(try ImageFolder.load(root: root, memoryBudget: 1 << 20).splits[0].data.count == 3)
            // With a budget this small the decoding threads may hold only a few hundred pixels each.
            let tiny = 7 * max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) * 300
            #expect(ImageFolder.decodingPixelLimit(budget: tiny) <= 300)
            let error = #expect(throws: DataError.self) { try ImageFolder.load(root: root, imageSize: (2, 2), memoryBudget: tiny) }
            guard case .unsupported(let path, let reason)? = error else {
                Issue.record("expected unsupported, got \(String(describing: error))")
                return
            }
            #expect(path == root + "/c/0.png" && reason.contains("64x64"), "\(reason)")
            #expect(ImageFolder.decodingPixelLimit(budget: DataLimits.memoryBudget) <= maximumImagePixels)
        }
    }

    @Test("Image sizes are parsed (HxW) and bounded before any loading", arguments: [
        ("32x32", [32, 32]), ("224X200", [224, 200]), (" 4096x1 ", [4096, 1]), ("4097x32", nil), ("100000x100000", nil),
        ("0x32", nil), ("-1x32", nil), ("32", nil), ("32x", nil), ("x32", nil), ("32x32x3", nil),
        ("9223372036854775807x2", nil), ("axb", nil), ("", nil),
    ] as [(String, [Int]?)])
    func imageSizes(text: String, expected: [Int]?) throws {
        if let expected {
            let size = try DatasetOptions.parseImageSize(text)
            #expect([size.height, size.width] == expected)
        } else {
            let error = #expect(throws: DataOptionError.self) { try DatasetOptions.parseImageSize(text) }
            #expect(error?.description.contains("'\(text)'") == true && error?.description.contains("\n") == false)
        }
    }

    @Test("ImageFolder.load refuses an image size beyond the side limit before reading the folder")
    func imageSizeBound() throws {
        for size in [(100_000, 100_000), (4_097, 1), (1, 0), (Int.max, Int.max)] {
            // The folder does not exist: the size must be refused first.
            let error = #expect(throws: DataError.self) { try ImageFolder.load(root: "/nonexistent", imageSize: size) }
            guard case .unsupported(_, let reason)? = error else {
                Issue.record("\(size): expected unsupported, got \(String(describing: error))")
                continue
            }
            #expect(reason.contains("1...4096"), "\(reason)")
        }
    }

    // MARK: Absurd headers

    @Test("An IDX file declaring zero images of 2^31 x 2^31 pixels is refused, not loaded with impossible sides")
    func absurdIDXDimensions() throws {
        try withTemporaryDirectory { dir in
            let labels = makeIDX(dimensions: [0], payload: [])
            try write(labels, to: dir, name: "train-labels-idx1-ubyte")
            for dimensions in [[0, 1 << 31, 1 << 31], [0, 0xFFFF_FFFF, 0xFFFF_FFFF], [0, 0, 28], [0, 28, 5_000]] {
                let images = try write(makeIDX(dimensions: dimensions, payload: []), to: dir, name: "train-images-idx3-ubyte")
                let error = #expect(throws: DataError.self, "\(dimensions)") { try FashionMNIST.load(directory: dir, split: .train) }
                #expect(error?.path == images, "\(dimensions): \(String(describing: error))")
            }
            // Zero images of a sane size are an empty split, not an error.
            try write(makeIDX(dimensions: [0, 28, 28], payload: []), to: dir, name: "train-images-idx3-ubyte")
            #expect(try FashionMNIST.load(directory: dir, split: .train).count == 0)
        }
    }

    /// A protocol-5 pickle of `{'data': _frombuffer(b'', dtype('u1'), shape, 'C'), 'labels': []}`.
    static func frombufferPickle(shape: [Int]) -> [UInt8] {
        var bytes: [UInt8] = [0x80, 5, UInt8(ascii: "}")]
        func text(_ string: String) { bytes += [0x8c, UInt8(string.utf8.count)] + Array(string.utf8) }
        text("data")
        bytes += [UInt8(ascii: "c")] + Array("numpy._core.numeric\n_frombuffer\n".utf8) + [UInt8(ascii: "(")]
        bytes += [UInt8(ascii: "C"), 0]  // b''
        bytes += [UInt8(ascii: "c")] + Array("numpy\ndtype\n".utf8) + [UInt8(ascii: "(")]
        text("u1")
        bytes += [UInt8(ascii: "t"), UInt8(ascii: "R"), UInt8(ascii: "(")]
        for size in shape {  // LONG1 of 8 bytes, little-endian (the sizes here are below 2^63)
            bytes += [0x8a, 8] + (0..<8).map { UInt8(truncatingIfNeeded: size >> (8 * $0)) }
        }
        bytes += [UInt8(ascii: "t")]
        text("C")
        bytes += [UInt8(ascii: "t"), UInt8(ascii: "R"), UInt8(ascii: "s")]
        text("labels")
        bytes += [UInt8(ascii: "]"), UInt8(ascii: "s"), UInt8(ascii: ".")]
        return bytes
    }

    @Test("A pickled array whose shape multiplies to zero but overflows without the zero is refused")
    func absurdPickleShape() throws {
        // The builder is right: a sane empty shape parses and is an empty CIFAR batch.
        let empty = try Pickle.parse(Self.frombufferPickle(shape: [0, 3072])[...], path: "empty.pkl")
        var images: [UInt8] = [], labels: [Int32] = []
        try CIFAR.appendPython(empty, variant: .cifar10, labels: .fine, path: "empty.pkl", images: &images, labelValues: &labels)
        #expect(images.isEmpty && labels.isEmpty)
        for shape in [[0, 1 << 40, 1 << 40], [0, 3, 1 << 62, 4], [1 << 40, 1 << 40, 0]] {
            let error = #expect(throws: DataError.self, "\(shape)") { try Pickle.parse(Self.frombufferPickle(shape: shape)[...], path: "shape.pkl") }
            guard case .malformed(let path, _, let reason)? = error else {
                Issue.record("\(shape): expected malformed, got \(String(describing: error))")
                continue
            }
            #expect(path == "shape.pkl" && reason.contains("overflows"), "\(reason)")
        }
    }

    @Test("Products are overflow-checked and zero-safe")
    func products() {
        #expect(DataLimits.product([]) == 1)
        #expect(DataLimits.product([3, 32, 32]) == 3072)
        #expect(DataLimits.product([0, 32]) == 0)
        #expect(DataLimits.product([0, 1 << 40, 1 << 40]) == nil)
        #expect(DataLimits.product([1 << 62, 2]) == nil)
        #expect(DataLimits.product([-1, 2]) == nil)
        #expect(DataLimits.describe(bytes: 256 << 20) == "256 MiB")
        #expect(DataLimits.describe(bytes: 1536 << 30) == "1.5 TiB")
        #expect(DataLimits.describe(bytes: 700) == "700 bytes")
        #expect(DataLimits.memoryBudget > 0 && UInt64(DataLimits.memoryBudget) <= ProcessInfo.processInfo.physicalMemory)
    }

    // MARK: Options

    @Test("Download timeouts must be finite, positive and at most an hour; checked before any connection")
    func timeouts() throws {
        for bad in [Double.nan, .infinity, -.infinity, 0, -1, 3_601, 1e300] {
            #expect(throws: DataOptionError.self, "\(bad)") { try Downloader.checkTimeout(bad) }
            try withTemporaryDirectory { dir in
                let file = RemoteFile(name: "f.bin", urls: ["http://127.0.0.1:9/f.bin"], md5: String(repeating: "0", count: 32))
                #expect(throws: DataOptionError.self, "\(bad)") { try Downloader(timeout: bad).fetch(file, to: dir) }
                #expect(throws: DataOptionError.self, "\(bad)") {
                    try Downloader(timeout: bad).download(DatasetDownload(name: "x", files: [file]), to: dir)
                }
                #expect(!FileManager.default.fileExists(atPath: dir + "/f.bin.part"))
            }
        }
        for good in [0.5, 30, 3_600] { try Downloader.checkTimeout(good) }
    }

    @Test("Augmentation values that would overflow or divide by zero are refused or clamped")
    func augmentationBounds() throws {
        for bad in ["cutout:1e30", "cutout:5000", "shear:90", "shear:1e30", "rotate:361", "rotate:1e38"] {
            #expect(throws: DataOptionError.self, "\(bad)") { try Augmentation.parse(bad) }
        }
        for good in ["cutout:4096", "shear:89", "rotate:360", "zoom:0.99"] { _ = try Augmentation.parse(good) }
        // Chained zooms can shrink the scale to zero; values a run file decodes bypass `parse`.
        let extreme: [[Augmentation]] = [
            [Augmentation](repeating: .zoom(range: 0.999, fill: .reflect), count: 64),
            [.shear(degrees: 89.99, fill: .nearest), .zoom(range: 0.999, fill: .constant), .rotation(degrees: 1e30, fill: .reflect)],
            [.cutout(size: Int.max), .padCrop(padding: Int.max, fill: .constant)],
            [.padCrop(padding: -5, fill: .reflect), .cutout(size: -3)],
        ]
        let source = [UInt8](repeating: 7, count: 3 * 8 * 8)
        var output = [UInt8](repeating: 0, count: source.count)
        for (i, list) in extreme.enumerated() {
            let augmenter = Augmenter(list, channels: 3, height: 8, width: 8)
            for epoch in 0..<50 {
                var random = DataRandom(seed: 1, epoch: epoch, index: i)
                output.withUnsafeMutableBufferPointer { augmenter.apply(source, to: $0.baseAddress!, using: &random) }
                #expect(output.allSatisfy { $0 <= 7 }, "\(list)")  // blends of the 7s and the zero fill
            }
        }
    }
}
