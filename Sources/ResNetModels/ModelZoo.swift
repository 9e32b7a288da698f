import ResNetLayers
import ResNetTensors

/// The size of one input image.
public struct ImageShape: Sendable, Equatable, CustomStringConvertible {
    public var height: Int
    public var width: Int
    public var channels: Int

    public init(height: Int, width: Int, channels: Int) {
        self.height = height
        self.width = width
        self.channels = channels
    }

    /// Parses `HxWxC`, e.g. `32x32x3` (Keras's order, as the command line takes it).
    public init(parsing text: String) throws {
        let parts = text.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 3, let h = parts[0], let w = parts[1], let c = parts[2], h > 0, w > 0, c > 0 else {
            throw ModelError.invalidArgument("input must be HxWxC with positive numbers, e.g. 32x32x3; got '\(text)'")
        }
        self.init(height: h, width: w, channels: c)
    }

    /// `[C, H, W]`, the per-image part of an NCHW shape.
    public var chw: [Int] { [channels, height, width] }
    public var description: String { "\(height)x\(width)x\(channels)" }
}

/// Choices that apply across the zoo, as the command line's `--shortcut` and friends set them.
public struct ModelOptions: Sendable, Equatable, Codable {
    /// The shortcut option of residual networks (ignored by plain networks and svgg).
    public var shortcut: ShortcutOption = .b
    /// Bottlenecks stride their first 1x1, as the paper's original ImageNet models.
    public var strideOnFirst1x1 = false
    /// Start each v1 residual branch's last batch-norm scale at 0.
    public var zeroInitializedResidual = false
    /// Dropout of Wide ResNets (default 0.3) and of svgg's dense layer (default 0.5).
    public var dropout: Float?
    /// How convolution weights are drawn, by ``Initializer/named`` name (default
    /// `he-normal-fan-out`, torchvision's; the Keras tutorials use `he-normal-fan-in`).
    public var initializer: String?

    public init(shortcut: ShortcutOption = .b, strideOnFirst1x1: Bool = false,
                zeroInitializedResidual: Bool = false, dropout: Float? = nil, initializer: String? = nil) {
        self.shortcut = shortcut
        self.strideOnFirst1x1 = strideOnFirst1x1
        self.zeroInitializedResidual = zeroInitializedResidual
        self.dropout = dropout
        self.initializer = initializer
    }
}

/// A network chosen by name, before it is built for an input size and a class count.
///
/// Names: `resnet{6n+2}` (CIFAR, e.g. `resnet20`, `resnet1202`), `resnet18/34/50/101/152`
/// (ImageNet; `cifar-resnet50` for the CIFAR network of depth 50), `resnet{9n+2}v2`
/// (pre-activation, e.g. `resnet164v2`), `plain{6n+2}` and `plain18/34`, `wrn-{6m+4}-{k}`
/// (e.g. `wrn-28-10`), and `svgg`.
public struct ModelDefinition: Sendable {
    /// The name as given (lower-cased).
    public let name: String
    /// The residual-network description, or `nil` for svgg.
    public let configuration: ResNetConfiguration?
    /// The input the network was designed for.
    public let defaultInput: ImageShape
    /// The class count it was designed for.
    public let defaultClasses: Int
    let dropout: Float?
    /// Replaces every convolution's initializer when set.
    let convolutionInitializer: Initializer?

    /// The networks listed by name in help and error messages (any valid depth works too).
    public static let knownNames = [
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        "resnet29v2", "resnet56v2", "resnet110v2", "resnet164v2", "resnet1001v2",
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "plain20", "plain32", "plain44", "plain56", "plain110", "plain18", "plain34",
        "wrn-16-8", "wrn-28-10", "wrn-40-2", "svgg",
    ]

    public init(name rawName: String, options: ModelOptions = ModelOptions()) throws {
        let name = rawName.lowercased()
        self.name = name
        if let dropout = options.dropout, !(dropout >= 0 && dropout < 1) {
            throw ModelError.invalidArgument("dropout must be in 0..<1, got \(dropout)")
        }
        dropout = options.dropout
        if let initializer = options.initializer {
            guard let chosen = Initializer(name: initializer) else {
                throw ModelError.invalidArgument("unknown initializer '\(initializer)'; known: \(Initializer.named.map(\.name).joined(separator: ", "))")
            }
            convolutionInitializer = chosen
        } else {
            convolutionInitializer = nil
        }
        let cifarInput = ImageShape(height: 32, width: 32, channels: 3)
        if name == "svgg" {
            configuration = nil
            (defaultInput, defaultClasses) = (cifarInput, 10)
            return
        }
        var config: ResNetConfiguration
        if name.hasPrefix("wrn-") {
            let parts = name.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 2, let depth = parts[0], let k = parts[1] else {
                throw ModelError.unknownModel("'\(rawName)': a Wide ResNet is named wrn-DEPTH-WIDTH, e.g. wrn-28-10")
            }
            config = try Self.named(name, .wide(depth: depth, widenFactor: k, dropout: options.dropout ?? 0.3, shortcut: options.shortcut))
        } else if let depth = Self.depth(name, prefix: "cifar-resnet", suffix: "") {
            config = try Self.named(name, .cifar(depth: depth, shortcut: options.shortcut))
        } else if let depth = Self.depth(name, prefix: "resnet", suffix: "v2") {
            config = try Self.named(name, .cifarPreActivation(depth: depth, shortcut: options.shortcut))
        } else if let depth = Self.depth(name, prefix: "resnet", suffix: "") ?? Self.depth(name, prefix: "plain", suffix: "") {
            let plain = name.hasPrefix("plain")
            let imageNetDepths: Set<Int> = plain ? [18, 34] : Set(ResNetConfiguration.imageNetStages.keys)
            if imageNetDepths.contains(depth) {
                config = try .imageNet(depth: depth, shortcut: options.shortcut, strideOnFirst1x1: options.strideOnFirst1x1)
            } else if depth >= 8, (depth - 2) % 6 == 0 {
                config = try .cifar(depth: depth, shortcut: options.shortcut)
            } else {
                let imageNet = imageNetDepths.sorted().map(String.init).joined(separator: ", ")
                throw ModelError.invalidDepth("\(name): depth must be 6n+2 (20, 32, 44, 56, 110, 1202, ...) "
                    + "for CIFAR networks, or one of \(imageNet) for ImageNet networks")
            }
            if plain { config.shortcut = nil }
        } else {
            throw ModelError.unknownModel("unknown model '\(rawName)'; known models: \(Self.knownNames.joined(separator: ", ")) "
                + "(and any resnet{6n+2}, resnet{9n+2}v2, plain{6n+2}, wrn-{6m+4}-{k})")
        }
        config.zeroInitializedResidual = options.zeroInitializedResidual
        configuration = config
        (defaultInput, defaultClasses) = config.stem == .imageNet
            ? (ImageShape(height: 224, width: 224, channels: 3), 1000) : (cifarInput, 10)
    }

