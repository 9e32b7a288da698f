import Foundation
import ResNetData
import ResNetModels

/// Weights named as PyTorch's ResNets name them, renamed to SwiftResNet's.
///
/// torchvision's and timm's `resnet18`...`resnet152` and `wide_resnet50_2`/`101_2` share one
/// layout (`conv1`, `bn1`, `layer{1-4}.{i}.conv{1-3}`/`bn{1-3}`, `layer{s}.0.downsample.{0,1}`,
/// `fc`), and akamaster/pytorch_resnet_cifar10's CIFAR ResNets (option A) the same with `layer{1-3}`
/// and `linear`. Ours: `stem.conv`, `stem.bn`, `stage{s}.block{i+1}.conv{k}`/`bn{k}`,
/// `stage{s}.block1.shortcut.projection`/`.bn`, `fc`; batch norm's `weight`, `bias`,
/// `running_mean`, `running_var` are our `scale`, `shift`, `runningMean`, `runningVariance`.
/// `num_batches_tracked` counters are dropped (they do not change inference), and a
/// `module.` prefix (`nn.DataParallel`) is removed.
public enum ImportedWeights {
    /// Our name for a PyTorch state_dict key, or `nil` for keys that carry no weight
    /// (`num_batches_tracked`). Names already ours are kept.
    public static func ourName(_ key: String) -> String? {
        var name = key
        if name.hasPrefix("module.") { name.removeFirst(7) }
        let parts = name.split(separator: ".").map(String.init)
        guard let last = parts.last else { return name }
        if last == "num_batches_tracked" { return nil }
        func bnField(_ field: String) -> String {
            switch field {
            case "weight": "scale"
            case "bias": "shift"
            case "running_mean": "runningMean"
            case "running_var": "runningVariance"
            default: field
            }
        }
        switch parts.count {
        case 2 where parts[0] == "conv1": return "stem.conv.\(last)"
        case 2 where parts[0] == "bn1": return "stem.bn.\(bnField(last))"
        case 2 where parts[0] == "fc" || parts[0] == "linear": return "fc.\(last)"
        case 4 where parts[0].hasPrefix("layer"), 5 where parts[0].hasPrefix("layer") && parts[2] == "downsample":
            guard let stage = Int(parts[0].dropFirst(5)), let index = Int(parts[1]), stage >= 1, index >= 0 else { return name }
            let block = "stage\(stage).block\(index + 1)"
            if parts[2] == "downsample" {
                switch parts[3] {
                case "0": return "\(block).shortcut.projection.\(last)"
                case "1": return "\(block).shortcut.bn.\(bnField(last))"
                default: return name
                }
            }
            if parts[2].hasPrefix("conv") { return "\(block).\(parts[2]).\(last)" }
            if parts[2].hasPrefix("bn") { return "\(block).\(parts[2]).\(bnField(last))" }
            return name
        default:
            return name
        }
    }

    /// `tensors` with PyTorch names renamed to ours (see ``ourName(_:)``); two keys that map to
    /// one name are an error.
    public static func renamed(_ tensors: [String: SafeTensors.Tensor], path: String) throws -> [String: SafeTensors.Tensor] {
        var result: [String: SafeTensors.Tensor] = [:]
        for key in tensors.keys.sorted() {
            guard let name = ourName(key) else { continue }
            guard result[name] == nil else {
                throw ModelFileError.mismatch("\(path): two tensors, '\(key)' and another, are both '\(name)' in SwiftResNet's names")
            }
            result[name] = tensors[key]
        }
        return result
    }

    /// torchvision's ImageNet preprocessing (its weights' `transforms()`): the shorter side
    /// resized to 256 with antialiasing, the central 224x224, then ImageNet's channel mean and
    /// standard deviation.
    public static let imageNetPreprocessing = ModelCard.Preprocessing(
        resize: .shorterSideThenCenterCrop(shorterSide: 256),
        normalization: .perChannel(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]))

    /// akamaster/pytorch_resnet_cifar10's: 32x32 images as they are, ImageNet's channel
    /// statistics.
    public static let cifarPreprocessing = ModelCard.Preprocessing(
        resize: .stretch, normalization: .perChannel(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]))

    /// CIFAR-10's classes in label order.
    public static let cifar10Classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
}

