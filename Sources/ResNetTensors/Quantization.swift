import CDNNL
import ResNetEngine

// 8-bit inference (issue 16). A quantized graph is traced and fused in fp32 like any inference
// graph; when it is planned, its convolutions become oneDNN's u8/s8 convolutions:
//
// - activations are unsigned after a ReLU and signed otherwise (the stem's normalized input, a
//   projection shortcut), one scale per tensor from the ranges measured on calibration images
//   (the largest magnitude seen maps to 255 or 127), channels-last (oneDNN's int8 kernels' layout);
// - weights are signed with one scale per output channel, after the batch norm is folded in;
// - a convolution writes its output already scaled for the next layer (`output_scales` =
//   input scale x weight scale / output scale) and adds the shortcut with its own scale (`sum`);
// - max pooling and option A shortcuts move the integers as they are; additions that stayed
//   separate rescale both operands; everything else (the classifier, a pre-activation network's
//   unfolded batch norms) reads a dequantized fp32 copy.
//
// Why: at batch 1 on the 2-core AMD EPYC VM of 2026-12-01 (avx512_vnni), oneDNN 2.6's u8s8
// convolutions ran ResNet-50's 53 convolutions in 4.70 ms against 15.14 ms for the fastest fp32
// kernel of each (Winograd or direct), and ResNet-18's in 1.94 against 4.75 ms (a C program
// timing each shape alone, 2 threads, bias and ReLU: benchmarks/int8-convolutions.c). Whole
// networks: ResNet-50 at batch 1 ran 3.8x onnxruntime's fp32 speed, ResNet-20 lost 0.03 points
// of CIFAR-10 test accuracy (docs/performance.md, *8-bit convolutions*).

/// The range of every value of an inference graph over calibration images: what a quantized
/// graph of the same model (``Graph/init(computesGradients:seed:precision:sharesMemory:parametersAreConstant:derivedWeights:activations:convolutionAlgorithms:quantization:)``)
/// needs to choose its scales.
///
/// Measure it with ``Graph/measureRanges(into:)`` on an fp32 inference graph of the model, over
/// a few hundred images the model will see (never the test set whose accuracy is reported).
/// Values are identified by their place in the traced graph, so the ranges apply to graphs of
/// any batch size traced by the same model code.
public struct ActivationRanges: Sendable, Equatable {
    /// The traced ops, kind and label, of the graph the ranges were measured on.
    let structure: [String]
    var minimum: [Int: Float] = [:]
    var maximum: [Int: Float] = [:]
    /// Images measured so far.
    public internal(set) var imageCount = 0

    /// Ranges for graphs traced as `graph` was, none measured yet.
    public init(for graph: Graph) { structure = graph.tracedStructure }

    /// The smallest and largest value seen of value `id`.
    func range(of id: Int) -> (lower: Float, upper: Float)? {
        guard let lower = minimum[id], let upper = maximum[id] else { return nil }
        return (lower, upper)
    }
}

/// A convolution's weights as 8-bit integers.
struct QuantizedWeights {
    /// Plain `[O, C, KH, KW]`, `weights[o] / weightScales[o]` rounded.
    var integers: [Int8]
    /// The folded bias in accumulator units: `bias[o] / (inputScale * weightScales[o])`
    /// (oneDNN 2.6 adds the bias before the output scales).
    var bias: [Float]
}

extension Graph {
    /// Every node's kind and label, in tracing order: what identifies values across graphs of one model.
    var tracedStructure: [String] { nodes.map { "\(type(of: $0)) \($0.label)" } }

    /// Runs a forward pass and widens `ranges` to the values every op wrote (each read right
    /// after the op, before a later op writes over it). For fp32 inference graphs; the inputs
    /// must be set. `ranges` must come from a graph of the same model.
    public func measureRanges(into ranges: inout ActivationRanges) throws {
        precondition(isPlanned, "plan the graph before running it")
        guard !computesGradients, precision == .fp32, quantization == nil else {
            throw TensorError.invalidArgument(layer: "calibration", message: "ranges are measured on an fp32 inference graph")
        }
        guard ranges.structure == tracedStructure else {
            throw TensorError.invalidArgument(layer: "calibration", message: "these ranges were measured on another network")
        }
        func widen(_ id: Int) {
            guard let memory = values[id].memory, memory.descriptor.elementType == .float32 else { return }
            let floats = UnsafeBufferPointer(start: memory.floats, count: memory.descriptor.byteCount / 4)
            var lower = ranges.minimum[id] ?? .infinity, upper = ranges.maximum[id] ?? -.infinity
            for x in floats {
                lower = min(lower, x)
                upper = max(upper, x)
            }
            ranges.minimum[id] = lower
            ranges.maximum[id] = upper
        }
        inputIDs.forEach(widen)
        for node in forwardNodes {
            node.forward(self)
            node.outputs.forEach(widen)
        }
        ranges.imageCount += values[inputIDs[0]].shape[0]
    }

