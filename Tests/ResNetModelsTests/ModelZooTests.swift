import Foundation
import ResNetLayers
import ResNetModels
import ResNetReference
import ResNetTensors
import Testing

func build(_ name: String, shortcut: ShortcutOption = .b, input: ImageShape? = nil, classes: Int? = nil) throws -> any Layer {
    try ModelDefinition(name: name, options: ModelOptions(shortcut: shortcut)).build(input: input, classes: classes)
}

@Suite("Model zoo", .serialized)
struct ModelZooTests {
    /// PyTorch's counts for the same definitions (torchvision for the ImageNet networks).
    @Test("parameter counts match PyTorch's", arguments: [
        ("resnet20", ShortcutOption.a, nil as Int?, 269_722),
        ("resnet20", .b, nil, 272_474),
        ("resnet20", .c, nil, 283_962),
        ("resnet56", .b, nil, 855_770),
        ("resnet110", .a, nil, 1_727_962),
        ("resnet1202", .a, nil, 19_421_274),
        ("resnet18", .b, nil, 11_689_512),
        ("resnet34", .b, nil, 21_797_672),
        ("resnet50", .b, nil, 25_557_032),
        ("resnet101", .b, nil, 44_549_160),
        ("resnet152", .b, nil, 60_192_808),
        ("resnet50", .b, 6, 23_520_326),
    ])
    func parameterCounts(name: String, shortcut: ShortcutOption, classes: Int?, expected: Int) throws {
        let model = try build(name, shortcut: shortcut, classes: classes)
        #expect(model.trainableParameterCount == expected, "\(name) \(shortcut)")
    }

    @Test("option A adds no parameters; C adds a projection to every block, B only where the shape changes")
    func shortcutOptions() throws {
        func projections(_ model: any Layer) -> [String] {
            model.namedParameters().map(\.0).filter { $0.hasSuffix("shortcut.projection.weight") }
        }
        let plain = try build("plain20"), a = try build("resnet20", shortcut: .a)
        let b = try build("resnet20", shortcut: .b), c = try build("resnet20", shortcut: .c)
        #expect(a.trainableParameterCount == plain.trainableParameterCount)
        #expect(projections(a).isEmpty)
        #expect(projections(b) == ["stage2.block1.shortcut.projection.weight", "stage3.block1.shortcut.projection.weight"])
        #expect(projections(c).count == 9, "one per block: 3 stages x 3 blocks")
        // A projection 16->32 is 1x1 conv (512) + batch norm (64); 32->64 is 2048 + 128.
        #expect(b.trainableParameterCount - a.trainableParameterCount == 576 + 2176)
    }

