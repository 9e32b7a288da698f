import Foundation
import Testing
@testable import ResNetData

@Suite("ImageDataset")
struct ImageDatasetTests {
    /// 4 items of 3x2x2, pixel value = 16 * item + 4 * channel + position (+ 190 for item 3).
    static func sample() -> ImageDataset {
        var pixels: [UInt8] = []
        for item in 0..<4 {
            for value in 0..<12 { pixels.append(UInt8(item * 16 + value + (item == 3 ? 190 : 0))) }
        }
        return ImageDataset(images: pixels, labels: [5, 6, 7, 8], channels: 3, height: 2, width: 2,
                            classNames: (0..<10).map { "class \($0)" })
    }

    @Test("fillBatch scales to 0...1")
    func fillBatchScaled() {
        let data = Self.sample()
        let indices = [2, 0, 3]
        var images = [Float](repeating: -7, count: indices.count * 12 + 5)
        var labels = [Int32](repeating: -1, count: 4)
        images.withUnsafeMutableBufferPointer { imagePointer in
            labels.withUnsafeMutableBufferPointer { labelPointer in
                data.fillBatch(indices: indices, images: imagePointer.baseAddress!, labels: labelPointer.baseAddress!,
                               mean: nil, std: nil)
            }
        }
        #expect(Array(labels) == [7, 5, 8, -1])
        for (slot, item) in indices.enumerated() {
            for i in 0..<12 {
                let byte = data.images[item * 12 + i]
                #expect(images[slot * 12 + i] == Float(byte) / 255)
            }
        }
        #expect(images[36...].allSatisfy { $0 == -7 })  // nothing written past the batch
        #expect(images[0] == Float(32) / 255 && images[24 + 11] == Float(48 + 11 + 190) / 255)
        #expect(images.prefix(36).allSatisfy { (0...1).contains($0) })
    }

    @Test("fillBatch normalizes per channel")
    func fillBatchNormalized() {
        let data = Self.sample()
        let mean: [Float] = [0.5, 0.25, 0.1]
        let std: [Float] = [0.2, 0.5, 2]
        var images = [Float](repeating: 0, count: 2 * 12)
        var labels = [Int32](repeating: 0, count: 2)
        data.fillBatch(indices: 1..<3, images: &images, labels: &labels, mean: mean, std: std)
        #expect(labels == [6, 7])
        for slot in 0..<2 {
            for c in 0..<3 {
                for p in 0..<4 {
                    let byte = data.images[(slot + 1) * 12 + c * 4 + p]
                    let expected = (Float(byte) / 255 - mean[c]) / std[c]
                    #expect(images[slot * 12 + c * 4 + p] == expected)
                }
            }
        }
    }

    @Test("prefix keeps the first n items")
    func prefix() {
        let data = Self.sample()
        let two = data.prefix(2)
        #expect(two.count == 2 && two.labels == [5, 6] && two.images == Array(data.images[..<24]))
        #expect(two.channels == 3 && two.height == 2 && two.width == 2 && two.classNames == data.classNames)
        #expect(data.prefix(100).count == 4)
        #expect(data.prefix(0).count == 0 && data.prefix(0).images.isEmpty)
        #expect(data.prefix(-3).count == 0)
    }
}

