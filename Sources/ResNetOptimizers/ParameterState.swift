import ResNetTensors

/// The state one parameter carries in one optimizer: `slots` buffers of
/// `count` floats each, and a step count.
final class ParameterState {
    let parameter: Parameter
    /// Position in the order the optimizer first saw trainable parameters.
    let index: Int
    let count: Int
    /// Zero-initialised buffers of `count` floats, one per slot.
    let buffers: [UnsafeMutablePointer<Float>]
    /// Steps taken with this state (0: fresh, nothing accumulated yet).
    var step: Int = 0

    init(parameter: Parameter, index: Int, slotCount: Int) {
        self.parameter = parameter
        self.index = index
        count = parameter.count
        buffers = (0..<slotCount).map { _ in
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(parameter.count, 1))
            buffer.initialize(repeating: 0, count: max(parameter.count, 1))
            return buffer
        }
    }

    deinit { for buffer in buffers { buffer.deallocate() } }

    /// The parameter's key in a state dictionary.
    var key: String { parameter.name.isEmpty ? "param\(index)" : parameter.name }

    func reset() {
        step = 0
        for buffer in buffers { buffer.update(repeating: 0, count: count) }
    }
}

/// Per-parameter state of one optimizer, keyed by parameter identity.
///
/// Holds the parameters strongly, so an identifier is never reused while its
/// state exists.
final class StateTable {
    /// Slot names as they appear in keys (`momentum`, `exp_avg`, ...).
    let slotNames: [String]
    /// Whether the step count is saved (Adam); otherwise a saved slot implies step 1.
    let savesStep: Bool
    private(set) var states: [ParameterState] = []
    private var indexByIdentifier: [ObjectIdentifier: Int] = [:]

    init(slotNames: [String], savesStep: Bool) {
        self.slotNames = slotNames
        self.savesStep = savesStep
    }

    /// The state for a trainable `parameter`, created on first sight.
    @inline(__always)
    func state(for parameter: Parameter) -> ParameterState {
        if let index = indexByIdentifier[ObjectIdentifier(parameter)] { return states[index] }
        let state = ParameterState(parameter: parameter, index: states.count, slotCount: slotNames.count)
        indexByIdentifier[ObjectIdentifier(parameter)] = states.count
        states.append(state)
        return state
    }

    func register(_ parameters: [Parameter]) {
        for parameter in parameters where parameter.isTrainable { _ = state(for: parameter) }
    }

    func stateDictionary() -> [String: [Float]] {
        var dictionary: [String: [Float]] = [:]
        for state in states where state.step > 0 {
            let key = state.key
            precondition(dictionary["\(key).\(slotNames.first ?? "step")"] == nil,
                         "optimizer state: two parameters are named \"\(key)\"")
            for (slot, buffer) in zip(slotNames, state.buffers) {
                dictionary["\(key).\(slot)"] = Array(UnsafeBufferPointer(start: buffer, count: state.count))
            }
            if savesStep { dictionary["\(key).step"] = [Float(state.step)] }
        }
        return dictionary
    }

    func load(_ dictionary: [String: [Float]]) throws {
        // Validate everything first so that a failure leaves the state untouched.
        var used = Set<String>()
        var plan: [(state: ParameterState, step: Int, slots: [[Float]])] = []
        var seenKeys = Set<String>()
        for state in states {
            let key = state.key
            guard seenKeys.insert(key).inserted else { throw OptimizerError.duplicateParameterName(key) }
            var names = slotNames.map { "\(key).\($0)" }
            if savesStep { names.append("\(key).step") }
            let present = names.filter { dictionary[$0] != nil }
            if present.isEmpty { plan.append((state, 0, [])); continue }
            if let missing = names.first(where: { dictionary[$0] == nil }) {
                throw OptimizerError.incompleteState(parameter: key, missingKey: missing)
            }
            used.formUnion(names)
            var slots: [[Float]] = []
            for name in names.prefix(slotNames.count) {
                let values = dictionary[name]!
                guard values.count == state.count else {
                    throw OptimizerError.wrongStateSize(key: name, expected: state.count, actual: values.count)
                }
                slots.append(values)
            }
            var step = 1
            if savesStep {
                let name = "\(key).step"
                let values = dictionary[name]!
                guard values.count == 1 else { throw OptimizerError.wrongStateSize(key: name, expected: 1, actual: values.count) }
                let value = values[0]
                guard value.isFinite, value >= 0, value <= 16_777_216, value == value.rounded() else {
                    throw OptimizerError.invalidStateValue(key: name, message: "step must be a non-negative integer, got \(value)")
                }
                step = Int(value)
            }
            plan.append((state, step, slots))
        }
        if let unknown = dictionary.keys.sorted().first(where: { !used.contains($0) }) {
            throw OptimizerError.unknownStateKey(unknown)
        }
        for (state, step, slots) in plan {
            if slots.isEmpty { state.reset(); continue }
            for (buffer, values) in zip(state.buffers, slots) where state.count > 0 {
                values.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: state.count) }
            }
            state.step = step
        }
    }
}