    @Test("the summary lists shapes, the additions and the paper's cost; JSON has the documented keys")
    func summary() throws {
        let definition = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a))
        let summary = try ModelSummary(of: try definition.build(), name: "resnet20", input: definition.defaultInput, classes: 10)
        #expect(summary.totalParameters == 269_722)
        #expect(summary.table.contains("Total params: 269,722"))
        #expect(summary.table.contains("Trainable params: 269,722"))
        let rows = Dictionary(uniqueKeysWithValues: summary.layers.map { ($0.name, $0) })
        #expect(rows["stem.conv"]?.outputShape == [16, 32, 32])
        #expect(rows["stem.conv"]?.type == "Conv2D")
        #expect(rows["stem.conv"]?.parameters == 432)
        #expect(rows["stage2.block1.shortcut"]?.outputShape == [32, 16, 16], "option A pads 16 -> 32 channels")
        #expect(rows["stage3.block3.add"]?.outputShape == [64, 8, 8])
        #expect(rows["fc"]?.outputShape == [10])
        #expect(summary.layers.filter { $0.type == "Add" }.count == 9)
        #expect(summary.layers.reduce(0) { $0 + $1.parameters } == 269_722)
        // 3x3 convs: stem 16*3*9*1024; stage1 6 convs 16*16*9*1024; stage2 32*16*9*256 + 5 x 32*32*9*256;
        // stage3 64*32*9*64 + 5 x 64*64*9*64; fc 64*10. (The paper's Table 6: "41M FLOPs", i.e. MACs.)
        let expected = 432 * 1024 + 6 * 2304 * 1024 + 4608 * 256 + 5 * 9216 * 256 + 18432 * 64 + 5 * 36864 * 64 + 640
        #expect(summary.multiplyAccumulates == expected)
        #expect(abs(Double(summary.multiplyAccumulates) / 41e6 - 1) < 0.02, "the paper rounds to 41M")

        let json = try JSONSerialization.jsonObject(with: Data(summary.json.utf8)) as! [String: Any]
        for key in ["model", "total_params", "trainable_params", "macs", "layers"] { #expect(json[key] != nil, "\(key)") }
        #expect(json["total_params"] as? Int == 269_722)
        #expect((json["layers"] as? [[String: Any]])?.first?["name"] as? String == "stem.conv")
    }

    @Test("ImageNet multiply-accumulates agree with torchvision's published GFLOPS", arguments: [
        ("resnet18", 1.81), ("resnet34", 3.66), ("resnet50", 4.09), ("resnet101", 7.80), ("resnet152", 11.51),
    ])
    func imageNetCost(name: String, gmacs: Double) throws {
        let definition = try ModelDefinition(name: name)
        let summary = try ModelSummary(of: try definition.build(), name: name, input: definition.defaultInput, classes: 1000)
        #expect(abs(Double(summary.multiplyAccumulates) / 1e9 - gmacs) < 0.006, "\(summary.multiplyAccumulates)")
    }

    @Test("plain networks have no shortcuts and as many weighted layers as their residual twins")
    func plain() throws {
        for (plainName, residual) in [("plain20", "resnet20"), ("plain34", "resnet34")] {
            let p = try build(plainName), r = try build(residual, shortcut: .a)
            let summary = try ModelSummary(of: p, name: plainName, input: try ModelDefinition(name: plainName).defaultInput, classes: 10)
            #expect(!summary.layers.contains { $0.type == "Add" })
            let weighted = { (m: any Layer) in m.namedParameters().filter { $0.0.hasSuffix("conv.weight") || $0.0.hasSuffix("conv1.weight") || $0.0.hasSuffix("conv2.weight") || $0.0 == "fc.weight" }.count }
            #expect(weighted(p) == weighted(r))
        }
        #expect(try ResNetConfiguration.cifar(depth: 56).depth == 56)
        #expect(try ResNetConfiguration.cifarPreActivation(depth: 164).depth == 164)
        #expect(try ResNetConfiguration.imageNet(depth: 152).depth == 152)
    }

    @Test("pre-activation and wide networks: the papers' sizes")
    func preActivationAndWide() throws {
        // He et al. 2016b Table 2: ResNet-164 1.7M, ResNet-1001 10.2M (CIFAR-10). The paper's figures
        // leave out the batch-norm scales and shifts (about 150k in ResNet-1001).
        let v2 = try build("resnet164v2"), v2Deep = try build("resnet1001v2")
        #expect(v2.trainableParameterCount == 1_703_258)
        #expect(v2Deep.trainableParameterCount == 10_327_706)
        let withoutNorm = { (m: any Layer) in
            m.namedParameters().filter { $0.1.isTrainable && !$0.0.contains("bn") }.reduce(0) { $0 + $1.1.count }
        }
        // Within the paper's rounding to 0.1M.
        #expect(abs(withoutNorm(v2) - 1_700_000) <= 50_000)
        #expect(abs(withoutNorm(v2Deep) - 10_200_000) <= 50_000)
        // Zagoruyko & Komodakis Table 1 / the authors' PyTorch code: WRN-40-2 2.2M, WRN-16-8 11.0M, WRN-28-10 36.5M.
        #expect(try build("wrn-40-2").trainableParameterCount == 2_243_546)
        #expect(try build("wrn-16-8").trainableParameterCount == 10_961_370)
        #expect(try build("wrn-28-10").trainableParameterCount == 36_479_194)
        // svgg: convs 1,792+36,928+73,856... with BN, dense 4096*1024+1024, 1024*10+10.
        let vgg = try build("svgg")
        let convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
        let expected = convs.reduce(0) { $0 + $1.0 * $1.1 * 9 + 2 * $1.1 } + 4096 * 1024 + 1024 + 1024 * 10 + 10
        #expect(vgg.trainableParameterCount == expected)
    }

    @Test("the original ResNet-50 strides its first 1x1; v1.5 (default) strides the 3x3; same parameters")
    func bottleneckStride() throws {
        func rows(_ original: Bool) throws -> ([String: [Int]], ModelSummary) {
            let definition = try ModelDefinition(name: "resnet50", options: ModelOptions(strideOnFirst1x1: original))
            let input = ImageShape(height: 64, width: 64, channels: 3)
            let summary = try ModelSummary(of: try definition.build(input: input, classes: 6), name: "resnet50", input: input, classes: 6)
            return (Dictionary(uniqueKeysWithValues: summary.layers.map { ($0.name, $0.outputShape) }), summary)
        }
        let (v15, v15Summary) = try rows(false), (v1, v1Summary) = try rows(true)
        #expect(v15["stage2.block1.conv1"] == [128, 16, 16])
        #expect(v15["stage2.block1.conv2"] == [128, 8, 8])
        #expect(v1["stage2.block1.conv1"] == [128, 8, 8])
        #expect(v1["stage2.block1.conv2"] == [128, 8, 8])
        #expect(v15Summary.totalParameters == 23_520_326 && v1Summary.totalParameters == 23_520_326)
        #expect(v1Summary.multiplyAccumulates < v15Summary.multiplyAccumulates)
    }

    @Test("impossible requests get one-line errors that say what is valid")
    func badInput() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        let resnet21 = message { try ModelDefinition(name: "resnet21") }
        #expect(resnet21.contains("6n+2 (20, 32, 44, 56, 110"))
        #expect(resnet21.contains("18, 34, 50, 101, 152"))
        #expect(!resnet21.contains("\n"))
        #expect(message { try ModelDefinition(name: "resnet57v2") }.contains("9n+2 (29, 56, 110, 164, 1001"))
        #expect(message { try ModelDefinition(name: "wrn-17-2") }.contains("6m+4"))
        #expect(message { try ModelDefinition(name: "plain50x") }.contains("known models: resnet20"))
        #expect(message { try ModelDefinition(name: "alexnet") }.contains("unknown model 'alexnet'"))
        #expect(message { try build("resnet50", input: ImageShape(height: 16, width: 16, channels: 3)) }
            .contains("at least 32x32"))
        #expect(message { try build("svgg", input: ImageShape(height: 4, width: 4, channels: 3)) }.contains("at least 8x8"))
        #expect(message { try build("resnet20", classes: 0) }.contains("classes must be in 1...1000000, got 0"))
        #expect(message { try ImageShape(parsing: "32x32") }.contains("HxWxC"))
        #expect(try ImageShape(parsing: "64x48x1") == ImageShape(height: 64, width: 48, channels: 1))
    }
}

