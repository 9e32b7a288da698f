import CDNNL
import ResNetEngine

/// Which statistics batch normalization normalizes with.
public enum BatchNormStatistics: Sendable {
    /// The batch's own mean and variance (training; also an inference option, as in the
    /// PyTorch note's evaluation with batch statistics).
    case batch
    /// The running averages (ordinary inference).
    case running
}

/// Batch normalization over N, H and W for each channel of `x: [N, C, H, W]`.
///
/// - Parameters:
///   - statistics: normalize with the batch's statistics or the running ones.
///   - updateRunningStatistics: with batch statistics, fold them into the running averages:
///     `running = (1 - momentum) * running + momentum * batch` (PyTorch's convention, momentum 0.1;
///     Keras calls `1 - momentum` its momentum). The running variance uses the unbiased batch variance.
public func batchNorm(
    _ x: Tensor, scale: Parameter, shift: Parameter, runningMean: Parameter, runningVariance: Parameter,
    statistics: BatchNormStatistics, updateRunningStatistics: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5,
    label: String = "batchNorm"
) throws -> Tensor {
    let c = scale.shape.first ?? 0
    guard x.shape.count == 4, x.shape[1] == c else {
        throw TensorError.shapeMismatch(layer: label, expected: "[N, \(c), H, W]", actual: x.shape)
    }
    guard [shift.shape, runningMean.shape, runningVariance.shape].allSatisfy({ $0 == [c] }) else {
        throw TensorError.invalidArgument(layer: label, message: "scale, shift and running statistics must all be [\(c)]")
    }
    let node = BatchNormNode(label: label, input: x.id, scale: scale, shift: shift, runningMean: runningMean,
                             runningVariance: runningVariance, statistics: statistics,
                             updateRunning: updateRunningStatistics && statistics == .batch,
                             momentum: momentum, epsilon: epsilon, training: x.graph.computesGradients)
    return x.graph.add(node, outputs: [(x.shape, x.descriptor)])[0]
}

final class BatchNormNode: Node {
    let scale, shift, runningMean, runningVariance: Parameter
    let statistics: BatchNormStatistics
    let updateRunning: Bool
    let momentum: Float
    let epsilon: Float
    let training: Bool
    /// Set by the graph's fusion pass: the primitive applies ReLU to its output.
    var fusesReLU = false

    private var forwardPrimitive: Primitive!
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?
    private var dataSink: GradientSink?
    private var scaleSink: GradientSink?
    private var shiftSink: GradientSink?
    private var mean: Memory!
    private var variance: Memory!
    private var besselCorrection: Float = 1

    init(label: String, input: Int, scale: Parameter, shift: Parameter, runningMean: Parameter, runningVariance: Parameter,
         statistics: BatchNormStatistics, updateRunning: Bool, momentum: Float, epsilon: Float, training: Bool) {
        self.scale = scale
        self.shift = shift
        self.runningMean = runningMean
        self.runningVariance = runningVariance
        self.statistics = statistics
        self.updateRunning = updateRunning
        self.momentum = momentum
        self.epsilon = epsilon
        self.training = training
        super.init(label: label, inputs: [input])
    }

    override var parameters: [Parameter] { [scale, shift, runningMean, runningVariance] }

    private var flags: UInt32 {
        var f = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue
        if statistics == .running { f |= dnnl_use_global_stats.rawValue }
        if fusesReLU { f |= dnnl_fuse_norm_relu.rawValue }
        return f
    }

