import CDNNL
import ResNetEngine

// Convolution and inner product: the two ops with weights. Both follow one pattern:
// the forward primitive chooses its layouts (`format_tag_any`); the plain parameter is
// reordered into the chosen weight layout once per step, before forward; backward-data
// gets its own weight layout (oneDNN wants another one there, and forcing the forward
// layout falls back to a reference kernel that is 1000x slower).

/// 2-D convolution (cross-correlation, as every deep-learning framework computes it).
///
/// - Parameters:
///   - x: `[N, C, H, W]`.
///   - weight: `[O, C, KH, KW]`.
///   - bias: `[O]`, or `nil` (convolutions followed by batch norm have none).
/// - Returns: `[N, O, (H + 2ph - KH) / sh + 1, (W + 2pw - KW) / sw + 1]` in the engine's layout.
public func conv2d(
    _ x: Tensor, weight: Parameter, bias: Parameter? = nil,
    stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), label: String = "conv2d"
) throws -> Tensor {
    let w = weight.shape
    guard w.count == 4 else { throw TensorError.invalidArgument(layer: label, message: "weight must be [O, C, KH, KW], got \(w)") }
    guard x.shape.count == 4, x.shape[1] == w[1] else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, \(w[1]), H, W]", actual: x.shape)
    }
    if let bias, bias.shape != [w[0]] {
        throw TensorError.invalidArgument(layer: label, message: "bias must be [\(w[0])], got \(bias.shape)")
    }
    guard stride.0 > 0, stride.1 > 0, padding.0 >= 0, padding.1 >= 0 else {
        throw TensorError.invalidArgument(layer: label, message: "stride must be positive and padding non-negative")
    }
    let (n, h, wd) = (x.shape[0], x.shape[2], x.shape[3])
    let oh = (h + 2 * padding.0 - w[2]) / stride.0 + 1, ow = (wd + 2 * padding.1 - w[3]) / stride.1 + 1
    guard h + 2 * padding.0 >= w[2], wd + 2 * padding.1 >= w[3] else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, \(w[1]), >=\(w[2] - 2 * padding.0), >=\(w[3] - 2 * padding.1)] for a \(w[2])x\(w[3]) kernel", actual: x.shape)
    }
    // Winograd (oneDNN's F(4x4, 3x3) or F(2x2, 3x3)) for 3x3 stride-1 convolutions with at least
    // 32 channels, fp32 only (oneDNN has no bf16 Winograd). Everything else is direct.
    // - Training: at most 16x16 outputs, where it was measured to win (bench-kernels, 2026-11-22,
    //   batch 128: 430-570 effective GFLOP/s against 250-275 direct at 32ch 16x16 and 64ch 8x8;
    //   slower than direct at 16ch 32x32).
    // - Inference: wherever the batch has at least 196 output pixels (a 14x14 image). Winograd
    //   transforms the weights into 16/9 more bytes; with few pixels the weights dominate the
    //   traffic and direct wins (ResNet-18 at batch 1, 512ch 7x7). `resnet bench MODEL --mode
    //   eval --threads 2`, 2-core AMD EPYC with 512-bit FMA, 2026-12-01, img/s, Winograd at
    //   <=16x16 (the training rule) / everywhere / at 14x14-56x56: resnet18 batch 1 128 / 137 / 150;
    //   resnet50 batch 1 51.2 / 52.6 / 52.2; resnet50 batch 32 56.7 / 59.0 / -.
    //   This rule is only the candidate a deployed model measures against direct convolutions at
    //   plan time (`InferencePlanner`): inside a whole network Winograd can lose where a layer timed
    //   alone says it wins (ResNet-56 at batch 8, 64ch 8x8: 44 us alone, 115 us in the network).
    let outputPixels = x.graph.computesGradients ? (oh <= 16 && ow <= 16 ? Int.max : 0) : n * oh * ow
    let winograd = w[2] == 3 && w[3] == 3 && stride == (1, 1) && w[0] >= 32 && w[1] >= 32 && outputPixels >= 196
        && x.graph.precision == .fp32 && x.graph.convolutionAlgorithms == .rule
    let node = ConvolutionNode(label: label, weight: weight, bias: bias,
                               stride: [stride.0, stride.1], padding: [padding.0, padding.1],
                               algorithm: winograd ? dnnl_convolution_winograd : dnnl_convolution_direct,
                               training: x.graph.computesGradients)
    // With at most 16 channels, channels-last is byte for byte the blocked layout, but oneDNN
    // only offers its brgemm kernels for it (resnet bench resnet20, 2026-11-22: 3x3 16->16 at
    // 32x32 forward 2.9 against 3.6 ms, backward-weights 2.7 against 3.2 ms; ~4% per step).
    let narrow = w[0] <= 16 && w[1] <= 16
    return try node.trace(x, outputShape: [n, w[0], oh, ow], activationLayout: narrow ? .channelsLast : nil)
}

