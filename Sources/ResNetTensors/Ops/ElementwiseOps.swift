import CDNNL
import ResNetEngine

/// `max(x, 0)`. After a batch norm whose output nothing else reads, the graph fuses the two.
public func relu(_ x: Tensor, label: String = "relu") -> Tensor {
    x.graph.add(ReLUNode(label: label, inputs: [x.id]), outputs: [(x.shape, x.descriptor)])[0]
}

/// Elementwise `a + b` (the residual connection). Shapes must be equal.
public func add(_ a: Tensor, _ b: Tensor, label: String = "add") throws -> Tensor {
    guard a.shape == b.shape else { throw TensorError.incompatibleShapes(layer: label, first: a.shape, second: b.shape) }
    let b = a.graph.converted(b, to: a.descriptor, label: label)
    return a.graph.add(AddNode(label: label, inputs: [a.id, b.id]), outputs: [(a.shape, a.descriptor)])[0]
}

final class ReLUNode: Node {
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?
    private var sink: GradientSink?
    private var forwardPrimitive: Primitive!

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0]), destination = try graph.memory(outputs[0])
        let training = graph.computesGradients, label = label
        forwardPrimitive = try PrimitiveCache.shared.primitive(PrimitiveKey("relu.forward", [source.descriptor], [training ? 1 : 0])) {
            var d = dnnl_eltwise_desc_t()
            var s = source.descriptor.raw
            try check(dnnl_eltwise_forward_desc_init(&d, training ? dnnl_forward_training : dnnl_forward_inference,
                                                     dnnl_eltwise_relu, &s, 0, 0), "\(label): relu descriptor")
            return try Primitive(name: "\(label) relu forward", operation: &d)
        }
        runForward = try graph.bind(forwardPrimitive, [(Arg.src, source), (Arg.dst, destination)])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        let source = try graph.memory(inputs[0]), diffDestination = try graph.gradientMemory(outputs[0])
        let (label, hint) = (label, forwardPrimitive!)
        let primitive = try PrimitiveCache.shared.primitive(PrimitiveKey("relu.backward", [source.descriptor, diffDestination.descriptor])) {
            var d = dnnl_eltwise_desc_t()
            var diff = diffDestination.descriptor.raw, s = source.descriptor.raw
            try check(dnnl_eltwise_backward_desc_init(&d, dnnl_eltwise_relu, &diff, &s, 0, 0), "\(label): relu backward descriptor")
            return try Primitive(name: "\(label) relu backward", operation: &d, hint: hint)
        }
        sink = try graph.gradientSink(inputs[0], writtenAs: source.descriptor)
        runBackward = try graph.bind(primitive, [(Arg.src, source), (Arg.diffDst, diffDestination), (Arg.diffSrc, sink!.target)])
    }

    override func forward(_ graph: Graph) { runForward.execute() }
    override func backward(_ graph: Graph) {
        runBackward?.execute()
        sink?.complete()
    }
}

/// A oneDNN binary primitive (add or multiply), cached by its layouts.
func binaryPrimitive(_ algorithm: dnnl_alg_kind_t, _ a: MemoryDescriptor, _ b: MemoryDescriptor, _ out: MemoryDescriptor,
                     attributes: Attributes = .init(), label: String) throws -> Primitive {
    try PrimitiveCache.shared.primitive(PrimitiveKey("binary", [a, b, out], [Int(algorithm.rawValue)], attributes: attributes)) {
        var d = dnnl_binary_desc_t()
        var s0 = a.raw, s1 = b.raw, o = out.raw
        try check(dnnl_binary_desc_init(&d, algorithm, &s0, &s1, &o), "\(label): binary descriptor")
        return try Primitive(name: "\(label) binary", operation: &d, attributes: attributes)
    }
}

final class AddNode: Node {
    private var runForward: BoundPrimitive!
    /// With a fused ReLU: its backward pass, from the output, and where that gradient goes.
    private var reluBackward: BoundPrimitive?
    private var reluSink: GradientSink?
    private var copies: [BoundPrimitive] = []
    /// The ReLU that follows, applied as a post-op (`relu(a + b)` in one pass).
    var fusesReLU = false
    /// Quantized graphs: each operand's scale over the output's.
    var inputScales: [Float]?

    override func planForward(_ graph: Graph) throws {
        let a = try graph.memory(inputs[0]), b = try graph.memory(inputs[1]), out = try graph.memory(outputs[0])
        let primitive = try binaryPrimitive(dnnl_binary_add, a.descriptor, b.descriptor, out.descriptor,
                                            attributes: Attributes(relu: fusesReLU, inputScales: inputScales), label: label)
        runForward = try graph.bind(primitive, [(Arg.src, a), (Arg.src1, b), (Arg.dst, out)])
    }

