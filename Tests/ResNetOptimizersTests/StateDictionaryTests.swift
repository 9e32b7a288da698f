import ResNetOptimizers
import ResNetTensors
import Testing

/// Fresh parameters with fixed starting values.
private func makeParameters() -> [Parameter] {
    [makeParameter([1, -2, 0.5, 3]), makeParameter([0.25, -0.75, 1.5]), makeParameter([9, 8], trainable: false)]
}

private func step(_ optimizer: Optimizer, _ parameters: [Parameter], _ index: Int) {
    for (k, parameter) in parameters.enumerated() {
        setGradient(parameter, syntheticGradient(step: index, count: parameter.count, salt: k))
    }
    optimizer.update(parameters)
}

/// Optimizer factories whose state should survive a round trip.
private let factories: [(String, @Sendable () throws -> Optimizer)] = [
    ("SGD", { try SGD(learningRate: 0.1, weightDecay: 0.01) }),
    ("SGD+momentum+dampening", { try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01, dampening: 0.2) }),
    ("SGD+nesterov", { try SGD(learningRate: 0.05, momentum: 0.9, nesterov: true) }),
    ("Adam", { try Adam(learningRate: 0.01, weightDecay: 0.05) }),
    ("AdamW", { try AdamW(learningRate: 0.01, weightDecay: 0.05) }),
]

@Suite("State dictionaries")
struct StateDictionaryTests {
    @Test("save midway, load into a fresh optimizer: identical trajectory", arguments: 0..<5)
    func roundTripFresh(_ which: Int) throws {
        let (label, make) = factories[which]
        // Uninterrupted run.
        let reference = makeParameters()
        let uninterrupted = try make()
        for i in 0..<8 { step(uninterrupted, reference, i) }

        // First half, then checkpoint values and state.
        let first = makeParameters()
        let before = try make()
        for i in 0..<4 { step(before, first, i) }
        let savedValues = first.map(\.values)
        let savedState = before.stateDictionary()

        // Resume with new parameter objects and a new optimizer.
        let resumed = makeParameters()
        for (parameter, values) in zip(resumed, savedValues) { parameter.values = values }
        let after = try make()
        try after.loadStateDictionary(savedState, for: resumed)
        #expect(after.stateDictionary() == savedState, "\(label)")
        for i in 4..<8 { step(after, resumed, i) }

        for (a, b) in zip(resumed, reference) { #expect(a.values == b.values, "\(label)") }
        #expect(after.stateDictionary() == uninterrupted.stateDictionary(), "\(label)")
    }

    @Test("loading replaces existing state, including the Adam step count", arguments: 0..<5)
    func roundTripOverwrite(_ which: Int) throws {
        let (label, make) = factories[which]
        let reference = makeParameters()
        let uninterrupted = try make()
        for i in 0..<6 { step(uninterrupted, reference, i) }

        let first = makeParameters()
        let before = try make()
        for i in 0..<3 { step(before, first, i) }
        let savedValues = first.map(\.values)
        let savedState = before.stateDictionary()

        // An optimizer that has taken other, more steps on the same parameters.
        let other = makeParameters()
        let busy = try make()
        for i in 0..<7 { step(busy, other, 100 + i) }
        for (parameter, values) in zip(other, savedValues) { parameter.values = values }
        try busy.loadStateDictionary(savedState)
        for i in 3..<6 { step(busy, other, i) }

        for (a, b) in zip(other, reference) { #expect(a.values == b.values, "\(label)") }
    }

    @Test("an empty state resets to fresh")
    func emptyStateResets() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9)
        setGradient(p, [1])
        sgd.update([p])
        try sgd.loadStateDictionary([:])
        #expect(sgd.stateDictionary().isEmpty)
        sgd.update([p])
        expectClose(p.values, [0.8])  // the buffer restarted at g: a plain step
    }

    @Test("bad state dictionaries throw and leave the state unchanged")
    func badStates() throws {
        let a = makeParameter([1, 2])
        let b = makeParameter([3])
        let adam = try Adam(learningRate: 0.1)
        setGradient(a, [1, -1])
        setGradient(b, [0.5])
        adam.update([a, b])
        adam.update([a, b])
        let good = adam.stateDictionary()

        var unknown = good
        unknown["param2.exp_avg"] = [0]
        #expect(throws: OptimizerError.unknownStateKey("param2.exp_avg")) { try adam.loadStateDictionary(unknown) }

        var typo = good
        typo["param0.momentum"] = [0, 0]
        #expect(throws: OptimizerError.unknownStateKey("param0.momentum")) { try adam.loadStateDictionary(typo) }

        var wrongSize = good
        wrongSize["param0.exp_avg"] = [0, 0, 0]
        #expect(throws: OptimizerError.wrongStateSize(key: "param0.exp_avg", expected: 2, actual: 3)) {
            try adam.loadStateDictionary(wrongSize)
        }

        var incomplete = good
        incomplete["param1.exp_avg_sq"] = nil
        #expect(throws: OptimizerError.incompleteState(parameter: "param1", missingKey: "param1.exp_avg_sq")) {
            try adam.loadStateDictionary(incomplete)
        }

        for bad: Float in [1.5, -1, .nan] {
            var badStep = good
            badStep["param0.step"] = [bad]
            #expect(throws: OptimizerError.self) { try adam.loadStateDictionary(badStep) }
        }
        var twoSteps = good
        twoSteps["param0.step"] = [2, 2]
        #expect(throws: OptimizerError.wrongStateSize(key: "param0.step", expected: 1, actual: 2)) {
            try adam.loadStateDictionary(twoSteps)
        }

        #expect(adam.stateDictionary() == good, "failed loads change nothing")

        // Before any parameter is known, every key is unknown.
        let fresh = try Adam()
        #expect(throws: OptimizerError.self) { try fresh.loadStateDictionary(good) }
        // Plain SGD has no state at all.
        let plain = try SGD(learningRate: 0.1)
        #expect(throws: OptimizerError.unknownStateKey("param0.momentum")) {
            try plain.loadStateDictionary(["param0.momentum": [0, 0]], for: [a, b])
        }
        try plain.loadStateDictionary([:], for: [a, b])
    }
}
