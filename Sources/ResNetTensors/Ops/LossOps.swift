import CDNNL
import Foundation
import ResNetEngine

/// Softmax over the classes of `x: [N, K]`.
public func softmax(_ x: Tensor, label: String = "softmax") throws -> Tensor {
    guard x.shape.count == 2 else { throw TensorError.shapeMismatch(layer: label, expected: "[N, K]", actual: x.shape) }
    let x = x.graph.converted(x, to: MemoryDescriptor(x.shape, .plain), label: label)
    return x.graph.add(SoftmaxNode(label: label, inputs: [x.id]), outputs: [(x.shape, x.descriptor)])[0]
}

/// A cached oneDNN softmax (`algorithm` accurate or log) over axis 1 of a plain `[N, K]` tensor.
private func softmaxPrimitive(_ descriptor: MemoryDescriptor, _ algorithm: dnnl_alg_kind_t, training: Bool, label: String) throws -> Primitive {
    try PrimitiveCache.shared.primitive(PrimitiveKey("softmax.forward", [descriptor], [Int(algorithm.rawValue), training ? 1 : 0])) {
        var d = dnnl_softmax_v2_desc_t()
        var s = descriptor.raw, o = descriptor.raw
        try check(dnnl_softmax_v2_forward_desc_init(&d, training ? dnnl_forward_training : dnnl_forward_inference,
                                                    algorithm, &s, &o, 1), "\(label): softmax descriptor")
        return try Primitive(name: "\(label) softmax forward", operation: &d)
    }
}

final class SoftmaxNode: Node {
    private var runForward: BoundPrimitive!
    private var runBackward: BoundPrimitive?
    private var sink: GradientSink?
    private var forwardPrimitive: Primitive!

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0]), destination = try graph.memory(outputs[0])
        forwardPrimitive = try softmaxPrimitive(source.descriptor, dnnl_softmax_accurate, training: graph.computesGradients, label: label)
        runForward = try graph.bind(forwardPrimitive, [(Arg.src, source), (Arg.dst, destination)])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        let destination = try graph.memory(outputs[0]), diffDestination = try graph.gradientMemory(outputs[0])
        let (label, hint) = (label, forwardPrimitive!)
        let primitive = try PrimitiveCache.shared.primitive(PrimitiveKey("softmax.backward", [destination.descriptor])) {
            var d = dnnl_softmax_v2_desc_t()
            var ds = destination.descriptor.raw, dd = destination.descriptor.raw, o = destination.descriptor.raw
            try check(dnnl_softmax_v2_backward_desc_init(&d, dnnl_softmax_accurate, &ds, &dd, &o, 1), "\(label): softmax backward descriptor")
            return try Primitive(name: "\(label) softmax backward", operation: &d, hint: hint)
        }
        sink = try graph.gradientSink(inputs[0], writtenAs: destination.descriptor)
        runBackward = try graph.bind(primitive, [(Arg.dst, destination), (Arg.diffDst, diffDestination), (Arg.diffSrc, sink!.target)])
    }

    override func forward(_ graph: Graph) { runForward.execute() }
    override func backward(_ graph: Graph) {
        runBackward?.execute()
        sink?.complete()
    }
}

/// Mean softmax cross-entropy of `logits: [N, K]` against integer `labels`, with optional
/// label smoothing: the target is `(1 - ε)·onehot + ε/K`. Returns a `[1]` tensor.
///
/// The log-softmax runs in oneDNN; the reduction over a `[N, K]` matrix and its gradient
/// `(softmax - target) / N` are a few thousand flops, done in Swift.
public func softmaxCrossEntropy(_ logits: Tensor, labels: LabelInput, labelSmoothing: Float = 0, label: String = "loss") throws -> Tensor {
    guard logits.shape.count == 2, logits.shape[0] == labels.count else {
        throw TensorError.shapeMismatch(layer: label, expected: "[\(labels.count), K]", actual: logits.shape)
    }
    guard logits.shape[1] >= 1 else { throw TensorError.invalidArgument(layer: label, message: "no classes") }
    guard labelSmoothing >= 0, labelSmoothing < 1 else {
        throw TensorError.invalidArgument(layer: label, message: "label smoothing must be in 0..<1, got \(labelSmoothing)")
    }
    let graph = logits.graph
    let labelsStorage = graph.labelInputs[labels.id]
    labelsStorage.classCount = min(labelsStorage.classCount, logits.shape[1])
    let x = graph.converted(logits, to: MemoryDescriptor(logits.shape, .plain), label: label)
    let node = CrossEntropyNode(label: label, inputs: [x.id])
    node.labels = labelsStorage
    node.smoothing = labelSmoothing
    return graph.add(node, outputs: [([1], MemoryDescriptor([1], .plain))])[0]
}

final class CrossEntropyNode: Node {
    var labels: Graph.Labels!
    var smoothing: Float = 0
    private var logProbabilities: Memory!
    private var runLogSoftmax: BoundPrimitive!
    private var loss: Memory!
    private var diffLoss: Memory?
    private var sink: GradientSink?
    private var rows = 0, classes = 0

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0])
        rows = graph.values[inputs[0]].shape[0]
        classes = graph.values[inputs[0]].shape[1]
        logProbabilities = try graph.temporary(source.descriptor)
        let primitive = try softmaxPrimitive(source.descriptor, dnnl_softmax_log, training: graph.computesGradients, label: label)
        runLogSoftmax = try graph.bind(primitive, [(Arg.src, source), (Arg.dst, logProbabilities)])
        loss = try graph.memory(outputs[0])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        diffLoss = try graph.gradientMemory(outputs[0])
        sink = try graph.gradientSink(inputs[0], writtenAs: logProbabilities.descriptor)
    }

    override func forward(_ graph: Graph) {
        runLogSoftmax.execute()
        let logp = logProbabilities.floats
        let k = classes, onHot = Double(1 - smoothing), off = Double(smoothing) / Double(k)
        var total = 0.0
        for n in 0..<rows {
            let row = logp + n * k
            var sum = 0.0
            if off != 0 { for j in 0..<k { sum += Double(row[j]) } }
            total -= onHot * Double(row[Int(labels.storage[n])]) + off * sum
        }
        loss.floats[0] = Float(total / Double(rows))
    }

    override func backward(_ graph: Graph) {
        guard let sink, let diffLoss else { return }
        let logp = logProbabilities.floats, out = sink.target.floats
        let k = classes, scale = diffLoss.floats[0] / Float(rows)
        let off = smoothing / Float(k), onHot = 1 - smoothing
        for n in 0..<rows {
            let target = Int(labels.storage[n])
            for j in 0..<k {
                let q = off + (j == target ? onHot : 0)
                out[n * k + j] = scale * (expf(logp[n * k + j]) - q)
            }
        }
        sink.complete()
    }
}
