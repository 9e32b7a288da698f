import ResNetTensors

/// How a parameter's initial values are drawn.
public enum Initializer: Sendable {
    /// Which fan He initialization scales by.
    public enum FanMode: Sendable { case fanIn, fanOut }

    /// He/Kaiming normal: `N(0, 2 / fan)` (He et al. 2015, for ReLU networks).
    case heNormal(FanMode)
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = sqrt(6 / (fanIn + fanOut))` (Keras's default).
    case glorotUniform
    /// Every value the same.
    case constant(Float)

    /// The initializers a user names (`--initializer`): `he-normal-fan-out` (torchvision's
    /// convolutions), `he-normal-fan-in` (Keras's `he_normal`), `glorot-uniform` (Keras's default).
    public static let named: [(name: String, initializer: Initializer)] = [
        ("he-normal-fan-out", .heNormal(.fanOut)), ("he-normal-fan-in", .heNormal(.fanIn)), ("glorot-uniform", .glorotUniform),
    ]

    /// The initializer called `name` (see ``named``).
    public init?(name: String) {
        guard let found = Self.named.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = found.initializer
    }

    /// Writes initial values into `parameter`.
    public func fill(_ parameter: Parameter, using generator: inout SeededGenerator) {
        let (fanIn, fanOut) = parameter.fans
        let values: [Float]
        switch self {
        case .heNormal(let mode):
            let std = (2 / Float(mode == .fanIn ? fanIn : fanOut)).squareRoot()
            values = (0..<parameter.count).map { _ in std * generator.nextNormal() }
        case .glorotUniform:
            let limit = (6 / Float(fanIn + fanOut)).squareRoot()
            values = (0..<parameter.count).map { _ in limit * (2 * generator.nextUnitFloat() - 1) }
        case .constant(let c):
            values = [Float](repeating: c, count: parameter.count)
        }
        parameter.values = values
    }
}
