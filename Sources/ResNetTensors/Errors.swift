/// Input a user can get wrong: reported with the layer's name and both shapes, never a crash.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    /// `layer` expected input of shape `expected` (a pattern such as "[N, 16, H, W]") and got `actual`.
    case shapeMismatch(layer: String, expected: String, actual: [Int])
    /// Two inputs that must agree do not.
    case incompatibleShapes(layer: String, first: [Int], second: [Int])
    /// A class label outside `0..<classCount`.
    case labelOutOfRange(layer: String, index: Int, label: Int, classCount: Int)
    /// An input array with the wrong number of elements.
    case wrongElementCount(what: String, expected: Int, actual: Int)
    /// A setting that cannot work (a kernel larger than the padded input, a rate outside 0..<1, ...).
    case invalidArgument(layer: String, message: String)
    /// The graph is used in a way its state does not allow (e.g. forward before planning).
    case notPlanned(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(layer, expected, actual):
            return "\(layer): expected input of shape \(expected), got \(actual)"
        case let .incompatibleShapes(layer, first, second):
            return "\(layer): shapes \(first) and \(second) do not match"
        case let .labelOutOfRange(layer, index, label, classCount):
            return "\(layer): label \(label) at index \(index) is outside 0..<\(classCount)"
        case let .wrongElementCount(what, expected, actual):
            return "\(what): expected \(expected) elements, got \(actual)"
        case let .invalidArgument(layer, message):
            return "\(layer): \(message)"
        case let .notPlanned(message):
            return message
        }
    }
}
