import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors

/// Writes a model as an ONNX file (opset 17, IR version 8) that stands on its own: the network
/// in evaluation mode, the model card's normalization in front of it and a softmax after it,
/// with the card and the class names in the file's metadata.
///
/// The graph's input `image` is float32 `[N, C, H, W]` (the batch `N` is dynamic): an image as
/// a decoder gives it, scaled to 0...1 (`byte / 255`), RGB (gray for one-channel models), after
/// the card's resize (and crop) to `H x W`. The graph then does what ``Classifier`` does after
/// ``ModelCard/prepare(_:)``: reorders the channels for `bgr` models (a `Gather`), normalizes
/// (per channel `Sub` + `Div`; per pixel a `Sub`; ZCA a `Sub` and a `MatMul` over the flattened
/// image, with the fitted mean and matrix as initializers), runs the network and ends in
/// `Softmax`: the output `probabilities` is `[N, classes]`.
///
/// With `raw: true` the graph is the bare network: input `input` (normalized, channels in the
/// card's order), output `logits`.
///
/// The network is written op for op as the layers compute it in evaluation mode: `Conv`,
/// `BatchNormalization` with the running statistics (inference mode), `Relu`, `Add`, `MaxPool`,
/// `GlobalAveragePool`, `Flatten`, `Gemm`; dropout is the identity. Option A's shortcut (subsample,
/// then zero channels appended after the input's) is a strided `Slice` and a `Pad`. Initializers
/// carry the parameters' names (`stage1.block1.conv1.weight`).
///
/// Metadata (`metadata_props`): ``metadataKey`` holds the model card's JSON, as a model file's
/// metadata does, and ``classNamesKey`` the class names as a JSON array.
///
/// ```swift
/// let loaded = try ModelFile.load("runs/resnet20/best.safetensors")
/// try ONNXExport.write(loaded, to: URL(fileURLWithPath: "resnet20.onnx"))
/// ```
public enum ONNXExport {
    /// The operator set the graph uses (ONNX 1.12 and later, onnxruntime 1.12 and later).
    public static let opsetVersion = 17
    /// The IR version matching ``opsetVersion``.
    public static let irVersion = 8
    /// The metadata key of the model card's JSON (as in a model file).
    public static let metadataKey = ModelCard.metadataKey
    /// The metadata key of the class names, a JSON array in output order.
    public static let classNamesKey = "resnet.classes"
    /// Input and output names of the full graph and of the raw (bare network) one.
    public static let imageInput = "image", probabilitiesOutput = "probabilities"
    public static let rawInput = "input", logitsOutput = "logits"
    /// Protocol buffers cannot be larger than 2 GiB - 1 (ONNX's external-data files are not written).
    public static let maximumSize = Int(Int32.max)

    /// The ONNX model of `loaded` (its card, or `card` when given, e.g. with metrics added).
    ///
    /// - Throws: ``ExportError/inexpressible(_:)`` naming `loaded`'s file, the layer and the
    ///   reason when the network holds something ONNX cannot express here.
    public static func encode(_ loaded: LoadedModel, card: ModelCard? = nil, raw: Bool = false,
                              producerVersion: String = "") throws -> Data {
        try encode(model: loaded.model, card: card ?? loaded.card, whitening: loaded.whitening, raw: raw,
                   source: loaded.url.path, producerVersion: producerVersion)
    }

    /// Writes ``encode(_:card:raw:producerVersion:)`` atomically to `url` (a temporary file
    /// renamed into place): on any error nothing is left behind.
    public static func write(_ loaded: LoadedModel, card: ModelCard? = nil, raw: Bool = false, producerVersion: String = "",
                             to url: URL) throws {
        let data = try encode(loaded, card: card, raw: raw, producerVersion: producerVersion)
        try writeAtomically(data, to: url)
    }

