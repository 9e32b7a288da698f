import ResNetTensors

/// A 2-D convolution layer.
///
/// Weights are He-normal with fan-out by default, as torchvision initialises its ResNets
/// (the paper cites He et al. 2015 without naming the fan).
public final class Conv2D: Module, Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    /// How ``resetParameters(using:)`` draws the weights; a model may change it before
    /// initializing (e.g. Keras's He normal with fan-in).
    public var initializer: Initializer

    /// - Parameters:
    ///   - inputChannels, outputChannels: channel counts.
    ///   - kernelSize: square kernel side; `padding` defaults to `kernelSize / 2` ("same" for odd kernels at stride 1).
    ///   - bias: whether to add a bias (convolutions followed by batch norm have none).
    public init(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int? = nil,
                bias: Bool = false, initializer: Initializer = .heNormal(.fanOut)) {
        weight = Parameter(shape: [outputChannels, inputChannels, kernelSize, kernelSize])
        self.bias = bias ? Parameter(shape: [outputChannels]) : nil
        self.stride = (stride, stride)
        let p = padding ?? kernelSize / 2
        self.padding = (p, p)
        self.initializer = initializer
        super.init()
        DefaultGenerator.with { resetParameters(using: &$0) }
    }

    public override func resetParameters(using generator: inout SeededGenerator) {
        initializeWeightAndBias(weight, bias, initializer, using: &generator)
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try conv2d(input, weight: weight, bias: bias, stride: stride, padding: padding, label: label)
    }
}

/// The weights from `initializer`, the bias (if any) zero: Conv2D's and Dense's initialization.
private func initializeWeightAndBias(_ weight: Parameter, _ bias: Parameter?, _ initializer: Initializer,
                                     using generator: inout SeededGenerator) {
    initializer.fill(weight, using: &generator)
    if let bias { Initializer.constant(0).fill(bias, using: &generator) }
}

/// Batch normalization of `[N, C, H, W]` activations (scale 1, shift 0 initially).
///
/// Training mode normalizes with batch statistics and updates the running averages
/// (momentum 0.1 in PyTorch's convention). Evaluation mode uses the running averages, or
/// the batch's statistics when `evaluationStatistics` is `.batch`.
public final class BatchNorm2D: Module, Layer {
    public let scale: Parameter
    public let shift: Parameter
    public let runningMean: Parameter
    public let runningVariance: Parameter
    public let momentum: Float
    public let epsilon: Float
    public var evaluationStatistics: BatchNormStatistics
    /// The initial scale (gamma); some recipes start the last BN of a residual branch at 0.
    public let initialScale: Float

    public init(_ channels: Int, momentum: Float = 0.1, epsilon: Float = 1e-5,
                evaluationStatistics: BatchNormStatistics = .running, initialScale: Float = 1) {
        scale = Parameter(shape: [channels], initialValue: initialScale)
        shift = Parameter(shape: [channels])
        runningMean = Parameter(shape: [channels], isTrainable: false)
        runningVariance = Parameter(shape: [channels], isTrainable: false, initialValue: 1)
        self.momentum = momentum
        self.epsilon = epsilon
        self.evaluationStatistics = evaluationStatistics
        self.initialScale = initialScale
        super.init()
    }

    public override func resetParameters(using generator: inout SeededGenerator) {
        Initializer.constant(initialScale).fill(scale, using: &generator)
        Initializer.constant(0).fill(shift, using: &generator)
        Initializer.constant(0).fill(runningMean, using: &generator)
        Initializer.constant(1).fill(runningVariance, using: &generator)
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try batchNorm(input, scale: scale, shift: shift, runningMean: runningMean, runningVariance: runningVariance,
                      statistics: isTraining ? .batch : evaluationStatistics, updateRunningStatistics: isTraining,
                      momentum: momentum, epsilon: epsilon, label: label)
    }
}

/// `max(x, 0)`.
public final class ReLU: Module, Layer {
    public override init() { super.init() }
    public func callAsFunction(_ input: Tensor) throws -> Tensor { relu(input, label: label) }
}

/// A fully connected layer on `[N, inputs]`; Glorot-uniform weights and zero bias by default (Keras's choice).
public final class Dense: Module, Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let initializer: Initializer

    public init(_ inputs: Int, _ outputs: Int, bias: Bool = true, initializer: Initializer = .glorotUniform) {
        weight = Parameter(shape: [outputs, inputs])
        self.bias = bias ? Parameter(shape: [outputs]) : nil
        self.initializer = initializer
        super.init()
        DefaultGenerator.with { resetParameters(using: &$0) }
    }

    public override func resetParameters(using generator: inout SeededGenerator) {
        initializeWeightAndBias(weight, bias, initializer, using: &generator)
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try linear(input, weight: weight, bias: bias, label: label)
    }
}

/// Max pooling; `stride` defaults to the kernel size.
public final class MaxPool2D: Module, Layer {
    public let kernelSize: Int, stride: Int, padding: Int
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        super.init()
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try maxPool2d(input, kernel: (kernelSize, kernelSize), stride: (stride, stride), padding: (padding, padding), label: label)
    }
}

/// Average pooling; `stride` defaults to the kernel size.
public final class AvgPool2D: Module, Layer {
    public let kernelSize: Int, stride: Int, padding: Int
    public let countIncludesPadding: Bool
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, countIncludesPadding: Bool = true) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.countIncludesPadding = countIncludesPadding
        super.init()
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try avgPool2d(input, kernel: (kernelSize, kernelSize), stride: (stride, stride), padding: (padding, padding),
                      countIncludesPadding: countIncludesPadding, label: label)
    }
}

/// Global average pooling followed by flattening: `[N, C, H, W]` to `[N, C]`.
public final class GlobalAvgPool2D: Module, Layer {
    public override init() { super.init() }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try flatten(globalAvgPool2d(input, label: label), label: label + ".flatten")
    }
}

/// `[N, C, H, W]` to `[N, C*H*W]` in NCHW order.
public final class Flatten: Module, Layer {
    public override init() { super.init() }
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try flatten(input, label: label) }
}

/// Dropout in training mode, identity in evaluation mode. `channelWise` drops whole channels (spatial dropout).
public final class Dropout: Module, Layer {
    public let rate: Float
    public let channelWise: Bool
    public init(rate: Float, channelWise: Bool = false) {
        self.rate = rate
        self.channelWise = channelWise
        super.init()
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard isTraining else { return input }
        return channelWise ? try channelDropout(input, rate: rate, label: label) : try dropout(input, rate: rate, label: label)
    }
}

/// Layers applied in order. Children are named by index (`0`, `1`, ...) unless names are given.
public final class Sequential: Module, Layer {
    public let layers: [any Layer]
    public let names: [String]

    public init(_ layers: [any Layer]) {
        self.layers = layers
        names = layers.indices.map(String.init)
        super.init()
    }

    /// Layers with explicit names, e.g. `[("block0", b0), ("block1", b1)]`.
    public init(named layers: [(String, any Layer)]) {
        self.layers = layers.map(\.1)
        names = layers.map(\.0)
        super.init()
    }

    public override var namedChildren: [(String, Module)] { Array(zip(names, layers.map { $0 as Module })) }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try layers.reduce(input) { try $1($0) }
    }
}