    override func planBackward(_ graph: Graph) throws {
        let needing = inputs.filter(graph.needsGradient)
        guard !needing.isEmpty else { return }
        // The sum's gradient reaches both inputs unchanged.
        var sumGradient = try graph.gradientMemory(outputs[0])
        var writtenDirectly: Int?
        if fusesReLU {
            // The sum was not stored: ReLU's gradient passes where its output is positive.
            // It goes straight into the first input's gradient, which the other one copies.
            let output = try graph.memory(outputs[0])
            let primitive = try reluBackwardFromOutput(output.descriptor, sumGradient.descriptor, label: label)
            let sink: GradientSink
            if inputs[0] != inputs[1] {
                sink = try graph.gradientSink(needing[0], writtenAs: output.descriptor)
                writtenDirectly = needing[0]
            } else {
                sink = GradientSink(target: try graph.accumulationScratch.memory(output.descriptor), finish: nil)
            }
            reluBackward = try graph.bind(primitive, [(Arg.dst, output), (Arg.diffDst, sumGradient), (Arg.diffSrc, sink.target)])
            reluSink = sink
            sumGradient = sink.target
        }
        for i in inputs where graph.needsGradient(i) && i != writtenDirectly {
            copies.append(try graph.gradientCopy(i, from: sumGradient))
        }
    }

    override func forward(_ graph: Graph) { runForward.execute() }
    override func backward(_ graph: Graph) {
        reluBackward?.execute()
        reluSink?.complete()
        for c in copies { c.execute() }
    }
}

/// ReLU's backward pass computed from its output (`dnnl_eltwise_relu_use_dst_for_bwd`):
/// the same mask as from its input, since `relu(x) > 0` exactly where `x > 0`.
private func reluBackwardFromOutput(_ output: MemoryDescriptor, _ diff: MemoryDescriptor, label: String) throws -> Primitive {
    let hint = try PrimitiveCache.shared.primitive(PrimitiveKey("relu.forward.dst", [output])) {
        var d = dnnl_eltwise_desc_t()
        var o = output.raw
        try check(dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd, &o, 0, 0),
                  "\(label): relu descriptor")
        return try Primitive(name: "\(label) relu forward", operation: &d)
    }
    return try PrimitiveCache.shared.primitive(PrimitiveKey("relu.backward.dst", [output, diff])) {
        var d = dnnl_eltwise_desc_t()
        var g = diff.raw, o = output.raw
        try check(dnnl_eltwise_backward_desc_init(&d, dnnl_eltwise_relu_use_dst_for_bwd, &g, &o, 0, 0),
                  "\(label): relu backward descriptor")
        return try Primitive(name: "\(label) relu backward", operation: &d, hint: hint)
    }
}

// MARK: - Pooling

/// Max pooling over `kernel` windows (padding counts as minus infinity).
public func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0), label: String = "maxPool") throws -> Tensor {
    try pool(x, dnnl_pooling_max, kernel: kernel, stride: stride, padding: padding, label: label)
}

/// Average pooling over `kernel` windows. `countIncludesPadding` follows PyTorch's
/// `count_include_pad` (its default, true); Keras excludes padding.
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0),
                      countIncludesPadding: Bool = true, label: String = "avgPool") throws -> Tensor {
    try pool(x, countIncludesPadding ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding,
             kernel: kernel, stride: stride, padding: padding, label: label)
}

/// Global average pooling: `[N, C, H, W]` to `[N, C, 1, 1]`.
public func globalAvgPool2d(_ x: Tensor, label: String = "globalAvgPool") throws -> Tensor {
    guard x.shape.count == 4 else { throw TensorError.shapeMismatch(layer: label, expected: "[N, C, H, W]", actual: x.shape) }
    return try pool(x, dnnl_pooling_avg_exclude_padding, kernel: (x.shape[2], x.shape[3]),
                    stride: (x.shape[2], x.shape[3]), padding: (0, 0), label: label)
}

