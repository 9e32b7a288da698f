import Foundation
import ResNetData
import ResNetLayers
import ResNetModels

/// Writes a model's weights under PyTorch's names, for the networks that have a PyTorch
/// counterpart, so that a PyTorch user loads them with
/// `model.load_state_dict(safetensors.torch.load_file("model.safetensors"))`:
///
/// - the ImageNet ResNets `resnet18` ... `resnet152` with shortcut B and the stride on the 3x3
///   convolution: torchvision's (and timm's) `resnet18` ... `resnet152(num_classes=K)` names
///   (`conv1`, `bn1`, `layer{s}.{i}.conv{k}`/`bn{k}`, `layer{s}.0.downsample.{0,1}`, `fc`);
/// - the CIFAR ResNets `resnet{6n+2}` with shortcut A: akamaster/pytorch_resnet_cifar10's
///   `resnet20` ... `resnet1202` names (the same, `linear` for the classifier, no shortcut
///   tensors). akamaster pads option A's new channels on both sides where SwiftResNet appends
///   them; with `optionAPadding: .symmetric` (the default) the residual stream's channels are
///   permuted so that akamaster's network computes the same function (the inverse of what
///   ``ImportedWeights/permutedForSymmetricPadding(_:configuration:path:)`` does on import);
///   `.end` keeps our order, for a PyTorch network that appends the zero channels.
///
/// The names are the inverse of ``ImportedWeights/ourName(_:)``, so `resnet convert` reads the
/// file back into the same network. Batch norm's `num_batches_tracked` counters are not written
/// (PyTorch fills them in). The model card's JSON is kept in the file's metadata under
/// ``cardKey`` (not under the model-file key: the file is not a SwiftResNet model file).
public enum TorchvisionExport {
    /// The metadata key of the exported model's card.
    public static let cardKey = "resnet.exported_model"
    /// The metadata key of the layout: `torchvision` or `akamaster`.
    public static let layoutKey = "resnet.layout"
    /// The metadata key of option A's padding (`symmetric` or `end`), for akamaster layouts.
    public static let optionAPaddingKey = "resnet.option_a_padding"

    /// The PyTorch network whose names a model takes.
    public enum Layout: String, Sendable {
        /// torchvision's ImageNet ResNets (`fc` classifier, `downsample` projections).
        case torchvision
        /// akamaster/pytorch_resnet_cifar10's CIFAR ResNets with option A (`linear` classifier).
        case akamaster
    }

    /// The layout of `card`'s network, or why it has none.
    ///
    /// - Throws: ``ExportError/noCounterpart(_:)`` naming `source` and the reason.
    public static func layout(of card: ModelCard, source: String) throws -> Layout {
        let architecture = card.architecture
        let configuration = try card.definition().configuration
        func none(_ why: String) -> ExportError {
            let shortcut = configuration?.shortcut.map { " (shortcut \($0))" } ?? ""
            return .noCounterpart("\(source): \(architecture.name)\(shortcut) has no PyTorch counterpart to export to: \(why); torchvision's resnet18...resnet152 (shortcut B) and akamaster's CIFAR resnet20...resnet1202 (shortcut A) have one")
        }
        guard let configuration else { throw none("svgg is not a torchvision or akamaster network") }
        guard configuration.shortcut != nil else { throw none("plain networks have no shortcuts") }
        guard !configuration.preActivation else {
            throw none("pre-activation networks (resnet...v2, Wide ResNets wrn-...) are not torchvision's (whose wide_resnet50_2 is a bottleneck v1 network)")
        }
        guard card.input.channels == 3 else { throw none("its input has \(card.input.channels) channel(s); PyTorch's ResNets take 3") }
        switch configuration.stem {
        case .imageNet:
            guard configuration.shortcut == .b else { throw none("torchvision's ImageNet ResNets use shortcut B") }
            guard !configuration.strideOnFirst1x1 else { throw none("torchvision's bottlenecks stride the 3x3 convolution, not the first 1x1") }
            return .torchvision
        case .cifar:
            guard configuration.shortcut == .a, configuration.block == .basic else {
                throw none("akamaster's CIFAR ResNets use shortcut A (its option B names are not SwiftResNet's import names)")
            }
            return .akamaster
        }
    }