@Suite("Every model trains", .serialized)
struct ModelPassTests {
    /// The very deep and the ImageNet-sized networks run at batch 1, the rest at batch 2.
    static let singleImage: Set<String> = ["resnet1202", "resnet1001v2", "resnet101", "resnet152", "wrn-28-10"]

    @Test("forward and backward at the natural input size", arguments: ModelDefinition.knownNames)
    func forwardBackward(name: String) throws {
        let definition = try ModelDefinition(name: name)
        let model = try definition.build()
        model.initializeParameters(seed: 7)
        let batch = Self.singleImage.contains(name) ? 1 : 2
        let input = definition.defaultInput
        let graph = Graph()
        let x = graph.input([batch] + input.chw)
        let labels = graph.labels(count: batch)
        let logits = try model(x)
        #expect(logits.shape == [batch, definition.defaultClasses])
        let loss = try softmaxCrossEntropy(logits, labels: labels)
        try graph.plan(loss: loss, keep: [logits])

        var generator = SeededGenerator(seed: 1)
        try graph.setInput(x, (0..<(batch * input.chw.reduce(1, *))).map { _ in generator.nextNormal() })
        try graph.setLabels(labels, (0..<batch).map { Int32($0 * 3 % definition.defaultClasses) })
        graph.forward()
        graph.backward()

        let value = try graph.scalar(loss)
        #expect(value.isFinite && value > 0, "\(name): loss \(value)")
        let parameters = model.namedParameters().filter { $0.1.isTrainable }
        for (parameterName, parameter) in parameters {
            let g = parameter.gradients
            guard g.allSatisfy(\.isFinite) else { Issue.record("\(name): \(parameterName) has a non-finite gradient"); return }
        }
        // The gradient reaches the first layer through every block.
        let first = try #require(parameters.first { $0.0 == "stem.conv.weight" || $0.0 == "block1.conv1.weight" })
        #expect(first.1.gradients.contains { $0 != 0 }, "\(name): no gradient at the first layer")
    }
}

@Suite("Mixed precision", .serialized)
struct MixedPrecisionTests {
    /// Loss, logits and every parameter gradient of one step, at a precision.
    static func step(_ name: String, shortcut: ShortcutOption, precision: Precision, batch: Int = 8)
        throws -> (loss: Float, logits: [Float], gradients: [String: [Float]]) {
        let model = try build(name, shortcut: shortcut)
        model.initializeParameters(seed: 3)
        let graph = Graph(precision: precision)
        let x = graph.input([batch, 3, 32, 32])
        let labels = graph.labels(count: batch)
        let logits = try model(x)
        let loss = try softmaxCrossEntropy(logits, labels: labels)
        try graph.plan(loss: loss, keep: [logits])
        var generator = SeededGenerator(seed: 5)
        try graph.setInput(x, (0..<(batch * 3 * 32 * 32)).map { _ in generator.nextNormal() })
        try graph.setLabels(labels, (0..<batch).map { Int32($0 % 10) })
        graph.forward()
        graph.backward()
        let gradients = Dictionary(uniqueKeysWithValues: model.namedParameters().filter { $0.1.isTrainable }.map { ($0.0, $0.1.gradients) })
        return (try graph.scalar(loss), try graph.read(logits), gradients)
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        var difference: Float = 0, norm: Float = 0
        for (x, y) in zip(a, b) { difference += (x - y) * (x - y); norm += y * y }
        return (difference / max(norm, 1e-30)).squareRoot()
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var dot: Float = 0, na: Float = 0, nb: Float = 0
        for (x, y) in zip(a, b) { dot += x * y; na += x * x; nb += y * y }
        return dot / max((na * nb).squareRoot(), 1e-30)
    }