    /// The forward steps of a quantized graph: `steps` (fused, fp32) with convolutions and what
    /// lies between them on 8-bit integers, and reorders added where a value changes between
    /// fp32 and integers.
    func quantize(_ steps: [Node], ranges: ActivationRanges) throws -> [Node] {
        guard ranges.structure == tracedStructure else {
            throw TensorError.invalidArgument(layer: "quantization", message: "the calibration ranges were measured on another network")
        }
        var planned: [Node] = []
        let traced = values.map(\.descriptor)
        var quantizedCopy: [Int: Int] = [:], floatCopy: [Int: Int] = [:]
        var readers: [Int: Int] = [:]
        for node in steps { for i in node.inputs { readers[i, default: 0] += 1 } }

        func isQuantized(_ id: Int) -> Bool { values[id].descriptor.elementType.isQuantized }

        /// `real = integer * scale` covering the measured range of `id` in `type`.
        func scale(of id: Int, as type: ElementType) throws -> Float {
            guard let range = ranges.range(of: id) else {
                throw TensorError.invalidArgument(layer: "quantization", message: "no calibration range for value \(id)")
            }
            let largest = type == .uint8 ? max(range.upper, 0) : max(-range.lower, range.upper)
            let scale = largest / (type == .uint8 ? 255 : 127)
            return scale.isFinite && scale > 0 ? scale : 1
        }
        /// `id` becomes integers of `type`, in the one layout integers have.
        func retype(_ id: Int, _ type: ElementType) throws {
            let shape = values[id].shape
            values[id].descriptor = MemoryDescriptor(shape, shape.count == 4 ? .channelsLast : .plain, type)
            values[id].scale = try scale(of: id, as: type)
        }
        /// The output of `node`, a new value, computed before the step being rewritten.
        func insert(_ node: ReorderNode, shape: [Int], descriptor: MemoryDescriptor) -> Int {
            let copy = addValue(shape: shape, descriptor: descriptor, requiresGradient: false).id
            node.outputs = [copy]
            values[copy].producer = node
            nodes.append(node)
            planned.append(node)
            return copy
        }
        /// `id` as integers: itself, or a quantizing reorder's output. A layout change made for
        /// `consumer` alone becomes that reorder.
        func quantized(_ id: Int, for consumer: Node) throws -> Int {
            if isQuantized(id) { return id }
            if let copy = quantizedCopy[id] { return copy }
            let type: ElementType = (ranges.range(of: id)?.lower ?? -1) >= 0 ? .uint8 : .int8
            if values[id].producer is ReorderNode, readers[id] == 1, memoryAliases.values.allSatisfy({ $0 != id }) {
                try retype(id, type)
                return id
            }
            let shape = values[id].shape
            let copy = insert(ReorderNode(label: consumer.label + ".quantize", input: id), shape: shape,
                              descriptor: MemoryDescriptor(shape, shape.count == 4 ? .channelsLast : .plain, type))
            values[copy].scale = try scale(of: id, as: type)
            quantizedCopy[id] = copy
            return copy
        }
        /// `id` as fp32: itself, or a dequantizing reorder's output in the layout fp32 ops were traced with.
        func float(_ id: Int, for consumer: Node, descriptor: MemoryDescriptor) -> Int {
            guard isQuantized(id) else { return id }
            if let copy = floatCopy[id] { return copy }
            let copy = insert(ReorderNode(label: consumer.label + ".dequantize", input: id), shape: values[id].shape, descriptor: descriptor)
            floatCopy[id] = copy
            return copy
        }

        for node in steps {
            switch node {
            case let convolution as ConvolutionNode:
                let input = try quantized(convolution.inputs[0], for: convolution)
                convolution.inputs[0] = input
                let output = convolution.outputs[0]
                var sum: (scale: Float, type: ElementType)?
                try retype(output, convolution.forwardAttributes.relu ? .uint8 : .int8)
                if convolution.forwardAttributes.sumScale != nil, let shortcut = memoryAliases[output] {
                    // The output is written over the shortcut, which must hold integers of the same layout.
                    let integers = try quantized(shortcut, for: convolution)
                    memoryAliases[output] = integers
                    sum = (values[integers].scale / values[output].scale, values[integers].descriptor.elementType)
                }
                try convolution.quantize(inputScale: values[input].scale, source: values[input].descriptor,
                                         destination: values[output].descriptor, outputScale: values[output].scale, sum: sum)
            case let pool as PoolNode where isQuantized(pool.inputs[0]) && pool.algorithm == dnnl_pooling_max:
                // The largest integer is the integer of the largest value: same scale.
                let (input, output) = (pool.inputs[0], pool.outputs[0])
                try pool.makeForward(source: values[input].descriptor, output: values[output].shape)
                values[output].descriptor = pool.forwardPrimitive.descriptor(for: Arg.dst)!
                values[output].scale = values[input].scale
            case let pad as PadChannelsNode where isQuantized(pad.inputs[0]):
                let (input, output) = (pad.inputs[0], pad.outputs[0])
                values[output].descriptor = values[input].descriptor.withDims(values[output].shape)
                values[output].scale = values[input].scale
            case let reorder as ReorderNode where isQuantized(reorder.inputs[0]):
                // A layout change between fp32 ops: integers already have the one layout.
                let (input, output) = (reorder.inputs[0], reorder.outputs[0])
                values[output].descriptor = values[input].descriptor
                values[output].scale = values[input].scale
            case let addition as AddNode where addition.inputs.contains(where: isQuantized):
                let a = try quantized(addition.inputs[0], for: addition), b = try quantized(addition.inputs[1], for: addition)
                guard values[a].descriptor.dims == values[b].descriptor.dims else { fallthrough }
                addition.inputs = [a, b]
                let output = addition.outputs[0]
                try retype(output, addition.fusesReLU ? .uint8 : .int8)
                addition.inputScales = [values[a].scale / values[output].scale, values[b].scale / values[output].scale]
            default:
                node.inputs = node.inputs.map { id in
                    float(id, for: node, descriptor: id < traced.count ? traced[id] : MemoryDescriptor(values[id].shape, .plain))
                }
            }
            planned.append(node)
        }
        return planned
    }
}

