import Foundation
import ResNetData
import ResNetInference
import ResNetLayers
import ResNetModels

/// Starting from a trained or imported model (`resnet train --from MODEL`): which of its weights
/// to take and which layers to keep as they are.
public struct TransferSettings: Codable, Sendable, Equatable {
    /// The model file (or run directory) whose weights start the run.
    public var model: String
    /// `true`: a new classifier for the data's classes (drawn from the run's seed); `false`:
    /// keep the model's, which must have as many classes.
    public var newHead: Bool
    /// What stays frozen: ``Freeze``.
    public var freeze: Freeze

    public init(model: String, newHead: Bool, freeze: Freeze) {
        self.model = model
        self.newHead = newHead
        self.freeze = freeze
    }

    /// The layers kept as they are: their weights do not learn and their batch norms keep their
    /// running statistics (evaluation mode), as is usual when fine-tuning.
    public enum Freeze: Codable, Sendable, Equatable {
        case none
        case stem
        /// The stem and the first `k` stages.
        case stages(Int)
        /// Everything but the classifier (a linear probe that still runs the whole network).
        case backbone

        /// Parses `none`, `stem`, `stages:K` (or `stages:1-K`) and `backbone`.
        public init(parsing text: String) throws {
            switch text {
            case "none": self = .none
            case "stem": self = .stem
            case "backbone": self = .backbone
            default:
                let value = text.hasPrefix("stages:") ? String(text.dropFirst(7)) : ""
                let last = value.hasPrefix("1-") ? String(value.dropFirst(2)) : value
                guard let k = Int(last), k >= 1 else {
                    throw TrainingError.invalidOption("--freeze must be none, stem, stages:K (the stem and the first K stages) or backbone, got '\(text)'")
                }
                self = .stages(k)
            }
        }

        /// Freezes the part of `model` this names.
        public func apply(to model: any Layer) throws {
            guard self != .none else { return }
            guard let resnet = model as? ResNet else {
                throw TrainingError.invalidOption("--freeze applies to residual and plain networks (stem, stages, classifier)")
            }
            switch self {
            case .none: break
            case .stem: resnet.stem.freeze()
            case .stages(let k):
                guard k <= resnet.stages.count else {
                    throw TrainingError.invalidOption("--freeze stages:\(k): the network has \(resnet.stages.count) stages")
                }
                resnet.stem.freeze()
                for stage in resnet.stages.prefix(k) { stage.freeze() }
            case .backbone:
                resnet.stem.freeze()
                for stage in resnet.stages { stage.freeze() }
            }
        }
    }

    /// Copies the starting model's weights into `model` (the run's network): every tensor but
    /// the classifier's when ``newHead``, each with its shape.
    public func loadStartingWeights(into model: any Layer) throws {
        let source = try TrainedModel(self.model).loaded
        let tensors = ModelFile.tensors(of: source.model)
        for (name, parameter) in model.namedParameters() {
            if newHead && name.hasPrefix("fc.") { continue }
            guard let t = tensors[name] else {
                throw TrainingError.invalidOption("\(source.url.path) has no tensor '\(name)': it is not a \(source.card.architecture.name) with these options")
            }
            guard t.shape == parameter.shape else {
                let hint = name.hasPrefix("fc.") ? ": the model has \(source.card.classNames.count) classes and the data another count (--head new)" : ""
                throw TrainingError.invalidOption("'\(name)' is \(t.shape) in \(source.url.path) and \(parameter.shape) here\(hint)")
            }
            try parameter.setValues(t.values)
        }
    }
}