    /// bfloat16 keeps 8 significant bits (~0.4%). Forward values stay that close. Gradients
    /// drift further: batch norm's backward subtracts the batch mean of its incoming gradient,
    /// which after global average pooling is nearly constant over each channel, so the small
    /// difference carries the rounding of the large terms (10-30% relative error per tensor at
    /// initialization, unbiased). Every op is checked at bf16 against the reference in OpTests;
    /// here the whole network's gradient must point the same way.
    @Test("bf16 follows fp32: loss and logits within bfloat16's precision, every gradient in the same direction",
          arguments: [ShortcutOption.a, .b])
    func bf16AgreesWithFP32(shortcut: ShortcutOption) throws {
        let reference = try Self.step("resnet20", shortcut: shortcut, precision: .fp32)
        let mixed = try Self.step("resnet20", shortcut: shortcut, precision: .bf16)
        #expect(abs(mixed.loss - reference.loss) < 0.02 * abs(reference.loss), "loss \(mixed.loss) vs \(reference.loss)")
        #expect(Self.relativeError(mixed.logits, reference.logits) < 0.03)
        #expect(mixed.gradients.keys.sorted() == reference.gradients.keys.sorted())
        let names = reference.gradients.keys.sorted()
        let all = Self.cosine(names.flatMap { mixed.gradients[$0]! }, names.flatMap { reference.gradients[$0]! })
        #expect(all > 0.93, "all gradients together: cosine similarity \(all)")
        for name in names {
            let similarity = Self.cosine(mixed.gradients[name]!, reference.gradients[name]!)
            // Measured: 0.96 for all together; the worst single one, 0.81, is the 16 scalars of
            // an early batch norm's shift.
            #expect(similarity > 0.75, "\(name): cosine similarity \(similarity)")
        }
        // The classifier is float32 and one rounding away from the loss.
        let classifier = try #require(reference.gradients.keys.first { $0.hasSuffix("weight") && !$0.contains("conv") && !$0.contains("projection") })
        #expect(Self.relativeError(mixed.gradients[classifier]!, reference.gradients[classifier]!) < 0.03, "\(classifier)")
    }

    @Test("a bf16 graph keeps float32 at its edges: inputs, logits and the loss")
    func edgesStayFloat() throws {
        let model = try build("resnet20")
        model.initializeParameters(seed: 1)
        let graph = Graph(precision: .bf16)
        let x = graph.input([2, 3, 32, 32])
        let logits = try model(x)
        #expect(x.descriptor.elementType == .float32)
        #expect(logits.descriptor.elementType == .float32)
        #expect(graph.tracedOperations.contains { $0.kind == "Convolution" })
    }
}

@Suite("Inference fusion", .serialized)
struct InferenceFusionTests {
    /// Logits of `model` in evaluation mode through an inference graph (batch norms folded
    /// into the convolutions, ReLUs as post-ops) and through a training-capable graph, which
    /// runs every op on its own.
    static func logits(_ model: any Layer, batch: Int, precision: Precision, folded: Bool) throws -> [Float] {
        let graph = Graph(computesGradients: !folded, precision: precision)
        let x = graph.input([batch, 3, 32, 32])
        let logits = try model(x)
        try graph.plan(keep: [logits])
        var generator = SeededGenerator(seed: 9)
        try graph.setInput(x, (0..<(batch * 3 * 32 * 32)).map { _ in generator.nextNormal() })
        graph.forward()
        return try graph.read(logits)
    }

    @Test("folding batch norms and residual additions into convolutions gives the same logits",
          arguments: [("resnet20", ShortcutOption.a), ("resnet20", .b), ("resnet18", .b), ("resnet50", .b), ("resnet29v2", .b)])
    func foldingIsExact(name: String, shortcut: ShortcutOption) throws {
        let model = try build(name, shortcut: shortcut, input: ImageShape(height: 32, width: 32, channels: 3), classes: 10)
        model.initializeParameters(seed: 4)
        // Statistics and affine maps far from the identity, as after training.
        var generator = SeededGenerator(seed: 2)
        for (name, p) in model.namedParameters() {
            if name.hasSuffix(".runningVariance") || name.hasSuffix(".scale") {
                p.values = p.values.map { _ in 0.5 + generator.nextUnitFloat() }
            } else if name.hasSuffix(".runningMean") || name.hasSuffix(".shift") {
                p.values = p.values.map { _ in 0.3 * generator.nextNormal() }
            }
        }
        model.eval()
        let separate = try Self.logits(model, batch: 4, precision: .fp32, folded: false)
        #expect(separate.allSatisfy { $0.isFinite && abs($0) < 1000 }, "\(separate)")
        let fused = try Self.logits(model, batch: 4, precision: .fp32, folded: true)
        #expect(MixedPrecisionTests.relativeError(fused, separate) < 1e-4)
        let fusedBF16 = try Self.logits(model, batch: 4, precision: .bf16, folded: true)
        #expect(MixedPrecisionTests.relativeError(fusedBF16, separate) < 0.05)
        // Every residual addition of an identity block became its convolution's sum post-op.
        // (A stage's first block may add operands in different layouts, through a reorder.)
        let graph = Graph(computesGradients: false)
        let logits = try model(graph.input([4, 3, 32, 32]))
        try graph.plan(keep: [logits])
        #expect(!graph.nodeSummary.contains { $0.hasPrefix("AddNode") && !$0.contains(".block1.") }, "\(graph.nodeSummary)")
    }