/// A fully connected layer: `y = x W^T + b` with `x: [N, I]`, `weight: [O, I]`, `bias: [O]`.
public func linear(_ x: Tensor, weight: Parameter, bias: Parameter? = nil, label: String = "linear") throws -> Tensor {
    let w = weight.shape
    guard w.count == 2 else { throw TensorError.invalidArgument(layer: label, message: "weight must be [O, I], got \(w)") }
    guard x.shape.count == 2, x.shape[1] == w[1] else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, \(w[1])]", actual: x.shape)
    }
    if let bias, bias.shape != [w[0]] {
        throw TensorError.invalidArgument(layer: label, message: "bias must be [\(w[0])], got \(bias.shape)")
    }
    let node = InnerProductNode(label: label, weight: weight, bias: bias, training: x.graph.computesGradients)
    return try node.trace(x, outputShape: [x.shape[0], w[0]])
}

/// What convolution and inner product share: layouts, weight reorders, the three primitives.
class WeightedNode: Node {
    let weight: Parameter
    let bias: Parameter?
    let training: Bool
    var forwardPrimitive: Primitive!

    var runForward: BoundPrimitive!
    private var reorderWeightsForward: BoundPrimitive?
    private var forwardWeights: Memory!
    /// Post-ops of the forward primitive (a ReLU after folding a batch norm with one).
    var forwardAttributes = Attributes()
    /// Quantized graphs: the weights as 8-bit integers (one scale per output channel) and the
    /// bias in the accumulator's units, made when the graph is quantized and kept until planned.
    var quantized: QuantizedWeights?
    /// Inference only: the batch norm this op absorbed, and the float32 weights and bias
    /// that fold it in, recomputed before every forward pass from the current parameters.
    private(set) var foldedNorm: BatchNormNode?
    /// The parameters the forward weights are derived from: the op's, and a folded batch norm's.
    var derivationParameters: [Parameter] {
        parameters + (foldedNorm.map { [$0.scale, $0.shift, $0.runningMean, $0.runningVariance] } ?? [])
    }
    private var foldedWeights: Memory?, foldedBias: Memory?
    /// Inference only: the parameters the derived weights were made from, to redo them only
    /// when those change (training graphs update weights every step and always redo them).
    private var derivedFrom: ParameterSnapshot?
    /// Inference with constant parameters: whether the derived weights have been made.
    private var derivedOnce = false
    /// Inference with constant parameters and a ``DerivedWeightStore``: the weights (and
    /// folded bias) this op shares with the store's other graphs.
    private var sharedWeights: DerivedWeightStore.Entry?
    private var derivesOnce = false
    private(set) var runBackwardData: BoundPrimitive?
    private var reorderWeightsBackward: BoundPrimitive?
    private var dataSink: GradientSink?
    private(set) var runBackwardWeights: BoundPrimitive?
    private var weightSink: GradientSink?
    private var biasSink: GradientSink?

    init(label: String, weight: Parameter, bias: Parameter?, training: Bool) {
        self.weight = weight
        self.bias = bias
        self.training = training
        super.init(label: label, inputs: [])
    }

