import ResNetLayers
import ResNetOptimizers
import ResNetTensors

/// One optimizer step on a planned training graph, and nothing else: inputs, forward, a finite
/// loss, backward, the ``gradientHook``, the update. Everything around steps (progress,
/// validation, checkpoints, logs) belongs to the ``Trainer``'s callbacks.
///
/// Plans its graph once; a step allocates nothing.
public final class TrainingStep {
    public let model: any Layer
    public let optimizer: any Optimizer
    /// The trainable parameters, in the order the optimizer registered them.
    public let parameters: [Parameter]
    /// Images this process trains on per step (its shard of the global batch in a
    /// data-parallel run).
    public let batchSize: Int
    public let classCount: Int
    /// The batch is trained as this many contiguous micro-batches, one forward and backward
    /// each (batch-norm statistics per micro-batch), whose gradients are averaged before the
    /// update: a smaller graph for the same batch, and the single-process reference of a
    /// data-parallel run without synchronized batch norm.
    public let microBatches: Int
    /// The processes of a data-parallel run; `nil`: this process alone.
    public let group: (any DataParallelGroup)?
    /// Data-parallel runs: whether this process wants to stop (an interruption); read once per
    /// step and agreed on by all ranks (``Result/stopRequested``).
    public var localStopRequest: () -> Bool = { false }
    /// Called after backward and before the update, with ``parameters`` whose gradients the
    /// batch set: the place for a gradient all-reduce across processes, clipping, accumulation.
    public var gradientHook: (([Parameter]) throws -> Void)?

    let graph: Graph
    private let images: Tensor
    private let labels: LabelInput
    private let logits: Tensor
    private let loss: Tensor
    private var labelBuffer: [Int32]

    /// What one step measured on its batch.
    public struct Result: Sendable {
        /// The mean loss of the batch (finite).
        public var loss: Float
        /// Images of the batch whose top-1 class was the label.
        public var correct: Int
        /// Data-parallel runs: some rank asked to stop after this step.
        public var stopRequested = false
    }

    /// A loss that is not finite: the step stopped before backward, the weights are untouched.
    public struct NonFiniteLoss: Error {
        public let value: Float
    }

