import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
import Testing
@testable import ResNetInference

/// A zoo network to export: its name, options, input and the card's preprocessing.
struct ExportCase: Sendable, CustomTestStringConvertible {
    var name: String
    var shortcut: ShortcutOption = .b
    var strideOnFirst1x1 = false
    var side: Int
    var order: ModelCard.ChannelOrder = .rgb
    var normalization: TestNormalization
    var images = 3
    var testDescription: String {
        "\(name) shortcut \(shortcut)\(strideOnFirst1x1 ? " stride-on-1x1" : ""), \(side)x\(side) \(order), \(normalization) normalization"
    }
}

/// Not a layer the exporter knows.
private final class Doubling: Module, Layer {
    override init() { super.init() }
    func callAsFunction(_ x: Tensor) throws -> Tensor { try add(x, x, label: label) }
}

@Suite("ONNX export") struct ONNXExportTests {
    /// The exported graph, run by the test's own ONNX interpreter on pixels in 0...1, gives the
    /// probabilities the Classifier gives for the same images (preprocessing included).
    @Test("the ONNX graph computes the Classifier's probabilities", arguments: [
        ExportCase(name: "resnet20", shortcut: .a, side: 8, normalization: .pixel),
        ExportCase(name: "resnet20", shortcut: .c, side: 8, normalization: .channel),
        ExportCase(name: "resnet29v2", shortcut: .a, side: 8, order: .bgr, normalization: .channel),
        ExportCase(name: "wrn-10-2", side: 8, normalization: .zca),
        ExportCase(name: "plain20", side: 8, normalization: .pixel),
        ExportCase(name: "svgg", side: 16, order: .gray, normalization: .none),
        ExportCase(name: "resnet18", side: 32, normalization: .channel, images: 2),
        ExportCase(name: "resnet50", side: 32, normalization: .channel, images: 1),
        ExportCase(name: "resnet50", shortcut: .a, strideOnFirst1x1: true, side: 32, order: .bgr, normalization: .pixel, images: 1),
    ])
    func matchesClassifier(_ c: ExportCase) throws {
        let loaded = try exportTestModel(c.name, shortcut: c.shortcut, strideOnFirst1x1: c.strideOnFirst1x1, side: c.side, order: c.order,
                                         normalization: c.normalization)
        let images = exportTestImages(c.images, channels: c.order.channels, side: c.side, seed: 17)
        // Not `prepared`: the classifier reorders a bgr model's channels itself, from RGB images.
        let expected = try Classifier(loaded, maximumBatchSize: c.images).probabilities(images)
        let onnx = try ONNXModel(try ONNXExport.encode(loaded))
        let output = try ONNXInterpreter(model: onnx).run([ONNXExport.imageInput: exportTestInput(images)])
        let probabilities = try #require(output[ONNXExport.probabilitiesOutput])
        #expect(probabilities.shape == [c.images, 5])
        let got = (0..<c.images).map { Array(probabilities.data[($0 * 5)..<(($0 + 1) * 5)]) }
        let difference = largestDifference(got, expected)
        #expect(difference < 1e-4, "largest probability difference \(difference): \(got) against \(expected)")
        // The probabilities are not saturated: a wrong network would show.
        #expect(expected.flatMap { $0 }.max()! < 0.99 && expected.flatMap { $0 }.min()! > 1e-4)
    }