    @Test("graphs of several batch sizes share one copy of the derived weights, made at whichever runs first")
    func derivedWeightsAreShared() throws {
        let model = try build("resnet20")
        model.initializeParameters(seed: 8)
        model.eval()
        let images = InferencePass.images(8, seed: 4)
        func planned(_ batch: Int, store: DerivedWeightStore?) throws -> InferencePass {
            try InferencePass(model, batch: batch, Graph(computesGradients: false, parametersAreConstant: true, derivedWeights: store))
        }
        func run(_ p: InferencePass, _ batch: Int) throws -> [Float] { try p.run(images) }
        // Batches of 4 and 8 images choose the same layouts (Winograd at 8x8 and 16x16 in both).
        let alone4 = try planned(4, store: nil), alone8 = try planned(8, store: nil)
        let store = DerivedWeightStore()
        let shared4 = try planned(4, store: store), shared8 = try planned(8, store: store)
        #expect(store.byteCount > 0)
        #expect(shared8.graph.allocatedBytes <= alone8.graph.allocatedBytes - store.byteCount,
                "the second graph allocates no weights of its own: \(shared8.graph.allocatedBytes) vs \(alone8.graph.allocatedBytes)")
        // The graph planned last runs first: it makes the shared weights.
        #expect(try run(shared8, 8) == run(alone8, 8))
        #expect(try run(shared4, 4) == run(alone4, 4))
    }

    @Test("inference graphs that share one activation arena give their own answers, also after it grows")
    func activationsAreShared() throws {
        let model = try build("resnet20")
        model.initializeParameters(seed: 9)
        model.eval()
        let images = InferencePass.images(8, seed: 7)
        func planned(_ batch: Int, arena: ActivationArena?) throws -> InferencePass {
            try InferencePass(model, batch: batch, Graph(computesGradients: false, activations: arena))
        }
        func run(_ p: InferencePass, _ batch: Int) throws -> [Float] { try p.run(images) }
        let alone2 = try planned(2, arena: nil), alone8 = try planned(8, arena: nil)
        let arena = ActivationArena()
        // The small graph first: the large one then grows the arena and moves the small one's values.
        let shared2 = try planned(2, arena: arena)
        let small = arena.byteCount
        let shared8 = try planned(8, arena: arena)
        #expect(small > 0 && arena.byteCount > small)
        #expect(arena.byteCount == max(alone2.graph.allocatedBytes - shared2.graph.allocatedBytes, alone8.graph.allocatedBytes - shared8.graph.allocatedBytes),
                "one buffer, the size of the larger graph's pool")
        let expected2 = try run(alone2, 2), expected8 = try run(alone8, 8)
        #expect(try run(shared2, 2) == expected2)
        #expect(try run(shared8, 8) == expected8)
        #expect(try run(shared2, 2) == expected2)
    }

    @Test("a residual addition whose shortcut is read later, or kept, is not fused into the convolution")
    func residualAdditionNotFusedOverLiveValues() throws {
        var generator = SeededGenerator(seed: 5)
        func weight() -> Parameter {
            let w = Parameter(shape: [32, 32, 3, 3])
            w.values = (0..<w.count).map { _ in 0.1 * generator.nextNormal() }
            return w
        }
        let (w0, w1, w2) = (weight(), weight(), weight())
        let input = (0..<(2 * 32 * 6 * 6)).map { _ in generator.nextNormal() }
        // r = relu(conv0(x)); y = conv1(r) + r; z = conv2(y) + r. r is read after the first
        // sum, so that one may not write over it; the second may, unless r is kept.
        func run(keepShortcut: Bool) throws -> (z: [Float], adds: Int, summary: [String]) {
            let graph = Graph(computesGradients: false)
            let x = graph.input([2, 32, 6, 6])
            let r = relu(try conv2d(x, weight: w0, padding: (1, 1)))
            let y = try add(try conv2d(r, weight: w1, padding: (1, 1)), r)
            let z = try add(try conv2d(y, weight: w2, padding: (1, 1)), r)
            try graph.plan(keep: [z] + (keepShortcut ? [r] : []))
            try graph.setInput(x, input)
            graph.forward()
            return (try graph.read(z), graph.nodeSummary.filter { $0.hasPrefix("AddNode") }.count, graph.nodeSummary)
        }
        func conv(_ x: RefTensor, _ w: Parameter) -> RefTensor {
            Reference.conv2d(x, weight: RefTensor(shape: w.shape, data: w.values), bias: nil, stride: (1, 1), padding: (1, 1))
        }
        let r = Reference.relu(conv(RefTensor(shape: [2, 32, 6, 6], data: input), w0))
        let y = Reference.add(conv(r, w1), r)
        let expected = Reference.add(conv(y, w2), r).data
        let free = try run(keepShortcut: false)
        #expect(MixedPrecisionTests.relativeError(free.z, expected) < 1e-5)
        #expect(free.adds == 1, "only the last addition writes over r: \(free.summary)")
        let kept = try run(keepShortcut: true)
        #expect(MixedPrecisionTests.relativeError(kept.z, expected) < 1e-5)
        #expect(kept.adds == 2, "r is kept, so no addition writes over it")
    }

    @Test("a convolution never writes over option A's zero-padded shortcut, whose zeros are written once")
    func residualAdditionKeepsPaddingZeros() throws {
        var generator = SeededGenerator(seed: 6)
        let stem = Parameter(shape: [16, 16, 3, 3]), w0 = Parameter(shape: [32, 16, 3, 3]), w1 = Parameter(shape: [32, 32, 3, 3])
        for w in [stem, w0, w1] { w.values = (0..<w.count).map { _ in 0.1 * generator.nextNormal() } }
        // r = relu(stem(x)); y = relu(conv1(relu(conv0(r))) + pad(r)), as in ResNet-20's first
        // block of a stage: the padded shortcut is in the convolutions' layout.
        let graph = Graph(computesGradients: false)
        let x = graph.input([2, 16, 8, 8])
        let r = relu(try conv2d(x, weight: stem, padding: (1, 1)))
        let shortcut = try padChannels(r, to: 32, stride: 2)
        let branch = try conv2d(relu(try conv2d(r, weight: w0, stride: (2, 2), padding: (1, 1))), weight: w1, padding: (1, 1))
        let y = relu(try add(branch, shortcut))
        try graph.plan(keep: [y])
        #expect(graph.nodeSummary.contains { $0.hasPrefix("AddNode") }, "\(graph.nodeSummary)")
        func conv(_ x: RefTensor, _ w: Parameter, stride: Int) -> RefTensor {
            Reference.conv2d(x, weight: RefTensor(shape: w.shape, data: w.values), bias: nil, stride: (stride, stride), padding: (1, 1))
        }
        for pass in 0..<2 {
            let input = (0..<(2 * 16 * 8 * 8)).map { _ in generator.nextNormal() }
            try graph.setInput(x, input)
            graph.forward()
            let r = Reference.relu(conv(RefTensor(shape: [2, 16, 8, 8], data: input), stem, stride: 1))
            var padded = RefTensor(shape: [2, 32, 4, 4], data: [Float](repeating: 0, count: 2 * 32 * 16))
            for n in 0..<2 { for c in 0..<16 { for h in 0..<4 { for w in 0..<4 {
                padded.data[((n * 32 + c) * 4 + h) * 4 + w] = r.data[((n * 16 + c) * 8 + 2 * h) * 8 + 2 * w]
            } } } }
            let expected = Reference.relu(Reference.add(conv(Reference.relu(conv(r, w0, stride: 2)), w1, stride: 1), padded))
            #expect(MixedPrecisionTests.relativeError(try graph.read(y), expected.data) < 1e-5, "pass \(pass)")
        }
    }

    @Test("an inference graph sees parameter changes made after it was planned")
    func followsParameterChanges() throws {
        let model = try build("resnet20")
        model.initializeParameters(seed: 6)
        model.eval()
        let graph = Graph(computesGradients: false)
        let x = graph.input([2, 3, 32, 32])
        let logits = try model(x)
        try graph.plan(keep: [logits])
        var generator = SeededGenerator(seed: 3)
        try graph.setInput(x, (0..<(2 * 3 * 32 * 32)).map { _ in generator.nextNormal() })
        graph.forward()
        let before = try graph.read(logits)
        graph.forward()
        #expect(try graph.read(logits) == before, "unchanged parameters, same logits")
        // Change a folded batch norm's statistics and a convolution's weights in place.
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters())
        let variance = try #require(parameters["stage2.block1.bn1.runningVariance"])
        variance.values = variance.values.map { $0 * 4 }
        let weight = try #require(parameters["stage3.block2.conv2.weight"])
        weight.values = weight.values.map { -$0 }
        graph.forward()
        let after = try graph.read(logits)
        #expect(after != before)
        var replay = SeededGenerator(seed: 3)
        let fresh = Graph(computesGradients: false)
        let y = fresh.input([2, 3, 32, 32])
        let freshLogits = try model(y)
        try fresh.plan(keep: [freshLogits])
        try fresh.setInput(y, (0..<(2 * 3 * 32 * 32)).map { _ in replay.nextNormal() })
        fresh.forward()
        #expect(MixedPrecisionTests.relativeError(after, try fresh.read(freshLogits)) < 1e-6)
    }

    @Test("an inference graph of ResNet-20 runs no batch norm and no separate ReLU")
    func nothingLeftUnfused() throws {
        let model = try build("resnet20")
        model.eval()
        let graph = Graph(computesGradients: false)
        let logits = try model(graph.input([2, 3, 32, 32]))
        try graph.plan(keep: [logits])
        #expect(!graph.nodeSummary.contains { $0.hasPrefix("BatchNormNode") || $0.hasPrefix("ReLUNode") }, "\(graph.nodeSummary)")
    }

    @Test("an inference graph shares activation memory: only kept values can be read")
    func sharedActivations() throws {
        let model = try #require(try build("resnet20") as? ResNet)
        model.eval()
        func planned(keepingFeatures: Bool) throws -> (Graph, Tensor) {
            let graph = Graph(computesGradients: false)
            let x = graph.input([64, 3, 32, 32])
            let features = try model.stem(x)
            let logits = try model(x)
            try graph.plan(keep: keepingFeatures ? [logits, features] : [logits])
            return (graph, features)
        }
        let (shared, features) = try planned(keepingFeatures: false)
        shared.forward()
        #expect(throws: TensorError.self) { try shared.read(features) }
        let (kept, keptFeatures) = try planned(keepingFeatures: true)
        kept.forward()
        #expect(try kept.read(keptFeatures).count == 64 * 16 * 32 * 32)
        // Unshared, the activations of 64 images take ~70 MB (4 MiB per 16x32x32 tensor);
        // shared, a few of them at a time, plus the weights.
        #expect(shared.allocatedBytes < 32 << 20, "\(shared.allocatedBytes) bytes")
    }
}

