import Foundation
import ResNetData
import ResNetModels
import Testing
@testable import ResNetInference

/// torchvision's state_dict keys of a ResNet with `stages` blocks per stage, as
/// `torchvision.models.resnet` names them (bottlenecks have conv3/bn3; the first block of
/// stages 2-4, and of stage 1 for bottlenecks, has a downsample).
private func torchvisionKeys(stages: [Int], bottleneck: Bool, classifier: String = "fc", firstStageDownsample: Bool? = nil) -> [String] {
    let bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    var keys = ["conv1.weight"] + bn.map { "bn1.\($0)" }
    for (s, count) in stages.enumerated() {
        for i in 0..<count {
            let block = "layer\(s + 1).\(i)"
            for k in 1...(bottleneck ? 3 : 2) { keys += ["\(block).conv\(k).weight"] + bn.map { "\(block).bn\(k).\($0)" } }
            if i == 0 && (s > 0 || (firstStageDownsample ?? bottleneck)) {
                keys += ["\(block).downsample.0.weight"] + bn.map { "\(block).downsample.1.\($0)" }
            }
        }
    }
    return keys + ["\(classifier).weight", "\(classifier).bias"]
}

@Suite("Importing PyTorch weights")
struct WeightImportTests {
    @Test("every torchvision key maps to one of our parameters, and every parameter is covered",
          arguments: [("resnet18", [2, 2, 2, 2], false), ("resnet50", [3, 4, 6, 3], true), ("resnet152", [3, 8, 36, 3], true)])
    func torchvisionNames(model: String, stages: [Int], bottleneck: Bool) throws {
        let ours = Set(try ModelDefinition(name: model).build(input: ImageShape(height: 32, width: 32, channels: 3), classes: 4)
            .namedParameters().map(\.0))
        let mapped = torchvisionKeys(stages: stages, bottleneck: bottleneck).compactMap(ImportedWeights.ourName)
        #expect(Set(mapped) == ours)
        #expect(mapped.count == ours.count, "no two keys map to one name")
    }

    @Test("akamaster's CIFAR ResNets (option A: no downsample tensors, 'linear', DataParallel's 'module.')")
    func akamasterNames() throws {
        let ours = Set(try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build().namedParameters().map(\.0))
        let keys = torchvisionKeys(stages: [3, 3, 3], bottleneck: false, classifier: "linear", firstStageDownsample: false)
            .filter { !$0.contains("downsample") }.map { "module." + $0 }
        #expect(Set(keys.compactMap(ImportedWeights.ourName)) == ours)
    }

    @Test("a state_dict under PyTorch's names becomes a model with the same weights; wrong ones are listed")
    func convert() throws {
        let original = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(classes: 10)
        original.initializeParameters(seed: 11)
        var byOurName: [String: SafeTensors.Tensor] = [:]
        for (name, p) in original.namedParameters() { byOurName[name] = SafeTensors.Tensor(shape: p.shape, values: p.values) }
        let keys = torchvisionKeys(stages: [3, 3, 3], bottleneck: false, classifier: "linear", firstStageDownsample: false)
            .filter { !$0.contains("downsample") }
        var torch: [String: SafeTensors.Tensor] = [:]
        for key in keys {
            if let ours = ImportedWeights.ourName(key) { torch[key] = byOurName[ours] } else { torch[key] = SafeTensors.Tensor(shape: [], values: [3]) }
        }
        // Our own (end-padded) weights under PyTorch's names: no permutation.
        let loaded = try ImportedWeights.model(from: torch, source: "renamed.safetensors",
                                               architecture: .init(name: "resnet20", options: ModelOptions(shortcut: .a)),
                                               optionAPadding: .end)
        #expect(loaded.card.classNames == ImportedWeights.cifar10Classes && loaded.card.input.shape == [3, 32, 32])
        #expect(loaded.card.preprocessing == ImportedWeights.cifarPreprocessing && loaded.card.provenance.origin == .imported)
        for (name, p) in loaded.model.namedParameters() { #expect(p.values == byOurName[name]!.values, "\(name)") }

        var missing = torch
        missing["layer2.1.conv2.weight"] = nil
        #expect(throws: ModelFileError.self) {
            try ImportedWeights.model(from: missing, source: "x", architecture: .init(name: "resnet20", options: ModelOptions(shortcut: .a)))
        }
        // The same weights read as shortcut B (projections expected) list what is missing.
        do {
            _ = try ImportedWeights.model(from: torch, source: "x", architecture: .init(name: "resnet20", options: ModelOptions(shortcut: .b)))
            Issue.record("option B accepted option A's weights")
        } catch let error as ModelFileError {
            #expect(error.description.contains("missing ('stage2.block1.shortcut"))
        }
    }
}
