import Foundation
import ResNetData
import ResNetLayers
import ResNetModels

/// What a model is beside its weights: enough to rebuild the network, to turn an image file into
/// its input exactly as training did, and to name its outputs, whether the model was trained
/// here or imported.
///
/// A model file is a safetensors file whose metadata holds the card as JSON under
/// ``metadataKey``, beside the network's tensors (and, for ZCA, the fitted whitening under
/// ``zcaMeanTensor`` and ``zcaMatrixTensor``). A training run's checkpoints carry a card too,
/// plus the run's configuration and state under their own keys.
///
/// Everything in a card comes from outside: ``validated()`` checks it where it is decoded
/// (``decode(_:path:)``), before anything is built or allocated from it.
public struct ModelCard: Codable, Sendable, Equatable {
    /// The card's format version; a newer one is refused instead of misread.
    public static let currentFormat = 1
    /// The safetensors metadata key of the card.
    public static let metadataKey = "resnet.model"
    /// The tensors of a fitted ZCA whitening: its per-pixel mean (`C*H*W`) and its matrix.
    public static let zcaMeanTensor = "preprocessing/zca.mean"
    public static let zcaMatrixTensor = "preprocessing/zca.matrix"

    /// The largest input side and class count a card may ask for. They bound what a card can make
    /// us allocate before the network's own bound (``ModelDefinition/maximumParameterCount``).
    public static let maximumInputSide = 4_096
    public static let maximumClassCount = ModelDefinition.maximumClassCount

    public var format: Int
    public var architecture: Architecture
    public var input: Input
    public var preprocessing: Preprocessing
    /// One name per output, in output order.
    public var classNames: [String]
    public var provenance: Provenance

    /// A network of the zoo: its name (`resnet20`, `resnet50`, `wrn-28-10`, ...) and options.
    public struct Architecture: Codable, Sendable, Equatable {
        public var name: String
        public var options: ModelOptions
        public init(name: String, options: ModelOptions) {
            self.name = name
            self.options = options
        }
    }

    /// The order of an input's channels.
    public enum ChannelOrder: String, Codable, Sendable, CaseIterable {
        case rgb, bgr, gray
        /// Channels the order has.
        public var channels: Int { self == .gray ? 1 : 3 }
    }

    /// The network's input: one image of `channels x height x width`.
    public struct Input: Codable, Sendable, Equatable {
        public var channels: Int
        public var height: Int
        public var width: Int
        public var channelOrder: ChannelOrder
        public init(channels: Int, height: Int, width: Int, channelOrder: ChannelOrder) {
            self.channels = channels
            self.height = height
            self.width = width
            self.channelOrder = channelOrder
        }
        /// `[C, H, W]`.
        public var shape: [Int] { [channels, height, width] }
    }

    /// How an image of any size becomes the input's size.
    public enum Resize: Sendable, Equatable {
        /// To the input's height x width, aspect ratio not kept (Pillow's bilinear filter with
        /// antialiasing). What training on CIFAR-sized data does to a photo.
        case stretch
        /// The shorter side to `shorterSide` keeping the aspect ratio, then the central
        /// height x width (torchvision's ImageNet evaluation: 256, then 224x224).
        case shorterSideThenCenterCrop(shorterSide: Int)
    }

    /// Resizing, then the pixel normalization training used.
    ///
    /// Stored with explicit kinds, for other programs to read: `{"resize": {"kind": "stretch"}}`
    /// or `{"kind": "shorter_side_then_center_crop", "shorterSide": 256}`; `{"normalization":
    /// {"kind": "none" | "per_channel" (mean, std) | "per_pixel_mean" (mean, C*H*W values) |
    /// "zca" (epsilon; the fitted mean and matrix are tensors of the file)}`. Every
    /// normalization first scales a byte `v` to `v / 255`.
    public struct Preprocessing: Codable, Sendable, Equatable {
        public var resize: Resize
        public var normalization: Normalization
        public init(resize: Resize, normalization: Normalization) {
            self.resize = resize
            self.normalization = normalization
        }