    /// PyTorch's name of one of our parameter names (the inverse of
    /// ``ImportedWeights/ourName(_:)``), or `nil` for a name outside a ResNet's layout.
    /// `classifier` is `fc` (torchvision) or `linear` (akamaster).
    public static func pytorchName(_ ours: String, classifier: String = "fc") -> String? {
        let parts = ours.split(separator: ".").map(String.init)
        guard let last = parts.last else { return nil }
        func field(_ f: String) -> String? {
            switch f {
            case "scale": "weight"
            case "shift": "bias"
            case "runningMean": "running_mean"
            case "runningVariance": "running_var"
            default: nil
            }
        }
        switch parts.count {
        case 3 where parts[0] == "stem" && parts[1] == "conv": return "conv1.\(last)"
        case 3 where parts[0] == "stem" && parts[1] == "bn": return field(last).map { "bn1.\($0)" }
        case 2 where parts[0] == "fc": return "\(classifier).\(last)"
        case 4, 5:
            guard parts[0].hasPrefix("stage"), let stage = Int(parts[0].dropFirst(5)), stage >= 1,
                  parts[1].hasPrefix("block"), let block = Int(parts[1].dropFirst(5)), block >= 1 else { return nil }
            let prefix = "layer\(stage).\(block - 1)"
            if parts.count == 4 {
                if parts[2].hasPrefix("conv") { return "\(prefix).\(parts[2]).\(last)" }
                if parts[2].hasPrefix("bn") { return field(last).map { "\(prefix).\(parts[2]).\($0)" } }
                return nil
            }
            guard parts[2] == "shortcut" else { return nil }
            switch parts[3] {
            case "projection": return "\(prefix).downsample.0.\(last)"
            case "bn": return field(last).map { "\(prefix).downsample.1.\($0)" }
            default: return nil
            }
        default:
            return nil
        }
    }

    /// `model`'s tensors (built for `card`) under PyTorch's names.
    ///
    /// - Throws: ``ExportError/noCounterpart(_:)`` for a network without a PyTorch counterpart.
    public static func tensors(model: Module, card: ModelCard, optionAPadding: ImportedWeights.OptionAPadding = .symmetric,
                               source: String) throws -> [String: SafeTensors.Tensor] {
        let layout = try layout(of: card, source: source)
        var ours = ModelFile.tensors(of: model)
        if layout == .akamaster, optionAPadding == .symmetric, let configuration = try card.definition().configuration {
            ours = try unpermuted(ours, configuration: configuration, source: source)
        }
        var result: [String: SafeTensors.Tensor] = [:]
        for (name, tensor) in ours {
            // The import's renaming must give our name back: the two stay each other's inverse.
            guard let theirs = pytorchName(name, classifier: layout == .akamaster ? "linear" : "fc"),
                  ImportedWeights.ourName(theirs) == name, result[theirs] == nil else {
                throw ExportError.noCounterpart("\(source): the parameter '\(name)' has no name in the \(layout) layout")
            }
            result[theirs] = tensor
        }
        return result
    }

    /// Writes ``tensors(model:card:optionAPadding:source:)`` of `loaded` (with `card` instead of
    /// its own when given) as a safetensors file, atomically: on any error nothing is left behind.
    public static func write(_ loaded: LoadedModel, card: ModelCard? = nil, optionAPadding: ImportedWeights.OptionAPadding = .symmetric,
                             to url: URL) throws {
        let card = card ?? loaded.card
        let source = loaded.url.path
        let tensors = try tensors(model: loaded.model, card: card, optionAPadding: optionAPadding, source: source)
        var metadata = ["format": "pt", cardKey: try card.validated().encoded(), layoutKey: try layout(of: card, source: source).rawValue]
        if try layout(of: card, source: source) == .akamaster { metadata[optionAPaddingKey] = optionAPadding.rawValue }
        try SafeTensors.write(tensors, metadata: metadata, to: url)
    }

    /// The inverse of ``ImportedWeights/permutedForSymmetricPadding(_:configuration:path:)``:
    /// weights whose symmetric-padding permutation gives `tensors`. Found by permuting each
    /// tensor's element indices with that very function, so the two cannot drift apart.
    static func unpermuted(_ tensors: [String: SafeTensors.Tensor], configuration: ResNetConfiguration,
                           source: String) throws -> [String: SafeTensors.Tensor] {
        guard tensors.values.allSatisfy({ $0.values.count < 1 << 24 }) else {
            throw ExportError.noCounterpart("\(source): a tensor of more than 2^24 values (not one of akamaster's networks)")
        }
        let probes = tensors.mapValues { SafeTensors.Tensor(shape: $0.shape, values: $0.values.indices.map(Float.init)) }
        let moved = try ImportedWeights.permutedForSymmetricPadding(probes, configuration: configuration, path: source)
        var result: [String: SafeTensors.Tensor] = [:]
        for (name, tensor) in tensors {
            // moved[k] = probe[source(k)]: the import takes element source(k) to k, so ours[k] goes to source(k).
            var values = [Float](repeating: 0, count: tensor.values.count)
            var filled = [Bool](repeating: false, count: values.count)
            for (k, index) in moved[name]!.values.enumerated() {
                values[Int(index)] = tensor.values[k]
                filled[Int(index)] = true
            }
            guard !filled.contains(false) else {
                throw ExportError.noCounterpart("\(source): option A's channel permutation of '\(name)' is not one to one")
            }
            result[name] = SafeTensors.Tensor(shape: tensor.shape, values: values)
        }
        return result
    }
}