extension WeightedNode {
    /// Makes this op's int8 primitive and weights: `source` and `destination` are integers of
    /// the given scales, `sum` the scale (relative to the output's) and type of a residual
    /// operand added in place.
    func quantize(inputScale: Float, source: MemoryDescriptor, destination: MemoryDescriptor, outputScale: Float,
                  sum: (scale: Float, type: ElementType)?) throws {
        let outputs = weight.shape[0], perOutput = weight.count / outputs
        var folded = [Float](repeating: 0, count: weight.count), foldedBias = [Float](repeating: 0, count: outputs)
        if let norm = foldedNorm {
            Self.fold(norm, weight: weight, bias: bias, into: &folded, &foldedBias)
        } else {
            for i in 0..<weight.count { folded[i] = weight.value.floats[i] }
            if let bias { for o in 0..<outputs { foldedBias[o] = bias.value.floats[o] } }
        }
        var integers = [Int8](repeating: 0, count: weight.count)
        var weightScales = [Float](repeating: 1, count: outputs)
        for o in 0..<outputs {
            let row = (o * perOutput)..<((o + 1) * perOutput)
            let largest = folded[row].reduce(0) { max($0, abs($1)) }
            if largest > 0 { weightScales[o] = largest / 127 }
            for i in row { integers[i] = Int8((folded[i] / weightScales[o]).rounded()) }
            foldedBias[o] /= inputScale * weightScales[o]
        }
        let attributes = Attributes(sumScale: sum?.scale, relu: forwardAttributes.relu,
                                    sumType: sum.map(\.type) == destination.elementType ? nil : sum?.type,
                                    outputScales: weightScales.map { inputScale * $0 / outputScale })
        (self as? ConvolutionNode)?.algorithm = dnnl_convolution_direct
        forwardAttributes = attributes
        let weights = MemoryDescriptor.any(weight.shape, .int8), bias = MemoryDescriptor([outputs], .plain)
        let key = PrimitiveKey(kind + ".forward.int8", [source, weights, bias, destination], settings, attributes: attributes)
        do {
            forwardPrimitive = try PrimitiveCache.shared.primitive(key) {
                try forwardOperation(source: source, weights: weights, bias: bias, destination: destination)
            }
        } catch let error as DNNLError {
            throw TensorError.invalidArgument(layer: label, message: "int8: \(error.description)")
        }
        guard forwardPrimitive.descriptor(for: Arg.src) == source, forwardPrimitive.descriptor(for: Arg.dst) == destination else {
            throw TensorError.invalidArgument(layer: label, message: "int8: oneDNN wants other layouts")
        }
        quantized = QuantizedWeights(integers: integers, bias: foldedBias)
    }
}
