import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import Testing
@testable import ResNetInference

/// PyTorch's state_dict keys (without `num_batches_tracked`) of a ResNet with `stages` blocks
/// per stage: torchvision's, or akamaster's (option A: no downsample, `linear`).
private func pytorchKeys(stages: [Int], bottleneck: Bool, akamaster: Bool) -> Set<String> {
    let bn = ["weight", "bias", "running_mean", "running_var"]
    var keys = ["conv1.weight"] + bn.map { "bn1.\($0)" }
    for (s, count) in stages.enumerated() {
        for i in 0..<count {
            let block = "layer\(s + 1).\(i)"
            for k in 1...(bottleneck ? 3 : 2) { keys += ["\(block).conv\(k).weight"] + bn.map { "\(block).bn\(k).\($0)" } }
            if !akamaster, i == 0, s > 0 || bottleneck { keys += ["\(block).downsample.0.weight"] + bn.map { "\(block).downsample.1.\($0)" } }
        }
    }
    let classifier = akamaster ? "linear" : "fc"
    return Set(keys + ["\(classifier).weight", "\(classifier).bias"])
}

struct TorchvisionCase: Sendable, CustomTestStringConvertible {
    var name: String
    var shortcut: ShortcutOption
    var side: Int
    var stages: [Int]
    var bottleneck: Bool
    var padding: ImportedWeights.OptionAPadding = .symmetric
    var testDescription: String { "\(name) shortcut \(shortcut) \(side)x\(side)\(shortcut == .a ? ", option A padded \(padding)" : "")" }
}

@Suite("PyTorch-named export") struct ExportTorchvisionTests {
    /// Exported under PyTorch's names, imported back by `resnet convert`'s code: the same weights,
    /// bit for bit, and the same outputs.
    @Test("export, then import: the same network", arguments: [
        TorchvisionCase(name: "resnet20", shortcut: .a, side: 8, stages: [3, 3, 3], bottleneck: false),
        TorchvisionCase(name: "resnet20", shortcut: .a, side: 8, stages: [3, 3, 3], bottleneck: false, padding: .end),
        TorchvisionCase(name: "resnet32", shortcut: .a, side: 32, stages: [5, 5, 5], bottleneck: false),
        TorchvisionCase(name: "resnet18", shortcut: .b, side: 32, stages: [2, 2, 2, 2], bottleneck: false),
        TorchvisionCase(name: "resnet50", shortcut: .b, side: 32, stages: [3, 4, 6, 3], bottleneck: true),
    ])
    func roundTrip(_ c: TorchvisionCase) throws {
        let loaded = try exportTestModel(c.name, shortcut: c.shortcut, side: c.side, normalization: .channel, seed: 8)
        let tensors = try TorchvisionExport.tensors(model: loaded.model, card: loaded.card, optionAPadding: c.padding, source: "m")
        #expect(Set(tensors.keys) == pytorchKeys(stages: c.stages, bottleneck: c.bottleneck, akamaster: c.shortcut == .a))
        let ours = ModelFile.tensors(of: loaded.model)
        if c.shortcut == .a {
            // Stage 2's first block reads the padded stream: symmetric padding reorders its channels.
            let moved = tensors["layer2.0.conv2.weight"]!.values != ours["stage2.block1.conv2.weight"]!.values
            #expect(moved == (c.padding == .symmetric))
        }
        let back = try ImportedWeights.model(from: tensors, source: "exported.safetensors", architecture: loaded.card.architecture,
                                             input: (c.side, c.side), classNames: loaded.card.classNames,
                                             preprocessing: loaded.card.preprocessing, optionAPadding: c.shortcut == .a ? c.padding : nil)
        for (name, p) in back.model.namedParameters() { #expect(p.values == ours[name]!.values, "\(name)") }
        let images = exportTestImages(2, channels: 3, side: c.side, seed: 2)
        #expect(try Classifier(back, maximumBatchSize: 2).probabilities(images) == Classifier(loaded, maximumBatchSize: 2).probabilities(images))
        if c.shortcut == .a {
            // Read with the other padding, the weights are another network.
            let other: ImportedWeights.OptionAPadding = c.padding == .symmetric ? .end : .symmetric
            let wrong = try ImportedWeights.model(from: tensors, source: "x", architecture: loaded.card.architecture, input: (c.side, c.side),
                                                  optionAPadding: other)
            #expect(wrong.model.namedParameters().contains { $0.1.values != ours[$0.0]!.values })
        }
    }

    @Test func theNamesAreTheInverseOfTheImportNames() {
        for name in ["stem.conv.weight", "stem.bn.runningVariance", "stage3.block12.conv2.weight", "stage2.block1.shortcut.projection.weight",
                     "stage4.block1.shortcut.bn.shift", "fc.bias"] {
            #expect(TorchvisionExport.pytorchName(name).flatMap(ImportedWeights.ourName) == name)
        }
        #expect(TorchvisionExport.pytorchName("stage2.block1.shortcut.bn.runningMean") == "layer2.0.downsample.1.running_mean")
        #expect(TorchvisionExport.pytorchName("fc.weight", classifier: "linear") == "linear.weight")
        #expect(TorchvisionExport.pytorchName("block1.conv1.weight") == nil && TorchvisionExport.pytorchName("stem.bn.gamma") == nil)
    }

    @Test("networks without a PyTorch counterpart: one typed error, no file", arguments: [
        ("svgg", ShortcutOption.b, false, ModelCard.ChannelOrder.rgb, "svgg is not"),
        ("resnet29v2", .b, false, .rgb, "pre-activation"),
        ("wrn-10-2", .b, false, .rgb, "pre-activation"),
        ("plain20", .b, false, .rgb, "plain networks"),
        ("resnet20", .b, false, .rgb, "akamaster's CIFAR ResNets use shortcut A"),
        ("resnet50", .c, false, .rgb, "use shortcut B"),
        ("resnet50", .b, true, .rgb, "stride the 3x3"),
        ("resnet18", .b, false, .gray, "PyTorch's ResNets take 3"),
    ])
    func refused(_ name: String, _ shortcut: ShortcutOption, _ strideOnFirst1x1: Bool, _ order: ModelCard.ChannelOrder, _ reason: String) throws {
        let dir = try exportScratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let loaded = try exportTestModel(name, shortcut: shortcut, strideOnFirst1x1: strideOnFirst1x1, side: 32, order: order, normalization: .none,
                                         tame: false)
        #expect {
            try TorchvisionExport.write(loaded, to: dir.appendingPathComponent("out.safetensors"))
        } throws: { error in
            guard let e = error as? ExportError, case .noCounterpart(let m) = e else { return false }
            let described = ["svgg", "plain20"].contains(name) ? name : "\(name) (shortcut \(shortcut))"
            return m.hasPrefix("\(loaded.url.path): \(described) has no PyTorch counterpart") && m.contains(reason)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func theFileKeepsTheCardButIsNotAModelFile() throws {
        let dir = try exportScratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let loaded = try exportTestModel("resnet20", shortcut: .a, side: 8, normalization: .pixel)
        let url = dir.appendingPathComponent("akamaster.safetensors")
        try TorchvisionExport.write(loaded, to: url)
        let (_, metadata) = try SafeTensors.read(url)
        #expect(try ModelCard.decode(try #require(metadata[TorchvisionExport.cardKey]), path: "x") == loaded.card)
        #expect(metadata["format"] == "pt" && metadata[TorchvisionExport.layoutKey] == "akamaster" && metadata[TorchvisionExport.optionAPaddingKey] == "symmetric")
        #expect(throws: ModelFileError.self) { try ModelFile.load(url.path) }
    }
}