@Suite("Whole-network gradients", .serialized)
struct NetworkGradientTests {
    /// Parameter gradients of one training step, with or without shared gradient memory.
    static func gradients(shortcut: ShortcutOption, precision: Precision, sharing: Bool) throws -> [String: [Float]] {
        let model = try build("resnet20", shortcut: shortcut)
        model.initializeParameters(seed: 8)
        let graph = Graph(precision: precision, sharesMemory: sharing)
        let x = graph.input([4, 3, 32, 32])
        let labels = graph.labels(count: 4)
        try graph.plan(loss: try softmaxCrossEntropy(try model(x), labels: labels))
        var generator = SeededGenerator(seed: 4)
        try graph.setInput(x, (0..<(4 * 3 * 32 * 32)).map { _ in generator.nextNormal() })
        try graph.setLabels(labels, [1, 5, 7, 2])
        graph.forward()
        graph.backward()
        return Dictionary(uniqueKeysWithValues: model.namedParameters().filter { $0.1.isTrainable }.map { ($0.0, $0.1.gradients) })
    }

    /// Sharing memory between gradients whose lifetimes do not overlap must not change a bit:
    /// the same primitives run in the same order on the same values. (Every op's backward is
    /// checked against the reference and finite differences in OpTests; finite differences of a
    /// whole ResNet's loss are too rough at its ReLU kinks to check it more closely.)
    @Test("gradients are bit for bit the same with and without shared gradient memory",
          arguments: [ShortcutOption.a, .b], Precision.allCases)
    func sharingChangesNothing(shortcut: ShortcutOption, precision: Precision) throws {
        let shared = try Self.gradients(shortcut: shortcut, precision: precision, sharing: true)
        let separate = try Self.gradients(shortcut: shortcut, precision: precision, sharing: false)
        #expect(shared.keys.sorted() == separate.keys.sorted())
        for (name, values) in separate {
            #expect(shared[name]! == values, "\(name)")
            #expect(values.contains { $0 != 0 }, "\(name) has a gradient")
        }
    }
}

