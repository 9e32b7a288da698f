// Parameter.name is set by the module tree (internal to ResNetTensors); these
// tests need @testable to name parameters themselves, so they run in debug builds.
#if DEBUG
@testable import ResNetTensors
import ResNetOptimizers
import Testing

@Suite("Named state keys")
struct NamedStateTests {
    @Test("keys use parameter names; unnamed ones keep their index")
    func namedKeys() throws {
        let weight = makeParameter([1, 2])
        weight.name = "stage1.conv.weight"
        let bias = makeParameter([0])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9)
        setGradient(weight, [1, 1])
        setGradient(bias, [1])
        sgd.update([weight, bias])
        #expect(Set(sgd.stateDictionary().keys) == ["stage1.conv.weight.momentum", "param1.momentum"])

        let adam = try Adam()
        adam.update([weight])
        #expect(Set(adam.stateDictionary().keys) == [
            "stage1.conv.weight.exp_avg", "stage1.conv.weight.exp_avg_sq", "stage1.conv.weight.step",
        ])
    }

    @Test("named state round trip into new parameter objects")
    func namedRoundTrip() throws {
        func make() -> Parameter {
            let p = makeParameter([1, -1, 2])
            p.name = "fc.weight"
            return p
        }
        let a = make(), b = make()
        let first = try AdamW(learningRate: 0.05)
        let second = try AdamW(learningRate: 0.05)
        for i in 0..<3 {
            setGradient(a, syntheticGradient(step: i, count: 3))
            first.update([a])
        }
        b.values = a.values
        try second.loadStateDictionary(first.stateDictionary(), for: [b])
        for i in 3..<6 {
            setGradient(a, syntheticGradient(step: i, count: 3))
            setGradient(b, syntheticGradient(step: i, count: 3))
            first.update([a])
            second.update([b])
        }
        #expect(a.values == b.values)
    }

    @Test("duplicate names are reported on load")
    func duplicateNames() throws {
        let a = makeParameter([1]), b = makeParameter([2])
        a.name = "same"
        b.name = "same"
        let sgd = try SGD(learningRate: 0.1, momentum: 0.5)
        #expect(throws: OptimizerError.duplicateParameterName("same")) {
            try sgd.loadStateDictionary([:], for: [a, b])
        }
    }
}
#endif
