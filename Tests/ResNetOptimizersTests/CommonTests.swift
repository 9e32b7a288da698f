import ResNetOptimizers
import ResNetTensors
import Testing

/// One of each optimizer configuration, fresh on every call.
func allOptimizers() throws -> [(String, Optimizer)] {
    [
        ("SGD", try SGD(learningRate: 0.1)),
        ("SGD+wd", try SGD(learningRate: 0.1, weightDecay: 1e-4)),
        ("SGD+momentum", try SGD(learningRate: 0.05, momentum: 0.9)),
        ("SGD+nesterov", try SGD(learningRate: 0.05, momentum: 0.9, nesterov: true)),
        ("SGD+dampening", try SGD(learningRate: 0.05, momentum: 0.9, dampening: 0.5)),
        ("Adam", try Adam(learningRate: 0.05)),
        ("Adam+wd", try Adam(learningRate: 0.05, weightDecay: 1e-4)),
        ("AdamW", try AdamW(learningRate: 0.05, weightDecay: 1e-4)),
    ]
}

@Suite("All optimizers")
struct CommonTests {
    @Test("non-trainable parameters are untouched and have no state")
    func nonTrainableUntouched() throws {
        for (label, optimizer) in try allOptimizers() {
            let frozen = makeParameter([1, 2, 3], trainable: false)
            let trained = makeParameter([1, 2, 3])
            setGradient(frozen, [0.5, -0.5, 1])
            setGradient(trained, [0.5, -0.5, 1])
            for _ in 0..<3 { optimizer.update([frozen, trained]) }
            #expect(frozen.values == [1, 2, 3], "\(label)")
            #expect(frozen.gradients == [0.5, -0.5, 1], "\(label)")
            #expect(trained.values != [1, 2, 3], "\(label)")
            // The frozen parameter takes no index: the trained one is param0.
            #expect(optimizer.stateDictionary().keys.allSatisfy { $0.hasPrefix("param0.") }, "\(label)")
        }
    }

    @Test("each optimizer minimises sum((p - t)^2)")
    func minimisesQuadratic() throws {
        let target: [Float] = [1, -1, 2, 0.5, -3]
        for (label, optimizer) in try allOptimizers() {
            let p = makeParameter([3, -2, 0.5, 10, 0])
            for _ in 0..<1000 {
                setGradient(p, zip(p.values, target).map { 2 * ($0 - $1) })
                optimizer.update([p])
            }
            expectClose(p.values, target.map(Double.init), tolerance: 1e-2, label)
        }
    }

    @Test("parameter order and names: unnamed parameters are param<i> by first sight")
    func unnamedKeys() throws {
        let a = makeParameter([1])
        let b = makeParameter([1, 2])
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9)
        setGradient(a, [1])
        setGradient(b, [1, 1])
        sgd.update([b])
        sgd.update([a, b])
        #expect(Set(sgd.stateDictionary().keys) == ["param0.momentum", "param1.momentum"])
        #expect(sgd.stateDictionary()["param0.momentum"]?.count == 2)  // b was seen first
        let adam = try AdamW()
        adam.update([a, b])
        #expect(Set(adam.stateDictionary().keys) == [
            "param0.exp_avg", "param0.exp_avg_sq", "param0.step",
            "param1.exp_avg", "param1.exp_avg_sq", "param1.step",
        ])
    }

    @Test("register creates no entries and leaves parameters unchanged")
    func registerIsQuiet() throws {
        for (label, optimizer) in try allOptimizers() {
            let p = makeParameter([1, 2])
            setGradient(p, [1, 1])
            optimizer.register([p])
            #expect(p.values == [1, 2], "\(label)")
            #expect(optimizer.stateDictionary().isEmpty, "\(label)")
        }
    }
}