@Suite("Model size bounds")
struct ModelBoundTests {
    @Test("the parameter bound is at least every network's real count, and not far above it",
          arguments: ["resnet20", "resnet110", "resnet164v2", "resnet18", "resnet50", "plain34", "wrn-16-8", "svgg"])
    func boundHolds(name: String) throws {
        let definition = try ModelDefinition(name: name, options: ModelOptions(shortcut: .c))
        let model = try definition.build()
        let real = model.namedParameters().reduce(0) { $0 + $1.1.count }
        let bound = try #require(definition.parameterBound(input: definition.defaultInput, classes: definition.defaultClasses))
        #expect(bound >= real, "\(name): bound \(bound) below \(real)")
        #expect(Double(bound) <= 1.5 * Double(real), "\(name): bound \(bound) far above \(real)")
    }

    @Test("absurd sizes are refused before anything is allocated")
    func absurd() {
        func message(_ body: () throws -> Any) -> String { do { _ = try body(); return "" } catch { return "\(error)" } }
        #expect(message { try build("resnet20", classes: 100_000_000_000) }.contains("classes must be in 1...1000000"))
        #expect(message { try build("resnet9999999999998") }.contains("more than 1000000000 parameters"))
        #expect(message { try build("wrn-28-100000") }.contains("widening factor must be in 1...1024"))
        #expect(message { try build("wrn-28-1000") }.contains("more than 1000000000 parameters"))
        #expect(message { try build("svgg", input: ImageShape(height: 4_000, width: 4_000, channels: 3), classes: 1_000) }
            .contains("more than 1000000000 parameters"))
        #expect(message { try build("resnet20", input: ImageShape(height: 100_000, width: 100_000, channels: 3)) }.contains("at most 4096"))
        #expect(message { try build("resnet20", input: ImageShape(height: 32, width: 32, channels: 7)) }.contains("1 to 4 channels"))
    }
}