    /// The ONNX model of `model` (built for `card`), `whitening` being the fitted ZCA of a ZCA
    /// card; `source` names the model in errors.
    public static func encode(model: any Layer, card: ModelCard, whitening: ZCAWhitening?, raw: Bool = false,
                              source: String, producerVersion: String = "") throws -> Data {
        func fail(_ why: String) -> ExportError { .inexpressible("\(source): cannot be exported to ONNX: \(why)") }
        let card = try card.validated()
        // Bound the file before encoding anything: weights and stored preprocessing as float32.
        // (namedParameters also names the tree: initializers and nodes take the layers' names.)
        var floats = model.namedParameters().reduce(0) { $0 + $1.1.count }
        if !raw, case .zca = card.preprocessing.normalization { floats += (whitening?.dimension ?? 0) * ((whitening?.dimension ?? 0) + 1) }
        guard floats <= (maximumSize - (64 << 20)) / 4 else {
            throw fail("its \(floats) float32 values exceed ONNX's 2 GiB protocol-buffer limit (external data is not written)")
        }

        var graph = GraphBuilder(fail: fail)
        let input = card.input
        let (inputName, output) = raw ? (rawInput, logitsOutput) : (imageInput, probabilitiesOutput)
        graph.names = [inputName, output]
        var x = GraphBuilder.Value(name: inputName, shape: input.shape)
        if !raw { x = try graph.preprocess(x, card: card, whitening: whitening) }
        let logits = try graph.layer(model, x)
        guard logits.shape == [card.classNames.count] else {
            throw fail("the network's output is \(logits.shape), not the card's \(card.classNames.count) classes")
        }
        if raw {
            graph.node("Identity", [logits.name], name: "logits", output: output)
        } else {
            graph.node("Softmax", [logits.name], name: "softmax", output: output, attributes: [.int("axis", 1)])
        }

        let order = input.channelOrder == .gray ? "gray" : raw ? input.channelOrder.rawValue.uppercased() : "RGB"
        let inputDoc = raw
            ? "float32 [N, \(input.channels), \(input.height), \(input.width)]: the network's input, normalized as the model card says, channels in \(order) order"
            : "float32 [N, \(input.channels), \(input.height), \(input.width)]: \(order) pixels scaled to 0..1 (byte / 255), already resized as the model card says"
        let outputDoc = raw ? "float32 [N, \(card.classNames.count)]: logits" : "float32 [N, \(card.classNames.count)]: softmax probabilities, classes in the order of metadata '\(classNamesKey)'"
        var g = Protobuf()
        for node in graph.nodes { g.message(1, node) }
        g.string(2, card.architecture.name)
        g.string(10, "SwiftResNet \(card.architecture.name) (shortcut \(card.architecture.options.shortcut)) in evaluation mode")
        g.message(11, valueInfo(inputName, [nil] + input.shape, doc: inputDoc))
        g.message(12, valueInfo(output, [nil, card.classNames.count], doc: outputDoc))
        let graphBytes = graph.initializers.reduce(g.data.count) { $0 + $1.count + 16 }
        guard graphBytes < maximumSize - (1 << 20) else {
            throw fail("it needs \(graphBytes) bytes, beyond ONNX's 2 GiB protocol-buffer limit (external data is not written)")
        }

        var m = Protobuf()
        m.int64(1, Int64(irVersion))
        m.string(2, "SwiftResNet")
        m.string(3, producerVersion)
        m.string(6, "\(card.architecture.name): \(inputDoc) -> \(outputDoc)")
        var opset = Protobuf()
        opset.string(1, "")
        opset.int64(2, Int64(opsetVersion))
        m.message(8, opset)
        let classes = String(decoding: try JSONEncoder().encode(card.classNames), as: UTF8.self)
        for (key, value) in [(metadataKey, try card.encoded()), (classNamesKey, classes)] {
            var entry = Protobuf()
            entry.string(1, key)
            entry.string(2, value)
            m.message(14, entry)
        }
        // The graph (field 7) goes last, its initializers appended straight into the file's bytes.
        var length = Protobuf()
        let initializerBytes = graph.initializers.reduce(0) { total, t in
            var header = Protobuf()
            header.key(5, 2)
            header.varintRaw(UInt64(t.count))
            return total + header.data.count + t.count
        }
        length.key(7, 2)
        length.varintRaw(UInt64(g.data.count + initializerBytes))
        var data = Data(capacity: m.data.count + length.data.count + g.data.count + initializerBytes)
        data.append(contentsOf: m.data)
        data.append(contentsOf: length.data)
        data.append(contentsOf: g.data)
        for tensor in graph.initializers {
            var header = Protobuf()
            header.key(5, 2)
            header.varintRaw(UInt64(tensor.count))
            data.append(contentsOf: header.data)
            data.append(contentsOf: tensor)
        }
        return data
    }