private func pool(_ x: Tensor, _ algorithm: dnnl_alg_kind_t, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), label: String) throws -> Tensor {
    guard x.shape.count == 4 else { throw TensorError.shapeMismatch(layer: label, expected: "[N, C, H, W]", actual: x.shape) }
    guard kernel.0 > 0, kernel.1 > 0, stride.0 > 0, stride.1 > 0, padding.0 >= 0, padding.1 >= 0,
          padding.0 < kernel.0, padding.1 < kernel.1 else {
        throw TensorError.invalidArgument(layer: label, message: "kernel and stride must be positive, padding smaller than the kernel")
    }
    let (h, w) = (x.shape[2] + 2 * padding.0, x.shape[3] + 2 * padding.1)
    guard h >= kernel.0, w >= kernel.1 else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, C, >=\(kernel.0 - 2 * padding.0), >=\(kernel.1 - 2 * padding.1)]", actual: x.shape)
    }
    let out = [x.shape[0], x.shape[1], (h - kernel.0) / stride.0 + 1, (w - kernel.1) / stride.1 + 1]
    let node = PoolNode(label: label, input: x.id, algorithm: algorithm, kernel: [kernel.0, kernel.1],
                        stride: [stride.0, stride.1], padding: [padding.0, padding.1], training: x.graph.computesGradients)
    try node.makeForward(source: x.descriptor, output: out)
    return x.graph.add(node, outputs: [(out, node.forwardPrimitive.descriptor(for: Arg.dst)!)])[0]
}

final class PoolNode: Node {
    let algorithm: dnnl_alg_kind_t
    let kernel, stride, padding: [Int]
    let training: Bool
    var forwardPrimitive: Primitive!
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?
    private var sink: GradientSink?

    init(label: String, input: Int, algorithm: dnnl_alg_kind_t, kernel: [Int], stride: [Int], padding: [Int], training: Bool) {
        self.algorithm = algorithm
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.training = training
        super.init(label: label, inputs: [input])
    }

    private var settings: [Int] { [Int(algorithm.rawValue)] + kernel + stride + padding }
    private var dims: ([Int64], [Int64], [Int64]) { (stride.map(Int64.init), kernel.map(Int64.init), padding.map(Int64.init)) }

    func makeForward(source: MemoryDescriptor, output: [Int]) throws {
        let any = MemoryDescriptor.any(output, source.elementType)
        let (strides, kernels, pads) = dims
        let (algorithm, training, label) = (algorithm, training, label)
        forwardPrimitive = try PrimitiveCache.shared.primitive(PrimitiveKey("pool.forward", [source, any], settings + [training ? 1 : 0])) {
            var d = dnnl_pooling_desc_t()
            var s = source.raw, o = any.raw
            try check(dnnl_pooling_forward_desc_init(&d, training ? dnnl_forward_training : dnnl_forward_inference, algorithm,
                                                     &s, &o, strides, kernels, pads, pads), "\(label): pooling descriptor")
            return try Primitive(name: "\(label) pooling forward", operation: &d)
        }
    }

    override func planForward(_ graph: Graph) throws {
        var bindings: [(Int32, Memory)] = [(Arg.src, try graph.memory(inputs[0])), (Arg.dst, try graph.memory(outputs[0]))]
        if let workspace = forwardPrimitive.descriptor(for: Arg.workspace) {
            bindings.append((Arg.workspace, try graph.temporary(workspace)))
        }
        runForward = try graph.bind(forwardPrimitive, bindings)
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        // Pooling's backward pass reads the gradient and (max) the workspace, not the input.
        let source = graph.values[inputs[0]].descriptor, diffDestination = try graph.gradientMemory(outputs[0])
        let (strides, kernels, pads) = dims
        let (algorithm, label, hint) = (algorithm, label, forwardPrimitive!)
        let primitive = try PrimitiveCache.shared.primitive(PrimitiveKey("pool.backward", [source, diffDestination.descriptor], settings)) {
            var d = dnnl_pooling_desc_t()
            var s = source.raw, o = diffDestination.descriptor.raw
            try check(dnnl_pooling_backward_desc_init(&d, algorithm, &s, &o, strides, kernels, pads, pads), "\(label): pooling backward descriptor")
            return try Primitive(name: "\(label) pooling backward", operation: &d, hint: hint)
        }
        sink = try graph.gradientSink(inputs[0], writtenAs: source)
        var bindings: [(Int32, Memory)] = [(Arg.diffDst, diffDestination), (Arg.diffSrc, sink!.target)]
        if let workspace = runForward.memory(for: Arg.workspace) { bindings.append((Arg.workspace, workspace)) }
        runBackward = try graph.bind(primitive, bindings)
    }

    override func forward(_ graph: Graph) { runForward.execute() }
    override func backward(_ graph: Graph) {
        runBackward?.execute()
        sink?.complete()
    }
}

// MARK: - Shortcut option A