    @Test func theRawGraphTakesNormalizedInputAndGivesLogits() throws {
        let loaded = try exportTestModel("resnet20", shortcut: .a, side: 8, normalization: .channel)
        let images = exportTestImages(2, channels: 3, side: 8, seed: 5)
        let expected = try Classifier(loaded, maximumBatchSize: 2).probabilities(images)
        let onnx = try ONNXModel(try ONNXExport.encode(loaded, raw: true))
        #expect(onnx.inputs.map(\.name) == [ONNXExport.rawInput] && onnx.outputs.map(\.name) == [ONNXExport.logitsOutput])
        #expect(!onnx.nodes.contains { ["Softmax", "Sub", "Div"].contains($0.opType) })
        #expect(!onnx.initializers.keys.contains { $0.hasPrefix("preprocessing") })
        let (mean, std): ([Float], [Float]) = ([0.5, 0.4, 0.3], [0.25, 0.2, 0.3])
        var input = exportTestInput(images)
        for i in input.data.indices { let c = (i / 64) % 3; input.data[i] = (input.data[i] - mean[c]) / std[c] }
        let logits = try #require(try ONNXInterpreter(model: onnx).run([ONNXExport.rawInput: input])[ONNXExport.logitsOutput])
        let got = (0..<2).map { n -> [Float] in
            let row = logits.data[(n * 5)..<((n + 1) * 5)]
            let sum = row.reduce(0) { $0 + exp($1 - row.max()!) }
            return row.map { exp($0 - row.max()!) / sum }
        }
        #expect(largestDifference(got, expected) < 1e-4)
    }

