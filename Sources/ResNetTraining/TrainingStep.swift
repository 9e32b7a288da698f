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
    public let batchSize: Int
    public let classCount: Int
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
    }

    /// A loss that is not finite: the step stopped before backward, the weights are untouched.
    public struct NonFiniteLoss: Error {
        public let value: Float
    }

    /// Plans the training graph of `model` for batches of `batchSize` images of `imageShape`
    /// (`[C, H, W]`); `seed` seeds the graph's dropout generator.
    public init(model: any Layer, optimizer: any Optimizer, imageShape: [Int], classCount: Int, batchSize: Int,
                labelSmoothing: Float = 0, precision: Precision = .fp32, seed: UInt64) throws {
        self.model = model
        self.optimizer = optimizer
        self.batchSize = batchSize
        self.classCount = classCount
        parameters = model.trainableParameters
        optimizer.register(parameters)
        model.train()
        graph = Graph(seed: seed, precision: precision)
        images = graph.input([batchSize] + imageShape)
        labels = graph.labels(count: batchSize)
        logits = try model(images)
        loss = try softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing)
        try graph.plan(loss: loss, keep: [logits])
        labelBuffer = [Int32](repeating: 0, count: batchSize)
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
}