@Suite("Fashion-MNIST")
struct FashionMNISTTests {
    /// Writes a small Fashion-MNIST-shaped split into `dir`.
    static func writeSplit(_ prefix: String, to dir: String, count: Int, labels: [UInt8]? = nil,
                           imageDimensions: [Int]? = nil, labelCount: Int? = nil, compressed: Bool) throws {
        let dims = imageDimensions ?? [count, 28, 28]
        let pixels = (0..<dims.reduce(1, *)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let labelBytes = labels ?? (0..<(labelCount ?? count)).map { UInt8($0 % 10) }
        let imageFile = makeIDX(dimensions: dims, payload: pixels)
        let labelFile = makeIDX(dimensions: [labelBytes.count], payload: labelBytes)
        let suffix = compressed ? ".gz" : ""
        try write(compressed ? gzip(imageFile) : imageFile, to: dir, name: "\(prefix)-images-idx3-ubyte\(suffix)")
        try write(compressed ? gzip(labelFile) : labelFile, to: dir, name: "\(prefix)-labels-idx1-ubyte\(suffix)")
    }

    @Test("Loads synthetic splits, gzip and raw")
    func synthetic() throws {
        try withTemporaryDirectory { dir in
            try Self.writeSplit("train", to: dir, count: 20, compressed: true)
            try Self.writeSplit("t10k", to: dir, count: 7, compressed: false)
            let train = try FashionMNIST.load(directory: dir, split: .train)
            let test = try FashionMNIST.load(directory: dir + "/", split: .test)
            #expect(train.count == 20 && test.count == 7)
            #expect(train.channels == 1 && train.height == 28 && train.width == 28)
            #expect(train.images.count == 20 * 784)
            #expect(test.labels == (0..<7).map { Int32($0) })
            #expect(train.classNames == FashionMNIST.classNames)
        }
    }

    @Test("Rejects bad label files and shapes")
    func badSplits() throws {
        try withTemporaryDirectory { dir in
            let labels = dir + "/train-labels-idx1-ubyte"
            let images = dir + "/train-images-idx3-ubyte"
            try Self.writeSplit("train", to: dir, count: 5, labels: [1, 2, 3, 10, 4], compressed: false)
            #expect(throws: DataError.labelOutOfRange(path: labels, index: 3, label: 10, classCount: 10)) {
                try FashionMNIST.load(directory: dir, split: .train)
            }
            expectDescription(of: { try FashionMNIST.load(directory: dir, split: .train) },
                              contains: [labels, "record 3", "label 10"])

            try Self.writeSplit("train", to: dir, count: 5, labelCount: 6, compressed: false)
            #expect(throws: DataError.countMismatch(imagesPath: images, imageCount: 5, labelsPath: labels, labelCount: 6)) {
                try FashionMNIST.load(directory: dir, split: .train)
            }

            try Self.writeSplit("train", to: dir, count: 5, imageDimensions: [5, 784], compressed: false)
            #expect(throws: DataError.unexpectedShape(path: images, dimensions: [5, 784], expected: "3-D [count, height, width]")) {
                try FashionMNIST.load(directory: dir, split: .train)
            }

            #expect(throws: DataError.fileNotFound(path: dir + "/t10k-images-idx3-ubyte[.gz]")) {
                try FashionMNIST.load(directory: dir, split: .test)
            }
        }
    }

    static let installed = FileManager.default.fileExists(
        atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz")
        || FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte")

    @Test("Loads the real Fashion-MNIST from the Debian package",
          .enabled(if: installed, "Fashion-MNIST not found in \(FashionMNIST.defaultDirectory) (apt install dataset-fashion-mnist); skipping"))
    func real() throws {
        let clock = ContinuousClock()
        var train: ImageDataset?
        let trainTime = try clock.measure { train = try FashionMNIST.load(split: .train) }
        var test: ImageDataset?
        let testTime = try clock.measure { test = try FashionMNIST.load(split: .test) }
        print("Fashion-MNIST load: train \(trainTime), test \(testTime)")
        let trainSet = try #require(train), testSet = try #require(test)

        for (set, expected) in [(trainSet, 60_000), (testSet, 10_000)] {
            #expect(set.count == expected)
            #expect(set.channels == 1 && set.height == 28 && set.width == 28)
            #expect(set.images.count == expected * 784)
            #expect(set.labels.allSatisfy { (0..<10).contains($0) })
            #expect(set.classNames.count == 10)
        }
        var perClass = [Int](repeating: 0, count: 10)
        for label in trainSet.labels { perClass[Int(label)] += 1 }
        #expect(perClass == [Int](repeating: 6_000, count: 10))
        var testPerClass = [Int](repeating: 0, count: 10)
        for label in testSet.labels { testPerClass[Int(label)] += 1 }
        #expect(testPerClass == [Int](repeating: 1_000, count: 10))
        // Images are not blank: mean pixel of Fashion-MNIST train is about 0.286.
        let mean = Double(trainSet.images.reduce(0) { $0 + Int($1) }) / Double(trainSet.images.count) / 255
        #expect(abs(mean - 0.286) < 0.01)
    }
}
