import ResNetOptimizers
import ResNetTensors
import Testing

@Suite("RMSprop")
struct RMSpropTests {
    @Test("hand-computed steps: v = alpha v + (1 - alpha) g^2, p -= lr g / (sqrt(v) + eps)")
    func byHand() throws {
        let p = makeParameter([1, -2])
        let rms = try RMSprop(learningRate: 0.1, alpha: 0.9, epsilon: 0)
        setGradient(p, [1, 0.5])
        rms.update([p])
        // v = 0.1, 0.025; steps 0.1 / sqrt(0.1) * 1 and 0.1 / sqrt(0.025) * 0.5
        expectClose(p.values, [1 - 0.31622776601683794, -2 - 0.31622776601683794])
        setGradient(p, [1, 0.5])
        rms.update([p])
        // v = 0.19, 0.0475
        expectClose(p.values, [1 - 0.31622776601683794 - 0.22941573387056177, -2 - 0.31622776601683794 - 0.22941573387056177])
        let state = rms.stateDictionary()
        #expect(Set(state.keys) == ["param0.square_avg"])
        expectClose(state["param0.square_avg"]!, [0.19, 0.0475])
    }

    @Test("weight decay is added to the gradient; a saved state resumes exactly")
    func decayAndResume() throws {
        let a = makeParameter([1]), b = makeParameter([1])
        let first = try RMSprop(learningRate: 0.01, weightDecay: 0.5)
        setGradient(a, [0])
        first.update([a])
        // g = 0.5, v = 0.01 * 0.25, step = 0.01 * 0.5 / (0.05 + 1e-8)
        expectClose(a.values, [1 - 0.01 * 0.5 / (0.05 + 1e-8)])
        let second = try RMSprop(learningRate: 0.01, weightDecay: 0.5)
        b.values = a.values
        try second.loadStateDictionary(first.stateDictionary(), for: [b])
        setGradient(a, [0.3])
        setGradient(b, [0.3])
        first.update([a])
        second.update([b])
        #expect(a.values == b.values)
    }

    @Test("invalid settings are refused")
    func invalid() {
        #expect(throws: OptimizerError.self) { try RMSprop(alpha: 1) }
        #expect(throws: OptimizerError.self) { try RMSprop(epsilon: -1) }
        #expect(throws: OptimizerError.self) { try RMSprop(learningRate: .nan) }
    }
}