@Suite("Configuration errors")
struct ConfigurationTests {
    @Test("SGD rejects bad settings")
    func sgdErrors() {
        #expect(throws: OptimizerError.nesterovRequiresMomentum(momentum: 0)) {
            try SGD(learningRate: 0.1, nesterov: true)
        }
        #expect(throws: OptimizerError.nesterovRequiresZeroDampening(dampening: 0.1)) {
            try SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, dampening: 0.1)
        }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: -0.1) }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: .nan) }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: .infinity) }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, momentum: -0.5) }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, weightDecay: -1e-4) }
        #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, momentum: 0.9, dampening: 1.5) }
        #expect(throws: Never.self) { try SGD(learningRate: 0) }
        #expect(throws: Never.self) { try SGD(learningRate: 0.1, momentum: 0.9, dampening: 1) }
    }

    @Test("Adam and AdamW reject bad settings")
    func adamErrors() {
        #expect(throws: OptimizerError.self) { try Adam(learningRate: -1) }
        #expect(throws: OptimizerError.self) { try Adam(beta1: 1) }
        #expect(throws: OptimizerError.self) { try Adam(beta1: -0.1) }
        #expect(throws: OptimizerError.self) { try Adam(beta2: 1.5) }
        #expect(throws: OptimizerError.self) { try Adam(epsilon: -1e-8) }
        #expect(throws: OptimizerError.self) { try Adam(weightDecay: -0.1) }
        #expect(throws: OptimizerError.self) { try AdamW(learningRate: -1) }
        #expect(throws: OptimizerError.self) { try AdamW(beta2: 1) }
        #expect(throws: OptimizerError.self) { try AdamW(weightDecay: -0.01) }
        #expect(throws: OptimizerError.self) { try AdamW(epsilon: .nan) }
        #expect(throws: Never.self) { try Adam(beta1: 0, epsilon: 0) }
    }

    @Test("errors describe themselves")
    func descriptions() {
        do {
            _ = try SGD(learningRate: -0.5)
            Issue.record("expected an error")
        } catch let error as OptimizerError {
            #expect(error.description.contains("learningRate"))
            #expect(error.description.contains("-0.5"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(OptimizerError.nesterovRequiresMomentum(momentum: 0).description.contains("Nesterov"))
        #expect(OptimizerError.unknownStateKey("x.momentum").description.contains("x.momentum"))
        #expect(OptimizerError.wrongStateSize(key: "k", expected: 3, actual: 2).description.contains("expected 3"))
    }
}

@Suite("Vector and scalar paths")
struct VectorPathTests {
    @Test("each element of a long parameter moves exactly as it would alone")
    func elementwiseIdentical() throws {
        let count = 21  // two 8-lane chunks and a 5-element tail
        let start: [Float] = (0..<count).map { Float($0) * 0.37 - 3 }
        for (label, _) in try allOptimizers() {
            let long = makeParameter(start)
            let singles = start.map { makeParameter([$0]) }
            let optimizerLong = try allOptimizers().first { $0.0 == label }!.1
            let optimizerSingles = try allOptimizers().first { $0.0 == label }!.1
            for step in 0..<5 {
                let gradient = syntheticGradient(step: step, count: count)
                setGradient(long, gradient)
                for (single, g) in zip(singles, gradient) { setGradient(single, [g]) }
                optimizerLong.update([long])
                optimizerSingles.update(singles)
            }
            #expect(long.values == singles.map { $0.values[0] }, "\(label)")
        }
    }
}

@Suite("Per-parameter learning-rate scale")
struct LearningRateScaleTests {
    /// A parameter with `learningRateScale` s under rate r follows exactly the path it would
    /// follow alone under rate r * s (a PyTorch parameter group with a scaled `lr`): weight
    /// decay and Adam's bias corrections included. The other parameter is unaffected.
    @Test func aScaledParameterFollowsTheRateTimesItsScale() throws {
        let makers: [(String, (Float) throws -> Optimizer)] = [
            ("SGD+momentum+wd", { try SGD(learningRate: $0, momentum: 0.9, weightDecay: 5e-4) }),
            ("SGD+nesterov", { try SGD(learningRate: $0, momentum: 0.9, nesterov: true) }),
            ("Adam+wd", { try Adam(learningRate: $0, weightDecay: 1e-4) }),
            ("AdamW", { try AdamW(learningRate: $0, weightDecay: 1e-2) }),
            ("RMSprop", { try RMSprop(learningRate: $0, weightDecay: 1e-4) }),
        ]
        for (label, make) in makers {
            let start: [Float] = [0.5, -1, 2, 0.25, -0.75, 3, 1, -2, 0.1]
            let backbone = makeParameter(start), head = makeParameter(start)
            backbone.learningRateScale = 0.5
            let alone = makeParameter(start), unscaled = makeParameter(start)
            let grouped = try make(0.08), halved = try make(0.04), full = try make(0.08)
            for step in 0..<6 {
                let g = syntheticGradient(step: step, count: start.count)
                for p in [backbone, head, alone, unscaled] { setGradient(p, g) }
                grouped.update([backbone, head])
                halved.update([alone])
                full.update([unscaled])
            }
            #expect(backbone.values == alone.values, "\(label): scale 0.5 at rate 0.08 is rate 0.04")
            #expect(head.values == unscaled.values, "\(label): the unscaled parameter is untouched by the other's scale")
            #expect(backbone.values != head.values, "\(label)")
        }
    }

    @Test func aZeroScaleKeepsTheParameterAsItIsButItsStateStillAdvances() throws {
        let p = makeParameter([1, 2, 3])
        p.learningRateScale = 0
        let sgd = try SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 1e-3)
        setGradient(p, [1, -1, 0.5])
        sgd.update([p])
        #expect(p.values == [1, 2, 3])
        #expect(sgd.stateDictionary()["param0.momentum"] != nil)
    }
}
