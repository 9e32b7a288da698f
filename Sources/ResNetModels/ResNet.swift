import ResNetLayers
import ResNetTensors

/// Everything that distinguishes one residual network from another: one builder makes the
/// paper's CIFAR and ImageNet networks, their plain twins, the pre-activation (v2) networks
/// and Wide ResNets from this description.
public struct ResNetConfiguration: Sendable, Equatable {
    /// The residual block.
    public enum BlockKind: String, Sendable {
        /// Two 3x3 convolutions (``BasicBlock``, ``PreActivationBasicBlock``).
        case basic
        /// 1x1, 3x3, 1x1 with 4x expansion (``Bottleneck``, ``PreActivationBottleneck``).
        case bottleneck
    }

    /// The layers before the first stage.
    public enum Stem: String, Sendable {
        /// One 3x3 convolution (paper section 4.2); total stride 1.
        case cifar
        /// 7x7/2 convolution and 3x3/2 max pooling (paper Table 1); total stride 4.
        case imageNet
    }

    public var block: BlockKind
    /// Pre-activation (BN-ReLU-conv) blocks, "ResNet v2" (He et al. 2016b).
    public var preActivation: Bool
    public var stem: Stem
    /// Channels of the stem convolution.
    public var stemWidth: Int
    /// Blocks in each stage; every stage after the first starts with a stride-2 block.
    public var blocksPerStage: [Int]
    /// Width of each stage's blocks (a bottleneck's output is 4x its width).
    public var stageWidths: [Int]
    /// The shortcut option, or `nil` for a plain network (every shortcut removed).
    public var shortcut: ShortcutOption?
    /// Dropout between the two convolutions of pre-activation basic blocks (Wide ResNets).
    public var dropout: Float
    /// Bottlenecks stride their first 1x1 (the paper's original model) instead of the 3x3.
    public var strideOnFirst1x1: Bool
    /// Start the last batch norm of each v1 residual branch at scale 0 (not in the paper).
    public var zeroInitializedResidual: Bool

    public init(block: BlockKind, preActivation: Bool = false, stem: Stem, stemWidth: Int,
                blocksPerStage: [Int], stageWidths: [Int], shortcut: ShortcutOption? = .b,
                dropout: Float = 0, strideOnFirst1x1: Bool = false, zeroInitializedResidual: Bool = false) {
        self.block = block
        self.preActivation = preActivation
        self.stem = stem
        self.stemWidth = stemWidth
        self.blocksPerStage = blocksPerStage
        self.stageWidths = stageWidths
        self.shortcut = shortcut
        self.dropout = dropout
        self.strideOnFirst1x1 = strideOnFirst1x1
        self.zeroInitializedResidual = zeroInitializedResidual
    }

    /// Weighted layers along the longest path: how the papers count depth.
    public var depth: Int {
        blocksPerStage.reduce(0, +) * (block == .basic ? 2 : 3) + 2
    }

    /// Output channels of the last stage.
    public var featureCount: Int { stageWidths.last! * (block == .basic ? 1 : 4) }

    /// How much the network shrinks its input: the smallest input side it accepts.
    public var totalStride: Int { (stem == .imageNet ? 4 : 1) << (blocksPerStage.count - 1) }

    // MARK: - The papers' families

    /// CIFAR-10 ResNet (paper section 4.2): depth 6n+2, three stages of n basic blocks with
    /// 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps.
    public static func cifar(depth: Int, shortcut: ShortcutOption? = .b) throws -> Self {
        guard depth >= 8, (depth - 2) % 6 == 0 else {
            throw ModelError.invalidDepth("depth must be 6n+2 (20, 32, 44, 56, 110, 1202, ...), got \(depth)")
        }
        let n = (depth - 2) / 6
        return Self(block: .basic, stem: .cifar, stemWidth: 16, blocksPerStage: [n, n, n],
                    stageWidths: [16, 32, 64], shortcut: shortcut)
    }

    /// CIFAR-10 pre-activation ResNet (He et al. 2016b): depth 9n+2, three stages of n
    /// bottlenecks of width 16, 32, 64 (outputs 64, 128, 256), as ResNet-164 and -1001.
    ///
    /// The Keras CIFAR example builds its "v2" with bottleneck widths 16, 64, 128 and the stride
    /// on the first 1x1; we follow the paper and its code (widths 16, 32, 64; stride on the 3x3;
    /// ResNet-164 has the paper's 1.7M parameters).
    public static func cifarPreActivation(depth: Int, shortcut: ShortcutOption? = .b) throws -> Self {
        guard depth >= 11, (depth - 2) % 9 == 0 else {
            throw ModelError.invalidDepth("depth must be 9n+2 (29, 56, 110, 164, 1001, ...), got \(depth)")
        }
        let n = (depth - 2) / 9
        return Self(block: .bottleneck, preActivation: true, stem: .cifar, stemWidth: 16,
                    blocksPerStage: [n, n, n], stageWidths: [16, 32, 64], shortcut: shortcut)
    }

