/// A bad optimizer configuration or a state dictionary that does not fit the optimizer.
public enum OptimizerError: Error, CustomStringConvertible, Equatable {
    /// A hyperparameter outside its valid range, e.g. a negative learning rate.
    case invalidHyperparameter(name: String, value: Float, requirement: String)
    /// Nesterov momentum was requested with `momentum <= 0`.
    case nesterovRequiresMomentum(momentum: Float)
    /// Nesterov momentum was requested with a non-zero dampening.
    case nesterovRequiresZeroDampening(dampening: Float)
    /// A state key that belongs to none of the optimizer's parameters.
    case unknownStateKey(String)
    /// A state entry with the wrong number of elements.
    case wrongStateSize(key: String, expected: Int, actual: Int)
    /// A state entry whose value cannot be right (a step count that is not a non-negative integer).
    case invalidStateValue(key: String, message: String)
    /// Some, but not all, of a parameter's state entries are present.
    case incompleteState(parameter: String, missingKey: String)
    /// Two trainable parameters share a name, so their state keys would collide.
    case duplicateParameterName(String)

    public var description: String {
        switch self {
        case let .invalidHyperparameter(name, value, requirement):
            return "invalid optimizer setting: \(name) = \(value), must be \(requirement)"
        case let .nesterovRequiresMomentum(momentum):
            return "invalid optimizer setting: Nesterov momentum requires momentum > 0 (got \(momentum))"
        case let .nesterovRequiresZeroDampening(dampening):
            return "invalid optimizer setting: Nesterov momentum requires dampening = 0 (got \(dampening))"
        case let .unknownStateKey(key):
            return "optimizer state: unknown key \"\(key)\""
        case let .wrongStateSize(key, expected, actual):
            return "optimizer state: \"\(key)\" has \(actual) elements, expected \(expected)"
        case let .invalidStateValue(key, message):
            return "optimizer state: \"\(key)\": \(message)"
        case let .incompleteState(parameter, missingKey):
            return "optimizer state for \"\(parameter)\" is incomplete: missing \"\(missingKey)\""
        case let .duplicateParameterName(name):
            return "optimizer state: two parameters are named \"\(name)\""
        }
    }
}

/// Throws unless `value` is finite and within the given bounds.
func validate(
    _ name: String, _ value: Float, atLeast lower: Float, below upper: Float? = nil, upTo upperInclusive: Float? = nil
) throws {
    var requirement = "finite and >= \(lower)"
    var ok = value.isFinite && value >= lower
    if let upper {
        requirement = "in [\(lower), \(upper))"
        ok = ok && value < upper
    }
    if let upperInclusive {
        requirement = "in [\(lower), \(upperInclusive)]"
        ok = ok && value <= upperInclusive
    }
    if !ok { throw OptimizerError.invalidHyperparameter(name: name, value: value, requirement: requirement) }
}

/// The check a learning-rate setter runs (schedules set it every step, so it cannot throw).
func checkLearningRate(_ rate: Float) {
    precondition(rate.isFinite && rate >= 0, "learning rate must be finite and >= 0, got \(rate)")
}
