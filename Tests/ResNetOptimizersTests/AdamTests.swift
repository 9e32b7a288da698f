import Foundation
import ResNetOptimizers
import ResNetTensors
import Testing

@Suite("Adam and AdamW")
struct AdamTests {
    @Test("Adam: the first step moves each element by about the learning rate")
    func adamFirstStepByHand() throws {
        let p = makeParameter([1, -1, 0.5])
        let adam = try Adam(learningRate: 0.01)
        setGradient(p, [0.5, -2, 0])
        adam.update([p])
        // m̂ = g, v̂ = g², so the step is lr * g / (|g| + eps): ±lr, and 0 for g = 0.
        expectClose(p.values, [0.99, -0.99, 0.5])
        let state = adam.stateDictionary()
        #expect(state["param0.step"] == [1])
        expectClose(state["param0.exp_avg"] ?? [], [0.05, -0.2, 0])
        expectClose(state["param0.exp_avg_sq"] ?? [], [0.00025, 0.004, 0])
    }

    @Test("Adam: a second step by hand")
    func adamSecondStepByHand() throws {
        let p = makeParameter([0])
        let adam = try Adam(learningRate: 0.1, beta1: 0.5, beta2: 0.75, epsilon: 0)
        setGradient(p, [1])
        adam.update([p])
        expectClose(p.values, [-0.1])
        setGradient(p, [3])
        adam.update([p])
        // m = 0.5*0.5 + 0.5*3 = 1.75, m̂ = 1.75/0.75; v = 0.75*0.25 + 0.25*9 = 2.4375, v̂ = 2.4375/0.4375
        let step = 0.1 * (1.75 / 0.75) / (2.4375 / 0.4375).squareRoot()
        expectClose(p.values, [-0.1 - step])
    }

    @Test("AdamW: decoupled decay by hand (zero gradient)")
    func adamWDecayByHand() throws {
        let p = makeParameter([1, -4])
        let adamW = try AdamW(learningRate: 0.1)  // default weightDecay 0.01
        #expect(adamW.weightDecay == 0.01)
        setGradient(p, [0, 0])
        adamW.update([p])
        expectClose(p.values, [0.999, -3.996])
        adamW.update([p])
        expectClose(p.values, [0.998001, -3.992004])
    }

    @Test("Adam with weight decay: the L2 term enters the moments (zero gradient)")
    func adamL2ByHand() throws {
        let p = makeParameter([1])
        let adam = try Adam(learningRate: 0.1, weightDecay: 0.5)
        setGradient(p, [0])
        adam.update([p])
        expectClose(p.values, [0.9])  // g = 0.5 > 0: a full -lr step
    }

    @Test("Adam trajectory matches the Double reference")
    func adamTrajectory() throws {
        checkTrajectory(try Adam(learningRate: 0.01)) {
            stepper(ReferenceAdam(learningRate: 0.01, decoupled: false))
        }
    }

    @Test("Adam trajectory with non-default betas matches the Double reference")
    func adamBetasTrajectory() throws {
        checkTrajectory(try Adam(learningRate: 0.02, beta1: 0.8, beta2: 0.95, epsilon: 1e-6), steps: 10) {
            stepper(ReferenceAdam(learningRate: 0.02, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, decoupled: false))
        }
    }

    @Test("Adam with weight decay trajectory matches the Double reference")
    func adamWeightDecayTrajectory() throws {
        checkTrajectory(try Adam(learningRate: 0.01, weightDecay: 0.1)) {
            stepper(ReferenceAdam(learningRate: 0.01, weightDecay: 0.1, decoupled: false))
        }
    }

    @Test("AdamW trajectory matches the Double reference")
    func adamWTrajectory() throws {
        checkTrajectory(try AdamW(learningRate: 0.01, weightDecay: 0.1)) {
            stepper(ReferenceAdam(learningRate: 0.01, weightDecay: 0.1, decoupled: true))
        }
    }

    @Test("Adam keeps a step counter per parameter")
    func perParameterStep() throws {
        let a = makeParameter([1])
        let b = makeParameter([1])
        let adam = try Adam(learningRate: 0.1, beta1: 0.5, beta2: 0.75, epsilon: 0)
        setGradient(a, [1])
        setGradient(b, [1])
        adam.update([a])
        adam.update([a])
        adam.update([a, b])  // a's third step, b's first
        let state = adam.stateDictionary()
        #expect(state["param0.step"] == [3])
        #expect(state["param1.step"] == [1])
        expectClose(b.values, [0.9])  // a first step is always a full -lr * sign(g) step
        expectClose(a.values, [0.7])  // constant gradient: m̂ = 1, v̂ = 1 every step
    }
}