    /// The ImageNet networks of the paper's Table 1.
    public static let imageNetStages: [Int: (BlockKind, [Int])] = [
        18: (.basic, [2, 2, 2, 2]),
        34: (.basic, [3, 4, 6, 3]),
        50: (.bottleneck, [3, 4, 6, 3]),
        101: (.bottleneck, [3, 4, 23, 3]),
        152: (.bottleneck, [3, 8, 36, 3]),
    ]

    /// ImageNet ResNet-18/34/50/101/152 (paper Table 1): 7x7/2 stem, 3x3/2 max pool, four stages
    /// of width 64, 128, 256, 512. Any input of at least 32x32 and any class count.
    public static func imageNet(depth: Int, shortcut: ShortcutOption? = .b, strideOnFirst1x1: Bool = false) throws -> Self {
        guard let (block, stages) = imageNetStages[depth] else {
            throw ModelError.invalidDepth("ImageNet depth must be one of 18, 34, 50, 101, 152, got \(depth)")
        }
        return Self(block: block, stem: .imageNet, stemWidth: 64, blocksPerStage: stages,
                    stageWidths: [64, 128, 256, 512], shortcut: shortcut, strideOnFirst1x1: strideOnFirst1x1)
    }

    /// Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016): depth 6m+4, three stages of m
    /// pre-activation basic blocks of width 16k, 32k, 64k, with dropout between the convolutions
    /// (0.3 is the paper's CIFAR setting).
    public static func wide(depth: Int, widenFactor k: Int, dropout: Float = 0.3, shortcut: ShortcutOption = .b) throws -> Self {
        guard depth >= 10, (depth - 4) % 6 == 0 else {
            throw ModelError.invalidDepth("WRN depth must be 6m+4 (10, 16, 22, 28, 40, ...), got \(depth)")
        }
        guard (1...1_024).contains(k) else { throw ModelError.invalidDepth("WRN widening factor must be in 1...1024, got \(k)") }
        let m = (depth - 4) / 6
        return Self(block: .basic, preActivation: true, stem: .cifar, stemWidth: 16, blocksPerStage: [m, m, m],
                    stageWidths: [16 * k, 32 * k, 64 * k], shortcut: shortcut, dropout: dropout)
    }
}

extension ResNetConfiguration {
    /// An upper bound of the parameters (weights, biases, batch-norm scales, shifts and running
    /// statistics) of the network for `inputChannels` and `classes`, as if every block had a
    /// projection shortcut; `nil` when it does not fit in an `Int`. Computed before anything is
    /// allocated, so that an absurd name or option ends in an error instead of an abort.
    public func parameterBound(inputChannels: Int, classes: Int) -> Int? {
        func product(_ factors: Int...) -> Int? {
            var p = 1
            for f in factors {
                guard f >= 0 else { return nil }
                let (r, overflow) = p.multipliedReportingOverflow(by: f)
                if overflow { return nil }
                p = r
            }
            return p
        }
        func sum(_ terms: Int?...) -> Int? {
            var s = 0
            for term in terms {
                guard let term else { return nil }
                let (r, overflow) = s.addingReportingOverflow(term)
                if overflow { return nil }
                s = r
            }
            return s
        }
        // One block from `c` channels, as if it had a projection shortcut.
        func blockBound(_ c: Int, _ width: Int, _ out: Int) -> Int? {
            switch block {
            case .basic: sum(product(9, c, width), product(9, width, width), product(8, width), product(c, out), product(4, out))
            case .bottleneck: sum(product(c, width), product(9, width, width), product(width, out), product(8, width), product(8, out), product(c, out))
            }
        }
        var total = sum(product(inputChannels, stemWidth, stem == .imageNet ? 49 : 9), product(4, stemWidth))
        var channels = stemWidth
        for (blocks, width) in zip(blocksPerStage, stageWidths) {
            guard blocks >= 1, let out = product(width, block == .basic ? 1 : 4) else { return nil }
            total = sum(total, blockBound(channels, width, out), product(blocks - 1, blockBound(out, width, out) ?? -1))
            channels = out
        }
        return sum(total, product(channels, classes), classes, product(4, channels))
    }
}

