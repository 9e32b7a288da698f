import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
import Testing
@testable import ResNetInference

/// A fresh directory under the system's temporary folder, removed by the caller.
private func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("model-file-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A small card: ResNet-8 (one block per stage) on 8x8 RGB inputs with three classes.
private func smallCard(normalization: Normalization = .perChannel(mean: [0.5, 0.4, 0.3], std: [0.25, 0.2, 0.3]),
                       resize: ModelCard.Resize = .stretch, order: ModelCard.ChannelOrder = .rgb) -> ModelCard {
    ModelCard(architecture: .init(name: "resnet8", options: ModelOptions(shortcut: .a)),
              input: .init(channels: order.channels, height: 8, width: 8, channelOrder: order),
              preprocessing: .init(resize: resize, normalization: normalization),
              classNames: ["cat", "dog", "fish"],
              provenance: .init(origin: .imported, metrics: ["validation_top1": 0.5], source: "a test"))
}

/// Seeded random images of any size.
private func randomImages(_ count: Int, channels: Int = 3, height: Int, width: Int, seed: UInt64) -> [PlanarImage] {
    var state = seed
    return (0..<count).map { _ in
        let pixels = (0..<(channels * height * width)).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        return PlanarImage(pixels: pixels, channels: channels, height: height, width: width)
    }
}

private func message(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}

@Suite("Model files") struct ModelFileTests {
    @Test func aModelFileRoundTripsItsCardAndWeights() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let card = smallCard()
        let model = try card.buildModel(seed: 7)
        let url = dir.appendingPathComponent("model.safetensors")
        try ModelFile.write(model: model, card: card, whitening: nil, to: url)
        let loaded = try ModelFile.load(url.path)
        #expect(loaded.card == card)
        #expect(loaded.whitening == nil)
        #expect(loaded.metadata.isEmpty)
        let original = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.0, $0.1.values) })
        for (name, p) in loaded.model.namedParameters() { #expect(p.values == original[name], "\(name)") }
        // The card's preprocessing is stored with explicit kinds for other programs.
        let json = try SafeTensors.read(url).metadata[ModelCard.metadataKey] ?? ""
        #expect(json.contains("\"classNames\"") && json.contains("\"kind\":\"per_channel\"") && json.contains("\"channelOrder\":\"rgb\""))
    }

    @Test func loadingListsMissingUnexpectedAndMisshapedTensorsAndRefusesNonFiniteWeights() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let card = smallCard()
        let model = try card.buildModel()
        let good = ModelFile.tensors(of: model)
        let metadata = [ModelCard.metadataKey: try card.encoded()]
        func load(_ tensors: [String: SafeTensors.Tensor]) -> String {
            let url = dir.appendingPathComponent("edited.safetensors")
            return message {
                try SafeTensors.write(tensors, metadata: metadata, to: url)
                _ = try ModelFile.load(url.path)
            }
        }
        var missing = good
        let dropped = good.keys.sorted()[3]
        missing[dropped] = nil
        #expect(load(missing).contains("1 missing ('\(dropped)')"))
        var extra = good
        extra["stage9.block0.conv1.weight"] = SafeTensors.Tensor(shape: [1], values: [0])
        #expect(load(extra).contains("1 unexpected ('stage9.block0.conv1.weight')"))
        var misshaped = good
        let name = "fc.bias"
        #expect(misshaped[name] != nil)
        misshaped[name] = SafeTensors.Tensor(shape: [4], values: [0, 0, 0, 0])
        #expect(load(misshaped).contains("1 mis-shaped ('fc.bias' is [4], the network's is [3])"))
        var nan = good
        var values = nan[name]!.values
        values[1] = .nan
        nan[name] = SafeTensors.Tensor(shape: [3], values: values)
        #expect(load(nan).contains("tensor 'fc.bias' holds nan"))
        // Auxiliary tensors (a run's optimizer buffers) are not the network's and are allowed.
        var auxiliary = good
        auxiliary["optimizer/fc.bias.momentum_buffer"] = SafeTensors.Tensor(shape: [3], values: [0, 0, 0])
        #expect(load(auxiliary) == "")
    }

    @Test func aShortcutBFileDoesNotLoadIntoAShortcutACard() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var card = smallCard()
        card.architecture.options.shortcut = .b
        let model = try card.buildModel()
        card.architecture.options.shortcut = .a
        let url = dir.appendingPathComponent("b-as-a.safetensors")
        try SafeTensors.write(ModelFile.tensors(of: model), metadata: [ModelCard.metadataKey: try card.encoded()], to: url)
        #expect(message { _ = try ModelFile.load(url.path) }.contains("unexpected"))
    }

    @Test func invalidCardsAreRefusedWithOneLine() throws {
        func problem(_ edit: (inout ModelCard) -> Void) -> String {
            var card = smallCard()
            edit(&card)
            return message { _ = try card.validated() }
        }
        #expect(problem { $0.format = 2 }.contains("format 2"))
        #expect(problem { $0.architecture.name = "resnet21" }.contains("6n+2"))
        #expect(problem { $0.architecture.name = "lenet" }.contains("unknown model"))
        #expect(problem { $0.input.height = 100_000 }.contains("each side must be in 1...4096"))
        #expect(problem { $0.input.channels = 1 }.contains("1 input channels in rgb order"))
        #expect(problem { $0.input.width = 2 }.contains("needs at least 4x4"))
        #expect(problem { $0.classNames = [] }.contains("0 classes"))
        #expect(problem { $0.classNames = Array(repeating: "x", count: 1_000_001) }.contains("1000001 classes"))
        #expect(problem { $0.preprocessing.normalization = .perChannel(mean: [0.5], std: [1]) }.contains("1 channel means"))
        #expect(problem { $0.preprocessing.normalization = .perChannel(mean: [0.5, .nan, 0], std: [1, 1, 1]) }.contains("non-finite"))
        #expect(problem { $0.preprocessing.normalization = .perChannel(mean: [0, 0, 0], std: [1, 0, 1]) }.contains("not positive"))
        #expect(problem { $0.preprocessing.normalization = .perPixelMean([0.5]) }.contains("1 pixel means for 192"))
        #expect(problem { $0.preprocessing.normalization = .zca(epsilon: -1) }.contains("ZCA epsilon"))
        #expect(problem { $0.preprocessing.resize = .shorterSideThenCenterCrop(shorterSide: 4) }.contains("at least the crop"))
        #expect(problem { $0.provenance.metrics["x"] = .infinity }.contains("'x' is not a finite number"))
        #expect(problem { _ in } == "")
    }

    @Test func aCardDecodedFromJSONIsValidated() throws {
        let json = try smallCard().encoded()
        #expect(try ModelCard.decode(json, path: "m") == smallCard())
        let huge = json.replacingOccurrences(of: "\"height\":8", with: "\"height\":9223372036854775807")
        #expect(message { _ = try ModelCard.decode(huge, path: "m") }.contains("m: the model card asks for"))
        let noKind = json.replacingOccurrences(of: "\"kind\":\"stretch\"", with: "\"kind\":\"squash\"")
        #expect(message { _ = try ModelCard.decode(noKind, path: "m") }.contains("unknown resize 'squash'"))
        #expect(message { _ = try ModelCard.decode("[]", path: "m") }.contains("m: unreadable model card"))
    }

    @Test func theClassifierGivesTheEvaluatorsProbabilitiesRankedWithNames() throws {
        let card = smallCard()
        let model = try card.buildModel(seed: 3)
        model.eval()
        let loaded = LoadedModel(url: URL(fileURLWithPath: "/m"), card: card, model: model, whitening: nil, metadata: [:])
        let classifier = try Classifier(loaded, maximumBatchSize: 4)
        let images = randomImages(6, height: 8, width: 8, seed: 1)
        let probabilities = try classifier.probabilities(images)
        var expected = [[Float]](repeating: [], count: 6)
        let dataset = ImageDataset(images: images.flatMap(\.pixels), labels: [Int32](repeating: 0, count: 6), channels: 3,
                                   height: 8, width: 8, classNames: card.classNames)
        _ = try Evaluator(model: model, imageShape: card.input.shape, classCount: 3, batchSize: 6)
            .evaluate(dataset, normalization: card.preprocessing.normalization, onPrediction: { expected[$0] = Array($1) })
        #expect(probabilities.count == 6 && probabilities.allSatisfy { $0.count == 3 } && expected.allSatisfy { $0.count == 3 })
        for (p, q) in zip(probabilities, expected) {
            for (a, b) in zip(p, q) { #expect(abs(a - b) < 1e-5) }
            #expect(abs(p.reduce(0, +) - 1) < 1e-5)
        }
        let answers = try classifier.classify(images, top: 2)
        #expect(answers.count == 6 && answers.allSatisfy { $0.count == 2 })
        for (answer, p) in zip(answers, probabilities) {
            let best = p.indices.max { p[$0] < p[$1] }!
            #expect(answer[0].index == best && answer[0].className == card.classNames[best])
            #expect(answer[0].probability >= answer[1].probability)
        }
        // Images of another size are resized as the card says, and still classified.
        #expect(try classifier.classify(randomImages(2, height: 13, width: 21, seed: 2), top: 5).allSatisfy { $0.count == 3 })
    }

    /// The deployed path (prepared bytes straight into the graph, no loader thread) gives the
    /// evaluation loop's probabilities bit for bit, with every normalization and partial batches.
    @Test func preparedImagesGiveTheEvaluationLoopsProbabilitiesExactly() throws {
        let training = randomImages(40, height: 8, width: 8, seed: 5)
        let fitted = ImageDataset(images: training.flatMap(\.pixels), labels: [Int32](repeating: 0, count: 40), channels: 3,
                                  height: 8, width: 8, classNames: ["cat", "dog", "fish"])
        let images = randomImages(7, height: 8, width: 8, seed: 12)
        let dataset = ImageDataset(images: images.flatMap(\.pixels), labels: [Int32](repeating: 0, count: 7), channels: 3,
                                   height: 8, width: 8, classNames: ["cat", "dog", "fish"])
        let normalizations: [Normalization] = [.none, .perChannel(mean: [0.5, 0.4, 0.3], std: [0.25, 0.2, 0.3]),
                                               .perPixelMean(fitted.pixelMean()), .zca(epsilon: 0.1)]
        for normalization in normalizations {
            let whitening = normalization == .zca(epsilon: 0.1) ? try ZCAWhitening.fit(fitted, epsilon: 0.1) : nil
            let model = try smallCard(normalization: normalization).buildModel(seed: 3)
            model.eval()
            let evaluator = Evaluator(model: model, imageShape: [3, 8, 8], classCount: 3, batchSize: 3, whitening: whitening,
                                      parametersAreConstant: true)
            var expected = [Float](repeating: -1, count: 21)
            _ = try evaluator.evaluate(dataset, normalization: normalization, onPrediction: { i, p in
                for k in 0..<3 { expected[i * 3 + k] = p[k] }
            })
            var direct = [Float](repeating: -1, count: 21)
            try dataset.images.withUnsafeBufferPointer { bytes in
                try direct.withUnsafeMutableBufferPointer {
                    try evaluator.probabilities(ofPrepared: bytes, count: 7, normalization: normalization, into: $0)
                }
            }
            #expect(direct == expected, "\(normalization)")
            // Sizes that do not match are refused, not read past.
            #expect(throws: (any Error).self) {
                try dataset.images.withUnsafeBufferPointer { bytes in
                    try direct.withUnsafeMutableBufferPointer {
                        try evaluator.probabilities(ofPrepared: bytes, count: 6, normalization: normalization, into: $0)
                    }
                }
            }
        }
    }

    /// A classifier takes its model's parameters as constant (weights folded and reordered once);
    /// an evaluator without that promise sees every change, as training's validation needs.
    @Test func aClassifierDerivesItsWeightsOnceAndAnEvaluatorFollowsChanges() throws {
        let card = smallCard()
        let model = try card.buildModel(seed: 5)
        model.eval()
        let loaded = LoadedModel(url: URL(fileURLWithPath: "/m"), card: card, model: model, whitening: nil, metadata: [:])
        let classifier = try Classifier(loaded, maximumBatchSize: 2)
        let following = Evaluator(model: model, imageShape: card.input.shape, classCount: 3, batchSize: 2)
        let images = randomImages(2, height: 8, width: 8, seed: 9)
        let dataset = ImageDataset(images: images.flatMap(\.pixels), labels: [0, 0], channels: 3, height: 8, width: 8,
                                   classNames: card.classNames)
        func evaluated() throws -> [[Float]] {
            var p = [[Float]](repeating: [], count: 2)
            _ = try following.evaluate(dataset, normalization: card.preprocessing.normalization, onPrediction: { p[$0] = Array($1) })
            #expect(p.allSatisfy { $0.count == 3 }, "every image's probabilities")
            return p
        }
        let before = try classifier.probabilities(images)
        #expect(before.count == 2 && before.allSatisfy { $0.count == 3 })
        let evaluatedBefore = try evaluated()
        for (p, q) in zip(before, evaluatedBefore) { for (a, b) in zip(p, q) { #expect(abs(a - b) < 1e-5) } }
        // Scale the first convolution's weights: the evaluator's answer moves, the classifier's does not.
        let first = try #require(model.namedParameters().first { $0.1.shape.count == 4 }?.1)
        try first.setValues(first.values.map { $0 * 3 })
        #expect(try classifier.probabilities(images) == before)
        let evaluatedAfter = try evaluated()
        #expect(zip(evaluatedAfter, evaluatedBefore).contains { zip($0, $1).contains { abs($0 - $1) > 1e-4 } })
        // A new classifier sees the new weights.
        let renewed = try Classifier(loaded, maximumBatchSize: 2).probabilities(images)
        for (p, q) in zip(renewed, evaluatedAfter) { for (a, b) in zip(p, q) { #expect(abs(a - b) < 1e-5) } }
    }

    @Test func aZCAModelStoresItsWhiteningAndClassifiesWithIt() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let card = smallCard(normalization: .zca(epsilon: 0.1))
        let training = randomImages(40, height: 8, width: 8, seed: 5)
        let dataset = ImageDataset(images: training.flatMap(\.pixels), labels: [Int32](repeating: 0, count: 40), channels: 3,
                                   height: 8, width: 8, classNames: card.classNames)
        let whitening = try ZCAWhitening.fit(dataset, epsilon: 0.1)
        let model = try card.buildModel(seed: 1)
        let url = dir.appendingPathComponent("zca.safetensors")
        #expect(message { try ModelFile.write(model: model, card: card, whitening: nil, to: url) }.contains("needs its fitted whitening"))
        try ModelFile.write(model: model, card: card, whitening: whitening, to: url)
        let loaded = try ModelFile.load(url.path)
        #expect(loaded.whitening?.matrix == whitening.matrix && loaded.whitening?.mean == whitening.mean)
        let images = randomImages(3, height: 8, width: 8, seed: 9)
        let probabilities = try Classifier(loaded).probabilities(images)
        model.eval()
        var expected = [[Float]](repeating: [], count: 3)
        let test = ImageDataset(images: images.flatMap(\.pixels), labels: [0, 0, 0], channels: 3, height: 8, width: 8,
                                classNames: card.classNames)
        _ = try Evaluator(model: model, imageShape: card.input.shape, classCount: 3, whitening: whitening)
            .evaluate(test, normalization: card.preprocessing.normalization, onPrediction: { expected[$0] = Array($1) })
        #expect(probabilities.count == 3 && probabilities.allSatisfy { $0.count == 3 } && expected.allSatisfy { $0.count == 3 })
        for (p, q) in zip(probabilities, expected) { for (a, b) in zip(p, q) { #expect(abs(a - b) < 1e-5) } }
    }

    @Test func centerCropPreparationFollowsTorchvision() throws {
        // Resize(8) then CenterCrop(8x8)... on a 10x20 image: 8x16, then the central 8x8 columns
        // 4..<12; with an odd margin (17 wide: 8x13 after resize... ) the offset rounds half to even.
        let card = smallCard(resize: .shorterSideThenCenterCrop(shorterSide: 10))
        let image = randomImages(1, height: 15, width: 30, seed: 4)[0]
        let prepared = try card.prepare(image)
        // 15x30 -> shorter side 10 -> 10x20 (20 = int(10 * 30 / 15)); crop 8x8 at top 1, left 6.
        let resized = resizeImage(image, height: 10, width: 20)
        #expect(prepared.height == 8 && prepared.width == 8)
        for c in 0..<3 {
            for y in 0..<8 {
                for x in 0..<8 {
                    #expect(prepared.pixels[(c * 8 + y) * 8 + x] == resized.pixels[c * 200 + (1 + y) * 20 + 6 + x])
                }
            }
        }
        // 10x21 -> 10x21 (no resize), crop left = round(6.5) = 6 (half to even), top = 1.
        let odd = randomImages(1, height: 10, width: 21, seed: 6)[0]
        let cropped = try card.prepare(odd)
        #expect(cropped.pixels[0] == odd.pixels[1 * 21 + 6])
        // BGR cards swap the first and last planes.
        let bgr = smallCard(order: .bgr)
        let square = randomImages(1, height: 8, width: 8, seed: 8)[0]
        let swapped = try bgr.prepare(square)
        #expect(Array(swapped.pixels[0..<64]) == Array(square.pixels[128..<192]))
        #expect(Array(swapped.pixels[64..<128]) == Array(square.pixels[64..<128]))
    }
}
