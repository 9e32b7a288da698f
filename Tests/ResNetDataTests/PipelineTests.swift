import Foundation
import ResNetData
import Testing

/// A dataset whose pixel values encode their position: value = (c * 64 + y * 8 + x) % 256 on 8x8.
func positionalDataset(count: Int = 4, channels: Int = 3, side: Int = 8) -> ImageDataset {
    var pixels: [UInt8] = []
    for i in 0..<count {
        for c in 0..<channels { for y in 0..<side { for x in 0..<side { pixels.append(UInt8((i * 7 + c * 64 + y * side + x) % 256)) } } }
    }
    return ImageDataset(images: pixels, labels: (0..<count).map { Int32($0 % 10) }, channels: channels, height: side,
                        width: side, classNames: (0..<10).map(String.init))
}

@Suite("Augmentation and batches")
struct PipelineTests {
    func augmented(_ list: [Augmentation], seed: UInt64 = 1, epoch: Int = 0, index: Int = 0) -> [UInt8] {
        let d = positionalDataset()
        let a = Augmenter(list, channels: 3, height: 8, width: 8)
        var out = [UInt8](repeating: 0, count: 192)
        var random = DataRandom(seed: seed, epoch: epoch, index: index)
        d.images.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { a.apply(src.baseAddress!, to: $0.baseAddress!, using: &random) } }
        return out
    }

    @Test("pad-and-crop is an exact integer translation with the chosen fill; flip mirrors rows")
    func translation() {
        let source = positionalDataset().images.prefix(192).map { $0 }
        var sawShift = false, sawFlip = false
        for index in 0..<200 {
            let out = augmented([.padCrop(padding: 2, fill: .constant)], index: index)
            // Find the translation from a pixel that stays inside, then check every pixel.
            var match: (Int, Int)?
            for dy in -2...2 { for dx in -2...2 {
                var ok = true
                for c in 0..<3 { for y in 0..<8 { for x in 0..<8 {
                    let sy = y - dy, sx = x - dx
                    let inside = sy >= 0 && sy < 8 && sx >= 0 && sx < 8
                    let expected: UInt8 = inside ? source[c * 64 + sy * 8 + sx] : 0
                    if out[c * 64 + y * 8 + x] != expected { ok = false }
                } } }
                if ok { match = (dy, dx) }
            } }
            #expect(match != nil, "image \(index) is not a zero-filled translation")
            if let m = match, m.0 != 0 || m.1 != 0 { sawShift = true }
            let flipped = augmented([.horizontalFlip], index: index)
            if flipped != source {
                sawFlip = true
                let row = Array(flipped[24..<32]), original = Array(source[24..<32])
                #expect(row == Array(original.reversed()))
            }
        }
        #expect(sawShift && sawFlip)
    }

    @Test("fill modes: nearest repeats the edge, reflect mirrors without repeating it")
    func fills() {
        #expect(Augmenter.resolveForTesting(-1, 8, .nearest) == 0)
        #expect(Augmenter.resolveForTesting(-1, 8, .reflect) == 1)
        #expect(Augmenter.resolveForTesting(-2, 8, .reflect) == 2)
        #expect(Augmenter.resolveForTesting(8, 8, .reflect) == 6)
        #expect(Augmenter.resolveForTesting(9, 8, .nearest) == 7)
        #expect(Augmenter.resolveForTesting(-1, 8, .constant) == -1)
    }

    @Test("augmentation depends only on (seed, epoch, index)")
    func reproducible() {
        let list: [Augmentation] = [.horizontalFlip, .padCrop(padding: 2, fill: .reflect), .rotation(degrees: 20, fill: .nearest), .cutout(size: 3)]
        #expect(augmented(list, epoch: 3, index: 2) == augmented(list, epoch: 3, index: 2))
        #expect(augmented(list, epoch: 3, index: 2) != augmented(list, epoch: 4, index: 2))
        // Rotation by 0 degrees with zoom 0 is the identity.
        #expect(augmented([.rotation(degrees: 0, fill: .constant)]) == positionalDataset().images.prefix(192).map { $0 })
    }

    @Test("the list syntax parses and rejects what it should")
    func parsing() throws {
        #expect(try Augmentation.parseList("flip,crop:4") == [.horizontalFlip, .padCrop(padding: 4, fill: .constant)])
        #expect(try Augmentation.parseList("shift:0.1:nearest,rotate:15,zoom:0.2:reflect,cutout:8") == [
            .shift(width: 0.1, height: 0.1, fill: .nearest), .rotation(degrees: 15, fill: .constant),
            .zoom(range: 0.2, fill: .reflect), .cutout(size: 8)])
        #expect(try Augmentation.parseList("none").isEmpty)
        #expect(throws: DataOptionError.self) { try Augmentation.parseList("blur") }
        #expect(throws: DataOptionError.self) { try Augmentation.parseList("crop:x") }
        #expect(throws: DataOptionError.self) { try Augmentation.parseList("zoom:2") }
    }

    @Test("an epoch visits every image once, in an order that depends on (seed, epoch); resuming mid-epoch gives the same batches")
    func loader() throws {
        let d = positionalDataset(count: 50)
        let loader = try BatchLoader(dataset: d, batchSize: 8, shuffle: true, dropLast: false,
                                     augmentations: [.horizontalFlip], normalization: .perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]), seed: 9)
        func collect(_ epoch: Int, from first: Int = 0) -> [([Int], [Float])] {
            let e = loader.epoch(epoch, startingAt: first)
            defer { e.cancel() }
            var out: [([Int], [Float])] = []
            while let b = e.next() { out.append((Array(b.indices), Array(b.images))) }
            return out
        }
        let zero = collect(0)
        #expect(zero.count == 7 && zero.last!.0.count == 2)
        #expect(zero.flatMap(\.0).sorted() == Array(0..<50))
        #expect(zero.map(\.0) != collect(1).map(\.0))
        let resumed = collect(0, from: 3)
        #expect(resumed.map(\.0) == zero[3...].map(\.0))
        #expect(resumed.map(\.1) == zero[3...].map(\.1))
        // Normalization: (v/255 - 0.5) / 0.25 for an unflipped pixel.
        let noAugment = try BatchLoader(dataset: d, batchSize: 50, shuffle: false, dropLast: true, normalization: .perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]))
        let e = noAugment.epoch(0)
        let b = try #require(e.next())
        let pixel: Float = Float(d.images[5]) / 255
        let expected: Float = (pixel - 0.5) / 0.25
        #expect(abs(b.images[5] - expected) < 1e-6)
        #expect(e.next() == nil)
    }

    @Test("stratified split: exact size, same share per class, seeded; channel statistics")
    func split() throws {
        let d = positionalDataset(count: 100)
        let (train, validation) = try d.stratifiedSplit(validationCount: 20, seed: 1)
        #expect(train.count == 80 && validation.count == 20)
        #expect(Set(train).isDisjoint(with: validation))
        #expect((0..<10).allSatisfy { k in validation.filter { d.labels[$0] == Int32(k) }.count == 2 })
        #expect(try d.stratifiedSplit(validationCount: 20, seed: 1).validation == validation)
        #expect(throws: DataOptionError.self) { try d.stratifiedSplit(validationCount: 100, seed: 1) }
        let constant = ImageDataset(images: [UInt8](repeating: 51, count: 2 * 3 * 4), labels: [0, 1], channels: 3, height: 2, width: 2, classNames: ["a", "b"])
        let (mean, std) = constant.channelStatistics()
        #expect(mean.allSatisfy { abs($0 - 0.2) < 1e-6 } && std.allSatisfy { $0 < 1e-3 })
    }
}