    @Test func theFileStandsAlone_opset17DynamicBatchCardAndClassNamesInTheMetadata() throws {
        let loaded = try exportTestModel("resnet20", shortcut: .a, side: 8, normalization: .pixel)
        let onnx = try ONNXModel(try ONNXExport.encode(loaded, producerVersion: "9.9"))
        #expect(onnx.irVersion == 8 && onnx.opsets == ["": 17] && onnx.producer == "SwiftResNet")
        #expect(onnx.inputs.map(\.name) == ["image"] && onnx.inputs[0].dims == [nil, 3, 8, 8] && onnx.inputs[0].symbols[0] == "batch")
        #expect(onnx.outputs.map(\.name) == ["probabilities"] && onnx.outputs[0].dims == [nil, 5])
        let card = try ModelCard.decode(try #require(onnx.metadata["resnet.model"]), path: "metadata")
        #expect(card == loaded.card)
        #expect(try JSONDecoder().decode([String].self, from: Data(try #require(onnx.metadata["resnet.classes"]).utf8)) == loaded.card.classNames)
        // Initializers carry the parameters' names; the preprocessing's are its own.
        let parameters = Set(loaded.model.namedParameters().map(\.0))
        #expect(parameters.isSubset(of: Set(onnx.initializers.keys)))
        #expect(Set(onnx.initializers.keys).subtracting(parameters).allSatisfy { $0.hasPrefix("preprocessing.") || $0.contains(".shortcut.") })
        #expect(Set(onnx.nodes.map(\.opType)) == ["Sub", "Conv", "BatchNormalization", "Relu", "Add", "Slice", "Pad", "GlobalAveragePool", "Flatten", "Gemm", "Softmax"])
        // Any batch: one image, then four, give the same answers for the same image.
        let images = exportTestImages(4, channels: 3, side: 8, seed: 9)
        let interpreter = ONNXInterpreter(model: onnx)
        let one = try #require(try interpreter.run(["image": exportTestInput([images[2]])])["probabilities"])
        let four = try #require(try interpreter.run(["image": exportTestInput(images)])["probabilities"])
        #expect(largestDifference([one.data], [Array(four.data[10..<15])]) < 1e-6)
    }

    @Test func anySequentialOfKnownLayersExports_poolingAndABiasFreeDense() throws {
        let model = Sequential([
            Conv2D(3, 4, kernelSize: 3, bias: true), BatchNorm2D(4), ReLU(), MaxPool2D(kernelSize: 3, stride: 2, padding: 1),
            AvgPool2D(kernelSize: 3, stride: 1, padding: 1, countIncludesPadding: false), Conv2D(4, 6, kernelSize: 1),
            AvgPool2D(kernelSize: 2), Dropout(rate: 0.5), Flatten(), Dense(6 * 2 * 2, 3, bias: false),
        ])
        model.assignNames()
        randomizeForExport(model, seed: 4)
        let card = ModelCard(architecture: .init(name: "resnet8", options: ModelOptions()), input: .init(channels: 3, height: 8, width: 8, channelOrder: .rgb),
                             preprocessing: .init(resize: .stretch, normalization: .none), classNames: ["a", "b", "c"],
                             provenance: .init(origin: .imported))
        let loaded = LoadedModel(url: URL(fileURLWithPath: "custom.safetensors"), card: card, model: model, whitening: nil, metadata: [:])
        let images = exportTestImages(2, channels: 3, side: 8, seed: 21)
        let expected = try Classifier(loaded, maximumBatchSize: 2).probabilities(images)
        let output = try ONNXInterpreter(model: try ONNXModel(try ONNXExport.encode(loaded))).run(["image": exportTestInput(images)])
        let p = try #require(output["probabilities"])
        #expect(largestDifference([Array(p.data[0..<3]), Array(p.data[3..<6])], expected) < 1e-5)
    }

    @Test func aLayerTheExporterDoesNotKnowIsATypedErrorAndNothingIsWritten() throws {
        let dir = try exportScratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Sequential(named: [("conv", Conv2D(3, 4, kernelSize: 3)), ("double", Doubling()), ("pool", GlobalAvgPool2D()), ("fc", Dense(4, 2))])
        model.assignNames()
        let card = ModelCard(architecture: .init(name: "resnet8", options: ModelOptions()), input: .init(channels: 3, height: 8, width: 8, channelOrder: .rgb),
                             preprocessing: .init(resize: .stretch, normalization: .none), classNames: ["a", "b"], provenance: .init(origin: .imported))
        let loaded = LoadedModel(url: URL(fileURLWithPath: "mine.safetensors"), card: card, model: model, whitening: nil, metadata: [:])
        let out = dir.appendingPathComponent("model.onnx")
        #expect {
            try ONNXExport.write(loaded, to: out)
        } throws: { error in
            guard let e = error as? ExportError, case .inexpressible(let m) = e else { return false }
            return m.hasPrefix("\(loaded.url.path): cannot be exported to ONNX") && m.contains("'double' is a Doubling")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func batchNormWithBatchStatisticsCannotBeExpressed() throws {
        let loaded = try exportTestModel("resnet20", shortcut: .a, side: 8, normalization: .none)
        try #require((loaded.model as? ResNet)?.stages[1].layers[0] as? BasicBlock).bn1.evaluationStatistics = .batch
        #expect {
            _ = try ONNXExport.encode(loaded)
        } throws: { error in
            guard let e = error as? ExportError, case .inexpressible(let m) = e else { return false }
            return m.contains("'stage2.block1.bn1' normalizes with each batch's own statistics")
        }
    }

    @Test func aFailedWriteLeavesNothing() throws {
        let dir = try exportScratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let loaded = try exportTestModel("resnet20", shortcut: .a, side: 8, normalization: .none)
        #expect(throws: ModelFileError.self) {
            try ONNXExport.write(loaded, to: dir.appendingPathComponent("missing/model.onnx"))
        }
        try ONNXExport.write(loaded, to: dir.appendingPathComponent("model.onnx"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.onnx"])
    }

    @Test func theProtobufEncoderWritesTheWireFormat() throws {
        var p = Protobuf()
        p.varint(1, 300)
        p.int64(2, -1)
        p.string(3, "hi")
        p.float(4, 1.5)
        #expect(p.data == [0x08, 0xAC, 0x02, 0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01, 0x1A, 0x02, 0x68, 0x69, 0x25, 0x00, 0x00, 0xC0, 0x3F])
        let fields = try ProtoField.fields(p.data[...])
        #expect(try fields.map(\.0) == [1, 2, 3, 4] && fields[0].1.int == 300 && fields[1].1.int == -1)
        #expect(try fields[2].1.string == "hi" && fields[3].1.float == 1.5)
    }
}