extension ImportedWeights {
    /// Where option A puts the zero channels it adds: after the input's (ours), or half on each
    /// side (akamaster/pytorch_resnet_cifar10's `F.pad(..., planes // 4, planes // 4)`).
    public enum OptionAPadding: String, Sendable, CaseIterable { case end, symmetric }

    /// Weights of an option A network padded `symmetric`ally, permuted to the same function
    /// in ours: the channels of each stage's residual stream are reordered (our channel `j` is
    /// theirs `perm[j]`), in every convolution, batch norm and the classifier that touch the
    /// stream. Basic blocks only (akamaster's networks); names are ours.
    public static func permutedForSymmetricPadding(_ tensors: [String: SafeTensors.Tensor], configuration: ResNetConfiguration,
                                                   path: String) throws -> [String: SafeTensors.Tensor] {
        guard configuration.block == .basic, !configuration.preActivation else {
            throw ModelFileError.mismatch("\(path): symmetric option A padding is known for basic-block (v1) CIFAR networks only")
        }
        var result = tensors
        func permute(_ name: String, dimension: Int, _ perm: [Int]) throws {
            guard let t = result[name] else { return }
            guard t.shape.count > dimension, t.shape[dimension] == perm.count else {
                throw ModelFileError.mismatch("\(path): '\(name)' is \(t.shape), not \(perm.count) channels along dimension \(dimension)")
            }
            let outer = t.shape[..<dimension].reduce(1, *), inner = t.shape[(dimension + 1)...].reduce(1, *)
            var values = t.values
            for o in 0..<outer {
                for (j, source) in perm.enumerated() {
                    let to = (o * perm.count + j) * inner, from = (o * perm.count + source) * inner
                    for i in 0..<inner { values[to + i] = t.values[from + i] }
                }
            }
            result[name] = SafeTensors.Tensor(shape: t.shape, values: values)
        }
        func permuteBatchNorm(_ prefix: String, _ perm: [Int]) throws {
            for field in ["scale", "shift", "runningMean", "runningVariance"] { try permute("\(prefix).\(field)", dimension: 0, perm) }
        }
        var stream = Array(0..<configuration.stemWidth)
        for (s, (blocks, width)) in zip(configuration.blocksPerStage, configuration.stageWidths).enumerated() {
            var perm = stream
            if width != stream.count {
                let pad = (width - stream.count) / 2
                guard pad * 2 + stream.count == width else {
                    throw ModelFileError.mismatch("\(path): symmetric padding from \(stream.count) to \(width) channels is not even")
                }
                let kept = stream.map { $0 + pad }
                let keptSet = Set(kept)
                perm = kept + (0..<width).filter { !keptSet.contains($0) }
            }
            for b in 1...max(blocks, 1) {
                let block = "stage\(s + 1).block\(b)"
                try permute("\(block).conv1.weight", dimension: 1, b == 1 ? stream : perm)
                try permute("\(block).conv2.weight", dimension: 0, perm)
                try permuteBatchNorm("\(block).bn2", perm)
            }
            stream = perm
        }
        try permute("fc.weight", dimension: 1, stream)
        return result
    }

