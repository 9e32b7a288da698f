import ResNetLayers
import ResNetTensors

// The four residual blocks. Each reads like its figure; `shortcut: nil` removes the
// shortcut and gives the "plain" block of the paper's degradation experiment (section 4.1).

/// The basic block of the paper's Figure 2 (left of Figure 5): two 3x3 convolutions,
/// batch norm after each, ReLU after the first and after the addition.
public final class BasicBlock: Module, Layer {
    /// Output channels per unit of `width`.
    public static let expansion = 1

    public let conv1: Conv2D, bn1: BatchNorm2D
    public let conv2: Conv2D, bn2: BatchNorm2D
    public let shortcut: Shortcut?

    /// - Parameters:
    ///   - width: output channels.
    ///   - stride: 2 on the first block of a downsampling stage (on the first conv).
    ///   - shortcut: the option, or `nil` for a plain block.
    ///   - zeroInitializedResidual: start `bn2`'s scale at 0, so the block starts as its
    ///     shortcut (Goyal et al. 2017; torchvision's `zero_init_residual`). Not in the paper.
    public init(_ inputChannels: Int, width: Int, stride: Int = 1, shortcut: ShortcutOption?,
                zeroInitializedResidual: Bool = false) {
        conv1 = Conv2D(inputChannels, width, kernelSize: 3, stride: stride)
        bn1 = BatchNorm2D(width)
        conv2 = Conv2D(width, width, kernelSize: 3)
        bn2 = BatchNorm2D(width, initialScale: zeroInitializedResidual ? 0 : 1)
        self.shortcut = shortcut.map { Shortcut($0, from: inputChannels, to: width, stride: stride, normalized: true) }
        super.init()
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = relu(try bn1(conv1(x)), label: label + ".relu1")
        var y = try bn2(conv2(h))
        if let shortcut { y = try add(y, shortcut(x), label: label + ".add") }
        return relu(y, label: label + ".relu2")
    }
}

/// The bottleneck block of the paper's Figure 5 (right): 1x1 to `width`, 3x3, 1x1 to
/// `4 * width`, batch norm after each, ReLU after the first two and after the addition.
///
/// The downsampling stride sits on the 3x3 convolution by default, as in torchvision
/// ("ResNet v1.5"; about 0.5% better top-1 on ImageNet for the same cost). The paper's
/// original (Caffe) model strides the first 1x1, which skips three quarters of its input
/// pixels: pass `strideOnFirst1x1: true` for that.
public final class Bottleneck: Module, Layer {
    public static let expansion = 4

    public let conv1: Conv2D, bn1: BatchNorm2D
    public let conv2: Conv2D, bn2: BatchNorm2D
    public let conv3: Conv2D, bn3: BatchNorm2D
    public let shortcut: Shortcut?

    public init(_ inputChannels: Int, width: Int, stride: Int = 1, shortcut: ShortcutOption?,
                strideOnFirst1x1: Bool = false, zeroInitializedResidual: Bool = false) {
        let output = width * Self.expansion
        conv1 = Conv2D(inputChannels, width, kernelSize: 1, stride: strideOnFirst1x1 ? stride : 1)
        bn1 = BatchNorm2D(width)
        conv2 = Conv2D(width, width, kernelSize: 3, stride: strideOnFirst1x1 ? 1 : stride)
        bn2 = BatchNorm2D(width)
        conv3 = Conv2D(width, output, kernelSize: 1)
        bn3 = BatchNorm2D(output, initialScale: zeroInitializedResidual ? 0 : 1)
        self.shortcut = shortcut.map { Shortcut($0, from: inputChannels, to: output, stride: stride, normalized: true) }
        super.init()
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = relu(try bn1(conv1(x)), label: label + ".relu1")
        h = relu(try bn2(conv2(h)), label: label + ".relu2")
        var y = try bn3(conv3(h))
        if let shortcut { y = try add(y, shortcut(x), label: label + ".add") }
        return relu(y, label: label + ".relu3")
    }
}

/// The pre-activation basic block (He et al. 2016b, Figure 1b), with dropout between the
/// convolutions as in Wide ResNets (Zagoruyko & Komodakis 2016, "wide-dropout"):
/// BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, added to the shortcut with no ReLU after.
///
/// A shortcut that is not the identity (a projection, or zero-padding) takes the
/// pre-activated input, as in the authors' code (fb.resnet.torch's "both_preact").
public final class PreActivationBasicBlock: Module, Layer {
    public static let expansion = 1

    public let bn1: BatchNorm2D, conv1: Conv2D
    public let bn2: BatchNorm2D, dropout: Dropout?, conv2: Conv2D
    public let shortcut: Shortcut?

    public init(_ inputChannels: Int, width: Int, stride: Int = 1, shortcut: ShortcutOption?, dropout rate: Float = 0) {
        bn1 = BatchNorm2D(inputChannels)
        conv1 = Conv2D(inputChannels, width, kernelSize: 3, stride: stride)
        bn2 = BatchNorm2D(width)
        dropout = rate > 0 ? Dropout(rate: rate) : nil
        conv2 = Conv2D(width, width, kernelSize: 3)
        self.shortcut = shortcut.map { Shortcut($0, from: inputChannels, to: width, stride: stride, normalized: false) }
        super.init()
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let activated = relu(try bn1(x), label: label + ".relu1")
        var h = relu(try bn2(conv1(activated)), label: label + ".relu2")
        if let dropout { h = try dropout(h) }
        let y = try conv2(h)
        guard let shortcut else { return y }
        return try add(y, shortcut(shortcut.isIdentity ? x : activated), label: label + ".add")
    }
}

/// The pre-activation bottleneck block (He et al. 2016b, the CIFAR ResNet-164 and -1001):
/// BN-ReLU-conv1x1 to `width`, BN-ReLU-conv3x3, BN-ReLU-conv1x1 to `4 * width`, added to
/// the shortcut. Stride and shortcut input as in ``Bottleneck`` and ``PreActivationBasicBlock``.
public final class PreActivationBottleneck: Module, Layer {
    public static let expansion = 4

    public let bn1: BatchNorm2D, conv1: Conv2D
    public let bn2: BatchNorm2D, conv2: Conv2D
    public let bn3: BatchNorm2D, conv3: Conv2D
    public let shortcut: Shortcut?

    public init(_ inputChannels: Int, width: Int, stride: Int = 1, shortcut: ShortcutOption?, strideOnFirst1x1: Bool = false) {
        let output = width * Self.expansion
        bn1 = BatchNorm2D(inputChannels)
        conv1 = Conv2D(inputChannels, width, kernelSize: 1, stride: strideOnFirst1x1 ? stride : 1)
        bn2 = BatchNorm2D(width)
        conv2 = Conv2D(width, width, kernelSize: 3, stride: strideOnFirst1x1 ? 1 : stride)
        bn3 = BatchNorm2D(width)
        conv3 = Conv2D(width, output, kernelSize: 1)
        self.shortcut = shortcut.map { Shortcut($0, from: inputChannels, to: output, stride: stride, normalized: false) }
        super.init()
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let activated = relu(try bn1(x), label: label + ".relu1")
        var h = relu(try bn2(conv1(activated)), label: label + ".relu2")
        h = relu(try bn3(conv2(h)), label: label + ".relu3")
        let y = try conv3(h)
        guard let shortcut else { return y }
        return try add(y, shortcut(shortcut.isIdentity ? x : activated), label: label + ".add")
    }
}