    override var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// `kind` + the settings that, with the descriptors, identify the primitive.
    var kind: String { fatalError("abstract") }
    var settings: [Int] { [] }
    func forwardOperation(source: MemoryDescriptor, weights: MemoryDescriptor, bias: MemoryDescriptor, destination: MemoryDescriptor) throws -> Primitive { fatalError("abstract") }
    func backwardDataOperation(diffSource: MemoryDescriptor, weights: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive { fatalError("abstract") }
    func backwardWeightsOperation(source: MemoryDescriptor, diffWeights: MemoryDescriptor, diffBias: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive { fatalError("abstract") }

    var biasDescriptor: MemoryDescriptor { bias.map { MemoryDescriptor($0.shape, .plain) } ?? .none }

    /// The element type this op computes in: the graph's, except where a subclass keeps float32.
    func activationType(_ graph: Graph) -> ElementType { graph.precision.activationType }

    /// Creates the forward primitive, reorders `x` if the primitive wants another layout, records the node.
    func trace(_ x: Tensor, outputShape: [Int], activationLayout: Layout? = nil) throws -> Tensor {
        let type = activationType(x.graph)
        let anyWeights = MemoryDescriptor.any(weight.shape, type)
        let anySource = activationLayout.map { MemoryDescriptor(x.shape, $0, type) } ?? .any(x.shape, type)
        let anyDestination = activationLayout.map { MemoryDescriptor(outputShape, $0, type) } ?? .any(outputShape, type)
        let key = PrimitiveKey(kind + ".forward", [anySource, anyWeights, biasDescriptor, anyDestination], settings + [training ? 1 : 0])
        do {
            forwardPrimitive = try PrimitiveCache.shared.primitive(key) {
                try forwardOperation(source: anySource, weights: anyWeights, bias: biasDescriptor, destination: anyDestination)
            }
        } catch let error as DNNLError {
            throw TensorError.invalidArgument(layer: label, message: error.description)
        }
        let source = x.graph.converted(x, to: forwardPrimitive.descriptor(for: Arg.src)!, label: label)
        inputs = [source.id]
        return x.graph.add(self, outputs: [(outputShape, forwardPrimitive.descriptor(for: Arg.dst)!)])[0]
    }

    /// Absorbs `norm` (running statistics, reading only this op's output) into this op's
    /// weights and bias, and its fused ReLU into a post-op: one primitive instead of two or
    /// three passes over memory. Returns false, changing nothing, if oneDNN cannot.
    func fold(_ norm: BatchNormNode) -> Bool {
        guard !training, norm.statistics == .running,
              replaceForwardPrimitive(".folded", attributes: Attributes(relu: norm.fusesReLU), bias: MemoryDescriptor([weight.shape[0]], .plain))
        else { return false }
        foldedNorm = norm
        return true
    }

    /// Inference only: adds what the destination holds before the op runs (a residual
    /// addition's other operand, `sum` post-op) and then, with `relu`, applies the ReLU that
    /// follows the addition. Returns false, changing nothing, if oneDNN cannot.
    func fuseSum(relu: Bool) -> Bool {
        guard !training, forwardAttributes.sumScale == nil, !forwardAttributes.relu else { return false }
        let bias = foldedNorm != nil ? MemoryDescriptor([weight.shape[0]], .plain) : biasDescriptor
        return replaceForwardPrimitive(".sum", attributes: Attributes(sumScale: 1, relu: relu), bias: bias)
    }

    /// The forward primitive again, on the same source and destination, with other post-ops and
    /// bias; false, changing nothing, if oneDNN cannot make it.
    private func replaceForwardPrimitive(_ tag: String, attributes: Attributes, bias: MemoryDescriptor) -> Bool {
        guard let source = forwardPrimitive.descriptor(for: Arg.src), let destination = forwardPrimitive.descriptor(for: Arg.dst)
        else { return false }
        let saved = forwardAttributes
        forwardAttributes = attributes
        let weights = MemoryDescriptor.any(weight.shape, source.elementType)
        let key = PrimitiveKey(kind + ".forward" + tag, [source, weights, bias, destination], settings, attributes: attributes)
        guard let primitive = try? PrimitiveCache.shared.primitive(key, {
            try forwardOperation(source: source, weights: weights, bias: bias, destination: destination)
        }), primitive.descriptor(for: Arg.dst) == destination else {
            forwardAttributes = saved
            return false
        }
        forwardPrimitive = primitive
        return true
    }

    override func planForward(_ graph: Graph) throws {
        let wanted = forwardPrimitive.descriptor(for: Arg.weights)!
        let norm = foldedNorm.map { [$0.scale, $0.shift, $0.runningMean, $0.runningVariance] } ?? []
        var storeKey: DerivedWeightStore.Key?
        if !training && graph.parametersAreConstant, let store = graph.derivedWeights {
            let key = DerivedWeightStore.Key(parameters: parameters + norm, layout: wanted)
            if let entry = store.entries[key] {
                sharedWeights = entry
                forwardWeights = entry.weights
                foldedBias = entry.bias
            } else {
                storeKey = key
            }
        }
        if sharedWeights == nil {
            var plain = weight.value
            if let quantized {
                // Made when the graph was quantized: the integers go into the primitive's layout
                // at the first pass, like any derived weights.
                plain = try graph.temporary(MemoryDescriptor(weight.shape, .plain, .int8))
                let bias = try graph.temporary(MemoryDescriptor([weight.shape[0]], .plain))
                quantized.integers.withUnsafeBytes { plain.pointer!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                quantized.bias.withUnsafeBytes { bias.pointer!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                foldedBias = bias
            } else if foldedNorm != nil {
                plain = try graph.temporary(weight.value.descriptor)
                foldedWeights = plain
                foldedBias = try graph.temporary(MemoryDescriptor([weight.shape[0]], .plain))
            }
            if wanted == plain.descriptor {
                forwardWeights = plain
            } else {
                forwardWeights = try graph.temporary(wanted)
                reorderWeightsForward = try graph.bind(try PrimitiveCache.shared.reorder(from: plain.descriptor, to: wanted),
                                                       [(Arg.from, plain), (Arg.to, forwardWeights)])
            }
        }
        if let storeKey, let store = graph.derivedWeights {
            let (weight, bias, folded, foldedBias, reorder) = (weight, bias, foldedWeights, foldedBias, reorderWeightsForward)
            let norm = quantized == nil ? foldedNorm : nil   // quantized weights were folded when quantized
            let entry = DerivedWeightStore.Entry(parameters: parameters + (norm.map { [$0.scale, $0.shift, $0.runningMean, $0.runningVariance] } ?? []),
                                                 weights: forwardWeights, bias: foldedBias) {
                if let norm { Self.fold(norm, weight: weight, bias: bias, into: folded!.floats, foldedBias!.floats) }
                reorder?.execute()
            }
            store.entries[storeKey] = entry
            sharedWeights = entry
            // Only the derivation reads the plain folded copy: it is freed once the weights are
            // made (ResNet-50: ~100 MB), unless it is itself the layout the primitive wants.
            foldedWeights = nil
            reorderWeightsForward = nil
        }
        var bindings: [(Int32, Memory)] = [(Arg.src, try graph.memory(inputs[0])), (Arg.weights, forwardWeights),
                                           (Arg.dst, try graph.memory(outputs[0]))]
        if !training && graph.parametersAreConstant {
            derivesOnce = true
        } else if !training {
            derivedFrom = ParameterSnapshot(parameters + norm)
            graph.account(bytes: derivedFrom!.byteCount)
        }
        if quantized != nil { quantized = QuantizedWeights(integers: [], bias: []) }   // in their memories now, or shared
        if let foldedBias {
            bindings.append((Arg.bias, foldedBias))
        } else if let bias {
            bindings.append((Arg.bias, bias.value))
        }
        runForward = try graph.bind(forwardPrimitive, bindings)
    }

    override func planBackward(_ graph: Graph) throws {
        let source = graph.values[inputs[0]].descriptor
        let diffDestination = try graph.gradientMemory(outputs[0])
        if weight.isTrainable {
            // Weight gradients are accumulated and returned in float32 at every precision.
            let anyWeights = MemoryDescriptor.any(weight.shape)
            let key = PrimitiveKey(kind + ".backwardWeights", [source, anyWeights, biasDescriptor, diffDestination.descriptor], settings)
            let primitive = try PrimitiveCache.shared.primitive(key) {
                try backwardWeightsOperation(source: source, diffWeights: anyWeights, diffBias: biasDescriptor, diffDestination: diffDestination.descriptor)
            }
            weightSink = try graph.parameterGradientSink(weight, writtenAs: primitive.descriptor(for: Arg.diffWeights)!)
            // Only backward-weights reads the input's values (asking for its memory keeps it alive).
            var bindings: [(Int32, Memory)] = [(Arg.src, try graph.memory(inputs[0])), (Arg.diffDst, diffDestination), (Arg.diffWeights, weightSink!.target)]
            if let bias {
                biasSink = try graph.parameterGradientSink(bias, writtenAs: biasDescriptor)
                bindings.append((Arg.diffBias, biasSink!.target))
            }
            runBackwardWeights = try graph.bind(primitive, bindings)
        }
        if graph.needsGradient(inputs[0]) {
            let anyWeights = MemoryDescriptor.any(weight.shape, forwardWeights.descriptor.elementType)
            let key = PrimitiveKey(kind + ".backwardData", [source, anyWeights, diffDestination.descriptor], settings)
            let primitive = try PrimitiveCache.shared.primitive(key) {
                try backwardDataOperation(diffSource: source, weights: anyWeights, diffDestination: diffDestination.descriptor)
            }
            let wanted = primitive.descriptor(for: Arg.weights)!
            var weights = forwardWeights!
            if wanted != forwardWeights.descriptor {
                weights = try graph.temporary(wanted)
                reorderWeightsBackward = try graph.bind(try PrimitiveCache.shared.reorder(from: weight.value.descriptor, to: wanted),
                                                        [(Arg.from, weight.value), (Arg.to, weights)])
            }
            dataSink = try graph.gradientSink(inputs[0], writtenAs: source)
            runBackwardData = try graph.bind(primitive, [(Arg.diffDst, diffDestination), (Arg.weights, weights), (Arg.diffSrc, dataSink!.target)])
        }
    }

    override func forward(_ graph: Graph) {
        if let sharedWeights {
            sharedWeights.deriveOnce()
        } else if derivesOnce ? !derivedOnce : (derivedFrom?.changed() ?? true) {
            if let norm = foldedNorm, quantized == nil { Self.fold(norm, weight: weight, bias: bias, into: foldedWeights!.floats, foldedBias!.floats) }
            reorderWeightsForward?.execute()
            derivedOnce = true
        }
        runForward.execute()
    }

    /// `W' = W * s` and `b' = shift + (b - mean) * s` per output channel, with
    /// `s = scale / sqrt(variance + epsilon)`: the batch norm's affine map moved into the op.
    static func fold(_ norm: BatchNormNode, weight: Parameter, bias: Parameter?, into folded: UnsafeMutablePointer<Float>,
                     _ b: UnsafeMutablePointer<Float>) {
        let outputs = weight.shape[0], perOutput = weight.count / outputs
        let w = weight.value.floats
        let gamma = norm.scale.value.floats, beta = norm.shift.value.floats
        let mean = norm.runningMean.value.floats, variance = norm.runningVariance.value.floats
        let ownBias = bias?.value.floats
        for o in 0..<outputs {
            let s = gamma[o] / (variance[o] + norm.epsilon).squareRoot()
            for i in (o * perOutput)..<((o + 1) * perOutput) { folded[i] = w[i] * s }
            b[o] = beta[o] + ((ownBias?[o] ?? 0) - mean[o]) * s
        }
    }

    override func backward(_ graph: Graph) {
        if let runBackwardWeights {
            runBackwardWeights.execute()
            weightSink!.complete()
            biasSink?.complete()
        }
        if let runBackwardData {
            reorderWeightsBackward?.execute()
            runBackwardData.execute()
            dataSink!.complete()
        }
    }
}

final class ConvolutionNode: WeightedNode {
    let stride: [Int]
    let padding: [Int]
    /// Direct or Winograd; quantized convolutions are direct.
    var algorithm: dnnl_alg_kind_t

    init(label: String, weight: Parameter, bias: Parameter?, stride: [Int], padding: [Int], algorithm: dnnl_alg_kind_t, training: Bool) {
        self.stride = stride
        self.padding = padding
        self.algorithm = algorithm
        super.init(label: label, weight: weight, bias: bias, training: training)
    }

    override var kind: String { "convolution" }

    /// Every output element takes C x KH x KW products.
    override func multiplyAccumulates(in graph: Graph) -> Int {
        graph.values[outputs[0]].shape.reduce(1, *) * weight.shape.dropFirst().reduce(1, *)
    }
    override var settings: [Int] { stride + padding + [Int(algorithm.rawValue)] }

    private var strides: [Int64] { stride.map(Int64.init) }
    private var pads: [Int64] { padding.map(Int64.init) }

    override func forwardOperation(source: MemoryDescriptor, weights: MemoryDescriptor, bias: MemoryDescriptor, destination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_convolution_desc_t()
        var s = source.raw, w = weights.raw, b = bias.raw, o = destination.raw
        try check(dnnl_convolution_forward_desc_init(&d, training ? dnnl_forward_training : dnnl_forward_inference,
                                                     algorithm, &s, &w, &b, &o,
                                                     strides, pads, pads), "\(label): convolution descriptor")
        return try Primitive(name: "\(label) convolution forward", operation: &d, attributes: forwardAttributes)
    }

    override func backwardDataOperation(diffSource: MemoryDescriptor, weights: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_convolution_desc_t()
        var s = diffSource.raw, w = weights.raw, o = diffDestination.raw
        try check(dnnl_convolution_backward_data_desc_init(&d, algorithm, &s, &w, &o, strides, pads, pads),
                  "\(label): convolution backward-data descriptor")
        return try Primitive(name: "\(label) convolution backward data", operation: &d, hint: forwardPrimitive)
    }

    override func backwardWeightsOperation(source: MemoryDescriptor, diffWeights: MemoryDescriptor, diffBias: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_convolution_desc_t()
        var s = source.raw, w = diffWeights.raw, b = diffBias.raw, o = diffDestination.raw
        try check(dnnl_convolution_backward_weights_desc_init(&d, algorithm, &s, &w, &b, &o,
                                                              strides, pads, pads), "\(label): convolution backward-weights descriptor")
        return try Primitive(name: "\(label) convolution backward weights", operation: &d, hint: forwardPrimitive)
    }
}

final class InnerProductNode: WeightedNode {
    override var kind: String { "innerProduct" }

    /// The classifier stays float32 (it is tiny, and the loss reads its output).
    override func activationType(_ graph: Graph) -> ElementType { .float32 }

    override func multiplyAccumulates(in graph: Graph) -> Int {
        graph.values[outputs[0]].shape.reduce(1, *) * weight.shape[1]
    }

    override func forwardOperation(source: MemoryDescriptor, weights: MemoryDescriptor, bias: MemoryDescriptor, destination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_inner_product_desc_t()
        var s = source.raw, w = weights.raw, b = bias.raw, o = destination.raw
        try check(dnnl_inner_product_forward_desc_init(&d, training ? dnnl_forward_training : dnnl_forward_inference,
                                                       &s, &w, &b, &o), "\(label): inner product descriptor")
        return try Primitive(name: "\(label) inner product forward", operation: &d)
    }

    override func backwardDataOperation(diffSource: MemoryDescriptor, weights: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_inner_product_desc_t()
        var s = diffSource.raw, w = weights.raw, o = diffDestination.raw
        try check(dnnl_inner_product_backward_data_desc_init(&d, &s, &w, &o), "\(label): inner product backward-data descriptor")
        return try Primitive(name: "\(label) inner product backward data", operation: &d, hint: forwardPrimitive)
    }

    override func backwardWeightsOperation(source: MemoryDescriptor, diffWeights: MemoryDescriptor, diffBias: MemoryDescriptor, diffDestination: MemoryDescriptor) throws -> Primitive {
        var d = dnnl_inner_product_desc_t()
        var s = source.raw, w = diffWeights.raw, b = diffBias.raw, o = diffDestination.raw
        try check(dnnl_inner_product_backward_weights_desc_init(&d, &s, &w, &b, &o),
                  "\(label): inner product backward-weights descriptor")
        return try Primitive(name: "\(label) inner product backward weights", operation: &d, hint: forwardPrimitive)
    }
}