    /// Plans the training graph of `model` for batches of `batchSize` images of `imageShape`
    /// (`[C, H, W]`), in `microBatches` parts (which must divide it); `seed` seeds the graph's
    /// dropout generator. With a `group`, `batchSize` is this process's shard: the gradients are
    /// reduced over the group to the mean of the global batch of `batchSize * group.size`.
    public init(model: any Layer, optimizer: any Optimizer, imageShape: [Int], classCount: Int, batchSize: Int,
                labelSmoothing: Float = 0, precision: Precision = .fp32, seed: UInt64, microBatches: Int = 1,
                group: (any DataParallelGroup)? = nil, batchNormSynchronizer: (any BatchNormSynchronizer)? = nil) throws {
        guard microBatches >= 1, batchSize % microBatches == 0 else {
            throw TrainingError.invalidOption("a batch of \(batchSize) images cannot be split into \(microBatches) equal micro-batches")
        }
        self.model = model
        self.optimizer = optimizer
        self.batchSize = batchSize
        self.classCount = classCount
        self.microBatches = microBatches
        self.group = group
        parameters = model.trainableParameters
        optimizer.register(parameters)
        model.train()
        let graphBatch = batchSize / microBatches
        graph = Graph(seed: seed, precision: precision)
        images = graph.input([graphBatch] + imageShape)
        labels = graph.labels(count: graphBatch)
        logits = try model(images)
        loss = try softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing)
        if let batchNormSynchronizer { synchronizeBatchNorms(in: graph, with: batchNormSynchronizer) }
        try graph.plan(loss: loss, keep: [logits])
        labelBuffer = [Int32](repeating: 0, count: graphBatch)
        if microBatches > 1 { accumulated = parameters.map { [Float](repeating: 0, count: $0.count) } }
        if group != nil { runningStatistics = Self.updatedRunningStatistics(model) }
        parameterIndex = Dictionary(uniqueKeysWithValues: parameters.enumerated().map { (ObjectIdentifier($1), $0) })
    }

    /// Each trainable parameter's index in ``parameters``, for the graph's reports of final gradients.
    private var parameterIndex: [ObjectIdentifier: Int] = [:]

    /// Sums of the micro-batches' gradients, one array per parameter.
    private var accumulated: [[Float]] = []
    /// Batch-norm running statistics that training updates: averaged over a group's ranks.
    private var runningStatistics: [Parameter] = []

    /// The running statistics of the batch norms in training mode (frozen ones keep theirs).
    static func updatedRunningStatistics(_ module: Module) -> [Parameter] {
        var found: [Parameter] = []
        func visit(_ m: Module) {
            if let bn = m as? BatchNorm2D, bn.isTraining { found += [bn.runningMean, bn.runningVariance] }
            for (_, child) in m.namedChildren { visit(child) }
        }
        visit(module)
        return found
    }

    /// The dropout generator's state, saved in checkpoints for an exact resume.
    public var dropoutState: [UInt64] {
        get { [graph.generator.state.0, graph.generator.state.1, graph.generator.state.2, graph.generator.state.3] }
        set {
            guard newValue.count == 4 else { return }
            graph.generator.state = (newValue[0], newValue[1], newValue[2], newValue[3])
        }
    }

    /// Trains on one batch: `images` holds `batchSize` plain NCHW images, `labels` their classes.
    ///
    /// - Throws: ``NonFiniteLoss`` (before backward: nothing was updated), or what the hook throws.
    public func callAsFunction(images batch: UnsafeBufferPointer<Float>, labels batchLabels: UnsafeBufferPointer<Int32>,
                               learningRate: Float) throws -> Result {
        precondition(batchLabels.count >= batchSize, "a batch of \(batchLabels.count) labels for a step of \(batchSize)")
        if microBatches > 1 || group != nil { return try parallelStep(images: batch, labels: batchLabels, learningRate: learningRate) }
        optimizer.learningRate = learningRate
        graph.withInputBuffer(images) { $0.update(from: UnsafeMutableBufferPointer(mutating: batch)) }
        for i in 0..<batchSize { labelBuffer[i] = batchLabels[i] }
        try graph.setLabels(labels, labelBuffer)
        graph.forward()
        let value = try graph.withValue(loss) { $0[0] }   // read in place: the step allocates nothing
        guard value.isFinite else { throw NonFiniteLoss(value: value) }
        graph.backward()
        try gradientHook?(parameters)
        optimizer.update(parameters)
        let classes = classCount
        let correct = try graph.withValue(logits) { l in
            (0..<batchSize).reduce(0) { sum, i in
                let row = l.baseAddress! + i * classes
                var best = 0
                for k in 1..<classes where row[k] > row[best] { best = k }
                return sum + (best == Int(labelBuffer[i]) ? 1 : 0)
            }
        }
        return Result(loss: value, correct: correct)
    }

    /// The step of a data-parallel run or of several micro-batches: each micro-batch's forward
    /// and backward, the gradients summed, the loss sums and a stop request reduced over the
    /// group (so every rank agrees whether the loss is finite before any gradient moves and
    /// before any weight changes), then the last backward with the gradients reduced to the
    /// global batch's mean as they become final, the hook, the update.
    private func parallelStep(images batch: UnsafeBufferPointer<Float>, labels batchLabels: UnsafeBufferPointer<Int32>,
                              learningRate: Float) throws -> Result {
        optimizer.learningRate = learningRate
        let micro = batchSize / microBatches, perImage = batch.count / max(1, batchSize), classes = classCount
        var lossSum = 0.0, correct = 0, nonFinite: Float?
        for m in 0..<microBatches {
            let offset = m * micro
            graph.withInputBuffer(images) { $0.update(from: UnsafeMutableBufferPointer(mutating: UnsafeBufferPointer(rebasing: batch[(offset * perImage)..<((offset + micro) * perImage)]))) }
            for i in 0..<micro { labelBuffer[i] = batchLabels[offset + i] }
            try graph.setLabels(labels, labelBuffer)
            graph.forward()
            let value = try graph.withValue(loss) { $0[0] }
            correct += try graph.withValue(logits) { l in
                (0..<micro).reduce(0) { sum, i in
                    let row = l.baseAddress! + i * classes
                    var best = 0
                    for k in 1..<classes where row[k] > row[best] { best = k }
                    return sum + (best == Int(labelBuffer[i]) ? 1 : 0)
                }
            }
            guard value.isFinite else { nonFinite = value; break }
            lossSum += Double(value) * Double(micro)
            // A group's last backward runs with the gradient all-reduce, once the ranks agree
            // below that every loss is finite (a rank whose loss is not skips backward, so its
            // collectives would not match the others').
            if group != nil && m == microBatches - 1 { break }
            graph.backward()
            guard microBatches > 1 else { continue }
            for (k, p) in parameters.enumerated() {
                let g = p.gradient.floats
                accumulated[k].withUnsafeMutableBufferPointer { a in
                    if m == 0 { for i in 0..<a.count { a[i] = g[i] } } else { for i in 0..<a.count { a[i] += g[i] } }
                }
            }
        }
        var sums = [lossSum, Double(correct), nonFinite == nil ? 0 : 1, localStopRequest() ? 1 : 0]
        if let group { sums = try group.sum(sums) }
        let globalImages = Double(batchSize * (group?.size ?? 1))
        if let nonFinite { throw NonFiniteLoss(value: nonFinite) }
        guard sums[2] == 0 else { throw NonFiniteLoss(value: .nan) }   // another rank's
        if let group {
            // The last micro-batch's backward; each gradient, once final, gets the earlier
            // micro-batches' sum (the same additions in the same order as a sum after
            // backward) and goes to the all-reduce while backward continues. Scaled once: the
            // mean over micro-batches and ranks.
            let accumulates = microBatches > 1
            try group.reduceGradients(parameters, scale: 1 / Float(microBatches * group.size), averaging: runningStatistics) { gradientIsFinal in
                graph.backward { parameter in
                    guard let k = parameterIndex[ObjectIdentifier(parameter)] else { return }
                    if accumulates {
                        let g = parameter.gradient.floats
                        accumulated[k].withUnsafeBufferPointer { a in for i in 0..<a.count { g[i] = a[i] + g[i] } }
                    }
                    gradientIsFinal(k)
                }
            }
        } else if microBatches > 1 {
            // The mean of the micro-batches' means.
            let scale = 1 / Float(microBatches)
            for (k, p) in parameters.enumerated() {
                let g = p.gradient.floats
                accumulated[k].withUnsafeBufferPointer { a in for i in 0..<a.count { g[i] = a[i] * scale } }
            }
        }
        try gradientHook?(parameters)
        optimizer.update(parameters)
        return Result(loss: Float(sums[0] / globalImages), correct: Int(sums[1]), stopRequested: sums[3] > 0)
    }
}