        private enum Keys: String, CodingKey { case resize, normalization, kind, shorterSide, mean, std, epsilon }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            let r = try c.nestedContainer(keyedBy: Keys.self, forKey: .resize)
            switch try r.decode(String.self, forKey: .kind) {
            case "stretch": resize = .stretch
            case "shorter_side_then_center_crop": resize = .shorterSideThenCenterCrop(shorterSide: try r.decode(Int.self, forKey: .shorterSide))
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .kind, in: r, debugDescription: "unknown resize '\(other)' (stretch, shorter_side_then_center_crop)")
            }
            let n = try c.nestedContainer(keyedBy: Keys.self, forKey: .normalization)
            switch try n.decode(String.self, forKey: .kind) {
            case "none": normalization = .none
            case "per_channel": normalization = .perChannel(mean: try n.decode([Float].self, forKey: .mean), std: try n.decode([Float].self, forKey: .std))
            case "per_pixel_mean": normalization = .perPixelMean(try n.decode([Float].self, forKey: .mean))
            case "zca": normalization = .zca(epsilon: try n.decode(Float.self, forKey: .epsilon))
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .kind, in: n, debugDescription: "unknown normalization '\(other)' (none, per_channel, per_pixel_mean, zca)")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            var r = c.nestedContainer(keyedBy: Keys.self, forKey: .resize)
            switch resize {
            case .stretch: try r.encode("stretch", forKey: .kind)
            case .shorterSideThenCenterCrop(let side):
                try r.encode("shorter_side_then_center_crop", forKey: .kind)
                try r.encode(side, forKey: .shorterSide)
            }
            var n = c.nestedContainer(keyedBy: Keys.self, forKey: .normalization)
            switch normalization {
            case .none: try n.encode("none", forKey: .kind)
            case .perChannel(let mean, let std):
                try n.encode("per_channel", forKey: .kind)
                try n.encode(mean, forKey: .mean)
                try n.encode(std, forKey: .std)
            case .perPixelMean(let mean):
                try n.encode("per_pixel_mean", forKey: .kind)
                try n.encode(mean, forKey: .mean)
            case .zca(let epsilon):
                try n.encode("zca", forKey: .kind)
                try n.encode(epsilon, forKey: .epsilon)
            }
        }
    }

    /// Where the weights come from.
    public struct Provenance: Codable, Sendable, Equatable {
        public enum Origin: String, Codable, Sendable { case trained, imported }
        public var origin: Origin
        /// The data set it was trained on (as `--dataset` names it) and where it was.
        public var dataset: String?
        public var dataPath: String?
        /// For a model trained here: the recipe, seed, run directory, and the epoch and step of
        /// these weights.
        public var recipe: String?
        public var seed: UInt64?
        public var run: String?
        public var epoch: Int?
        public var step: Int?
        /// Measured figures, e.g. `validation_top1` (fractions in 0...1).
        public var metrics: [String: Double]
        /// For an imported model: the file or address it came from.
        public var source: String?
        /// The program that wrote the card and when (ISO 8601).
        public var software: String?
        public var created: String?

        public init(origin: Origin, dataset: String? = nil, dataPath: String? = nil, recipe: String? = nil, seed: UInt64? = nil,
                    run: String? = nil, epoch: Int? = nil, step: Int? = nil, metrics: [String: Double] = [:],
                    source: String? = nil, software: String? = nil, created: String? = nil) {
            self.origin = origin
            self.dataset = dataset
            self.dataPath = dataPath
            self.recipe = recipe
            self.seed = seed
            self.run = run
            self.epoch = epoch
            self.step = step
            self.metrics = metrics
            self.source = source
            self.software = software
            self.created = created
        }
    }

    public init(architecture: Architecture, input: Input, preprocessing: Preprocessing, classNames: [String],
                provenance: Provenance) {
        format = Self.currentFormat
        self.architecture = architecture
        self.input = input
        self.preprocessing = preprocessing
        self.classNames = classNames
        self.provenance = provenance
    }

    /// The network's definition, parsed from ``architecture``.
    public func definition() throws -> ModelDefinition { try Self.definition(of: architecture) }

    /// The zoo's definition of `architecture`, its errors as the card's.
    public static func definition(of architecture: Architecture) throws -> ModelDefinition {
        do { return try ModelDefinition(name: architecture.name, options: architecture.options) } catch let error as ModelError {
            throw ModelFileError.invalidCard("the model card's architecture: \(error.description)")
        }
    }

    /// The network, with initial (seeded) weights; load a file's weights into it with
    /// ``ModelFile/load(_:)``.
    public func buildModel(seed: UInt64 = 0) throws -> any Layer {
        let model: any Layer
        do {
            model = try definition().build(input: ImageShape(height: input.height, width: input.width, channels: input.channels),
                                           classes: classNames.count)
        } catch let error as ModelError {
            throw ModelFileError.invalidCard("the model card's network cannot be built: \(error.description)")
        }
        model.initializeParameters(seed: seed)
        return model
    }

    /// The card if every field is usable, else the first problem.
    public func validated() throws -> ModelCard {
        func bad(_ why: String) -> ModelFileError { .invalidCard("the model card \(why)") }
        guard format >= 1, format <= Self.currentFormat else {
            throw bad("has format \(format); this SwiftResNet reads formats up to \(Self.currentFormat) (a newer SwiftResNet wrote it?)")
        }
        let definition = try definition()
        if let dropout = architecture.options.dropout, !(dropout >= 0 && dropout < 1) {
            throw bad("asks for dropout \(dropout); it must be in 0..<1")
        }
        let side = 1...Self.maximumInputSide
        guard side.contains(input.height), side.contains(input.width) else {
            throw bad("asks for \(input.height)x\(input.width) inputs; each side must be in 1...\(Self.maximumInputSide)")
        }
        guard input.channels == input.channelOrder.channels else {
            throw bad("gives \(input.channels) input channels in \(input.channelOrder) order, which has \(input.channelOrder.channels)")
        }
        guard input.height >= definition.minimumInputSize, input.width >= definition.minimumInputSize else {
            throw bad("asks for \(input.height)x\(input.width) inputs; \(architecture.name) needs at least \(definition.minimumInputSize)x\(definition.minimumInputSize)")
        }
        guard (1...Self.maximumClassCount).contains(classNames.count) else {
            throw bad("names \(classNames.count) classes; a model has 1...\(Self.maximumClassCount)")
        }
        if let long = classNames.first(where: { $0.utf8.count > 1_000 }) {
            throw bad("has a class name of \(long.utf8.count) bytes (at most 1,000)")
        }
        let elements = input.channels * input.height * input.width
        switch preprocessing.normalization {
        case .none: break
        case .perChannel(let mean, let std):
            guard mean.count == input.channels, std.count == input.channels else {
                throw bad("gives \(mean.count) channel means and \(std.count) deviations for \(input.channels) channels")
            }
            guard mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw bad("has a non-finite channel mean or a deviation that is not positive")
            }
        case .perPixelMean(let mean):
            guard mean.count == elements else { throw bad("gives \(mean.count) pixel means for \(elements) input values") }
            guard mean.allSatisfy(\.isFinite) else { throw bad("has a non-finite pixel mean") }
        case .zca(let epsilon):
            guard epsilon.isFinite, epsilon > 0 else { throw bad("has ZCA epsilon \(epsilon); it must be positive") }
            guard elements <= ZCAWhitening.maximumDimension else {
                throw bad("whitens \(elements)-value inputs; ZCA handles at most \(ZCAWhitening.maximumDimension)")
            }
        }
        if case .shorterSideThenCenterCrop(let shorter) = preprocessing.resize {
            guard shorter >= max(input.height, input.width), shorter <= 4 * Self.maximumInputSide else {
                throw bad("resizes the shorter side to \(shorter), which must be at least the crop (\(input.height)x\(input.width)) and at most \(4 * Self.maximumInputSide)")
            }
        }
        if let bad = provenance.metrics.first(where: { !$0.value.isFinite }) {
            throw self.bad("metric", bad.key)
        }
        return self
    }

    private func bad(_ what: String, _ key: String) -> ModelFileError {
        .invalidCard("the model card's \(what) '\(key)' is not a finite number")
    }

    /// The JSON a model file stores.
    public func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Decodes and validates a card's JSON; `path` names the file in errors.
    public static func decode(_ json: String, path: String) throws -> ModelCard {
        let card: ModelCard
        let decoder = JSONDecoder()
        do { card = try decoder.decode(ModelCard.self, from: Data(json.utf8)) } catch let error as DecodingError {
            throw ModelFileError.invalidCard("\(path): unreadable model card (\(error.summary))")
        }
        do { return try card.validated() } catch let error as ModelFileError {
            throw ModelFileError.invalidCard("\(path): \(error.description)")
        }
    }
}

extension DecodingError {
    /// One line for the user: the key path and what was wrong.
    public var summary: String {
    func path(_ keys: [CodingKey]) -> String { keys.map(\.stringValue).joined(separator: ".") }
    switch self {
    case .typeMismatch(let type, let context): return "'\(path(context.codingPath))' should be \(type)"
    case .valueNotFound(_, let context): return "'\(path(context.codingPath))' is missing a value"
    case .keyNotFound(let key, let context): return "'\(path(context.codingPath + [key]))' is missing"
    case .dataCorrupted(let context):
        let at = path(context.codingPath)
        return at.isEmpty ? context.debugDescription : "'\(at)': \(context.debugDescription)"
    @unknown default: return "\(self)"
    }
    }
}
