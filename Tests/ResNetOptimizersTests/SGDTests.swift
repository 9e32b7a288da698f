import ResNetOptimizers
import ResNetTensors
import Testing

@Suite("SGD")
struct SGDTests {
    @Test("plain SGD: hand-computed steps")
    func plainByHand() throws {
        let p = makeParameter([1, -2])
        let sgd = try SGD(learningRate: 0.1)
        setGradient(p, [0.5, 0.25])
        sgd.update([p])
        expectClose(p.values, [0.95, -2.025])
        setGradient(p, [1, -1])
        sgd.update([p])
        expectClose(p.values, [0.85, -1.925])
        #expect(sgd.stateDictionary().isEmpty)
    }

    @Test("weight decay: hand-computed steps")
    func weightDecayByHand() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1, weightDecay: 0.1)
        setGradient(p, [0])
        sgd.update([p])
        expectClose(p.values, [0.99])  // g = 0.1 * 1
        sgd.update([p])
        expectClose(p.values, [0.9801])  // g = 0.1 * 0.99
        #expect(p.gradients == [0], "the gradient itself is not modified")
    }

    @Test("momentum: hand-computed steps")
    func momentumByHand() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9)
        setGradient(p, [1])
        let expected: [Double] = [0.9, 0.71, 0.439]  // buffers 1, 1.9, 2.71
        for value in expected {
            sgd.update([p])
            expectClose(p.values, [value])
        }
        expectClose(sgd.stateDictionary()["param0.momentum"] ?? [], [2.71])
    }

    @Test("Nesterov: hand-computed steps")
    func nesterovByHand() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9, nesterov: true)
        setGradient(p, [1])
        sgd.update([p])
        expectClose(p.values, [0.81])  // buf 1, step 1 + 0.9 * 1
        sgd.update([p])
        expectClose(p.values, [0.539])  // buf 1.9, step 1 + 0.9 * 1.9
    }

    @Test("dampening: hand-computed steps (not applied on the first step)")
    func dampeningByHand() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9, dampening: 0.5)
        setGradient(p, [1])
        let expected: [Double] = [0.9, 0.76, 0.584]  // buffers 1, 1.4, 1.76
        for value in expected {
            sgd.update([p])
            expectClose(p.values, [value])
        }
    }

    @Test("plain trajectory matches the Double reference")
    func plainTrajectory() throws {
        checkTrajectory(try SGD(learningRate: 0.1)) { stepper(ReferenceSGD(learningRate: 0.1)) }
    }

    @Test("weight decay trajectory matches the Double reference")
    func weightDecayTrajectory() throws {
        checkTrajectory(try SGD(learningRate: 0.05, weightDecay: 0.01)) {
            stepper(ReferenceSGD(learningRate: 0.05, weightDecay: 0.01))
        }
    }

    @Test("momentum trajectory matches the Double reference")
    func momentumTrajectory() throws {
        checkTrajectory(try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 5e-4)) {
            stepper(ReferenceSGD(learningRate: 0.05, momentum: 0.9, weightDecay: 5e-4))
        }
    }

    @Test("Nesterov trajectory matches the Double reference")
    func nesterovTrajectory() throws {
        checkTrajectory(try SGD(learningRate: 0.05, momentum: 0.8, nesterov: true, weightDecay: 1e-3)) {
            stepper(ReferenceSGD(learningRate: 0.05, momentum: 0.8, weightDecay: 1e-3, nesterov: true))
        }
    }

    @Test("dampening trajectory matches the Double reference")
    func dampeningTrajectory() throws {
        checkTrajectory(try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-2, dampening: 0.3)) {
            stepper(ReferenceSGD(learningRate: 0.05, momentum: 0.9, dampening: 0.3, weightDecay: 1e-2))
        }
    }

    @Test("a changed learning rate applies from the next step")
    func learningRateIsSettable() throws {
        let p = makeParameter([1])
        let sgd = try SGD(learningRate: 0.1)
        setGradient(p, [1])
        sgd.update([p])
        sgd.learningRate = 0.01
        sgd.update([p])
        expectClose(p.values, [0.89])
        sgd.learningRate = 0
        sgd.update([p])
        expectClose(p.values, [0.89])
    }
}
