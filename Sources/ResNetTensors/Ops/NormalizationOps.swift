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

/// Sums per-channel batch statistics over the processes that share a batch (synchronized batch
/// norm in data-parallel training). Implemented where the processes are known
/// (`ResNetDistributed`); called from a graph's forward and backward passes, which cannot
/// throw: an implementation ends the process with one line when the processes cannot agree.
public protocol BatchNormSynchronizer: AnyObject {
    /// Replaces `values` by their sum over the processes (every process calls it at the same
    /// point with the same count).
    func sumStatistics(_ values: UnsafeMutableBufferPointer<Double>)
}

/// Makes every training batch norm of `graph` (traced, not yet planned) normalize with the
/// statistics of the whole batch across processes, summed by `synchronizer`: forward, the
/// per-channel sums and sums of squares; backward, the two per-channel reductions of the
/// gradient. Returns how many batch norms it synchronizes.
@discardableResult
public func synchronizeBatchNorms(in graph: Graph, with synchronizer: any BatchNormSynchronizer) -> Int {
    var count = 0
    for case let node as BatchNormNode in graph.nodes where node.training && node.statistics == .batch {
        node.synchronizer = synchronizer
        count += 1
    }
    return count
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
    /// Synchronized batch norm (``synchronizeBatchNorms(in:with:)``): `runLocal` measures this
    /// process's statistics, the synchronizer sums them, `runForward` normalizes with the
    /// global ones (`use_global_stats`); backward adds to oneDNN's data gradient, which used
    /// this process's reductions, the per-channel affine map of `x` that turns them into the
    /// global ones (`correctScale`, `correctShift`).
    var synchronizer: (any BatchNormSynchronizer)?
    private var runLocal: BoundPrimitive?
    private var localMean: Memory?, localVariance: Memory?
    private var correctScale: BoundPrimitive?, correctShift: BoundPrimitive?
    private var correctionScale: Memory?, correctionShift: Memory?
    /// Values per channel here (N H W) and over all processes.
    private var localCount = 0.0, globalCount = 0.0
    private var sums: [Double] = []

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
        if statistics == .running || synchronizer != nil { f |= dnnl_use_global_stats.rawValue }
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
        if synchronizer != nil {
            try planLocalStatistics(graph, source: source, destination: destination)
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
        if let localPrimitive {
            var local = pendingLocalBindings
            if let workspace = localPrimitive.descriptor(for: Arg.workspace) {
                guard let shared = runForward.memory(for: Arg.workspace), shared.descriptor == workspace else {
                    throw TensorError.invalidArgument(layer: label, message: "synchronized batch norm: oneDNN's workspaces differ")
                }
                local.append((Arg.workspace, shared))
            }
            runLocal = try graph.bind(localPrimitive, local)
            pendingLocalBindings = []
        }
        let reduced = inputsShape(graph).enumerated().filter { $0.offset != 1 }.map(\.element).reduce(1, *)
        besselCorrection = reduced > 1 ? Float(reduced) / Float(reduced - 1) : 1
        localCount = Double(reduced)
    }

    /// The flags of an ordinary training batch norm (batch statistics computed by oneDNN).
    private var localFlags: UInt32 { flags & ~dnnl_use_global_stats.rawValue }

    /// Synchronized batch norm: the primitive that measures this process's statistics. It
    /// writes the output too (overwritten by the normalization with the global statistics) and
    /// the same workspace (rewritten likewise).
    private func planLocalStatistics(_ graph: Graph, source: Memory, destination: Memory) throws {
        guard source.descriptor.elementType == .float32 else {
            throw TensorError.invalidArgument(layer: label, message: "synchronized batch norm needs fp32 activations (--precision fp32)")
        }
        let key = PrimitiveKey("batchNorm.forward", [source.descriptor], [Int(localFlags), Int(dnnl_forward_training.rawValue), Int(epsilon.bitPattern)])
        let (flags, epsilon, label) = (localFlags, epsilon, label)
        let primitive = try PrimitiveCache.shared.primitive(key) {
            var d = dnnl_batch_normalization_desc_t()
            var s = source.descriptor.raw
            try check(dnnl_batch_normalization_forward_desc_init(&d, dnnl_forward_training, &s, epsilon, flags), "\(label): batch norm descriptor")
            return try Primitive(name: "\(label) batch norm forward (local statistics)", operation: &d)
        }
        localMean = try graph.temporary(MemoryDescriptor(scale.shape, .plain))
        localVariance = try graph.temporary(MemoryDescriptor(scale.shape, .plain))
        var bindings: [(Int32, Memory)] = [(Arg.src, source), (Arg.dst, destination), (Arg.scale, scale.value),
                                           (Arg.shift, shift.value), (Arg.mean, localMean!), (Arg.variance, localVariance!)]
        localPrimitive = primitive
        pendingLocalBindings = bindings
        bindings.removeAll()
    }
    private var localPrimitive: Primitive?
    private var pendingLocalBindings: [(Int32, Memory)] = []

    private func inputsShape(_ graph: Graph) -> [Int] { graph.values[inputs[0]].shape }

    override func planBackward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0])
        let diffDestination = try graph.gradientMemory(outputs[0])
        // Synchronized: oneDNN's ordinary backward (this process's reductions, with the global
        // mean and variance bound), corrected below.
        let backwardFlags = synchronizer == nil ? flags : localFlags
        let key = PrimitiveKey("batchNorm.backward", [source.descriptor, diffDestination.descriptor],
                               [Int(backwardFlags), Int(epsilon.bitPattern)])
        let (flags, epsilon, label, hint) = (backwardFlags, epsilon, label, synchronizer == nil ? forwardPrimitive! : localPrimitive!)
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
        if synchronizer != nil {
            // diffSource += correctionScale[c] * x + correctionShift[c].
            let c = scale.count
            correctionScale = try graph.temporary(MemoryDescriptor([1, c, 1, 1], .plain))
            correctionShift = try graph.temporary(MemoryDescriptor([1, c, 1, 1], .plain))
            let multiply = try binaryPrimitive(dnnl_binary_mul, source.descriptor, correctionScale!.descriptor, diffSource.descriptor,
                                               attributes: Attributes(sumScale: 1), label: label)
            correctScale = try graph.bind(multiply, [(Arg.src, source), (Arg.src1, correctionScale!), (Arg.dst, diffSource)])
            let add = try binaryPrimitive(dnnl_binary_add, diffSource.descriptor, correctionShift!.descriptor, diffSource.descriptor, label: label)
            correctShift = try graph.bind(add, [(Arg.src, diffSource), (Arg.src1, correctionShift!), (Arg.dst, diffSource)])
        }
    }

    override func forward(_ graph: Graph) {
        if synchronizer != nil { synchronizeStatistics() }
        runForward.execute()
        guard updateRunning else { return }
        let c = scale.count
        let rm = runningMean.value.floats, rv = runningVariance.value.floats
        let bm = mean.floats, bv = variance.floats
        let m = momentum, keep = 1 - momentum
        let bessel = synchronizer == nil ? besselCorrection : (globalCount > 1 ? Float(globalCount / (globalCount - 1)) : 1)
        for i in 0..<c {
            rm[i] = keep * rm[i] + m * bm[i]
            rv[i] = keep * rv[i] + m * bv[i] * bessel
        }
    }

    override func backward(_ graph: Graph) {
        runBackward!.execute()
        if synchronizer != nil { correctDataGradient() }
        dataSink?.complete()
        scaleSink!.complete()
        shiftSink!.complete()
    }

    // MARK: - Synchronized statistics

    /// This process's mean and variance, summed over the processes as `n mean` and
    /// `n (variance + mean^2)` (in Double: the variance of the whole batch is their difference),
    /// become the global mean and (biased) variance the normalization uses.
    private func synchronizeStatistics() {
        runLocal!.execute()
        let c = scale.count, n = localCount
        if sums.count != 2 * c + 1 { sums = [Double](repeating: 0, count: 2 * c + 1) }
        let lm = localMean!.floats, lv = localVariance!.floats
        for i in 0..<c {
            let m = Double(lm[i])
            sums[i] = n * m
            sums[c + i] = n * (Double(lv[i]) + m * m)
        }
        sums[2 * c] = n
        sums.withUnsafeMutableBufferPointer { synchronizer!.sumStatistics($0) }
        globalCount = sums[2 * c]
        let gm = mean.floats, gv = variance.floats
        for i in 0..<c {
            let m = sums[i] / globalCount
            gm[i] = Float(m)
            gv[i] = Float(max(0, sums[c + i] / globalCount - m * m))
        }
    }

    /// oneDNN's data gradient used this process's sums `B = sum dy` and `S = sum dy xhat`
    /// (`dx = g/s (dy - B/n - xhat S/n)`, with the global mean and `s = sqrt(var + eps)`); the
    /// whole batch's are `B_all/N`, `S_all/N`. The difference is affine in `x` per channel:
    /// `dx += a + b x` with `b = g/s^2 (S/n - S_all/N)` and `a = g/s (B/n - B_all/N) - b mean`.
    /// The parameter gradients stay this process's (the gradient all-reduce sums them).
    private func correctDataGradient() {
        let c = scale.count, n = localCount, total = globalCount
        let diffScale = scaleSink!.target.floats, diffShift = shiftSink!.target.floats
        if sums.count != 2 * c + 1 { sums = [Double](repeating: 0, count: 2 * c + 1) }
        for i in 0..<c {
            sums[i] = Double(diffShift[i])
            sums[c + i] = Double(diffScale[i])
        }
        sums[2 * c] = 0
        sums.withUnsafeMutableBufferPointer { synchronizer!.sumStatistics($0) }
        let gamma = scale.value.floats, gm = mean.floats, gv = variance.floats
        let a = correctionShift!.floats, b = correctionScale!.floats
        for i in 0..<c {
            let sigma = (Double(gv[i]) + Double(epsilon)).squareRoot(), g = Double(gamma[i])
            let slope = g / (sigma * sigma) * (Double(diffScale[i]) / n - sums[c + i] / total)
            b[i] = Float(slope)
            a[i] = Float(g / sigma * (Double(diffShift[i]) / n - sums[i] / total) - slope * Double(gm[i]))
        }
        correctScale!.execute()
        correctShift!.execute()
    }
}
