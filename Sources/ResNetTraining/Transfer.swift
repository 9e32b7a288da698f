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
    /// The factor on the learning rate of every layer but the classifier (`--backbone-lr-scale`):
    /// the pretrained layers move less than the new head, a common fine-tuning choice (e.g. 0.1).
    /// 1: one rate for all; 0 to 1.
    public var backboneLearningRateScale: Float

    public init(model: String, newHead: Bool, freeze: Freeze, backboneLearningRateScale: Float = 1) {
        self.model = model
        self.newHead = newHead
        self.freeze = freeze
        self.backboneLearningRateScale = backboneLearningRateScale
    }

    private enum CodingKeys: String, CodingKey { case model, newHead, freeze, backboneLearningRateScale }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        newHead = try c.decode(Bool.self, forKey: .newHead)
        freeze = try c.decode(Freeze.self, forKey: .freeze)
        // Runs made before the option existed have one rate for all layers.
        backboneLearningRateScale = try c.decodeIfPresent(Float.self, forKey: .backboneLearningRateScale) ?? 1
    }

    /// Checks the settings a run file or an old run's config.json carries.
    public func validated() throws -> TransferSettings {
        guard backboneLearningRateScale.isFinite, (0...1).contains(backboneLearningRateScale) else {
            throw TrainingError.invalidOption("--backbone-lr-scale must be between 0 and 1, got \(backboneLearningRateScale)")
        }
        if case .stages(let k) = freeze, k < 1 {
            throw TrainingError.invalidOption("--freeze stages:\(k): K must be at least 1")
        }
        return self
    }

    /// Gives every parameter outside the classifier (`fc.`) the backbone's learning-rate factor.
    public func applyLearningRateScale(to model: any Layer) {
        for (name, parameter) in model.namedParameters() {
            parameter.learningRateScale = name.hasPrefix("fc.") ? 1 : backboneLearningRateScale
        }
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

/// Part of a data set's classes, and at most so many training images of each: the small data
/// sets transfer learning is for (`--classes 5-9 --per-class 100`).
public struct DataSubset: Codable, Sendable, Equatable {
    /// The labels kept, in the order they become the new labels 0, 1, ...
    public var classes: [Int]
    /// Training images kept per class (the first ones of a seeded shuffle); `nil`: all.
    public var perClass: Int?

    public init(classes: [Int], perClass: Int? = nil) {
        self.classes = classes
        self.perClass = perClass
    }

    /// Parses `5-9` or `0,2,4` (labels) and a per-class count.
    public init(parsing text: String, perClass: Int?) throws {
        func bad() -> TrainingError { .invalidOption("--classes must be a range like 5-9 or a list like 0,2,4 of labels, got '\(text)'") }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, b >= a, b - a < 1_000_000 {
            classes = Array(a...b)
        } else {
            let list = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !list.isEmpty, list.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw bad() }
            classes = list.map { $0! }
        }
        guard Set(classes).count == classes.count else { throw bad() }
        if let perClass { guard perClass >= 1 else { throw TrainingError.invalidOption("--per-class must be at least 1, got \(perClass)") } }
        self.perClass = perClass
    }

    /// `data` reduced to these classes (relabelled 0..<k) in every split, and to `perClass`
    /// training images of each (a shuffle seeded by `seed`); test images are all kept.
    public func apply(to data: LoadedDataset, seed: UInt64) throws -> LoadedDataset {
        guard let high = classes.max(), high < data.classNames.count else {
            throw TrainingError.invalidOption("--classes \(classes.map(String.init).joined(separator: ",")): \(data.name) has \(data.classNames.count) classes")
        }
        let names = classes.map { data.classNames[$0] }
        var newLabel = [Int32: Int32]()
        for (k, c) in classes.enumerated() { newLabel[Int32(c)] = Int32(k) }
        var generator = DataRandom(seed: seed ^ 0x5B5E_7C1A55)
        let splits = data.splits.map { split -> (name: String, data: ImageDataset) in
            var chosen: [Int] = []
            var byClass = [Int32: [Int]]()
            for (i, label) in split.data.labels.enumerated() where newLabel[label] != nil { byClass[label, default: []].append(i) }
            for c in classes {
                var members = byClass[Int32(c)] ?? []
                if split.name == "train", let perClass, members.count > perClass {
                    members.shuffle(using: &generator)
                    members = Array(members.prefix(perClass)).sorted()
                }
                chosen += members
            }
            chosen.sort()
            let subset = split.data.subset(chosen)
            let relabelled = ImageDataset(images: subset.images, labels: subset.labels.map { newLabel[$0]! }, channels: subset.channels,
                                          height: subset.height, width: subset.width, classNames: names)
            return (split.name, relabelled)
        }
        return LoadedDataset(name: data.name, classNames: names, splits: splits)
    }
}

extension RunConfiguration {
    /// The run's data from the loaded data set: its class subset, if any (the subset's
    /// shuffle is seeded by the run's seed).
    public func prepared(_ data: LoadedDataset) throws -> LoadedDataset {
        guard let dataSubset else { return data }
        return try dataSubset.apply(to: data, seed: seed)
    }
}