@Suite("ZCA whitening")
struct WhiteningTests {
    @Test("whitened images have identity covariance; the matrix is symmetric; the loader applies it")
    func whitening() throws {
        // 4x4 gray images from a correlated source: a random smooth gradient plus noise.
        var random = DataRandom(seed: 11)
        let n = 4_000, d = 16
        var pixels: [UInt8] = []
        for _ in 0..<n {
            let a = Float(random.next() % 1000) / 1000, b = Float(random.next() % 1000) / 1000
            for y in 0..<4 { for x in 0..<4 {
                let noise = Float(random.next() % 1000) / 1000 * 0.2
                pixels.append(UInt8(max(0, min(255, (60 + 100 * a * Float(x) / 3 + 80 * b * Float(y) / 3 + 60 * noise).rounded()))))
            } }
        }
        let data = ImageDataset(images: pixels, labels: [Int32](repeating: 0, count: n), channels: 1, height: 4, width: 4, classNames: ["x"])
        let zca = try ZCAWhitening.fit(data, epsilon: 1e-6)
        for i in 0..<d { for j in 0..<d { #expect(abs(zca.matrix[i * d + j] - zca.matrix[j * d + i]) < 1e-2 * max(1, abs(zca.matrix[i * d + j]))) } }
        let loader = try BatchLoader(dataset: data, batchSize: n, shuffle: false, dropLast: true, normalization: .zca(epsilon: 1e-6), whitening: zca)
        let epoch = loader.epoch(0)
        let batch = try #require(epoch.next())
        var covariance = [Double](repeating: 0, count: d * d)
        for k in 0..<n { for i in 0..<d { for j in 0..<d { covariance[i * d + j] += Double(batch.images[k * d + i] * batch.images[k * d + j]) / Double(n) } } }
        var worst = 0.0
        for i in 0..<d { for j in 0..<d { worst = max(worst, abs(covariance[i * d + j] - (i == j ? 1 : 0))) } }
        #expect(worst < 0.02, "whitened covariance differs from the identity by \(worst)")
        epoch.cancel()
        #expect(throws: DataOptionError.self) { try BatchLoader(dataset: data, batchSize: 8, shuffle: false, dropLast: true, normalization: .zca(epsilon: 0.1)) }
    }
}
