import ResNetLayers
import ResNetTensors

/// The simplified VGG baseline of the Keras CIFAR-10 tutorial (`svgg`): three blocks of two
/// 3x3 convolutions (64, 128, 256 filters) with batch norm and ReLU, each block ending in
/// 2x2 max pooling; flatten; dense 1024 with ReLU and dropout 0.5; dense to the classes.
///
/// The classifier's input size depends on the image size (`256 * (H/8) * (W/8)`), so the
/// network is built for one input size.
public final class SimpleVGG: Module, Layer {
    /// Filters of the three convolution blocks.
    public static let blockWidths = [64, 128, 256]
    /// Units of the hidden dense layer.
    public static let hiddenUnits = 1024

    public let blocks: [Sequential]
    public let flatten: Flatten
    public let fc1: Dense
    public let dropout: Dropout
    public let fc2: Dense

    public init(inputChannels: Int = 3, height: Int = 32, width: Int = 32, classes: Int, dropout rate: Float = 0.5) throws {
        guard classes >= 1 else { throw ModelError.invalidArgument("the number of classes must be at least 1, got \(classes)") }
        guard height >= 8, width >= 8 else {
            throw ModelError.inputTooSmall("svgg needs an input of at least 8x8 (three 2x2 poolings), got \(height)x\(width)")
        }
        var channels = inputChannels
        blocks = Self.blockWidths.map { filters in
            defer { channels = filters }
            return Sequential(named: [
                ("conv1", Conv2D(channels, filters, kernelSize: 3)), ("bn1", BatchNorm2D(filters)), ("relu1", ReLU()),
                ("conv2", Conv2D(filters, filters, kernelSize: 3)), ("bn2", BatchNorm2D(filters)), ("relu2", ReLU()),
                ("pool", MaxPool2D(kernelSize: 2)),
            ])
        }
        flatten = Flatten()
        fc1 = Dense(channels * (height / 8) * (width / 8), Self.hiddenUnits)
        dropout = Dropout(rate: rate)
        fc2 = Dense(Self.hiddenUnits, classes)
        super.init()
        assignNames()
    }

    public override var namedChildren: [(String, Module)] {
        blocks.enumerated().map { ("block\($0.offset + 1)", $0.element as Module) }
            + [("flatten", flatten), ("fc1", fc1), ("dropout", dropout), ("fc2", fc2)]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for block in blocks { h = try block(h) }
        h = relu(try fc1(flatten(h)), label: "fc1.relu")
        return try fc2(dropout(h))
    }
}

/// Why a model could not be built.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// An unknown model name; the message lists the known ones.
    case unknownModel(String)
    /// A depth the family cannot have; the message says which depths are valid.
    case invalidDepth(String)
    /// An input smaller than the network's total stride.
    case inputTooSmall(String)
    /// Any other impossible setting (zero classes, ...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unknownModel(let m), .invalidDepth(let m), .inputTooSmall(let m), .invalidArgument(let m): m
        }
    }
}