    /// A `ValueInfoProto` of a float32 tensor; `nil` dimensions are the dynamic batch.
    private static func valueInfo(_ name: String, _ shape: [Int?], doc: String) -> Protobuf {
        var dims = Protobuf()
        for d in shape {
            var dim = Protobuf()
            if let d { dim.int64(1, Int64(d)) } else { dim.string(2, "batch") }
            dims.message(1, dim)
        }
        var tensor = Protobuf()
        tensor.int64(1, 1)  // FLOAT
        tensor.message(2, dims)
        var type = Protobuf()
        type.message(1, tensor)
        var info = Protobuf()
        info.string(1, name)
        info.message(2, type)
        info.string(3, doc)
        return info
    }
}

/// The nodes and initializers of an ONNX graph, built layer by layer.
private struct GraphBuilder {
    /// A tensor of the graph: its name and its shape without the batch dimension.
    struct Value {
        var name: String
        var shape: [Int]
    }

    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)
    }

    let fail: (String) -> ExportError
    var nodes: [Protobuf] = []
    /// Encoded `TensorProto`s.
    var initializers: [[UInt8]] = []
    var names: Set<String> = []
    /// Parameters already written, by identity: a parameter is one initializer however often it is read.
    var written: [ObjectIdentifier: String] = [:]

    init(fail: @escaping (String) -> ExportError) { self.fail = fail }

    /// `base`, or `base_1`, `base_2`, ... when taken.
    mutating func fresh(_ base: String) -> String {
        let base = base.isEmpty ? "value" : base
        var name = base, k = 0
        while names.contains(name) { k += 1; name = "\(base)_\(k)" }
        names.insert(name)
        return name
    }

    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], name: String, output: String? = nil, attributes: [Attribute] = []) -> String {
        let out = output ?? fresh(name)
        var n = Protobuf()
        for i in inputs { n.string(1, i) }
        n.string(2, out)
        n.string(3, fresh("node:" + name))
        n.string(4, op)
        for a in attributes {
            var p = Protobuf()
            switch a {
            case .int(let key, let v):
                p.string(1, key)
                p.int64(3, Int64(v))
                p.int64(20, 2)  // INT
            case .ints(let key, let vs):
                p.string(1, key)
                for v in vs { p.int64(8, Int64(v)) }
                p.int64(20, 7)  // INTS
            case .float(let key, let v):
                p.string(1, key)
                p.float(2, v)
                p.int64(20, 1)  // FLOAT
            }
            n.message(5, p)
        }
        nodes.append(n)
        return out
    }

    /// A float32 initializer.
    mutating func constant(_ name: String, shape: [Int], _ values: [Float]) -> String {
        let unique = fresh(name)
        var t = Protobuf()
        for d in shape { t.int64(1, Int64(d)) }
        t.int64(2, 1)  // FLOAT
        t.string(8, unique)
        t.bytes(9, Protobuf.littleEndianBytes(values))
        initializers.append(t.data)
        return unique
    }

    /// An int64 initializer (shapes, indices, pads).
    mutating func int64s(_ name: String, _ values: [Int]) -> String {
        let unique = fresh(name)
        var t = Protobuf()
        t.int64(1, Int64(values.count))
        t.int64(2, 7)  // INT64
        t.string(8, unique)
        var raw = [UInt8]()
        for v in values { raw += withUnsafeBytes(of: Int64(v).littleEndian, Array.init) }
        t.bytes(9, raw)
        initializers.append(t.data)
        return unique
    }

    /// A parameter as an initializer under its own name.
    mutating func parameter(_ p: Parameter, shape: [Int]? = nil) -> String {
        if let name = written[ObjectIdentifier(p)] { return name }
        let name = constant(p.name.isEmpty ? "parameter" : p.name, shape: shape ?? p.shape, p.values)
        written[ObjectIdentifier(p)] = name
        return name
    }

    // MARK: - Preprocessing

    /// The card's channel order and normalization, from RGB (or gray) pixels in 0...1.
    mutating func preprocess(_ image: Value, card: ModelCard, whitening: ZCAWhitening?) throws -> Value {
        var x = image
        let (c, h, w) = (card.input.channels, card.input.height, card.input.width)
        if card.input.channelOrder == .bgr {
            let indices = int64s("preprocessing.bgr_order", [2, 1, 0])
            x.name = node("Gather", [x.name, indices], name: "preprocessing.bgr", attributes: [.int("axis", 1)])
        }
        switch card.preprocessing.normalization {
        case .none:
            break
        case .perChannel(let mean, let std):
            let m = constant("preprocessing.mean", shape: [1, c, 1, 1], mean)
            let s = constant("preprocessing.std", shape: [1, c, 1, 1], std)
            x.name = node("Sub", [x.name, m], name: "preprocessing.subtract_mean")
            x.name = node("Div", [x.name, s], name: "preprocessing.divide_std")
        case .perPixelMean(let mean):
            let m = constant("preprocessing.mean", shape: [1, c, h, w], mean)
            x.name = node("Sub", [x.name, m], name: "preprocessing.subtract_mean")
        case .zca:
            guard let whitening, whitening.dimension == c * h * w else {
                throw fail("the model whitens its inputs (ZCA) but no fitted whitening of \(c * h * w) values was given")
            }
            let d = whitening.dimension
            let m = constant("preprocessing.zca.mean", shape: [1, d], whitening.mean)
            // Classifier computes out[r] = sum_c matrix[c * d + r] * x[c]: x (a row) times the
            // stored matrix read row-major.
            let matrix = constant("preprocessing.zca.matrix", shape: [d, d], whitening.matrix)
            let shape = int64s("preprocessing.zca.shape", [-1, c, h, w])
            x.name = node("Flatten", [x.name], name: "preprocessing.zca.flatten", attributes: [.int("axis", 1)])
            x.name = node("Sub", [x.name, m], name: "preprocessing.zca.subtract_mean")
            x.name = node("MatMul", [x.name, matrix], name: "preprocessing.zca.whiten")
            x.name = node("Reshape", [x.name, shape], name: "preprocessing.zca.reshape")
        }
        return x
    }

    // MARK: - Layers

    /// `module` applied to `x` as its forward pass computes it in evaluation mode.
    mutating func layer(_ module: Module, _ x: Value) throws -> Value {
        switch module {
        case let m as ResNet:
            var h = try layer(m.stem, x)
            for stage in m.stages { h = try layer(stage, h) }
            if let bn = m.finalNorm { h = relu(try batchNorm(bn, h), name: "relu") }
            return try layer(m.fc, layer(m.pool, h))
        case let m as SimpleVGG:
            var h = x
            for block in m.blocks { h = try layer(block, h) }
            h = relu(try layer(m.fc1, layer(m.flatten, h)), name: "fc1.relu")
            return try layer(m.fc2, layer(m.dropout, h))
        case let m as Sequential:
            return try m.layers.reduce(x) { try layer($1, $0) }
        case let m as BasicBlock:
            let h = relu(try batchNorm(m.bn1, conv(m.conv1, x)), name: m.path + ".relu1")
            var y = try batchNorm(m.bn2, conv(m.conv2, h))
            if let s = m.shortcut { y = try add(y, shortcut(s, x, stride: m.conv1.stride.0, channels: y.shape[0]), name: m.path + ".add") }
            return relu(y, name: m.path + ".relu2")
        case let m as Bottleneck:
            var h = relu(try batchNorm(m.bn1, conv(m.conv1, x)), name: m.path + ".relu1")
            h = relu(try batchNorm(m.bn2, conv(m.conv2, h)), name: m.path + ".relu2")
            var y = try batchNorm(m.bn3, conv(m.conv3, h))
            if let s = m.shortcut {
                y = try add(y, shortcut(s, x, stride: m.conv1.stride.0 * m.conv2.stride.0, channels: y.shape[0]), name: m.path + ".add")
            }
            return relu(y, name: m.path + ".relu3")
        case let m as PreActivationBasicBlock:
            let activated = relu(try batchNorm(m.bn1, x), name: m.path + ".relu1")
            var h = relu(try batchNorm(m.bn2, conv(m.conv1, activated)), name: m.path + ".relu2")
            if let d = m.dropout { h = try layer(d, h) }
            let y = try conv(m.conv2, h)
            guard let s = m.shortcut else { return y }
            return try add(y, shortcut(s, s.isIdentity ? x : activated, stride: m.conv1.stride.0, channels: y.shape[0]), name: m.path + ".add")
        case let m as PreActivationBottleneck:
            let activated = relu(try batchNorm(m.bn1, x), name: m.path + ".relu1")
            var h = relu(try batchNorm(m.bn2, conv(m.conv1, activated)), name: m.path + ".relu2")
            h = relu(try batchNorm(m.bn3, conv(m.conv2, h)), name: m.path + ".relu3")
            let y = try conv(m.conv3, h)
            guard let s = m.shortcut else { return y }
            return try add(y, shortcut(s, s.isIdentity ? x : activated, stride: m.conv1.stride.0 * m.conv2.stride.0,
                                       channels: y.shape[0]), name: m.path + ".add")
        case let m as Conv2D:
            return try conv(m, x)
        case let m as BatchNorm2D:
            return try batchNorm(m, x)
        case let m as ReLU:
            return relu(x, name: m.path)
        case let m as Dense:
            return try dense(m, x)
        case let m as MaxPool2D:
            return try pool("MaxPool", x, kernel: m.kernelSize, stride: m.stride, padding: m.padding, name: m.path, extra: [])
        case let m as AvgPool2D:
            return try pool("AveragePool", x, kernel: m.kernelSize, stride: m.stride, padding: m.padding, name: m.path,
                            extra: [.int("count_include_pad", m.countIncludesPadding ? 1 : 0)])
        case let m as GlobalAvgPool2D:
            guard x.shape.count == 3 else { throw fail("'\(m.label)' pools a \(x.shape) value; it takes [C, H, W]") }
            let pooled = node("GlobalAveragePool", [x.name], name: m.path)
            return Value(name: node("Flatten", [pooled], name: m.path + ".flatten", attributes: [.int("axis", 1)]), shape: [x.shape[0]])
        case let m as Flatten:
            return Value(name: node("Flatten", [x.name], name: m.path, attributes: [.int("axis", 1)]), shape: [x.shape.reduce(1, *)])
        case is Dropout:
            return x  // evaluation mode
        default:
            throw fail("'\(module.label)' is a \(type(of: module)), a layer the ONNX exporter does not know")
        }
    }

    mutating func relu(_ x: Value, name: String) -> Value {
        Value(name: node("Relu", [x.name], name: name.isEmpty ? "relu" : name), shape: x.shape)
    }

    mutating func add(_ a: Value, _ b: Value, name: String) throws -> Value {
        guard a.shape == b.shape else { throw fail("'\(name)' adds values of shapes \(a.shape) and \(b.shape)") }
        return Value(name: node("Add", [a.name, b.name], name: name), shape: a.shape)
    }

    mutating func conv(_ m: Conv2D, _ x: Value) throws -> Value {
        let w = m.weight.shape
        guard x.shape.count == 3, w.count == 4, x.shape[0] == w[1] else {
            throw fail("'\(m.label)' has weights \(w) for a \(x.shape) input")
        }
        let (h, wd) = (x.shape[1] + 2 * m.padding.0 - w[2], x.shape[2] + 2 * m.padding.1 - w[3])
        guard h >= 0, wd >= 0 else { throw fail("'\(m.label)': a \(w[2])x\(w[3]) kernel on a \(x.shape[1])x\(x.shape[2]) map") }
        var inputs = [x.name, parameter(m.weight)]
        if let b = m.bias { inputs.append(parameter(b)) }
        let out = node("Conv", inputs, name: m.path, attributes: [
            .ints("kernel_shape", [w[2], w[3]]), .ints("strides", [m.stride.0, m.stride.1]),
            .ints("pads", [m.padding.0, m.padding.1, m.padding.0, m.padding.1]), .ints("dilations", [1, 1]), .int("group", 1),
        ])
        return Value(name: out, shape: [w[0], h / m.stride.0 + 1, wd / m.stride.1 + 1])
    }

    mutating func batchNorm(_ m: BatchNorm2D, _ x: Value) throws -> Value {
        guard case .running = m.evaluationStatistics else {
            throw fail("'\(m.label)' normalizes with each batch's own statistics in evaluation; ONNX's BatchNormalization uses the running ones")
        }
        guard x.shape.count == 3, x.shape[0] == m.scale.count else { throw fail("'\(m.label)' has \(m.scale.count) channels for a \(x.shape) input") }
        let inputs = [x.name, parameter(m.scale), parameter(m.shift), parameter(m.runningMean), parameter(m.runningVariance)]
        return Value(name: node("BatchNormalization", inputs, name: m.path, attributes: [.float("epsilon", m.epsilon)]), shape: x.shape)
    }

    mutating func dense(_ m: Dense, _ x: Value) throws -> Value {
        guard x.shape.count == 1, m.weight.shape.count == 2, x.shape[0] == m.weight.shape[1] else {
            throw fail("'\(m.label)' has weights \(m.weight.shape) for a \(x.shape) input")
        }
        var inputs = [x.name, parameter(m.weight)]
        if let b = m.bias { inputs.append(parameter(b)) }
        return Value(name: node("Gemm", inputs, name: m.path, attributes: [.int("transB", 1)]), shape: [m.weight.shape[0]])
    }

    mutating func pool(_ op: String, _ x: Value, kernel: Int, stride: Int, padding: Int, name: String, extra: [Attribute]) throws -> Value {
        guard x.shape.count == 3, x.shape[1] + 2 * padding >= kernel, x.shape[2] + 2 * padding >= kernel else {
            throw fail("'\(name)' pools a \(x.shape) value with a \(kernel)x\(kernel) window")
        }
        let out = node(op, [x.name], name: name, attributes: [
            .ints("kernel_shape", [kernel, kernel]), .ints("strides", [stride, stride]), .ints("pads", [padding, padding, padding, padding]),
        ] + extra)
        return Value(name: out, shape: [x.shape[0], (x.shape[1] + 2 * padding - kernel) / stride + 1, (x.shape[2] + 2 * padding - kernel) / stride + 1])
    }

    /// A block's shortcut: a projection (with batch norm in v1 blocks), the identity, or option A
    /// (every `stride`-th pixel from the first, then zero channels up to `channels` after the input's).
    mutating func shortcut(_ s: Shortcut, _ x: Value, stride: Int, channels: Int) throws -> Value {
        if let projection = s.projection {
            let projected = try conv(projection, x)
            return try s.bn.map { try batchNorm($0, projected) } ?? projected
        }
        if s.isIdentity { return x }
        guard x.shape.count == 3, channels >= x.shape[0], stride >= 1 else {
            throw fail("'\(s.label)' pads a \(x.shape) value to \(channels) channels")
        }
        var y = x
        if stride > 1 {
            let starts = int64s(s.path + ".starts", [0, 0])
            let ends = int64s(s.path + ".ends", [Int(Int64.max), Int(Int64.max)])
            let axes = int64s(s.path + ".axes", [2, 3])
            let steps = int64s(s.path + ".steps", [stride, stride])
            y = Value(name: node("Slice", [x.name, starts, ends, axes, steps], name: s.path + ".subsample"),
                      shape: [x.shape[0], (x.shape[1] - 1) / stride + 1, (x.shape[2] - 1) / stride + 1])
        }
        guard channels > y.shape[0] else { return y }
        let pads = int64s(s.path + ".pads", [0, 0, 0, 0, 0, channels - y.shape[0], 0, 0])
        return Value(name: node("Pad", [y.name, pads], name: s.path + ".pad"), shape: [channels, y.shape[1], y.shape[2]])
    }
}