    /// The family's depth error, prefixed with the model name.
    private static func named(_ name: String, _ make: @autoclosure () throws -> ResNetConfiguration) throws -> ResNetConfiguration {
        do { return try make() } catch ModelError.invalidDepth(let message) {
            throw ModelError.invalidDepth("\(name): \(message)")
        }
    }

    private static func depth(_ name: String, prefix: String, suffix: String) -> Int? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int(digits)
    }

    /// The most parameters a network may have here: 1e9 floats are 4 GB of weights and as much
    /// again of gradients (ResNet-152 has 60M, WRN-28-10 36.5M).
    public static let maximumParameterCount = 1_000_000_000
    /// The largest input side and class count a network is built for.
    public static let maximumInputSide = 4_096
    public static let maximumClassCount = 1_000_000

    /// An upper bound of the parameters of the network for `input` and `classes` (see
    /// ``ResNetConfiguration/parameterBound(inputChannels:classes:)``); `nil` beyond `Int`.
    public func parameterBound(input: ImageShape, classes: Int) -> Int? {
        guard let configuration else {
            // svgg: blocks of two 3x3 convolutions with batch norm, then a dense layer on the
            // 8x-pooled map and the classifier.
            var convolutions = 0, channels = input.channels
            for width in SimpleVGG.blockWidths {
                convolutions += 9 * channels * width + 9 * width * width + 2 * width + 8 * width
                channels = width
            }
            let (cells, o1) = (input.height / 8).multipliedReportingOverflow(by: input.width / 8)
            let (flat, o2) = cells.multipliedReportingOverflow(by: channels)
            let (dense, o3) = flat.multipliedReportingOverflow(by: SimpleVGG.hiddenUnits)
            let (head, o4) = classes.multipliedReportingOverflow(by: SimpleVGG.hiddenUnits + 1)
            guard !(o1 || o2 || o3 || o4) else { return nil }
            return convolutions + dense + SimpleVGG.hiddenUnits + head
        }
        return configuration.parameterBound(inputChannels: input.channels, classes: classes)
    }

    /// The smallest input side the network accepts: its total stride.
    public var minimumInputSize: Int { configuration?.totalStride ?? 8 }

    /// Builds the network for `input` (default ``defaultInput``) and `classes` (default
    /// ``defaultClasses``), with weights from ``DefaultGenerator``.
    public func build(input: ImageShape? = nil, classes: Int? = nil) throws -> any Layer {
        let input = input ?? defaultInput
        let classes = classes ?? defaultClasses
        guard (1...Self.maximumClassCount).contains(classes) else {
            throw ModelError.invalidArgument("the number of classes must be in 1...\(Self.maximumClassCount), got \(classes)")
        }
        guard (1...4).contains(input.channels), input.height <= Self.maximumInputSide, input.width <= Self.maximumInputSide else {
            throw ModelError.invalidArgument("inputs must have 1 to 4 channels and sides of at most \(Self.maximumInputSide), got \(input)")
        }
        guard let bound = parameterBound(input: input, classes: classes), bound <= Self.maximumParameterCount else {
            throw ModelError.invalidArgument("\(name) for \(classes) classes would have more than \(Self.maximumParameterCount) parameters (at most 4 GB of weights are built here)")
        }
        guard input.height >= minimumInputSize, input.width >= minimumInputSize else {
            throw ModelError.inputTooSmall("\(name) needs an input of at least \(minimumInputSize)x\(minimumInputSize) "
                + "(it downsamples by \(minimumInputSize)), got \(input.height)x\(input.width)")
        }
        let model: any Layer
        if let configuration {
            model = try ResNet(configuration, inputChannels: input.channels, classes: classes)
        } else {
            model = try SimpleVGG(inputChannels: input.channels, height: input.height, width: input.width,
                                  classes: classes, dropout: dropout ?? 0.5)
        }
        if let convolutionInitializer {
            model.visit { module in
                guard let convolution = module as? Conv2D else { return }
                convolution.initializer = convolutionInitializer
                DefaultGenerator.with { convolution.resetParameters(using: &$0) }
            }
        }
        return model
    }
}