/// The ResNet paper's shortcut option A: keep every `stride`-th pixel and append zero
/// channels up to `channels` (no parameters).
///
/// The paper says only "extra zero entries padded"; we append the zeros after the input's
/// channels (some implementations pad on both sides). The two differ by a fixed permutation
/// of channels, which the following convolutions absorb, so the networks are equivalent.
/// Not a oneDNN primitive (there is none): a strided copy over the engine's layout, through
/// index tables computed once when the graph is planned.
public func padChannels(_ x: Tensor, to channels: Int, stride: Int, label: String = "shortcut") throws -> Tensor {
    guard x.shape.count == 4, channels >= x.shape[1] else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, <=\(channels), H, W]", actual: x.shape)
    }
    guard stride > 0 else { throw TensorError.invalidArgument(layer: label, message: "stride must be positive") }
    let out = [x.shape[0], channels, (x.shape[2] - 1) / stride + 1, (x.shape[3] - 1) / stride + 1]
    let node = PadChannelsNode(label: label, inputs: [x.id])
    node.stride = stride
    return x.graph.add(node, outputs: [(out, x.descriptor.withDims(out))])[0]
}

final class PadChannelsNode: Node {
    var stride = 1
    /// Element offsets: `destinationOffsets[i]` in the output receives `sourceOffsets[i]` of the input.
    private var sourceOffsets: [Int32] = []
    private var destinationOffsets: [Int32] = []
    private var source: Memory!, destination: Memory!
    private var diffDestination: Memory?
    private var sink: GradientSink?

    override var keepsOutputBetweenPasses: Bool { true }

    override func planForward(_ graph: Graph) throws {
        source = try graph.memory(inputs[0])
        destination = try graph.ownMemory(outputs[0])   // its zero channels are written once, at allocation
        let inShape = graph.values[inputs[0]].shape, outShape = graph.values[outputs[0]].shape
        guard source.descriptor.byteCount / source.descriptor.elementType.size < Int(Int32.max),
              destination.descriptor.byteCount / destination.descriptor.elementType.size < Int(Int32.max) else {
            throw TensorError.invalidArgument(layer: label, message: "tensor too large")
        }
        let count = inShape[0] * inShape[1] * outShape[2] * outShape[3]
        sourceOffsets.reserveCapacity(count)
        destinationOffsets.reserveCapacity(count)
        for n in 0..<inShape[0] {
            for c in 0..<inShape[1] {
                for h in 0..<outShape[2] {
                    for w in 0..<outShape[3] {
                        sourceOffsets.append(Int32(source.descriptor.offset(of: [n, c, h * stride, w * stride])))
                        destinationOffsets.append(Int32(destination.descriptor.offset(of: [n, c, h, w])))
                    }
                }
            }
        }
        // The zero channels are never written: the buffer starts zeroed and stays so.
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        diffDestination = try graph.gradientMemory(outputs[0])
        sink = try graph.gradientSink(inputs[0], writtenAs: source.descriptor)
    }

    override func forward(_ graph: Graph) {
        if source.descriptor.elementType.size == 1 {
            copy(from: source.pointer!.assumingMemoryBound(to: UInt8.self), to: destination.pointer!.assumingMemoryBound(to: UInt8.self), forward: true)
        } else if source.descriptor.elementType == .bfloat16 {
            copy(from: source.pointer!.assumingMemoryBound(to: UInt16.self), to: destination.pointer!.assumingMemoryBound(to: UInt16.self), forward: true)
        } else {
            copy(from: source.floats, to: destination.floats, forward: true)
        }
    }

    /// Moves elements between the input and the output (`forward`) or back, as raw bits.
    @inline(__always)
    private func copy<Element>(from: UnsafeMutablePointer<Element>, to: UnsafeMutablePointer<Element>, forward: Bool) {
        sourceOffsets.withUnsafeBufferPointer { sources in
            destinationOffsets.withUnsafeBufferPointer { destinations in
                if forward {
                    for i in 0..<sources.count { to[Int(destinations[i])] = from[Int(sources[i])] }
                } else {
                    for i in 0..<sources.count { to[Int(sources[i])] = from[Int(destinations[i])] }
                }
            }
        }
    }

    override func backward(_ graph: Graph) {
        guard let sink, let diffDestination else { return }
        sink.target.buffer_zero()
        if diffDestination.descriptor.elementType == .bfloat16 {
            copy(from: diffDestination.pointer!.assumingMemoryBound(to: UInt16.self), to: sink.target.pointer!.assumingMemoryBound(to: UInt16.self), forward: false)
        } else {
            copy(from: diffDestination.floats, to: sink.target.floats, forward: false)
        }
        sink.complete()
    }
}

