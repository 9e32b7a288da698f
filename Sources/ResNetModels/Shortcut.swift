import ResNetLayers
import ResNetTensors

/// The paper's three ways for a block's input to reach its output (He et al. 2016, section 3.3).
public enum ShortcutOption: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Identity; where the shape changes, subsample and zero-pad the new channels.
    /// No parameters. The paper's choice for its CIFAR-10 networks.
    case a = "A"
    /// Identity where the shape stays, a 1x1 projection where it changes.
    /// torchvision's choice and ours by default.
    case b = "B"
    /// A 1x1 projection on every block.
    case c = "C"

    public var description: String { rawValue }
}

/// The shortcut branch of one residual block: identity, zero-padding (option A) or a
/// 1x1 projection (options B and C), chosen from the option and the block's shapes in
/// one place for every block type.
public final class Shortcut: Module, Layer {
    /// Present for a projection.
    public let projection: Conv2D?
    /// Batch norm after the projection, in post-activation (v1) blocks.
    public let bn: BatchNorm2D?
    /// For option A: the channel count to pad to and the subsampling stride.
    let padding: (channels: Int, stride: Int)?

    /// - Parameter normalized: whether a projection is followed by batch norm. v1 blocks
    ///   (and torchvision) normalize it; pre-activation blocks feed it already normalized
    ///   input and do not (He et al. 2016b, Zagoruyko & Komodakis).
    public init(_ option: ShortcutOption, from inputChannels: Int, to outputChannels: Int, stride: Int, normalized: Bool) {
        let shapeChanges = inputChannels != outputChannels || stride != 1
        switch option {
        case .b where shapeChanges, .c:
            projection = Conv2D(inputChannels, outputChannels, kernelSize: 1, stride: stride)
            bn = normalized ? BatchNorm2D(outputChannels) : nil
            padding = nil
        case .a where shapeChanges:
            projection = nil
            bn = nil
            padding = (outputChannels, stride)
        default:
            projection = nil
            bn = nil
            padding = nil
        }
        super.init()
    }

    /// Whether the shortcut passes its input through unchanged.
    public var isIdentity: Bool { projection == nil && padding == nil }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        if let projection {
            let projected = try projection(x)
            return try bn.map { try $0(projected) } ?? projected
        }
        if let padding { return try padChannels(x, to: padding.channels, stride: padding.stride, label: label) }
        return x
    }
}
