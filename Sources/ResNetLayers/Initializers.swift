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