// MARK: - Flatten

/// `[N, C, H, W]` to `[N, C*H*W]` in NCHW order (so that a dense layer's weights mean the
/// same as PyTorch's after `flatten`). Reorders out of the blocked layout: a model edge.
public func flatten(_ x: Tensor, label: String = "flatten") throws -> Tensor {
    guard x.shape.count >= 2 else { throw TensorError.shapeMismatch(layer: label, expected: "[N, ...]", actual: x.shape) }
    let out = [x.shape[0], x.shape[1...].reduce(1, *)]
    return x.graph.add(FlattenNode(label: label, inputs: [x.id]), outputs: [(out, MemoryDescriptor(out, .plain))])[0]
}

final class FlattenNode: Node {
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0])
        let plainView = try graph.memoryView(outputs[0], as: MemoryDescriptor(graph.values[inputs[0]].shape, .plain))
        runForward = try graph.bind(try PrimitiveCache.shared.reorder(from: source.descriptor, to: plainView.descriptor),
                                    [(Arg.from, source), (Arg.to, plainView)])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        let plainView = try graph.gradientView(outputs[0], as: MemoryDescriptor(graph.values[inputs[0]].shape, .plain))
        runBackward = try graph.gradientCopy(inputs[0], from: plainView)
    }

    override func forward(_ graph: Graph) { runForward.execute() }
    override func backward(_ graph: Graph) { runBackward?.execute() }
}

// MARK: - Dropout

/// Inverted dropout: zeroes each element with probability `rate` and scales the rest by
/// `1 / (1 - rate)`. A new mask every forward pass, drawn from the graph's generator.
/// Layers skip it in evaluation mode.
public func dropout(_ x: Tensor, rate: Float, label: String = "dropout") throws -> Tensor {
    try makeDropout(x, rate: rate, channelWise: false, label: label)
}

/// Spatial (channel) dropout: zeroes whole `[H, W]` planes of `x: [N, C, H, W]`.
public func channelDropout(_ x: Tensor, rate: Float, label: String = "channelDropout") throws -> Tensor {
    guard x.shape.count == 4 else { throw TensorError.shapeMismatch(layer: label, expected: "[N, C, H, W]", actual: x.shape) }
    return try makeDropout(x, rate: rate, channelWise: true, label: label)
}

private func makeDropout(_ x: Tensor, rate: Float, channelWise: Bool, label: String) throws -> Tensor {
    guard rate >= 0, rate < 1 else { throw TensorError.invalidArgument(layer: label, message: "dropout rate must be in 0..<1, got \(rate)") }
    if rate == 0 { return x }
    let node = DropoutNode(label: label, inputs: [x.id])
    node.rate = rate
    node.maskDescriptor = channelWise ? MemoryDescriptor([x.shape[0], x.shape[1], 1, 1], .plain) : x.descriptor.with(.float32)
    return x.graph.add(node, outputs: [(x.shape, x.descriptor)])[0]
}

final class DropoutNode: Node {
    var rate: Float = 0
    var maskDescriptor: MemoryDescriptor!
    /// The mask of the last forward pass (0 or `1 / (1 - rate)`), in the mask's layout.
    private(set) var mask: Memory!
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?
    private var sink: GradientSink?

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0]), destination = try graph.memory(outputs[0])
        mask = try graph.temporary(maskDescriptor)
        let primitive = try binaryPrimitive(dnnl_binary_mul, source.descriptor, maskDescriptor, destination.descriptor, label: label)
        runForward = try graph.bind(primitive, [(Arg.src, source), (Arg.src1, mask), (Arg.dst, destination)])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        let diffDestination = try graph.gradientMemory(outputs[0])
        sink = try graph.gradientSink(inputs[0], writtenAs: graph.values[inputs[0]].descriptor)
        let primitive = try binaryPrimitive(dnnl_binary_mul, diffDestination.descriptor, maskDescriptor, sink!.target.descriptor, label: label)
        runBackward = try graph.bind(primitive, [(Arg.src, diffDestination), (Arg.src1, mask), (Arg.dst, sink!.target)])
    }

    override func forward(_ graph: Graph) {
        let keep = 1 - rate, scale = 1 / keep
        let m = mask.floats
        for i in 0..<(maskDescriptor.byteCount / 4) {
            m[i] = graph.generator.nextUnitFloat() < keep ? scale : 0
        }
        runForward.execute()
    }

    override func backward(_ graph: Graph) {
        runBackward?.execute()
        sink?.complete()
    }
}