    /// Forward-inference primitives cannot return batch statistics, so batch statistics
    /// always use the training primitive.
    private var propagation: dnnl_prop_kind_t {
        training || statistics == .batch ? dnnl_forward_training : dnnl_forward_inference
    }

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0]), destination = try graph.memory(outputs[0])
        let key = PrimitiveKey("batchNorm.forward", [source.descriptor], [Int(flags), Int(propagation.rawValue), Int(epsilon.bitPattern)])
        let (prop, flags, epsilon, label) = (propagation, flags, epsilon, label)
        forwardPrimitive = try PrimitiveCache.shared.primitive(key) {
            var d = dnnl_batch_normalization_desc_t()
            var s = source.descriptor.raw
            try check(dnnl_batch_normalization_forward_desc_init(&d, prop, &s, epsilon, flags), "\(label): batch norm descriptor")
            return try Primitive(name: "\(label) batch norm forward", operation: &d)
        }
        if statistics == .running {
            mean = runningMean.value
            variance = runningVariance.value
        } else {
            mean = try graph.temporary(MemoryDescriptor(scale.shape, .plain))
            variance = try graph.temporary(MemoryDescriptor(scale.shape, .plain))
        }
        var bindings: [(Int32, Memory)] = [(Arg.src, source), (Arg.dst, destination), (Arg.scale, scale.value),
                                           (Arg.shift, shift.value), (Arg.mean, mean), (Arg.variance, variance)]
        if let workspace = forwardPrimitive.descriptor(for: Arg.workspace) {
            bindings.append((Arg.workspace, try graph.temporary(workspace)))
        }
        runForward = try graph.bind(forwardPrimitive, bindings)
        let reduced = inputsShape(graph).enumerated().filter { $0.offset != 1 }.map(\.element).reduce(1, *)
        besselCorrection = reduced > 1 ? Float(reduced) / Float(reduced - 1) : 1
    }

    private func inputsShape(_ graph: Graph) -> [Int] { graph.values[inputs[0]].shape }

    override func planBackward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0])
        let diffDestination = try graph.gradientMemory(outputs[0])
        let key = PrimitiveKey("batchNorm.backward", [source.descriptor, diffDestination.descriptor],
                               [Int(flags), Int(epsilon.bitPattern)])
        let (flags, epsilon, label, hint) = (flags, epsilon, label, forwardPrimitive!)
        let primitive = try PrimitiveCache.shared.primitive(key) {
            var d = dnnl_batch_normalization_desc_t()
            var diff = diffDestination.descriptor.raw, s = source.descriptor.raw
            try check(dnnl_batch_normalization_backward_desc_init(&d, dnnl_backward, &diff, &s, epsilon, flags),
                      "\(label): batch norm backward descriptor")
            return try Primitive(name: "\(label) batch norm backward", operation: &d, hint: hint)
        }
        let diffSource: Memory
        if graph.needsGradient(inputs[0]) {
            dataSink = try graph.gradientSink(inputs[0], writtenAs: source.descriptor)
            diffSource = dataSink!.target
        } else {
            diffSource = try graph.temporary(source.descriptor)
        }
        scaleSink = try graph.parameterGradientSink(scale, writtenAs: scale.value.descriptor)
        shiftSink = try graph.parameterGradientSink(shift, writtenAs: shift.value.descriptor)
        var bindings: [(Int32, Memory)] = [(Arg.src, source), (Arg.mean, mean), (Arg.variance, variance),
                                           (Arg.diffDst, diffDestination), (Arg.scale, scale.value), (Arg.shift, shift.value),
                                           (Arg.diffSrc, diffSource), (Arg.diffScale, scaleSink!.target),
                                           (Arg.diffShift, shiftSink!.target)]
        if let workspace = runForward.memory(for: Arg.workspace) { bindings.append((Arg.workspace, workspace)) }
        runBackward = try graph.bind(primitive, bindings)
    }

    override func forward(_ graph: Graph) {
        runForward.execute()
        guard updateRunning else { return }
        let c = scale.count
        let rm = runningMean.value.floats, rv = runningVariance.value.floats
        let bm = mean.floats, bv = variance.floats
        let m = momentum, keep = 1 - momentum, bessel = besselCorrection
        for i in 0..<c {
            rm[i] = keep * rm[i] + m * bm[i]
            rv[i] = keep * rv[i] + m * bv[i] * bessel
        }
    }

    override func backward(_ graph: Graph) {
        runBackward!.execute()
        dataSink?.complete()
        scaleSink!.complete()
        shiftSink!.complete()
    }
}