    /// A model card and network with `tensors` (PyTorch's names or ours) loaded into the zoo
    /// network `model`: the class count comes from the classifier's weight unless given; the
    /// preprocessing and class names default to torchvision's ImageNet ones for ImageNet
    /// networks with 1,000 classes and to akamaster's CIFAR-10 ones for CIFAR networks with 10.
    ///
    /// - Throws: ``ModelFileError/mismatch(_:)`` listing missing, unexpected and mis-shaped
    ///   tensors (the verified load of ``loadWeights(_:into:path:)``).
    /// - Parameter optionAPadding: how the source pads option A shortcuts; by default
    ///   `symmetric` when the tensors have PyTorch's names (akamaster's networks), `end` when
    ///   they have ours.
    public static func model(from tensors: [String: SafeTensors.Tensor], source: String, architecture: ModelCard.Architecture,
                             input: (height: Int, width: Int)? = nil, classNames: [String]? = nil,
                             preprocessing: ModelCard.Preprocessing? = nil, optionAPadding: OptionAPadding? = nil) throws -> LoadedModel {
        var renamed = try renamed(tensors, path: source)
        let definition = try ModelCard.definition(of: architecture)
        let pytorchNames = tensors.keys.contains { ourName($0) != $0 }
        if architecture.options.shortcut == .a, let configuration = definition.configuration, configuration.shortcut != nil,
           (optionAPadding ?? (pytorchNames ? .symmetric : .end)) == .symmetric {
            renamed = try permutedForSymmetricPadding(renamed, configuration: configuration, path: source)
        }
        guard let classifier = renamed["fc.weight"], classifier.shape.count == 2 else {
            throw ModelFileError.mismatch("\(source): no classifier weight ('fc.weight', or PyTorch's 'fc.weight'/'linear.weight') of two dimensions")
        }
        let classes = classifier.shape[0]
        let imageNet = definition.configuration?.stem == .imageNet
        let names: [String]
        if let classNames {
            guard classNames.count == classes else {
                throw ModelFileError.mismatch("\(source): \(classNames.count) class names for a classifier of \(classes) classes")
            }
            names = classNames
        } else if classes == 10, !imageNet {
            names = cifar10Classes
        } else if classes == 1_000, imageNet, let imagenet = try? imageNetClasses() {
            names = imagenet
        } else {
            names = (0..<classes).map { "class \($0)" }
        }
        let side = input ?? (definition.defaultInput.height, definition.defaultInput.width)
        let card = ModelCard(
            architecture: architecture, input: .init(channels: 3, height: side.height, width: side.width, channelOrder: .rgb),
            preprocessing: preprocessing ?? (imageNet ? imageNetPreprocessing : cifarPreprocessing), classNames: names,
            provenance: .init(origin: .imported, source: source, software: "SwiftResNet",
                              created: ISO8601DateFormatter().string(from: Date())))
        let model = try card.validated().buildModel()
        try loadWeights(renamed, into: model, path: source)
        model.eval()
        return LoadedModel(url: URL(fileURLWithPath: source), card: card, model: model, whitening: nil, metadata: [:])
    }

    /// The tensors of a weights file by name: a safetensors file, or a PyTorch checkpoint
    /// (`torch.save(model.state_dict())`, zip or legacy format, read without executing anything:
    /// ``PyTorchCheckpoint``). Integer tensors are dropped when they carry no weight
    /// (`num_batches_tracked`) and refused otherwise.
    public static func readTensors(path: String) throws -> [String: SafeTensors.Tensor] {
        if path.hasSuffix(".safetensors") { return try SafeTensors.read(URL(fileURLWithPath: path)).tensors }
        var tensors: [String: SafeTensors.Tensor] = [:]
        for t in try PyTorchCheckpoint.read(path: path) {
            if !t.isFloatingPoint {
                guard ourName(t.name) == nil else {
                    throw ModelFileError.mismatch("\(path): tensor '\(t.name)' holds integers (\(t.dtype.rawValue)); a network's weights are floating point")
                }
                continue
            }
            guard tensors[t.name] == nil else { throw ModelFileError.invalidFile("\(path): the tensor '\(t.name)' appears twice") }
            tensors[t.name] = SafeTensors.Tensor(shape: t.shape, values: t.values)
        }
        return tensors
    }

    /// The 1,000 ImageNet class names in torchvision's order (`data/imagenet-classes.txt`, or
    /// `RESNET_IMAGENET_CLASSES`).
    public static func imageNetClasses(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [String] {
        let path = environment["RESNET_IMAGENET_CLASSES"] ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("data/imagenet-classes.txt").path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ModelFileError.io("\(path): the ImageNet class names are missing (set RESNET_IMAGENET_CLASSES to a file of 1,000 lines)")
        }
        let names = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
        guard names.count == 1_000 else { throw ModelFileError.invalidFile("\(path): \(names.count) class names, not 1,000") }
        return names
    }
}