@Suite("Kernels chosen at plan time", .serialized)
struct InferencePlannerTests {
    @Test("the planner keeps the candidate its clock says is faster, drops the other's weights and activations, and remembers")
    func plannerKeepsTheFaster() throws {
        // Batch 7: at 16x16 and 8x8 it has enough output pixels for the rule's Winograd. Option A:
        // its padded shortcut is the one operand a fused residual addition must not overwrite.
        let batch = 7
        let model = try build("resnet20", shortcut: .a)
        model.initializeParameters(seed: 3)
        model.eval()
        let images = InferencePass.images(batch, seed: 5)
        for preferred in ConvolutionAlgorithms.allCases {
            InferencePlanner.forgetDecisions()
            let store = DerivedWeightStore(), arena = ActivationArena()
            func trace(_ algorithms: ConvolutionAlgorithms) throws -> (Graph, InferencePass) {
                let graph = Graph(computesGradients: false, parametersAreConstant: true, derivedWeights: store,
                                  activations: arena, convolutionAlgorithms: algorithms)
                return (graph, try InferencePass(model, batch: batch, graph))
            }
            var timed = 0
            let planned = try InferencePlanner.plan(timer: { graph in
                timed += 1
                return (graph.winogradConvolutionCount > 0) == (preferred == .rule) ? 0.001 : 0.002
            }) { try trace($0) }
            #expect(planned.choice.algorithms == preferred && planned.choice.measured && timed >= 4)
            #expect((planned.graph.winogradConvolutionCount > 0) == (preferred == .rule))

            // Alone, the kept candidate needs exactly what the shared store and arena still hold.
            let aloneStore = DerivedWeightStore(), aloneArena = ActivationArena()
            let alone = try InferencePass(model, batch: batch, Graph(computesGradients: false, parametersAreConstant: true, derivedWeights: aloneStore,
                                                            activations: aloneArena, convolutionAlgorithms: preferred))
            #expect(try planned.traced.run(images) == alone.run(images))
            #expect(store.byteCount == aloneStore.byteCount, "\(store.byteCount) bytes of weights kept, \(aloneStore.byteCount) needed")
            #expect(arena.byteCount == aloneArena.byteCount, "\(arena.byteCount) bytes of activations kept, \(aloneArena.byteCount) needed")
            // Both algorithms compute the same function.
            let other = try InferencePass(model, batch: batch, Graph(computesGradients: false, convolutionAlgorithms: preferred == .rule ? .direct : .rule))
            #expect(zip(try planned.traced.run(images), try other.run(images)).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) })

            // A second graph of the same structure takes the remembered choice without timing.
            var timedAgain = 0
            let again = try InferencePlanner.plan(timer: { _ in timedAgain += 1; return 1 }) { try trace($0) }
            #expect(again.choice == InferencePlanner.Choice(algorithms: preferred, seconds: [:]) && timedAgain == 0)
            #expect((again.graph.winogradConvolutionCount > 0) == (preferred == .rule))
        }
    }

    @Test("a graph without a Winograd candidate is planned once and not timed")
    func nothingToChoose() throws {
        let weight = Parameter(shape: [16, 16, 3, 3])
        var traced = 0, timed = 0
        let planned = try InferencePlanner.plan(timer: { _ in timed += 1; return 1 }) { algorithms in
            traced += 1
            let graph = Graph(computesGradients: false, parametersAreConstant: true, convolutionAlgorithms: algorithms)
            let y = try conv2d(graph.input([4, 16, 16, 16]), weight: weight, padding: (1, 1), label: "narrow")
            try graph.plan(keep: [y])
            return (graph, y)
        }
        #expect(planned.choice == InferencePlanner.Choice(algorithms: .rule, seconds: [:]))
        #expect(traced == 1 && timed == 0)
    }
}

/// A planned inference graph of a CIFAR-sized model for `batch` images, and one pass of it.
private struct InferencePass {
    let graph: Graph, input: Tensor, logits: Tensor, batch: Int

    init(_ model: any Layer, batch: Int, _ graph: Graph) throws {
        input = graph.input([batch, 3, 32, 32])
        logits = try model(input)
        try graph.plan(keep: [logits])
        (self.graph, self.batch) = (graph, batch)
    }

    /// Seeded normal values for `count` 3x32x32 images.
    static func images(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SeededGenerator(seed: seed)
        return (0..<(count * 3 * 32 * 32)).map { _ in generator.nextNormal() }
    }

    /// The logits of the first `batch` images of `images`.
    func run(_ images: [Float]) throws -> [Float] {
        try graph.setInput(input, Array(images[..<(batch * 3 * 32 * 32)]))
        graph.forward()
        return try graph.read(logits)
    }
}
