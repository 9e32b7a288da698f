import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
@testable import ResNetInference

/// Seeded uniform floats in `range`.
struct TestRandom {
    var state: UInt64
    mutating func next(_ range: ClosedRange<Float>) -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return range.lowerBound + Float(state >> 40) / Float(1 << 24) * (range.upperBound - range.lowerBound)
    }
    mutating func byte() -> UInt8 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
}

/// Seeded random images.
func exportTestImages(_ count: Int, channels: Int, side: Int, seed: UInt64) -> [PlanarImage] {
    var random = TestRandom(state: seed)
    return (0..<count).map { _ in
        PlanarImage(pixels: (0..<(channels * side * side)).map { _ in random.byte() }, channels: channels, height: side, width: side)
    }
}

/// Seeded weights with batch-norm statistics and affine parameters away from their initial
/// values, so that a mistake in any of them shows.
func randomizeForExport(_ model: Module, seed: UInt64) {
    model.initializeParameters(seed: seed)
    var random = TestRandom(state: seed ^ 0x9E37_79B9)
    model.visit { module in
        guard let bn = module as? BatchNorm2D else { return }
        bn.scale.values = bn.scale.values.map { _ in random.next(0.5...1.5) }
        bn.shift.values = bn.shift.values.map { _ in random.next(-0.2...0.2) }
        bn.runningMean.values = bn.runningMean.values.map { _ in random.next(-0.2...0.2) }
        bn.runningVariance.values = bn.runningVariance.values.map { _ in random.next(0.5...1.5) }
    }
    model.eval()
}

/// The kind of normalization a test card asks for.
enum TestNormalization: String, Sendable { case none, channel, pixel, zca }

/// A zoo network on `side x side` inputs with random weights, as a loaded model (never written).
func exportTestModel(_ name: String, shortcut: ShortcutOption = .b, strideOnFirst1x1: Bool = false, side: Int,
                     order: ModelCard.ChannelOrder = .rgb, normalization: TestNormalization, classes: Int = 5,
                     seed: UInt64 = 3, tame: Bool = true) throws -> LoadedModel {
    let c = order.channels
    var random = TestRandom(state: seed)
    var whitening: ZCAWhitening?
    let norm: Normalization
    switch normalization {
    case .none: norm = .none
    case .channel: norm = .perChannel(mean: Array([0.5, 0.4, 0.3].prefix(c)), std: Array([0.25, 0.2, 0.3].prefix(c)))
    case .pixel: norm = .perPixelMean((0..<(c * side * side)).map { _ in random.next(0.3...0.7) })
    case .zca:
        norm = .zca(epsilon: 0.1)
        let images = exportTestImages(40, channels: c, side: side, seed: seed + 1).flatMap(\.pixels)
        let dataset = ImageDataset(images: images, labels: [Int32](repeating: 0, count: 40), channels: c, height: side, width: side,
                                   classNames: ["x"])
        whitening = try ZCAWhitening.fit(dataset, epsilon: 0.1)
    }
    let card = ModelCard(architecture: .init(name: name, options: ModelOptions(shortcut: shortcut, strideOnFirst1x1: strideOnFirst1x1)),
                         input: .init(channels: c, height: side, width: side, channelOrder: order),
                         preprocessing: .init(resize: .stretch, normalization: norm),
                         classNames: (0..<classes).map { "class \($0)" },
                         provenance: .init(origin: .imported, source: "a test"))
    let model = try card.validated().buildModel()
    randomizeForExport(model, seed: seed)
    let loaded = LoadedModel(url: URL(fileURLWithPath: "/nonexistent/\(name).safetensors"), card: card, model: model, whitening: whitening,
                             metadata: [:])
    if tame { try tameClassifier(loaded) }
    return loaded
}

/// Scales the last dense layer down until no class of a few random images takes more than 95%
/// of the probability: random deep networks give huge logits, and saturated probabilities
/// would hide a wrong network.
func tameClassifier(_ loaded: LoadedModel) throws {
    var last: Dense?
    loaded.model.visit { if let dense = $0 as? Dense { last = dense } }
    guard let fc = last else { return }
    let images = exportTestImages(4, channels: loaded.card.input.channels, side: loaded.card.input.height, seed: 99)
    for _ in 0..<12 {
        let largest = try Classifier(loaded, maximumBatchSize: 4).probabilities(images).flatMap { $0 }.max()!
        if largest < 0.95 { return }
        fc.weight.values = fc.weight.values.map { $0 * 0.25 }
        if let bias = fc.bias { bias.values = bias.values.map { $0 * 0.25 } }
    }
}

/// Pixels scaled to 0...1, `[N, C, H, W]`: the exported graph's input.
func exportTestInput(_ images: [PlanarImage]) -> NDArray {
    NDArray(shape: [images.count, images[0].channels, images[0].height, images[0].width],
            data: images.flatMap { $0.pixels.map { Float($0) / 255 } })
}

/// A fresh directory, removed by the caller.
func exportScratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("export-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func largestDifference(_ a: [[Float]], _ b: [[Float]]) -> Float {
    zip(a, b).map { x, y in x.count == y.count ? zip(x, y).map { abs($0 - $1) }.max() ?? 0 : .infinity }.max() ?? .infinity
}