/// A residual (or plain) network built from a ``ResNetConfiguration``:
/// stem, stages of blocks, global average pooling and a linear classifier.
///
/// Parameter names follow the structure: `stem.conv.weight`, `stage2.block1.conv1.weight`,
/// `stage2.block1.shortcut.projection.weight`, `fc.weight`.
public final class ResNet: Module, Layer {
    public let configuration: ResNetConfiguration
    public let inputChannels: Int
    public let classCount: Int

    public let stem: Sequential
    public let stages: [Sequential]
    /// Pre-activation networks end with BN-ReLU before pooling (their blocks end with a conv).
    public let finalNorm: BatchNorm2D?
    public let pool: GlobalAvgPool2D
    /// The classifier; Glorot-uniform weights as in Keras (torchvision uses PyTorch's
    /// default uniform init). He et al. do not say.
    public let fc: Dense

    /// Builds the network with weights drawn from ``DefaultGenerator`` (seed it first, or call
    /// ``Module/initializeParameters(seed:)`` afterwards).
    public init(_ configuration: ResNetConfiguration, inputChannels: Int = 3, classes: Int) throws {
        guard classes >= 1 else { throw ModelError.invalidArgument("the number of classes must be at least 1, got \(classes)") }
        guard inputChannels >= 1 else { throw ModelError.invalidArgument("input channels must be at least 1, got \(inputChannels)") }
        let c = configuration
        guard c.blocksPerStage.count == c.stageWidths.count, !c.blocksPerStage.isEmpty,
              c.blocksPerStage.allSatisfy({ $0 >= 1 }), c.stageWidths.allSatisfy({ $0 >= 1 }), c.stemWidth >= 1 else {
            throw ModelError.invalidArgument("stages need at least one block and a positive width each")
        }
        self.configuration = c
        self.inputChannels = inputChannels
        classCount = classes

        // Stem. Pre-activation networks leave BN-ReLU to their first block (the authors' code
        // puts it in the stem and skips it in that block: the same computation).
        var stemLayers: [(String, any Layer)]
        switch c.stem {
        case .cifar: stemLayers = [("conv", Conv2D(inputChannels, c.stemWidth, kernelSize: 3))]
        case .imageNet: stemLayers = [("conv", Conv2D(inputChannels, c.stemWidth, kernelSize: 7, stride: 2))]
        }
        if !c.preActivation { stemLayers += [("bn", BatchNorm2D(c.stemWidth)), ("relu", ReLU())] }
        if c.stem == .imageNet { stemLayers.append(("pool", MaxPool2D(kernelSize: 3, stride: 2, padding: 1))) }
        stem = Sequential(named: stemLayers)

        var channels = c.stemWidth
        var stages: [Sequential] = []
        for (index, (count, width)) in zip(c.blocksPerStage, c.stageWidths).enumerated() {
            var blocks: [(String, any Layer)] = []
            for b in 0..<count {
                let stride = index > 0 && b == 0 ? 2 : 1
                let block: any Layer
                switch (c.block, c.preActivation) {
                case (.basic, false):
                    block = BasicBlock(channels, width: width, stride: stride, shortcut: c.shortcut,
                                       zeroInitializedResidual: c.zeroInitializedResidual)
                case (.bottleneck, false):
                    block = Bottleneck(channels, width: width, stride: stride, shortcut: c.shortcut,
                                       strideOnFirst1x1: c.strideOnFirst1x1, zeroInitializedResidual: c.zeroInitializedResidual)
                case (.basic, true):
                    block = PreActivationBasicBlock(channels, width: width, stride: stride, shortcut: c.shortcut, dropout: c.dropout)
                case (.bottleneck, true):
                    block = PreActivationBottleneck(channels, width: width, stride: stride, shortcut: c.shortcut,
                                                    strideOnFirst1x1: c.strideOnFirst1x1)
                }
                blocks.append(("block\(b + 1)", block))
                channels = width * (c.block == .basic ? 1 : 4)
            }
            stages.append(Sequential(named: blocks))
        }
        self.stages = stages
        finalNorm = c.preActivation ? BatchNorm2D(channels) : nil
        pool = GlobalAvgPool2D()
        fc = Dense(channels, classes)
        super.init()
        assignNames()
    }

    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [("stem", stem)]
        children += stages.enumerated().map { ("stage\($0.offset + 1)", $0.element) }
        if let finalNorm { children.append(("bn", finalNorm)) }
        return children + [("pool", pool), ("fc", fc)]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try fc(features(x))
    }

    /// The pooled features the classifier reads: `[N, featureCount]`.
    public func features(_ x: Tensor) throws -> Tensor {
        var h = try stem(x)
        for stage in stages { h = try stage(h) }
        if let finalNorm { h = relu(try finalNorm(h), label: "relu") }
        return try pool(h)
    }
}
