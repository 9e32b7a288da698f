import Foundation

// A test-only ONNX reader and interpreter: it parses the protocol buffer `ONNXExport` writes
// (independently of the writer: field numbers from onnx.proto) and runs the graph with plain
// Swift loops over the few operators the exporter uses. An operator it does not know, a
// malformed message or a shape mismatch fails the test.

struct ONNXReadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One field of a protocol-buffer message.
enum ProtoField {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes(ArraySlice<UInt8>)

    var int: Int {
        get throws {
            guard case .varint(let v) = self else { throw ONNXReadError("expected a varint, got \(self)") }
            return Int(Int64(bitPattern: v))
        }
    }
    var data: ArraySlice<UInt8> {
        get throws {
            guard case .bytes(let b) = self else { throw ONNXReadError("expected a length-delimited field") }
            return b
        }
    }
    var string: String { get throws { String(decoding: try data, as: UTF8.self) } }
    var float: Float {
        get throws {
            guard case .fixed32(let v) = self else { throw ONNXReadError("expected a fixed32 field") }
            return Float(bitPattern: v)
        }
    }
    /// A repeated int64 field's values, packed or not.
    var ints: [Int] {
        get throws {
            switch self {
            case .varint(let v): return [Int(Int64(bitPattern: v))]
            case .bytes(let b):
                return try ProtoField.varints(b).map { Int(Int64(bitPattern: $0)) }
            default: throw ONNXReadError("expected int64 values")
            }
        }
    }

    static func varints(_ bytes: ArraySlice<UInt8>) throws -> [UInt64] {
        var i = bytes.startIndex, result: [UInt64] = []
        while i < bytes.endIndex { result.append(try readVarint(bytes, &i)) }
        return result
    }

    static func readVarint(_ bytes: ArraySlice<UInt8>, _ i: inout Int) throws -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard i < bytes.endIndex, shift < 64 else { throw ONNXReadError("truncated varint") }
            let b = bytes[i]
            i += 1
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }

    /// Every field of a message, in order.
    static func fields(_ bytes: ArraySlice<UInt8>) throws -> [(Int, ProtoField)] {
        var i = bytes.startIndex, result: [(Int, ProtoField)] = []
        while i < bytes.endIndex {
            let key = try readVarint(bytes, &i)
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: result.append((field, .varint(try readVarint(bytes, &i))))
            case 1:
                guard i + 8 <= bytes.endIndex else { throw ONNXReadError("truncated fixed64") }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
                i += 8
                result.append((field, .fixed64(v)))
            case 2:
                let length = Int(try readVarint(bytes, &i))
                guard length >= 0, i + length <= bytes.endIndex else { throw ONNXReadError("truncated field \(field)") }
                result.append((field, .bytes(bytes[i..<(i + length)])))
                i += length
            case 5:
                guard i + 4 <= bytes.endIndex else { throw ONNXReadError("truncated fixed32") }
                var v: UInt32 = 0
                for k in 0..<4 { v |= UInt32(bytes[i + k]) << (8 * UInt32(k)) }
                i += 4
                result.append((field, .fixed32(v)))
            default: throw ONNXReadError("unknown wire type \(key & 7)")
            }
        }
        return result
    }
}

/// An ONNX model as the test reads it.
struct ONNXModel {
    struct Tensor {
        var name: String
        var dims: [Int]
        var dataType: Int
        var raw: ArraySlice<UInt8>

        var floats: [Float] {
            get throws {
                guard dataType == 1, raw.count == 4 * dims.reduce(1, *) else { throw ONNXReadError("'\(name)' is not float32 data of \(dims)") }
                return stride(from: raw.startIndex, to: raw.endIndex, by: 4).map { i in
                    Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
                }
            }
        }
        var int64s: [Int] {
            get throws {
                guard dataType == 7, raw.count == 8 * dims.reduce(1, *) else { throw ONNXReadError("'\(name)' is not int64 data of \(dims)") }
                return stride(from: raw.startIndex, to: raw.endIndex, by: 8).map { i in
                    var v: UInt64 = 0
                    for k in 0..<8 { v |= UInt64(raw[i + k]) << (8 * UInt64(k)) }
                    return Int(Int64(bitPattern: v))
                }
            }
        }
    }

    enum Attribute: Equatable {
        case int(Int), ints([Int]), float(Float)
    }

    struct Node {
        var inputs: [String] = []
        var outputs: [String] = []
        var name = ""
        var opType = ""
        var attributes: [String: Attribute] = [:]

        func int(_ key: String, default value: Int) throws -> Int {
            guard let a = attributes[key] else { return value }
            guard case .int(let v) = a else { throw ONNXReadError("\(name): attribute \(key) is not an int") }
            return v
        }
        func ints(_ key: String) throws -> [Int]? {
            guard let a = attributes[key] else { return nil }
            guard case .ints(let v) = a else { throw ONNXReadError("\(name): attribute \(key) is not ints") }
            return v
        }
        func float(_ key: String, default value: Float) throws -> Float {
            guard let a = attributes[key] else { return value }
            guard case .float(let v) = a else { throw ONNXReadError("\(name): attribute \(key) is not a float") }
            return v
        }
    }

    /// A graph input or output: its name and dimensions (`nil`: symbolic, such as the batch).
    struct ValueInfo {
        var name: String
        var dims: [Int?]
        var symbols: [String]
    }

    var irVersion = 0
    var opsets: [String: Int] = [:]
    var producer = ""
    var metadata: [String: String] = [:]
    var nodes: [Node] = []
    var initializers: [String: Tensor] = [:]
    var inputs: [ValueInfo] = []
    var outputs: [ValueInfo] = []

    init(_ data: Data) throws {
        let bytes = [UInt8](data)
        for (field, value) in try ProtoField.fields(bytes[...]) {
            switch field {
            case 1: irVersion = try value.int
            case 2: producer = try value.string
            case 7: try readGraph(try value.data)
            case 8:
                var domain = "", version = 0
                for (f, v) in try ProtoField.fields(try value.data) {
                    if f == 1 { domain = try v.string } else if f == 2 { version = try v.int }
                }
                opsets[domain] = version
            case 14:
                var key = "", text = ""
                for (f, v) in try ProtoField.fields(try value.data) {
                    if f == 1 { key = try v.string } else if f == 2 { text = try v.string }
                }
                metadata[key] = text
            default: break
            }
        }
    }

    private mutating func readGraph(_ bytes: ArraySlice<UInt8>) throws {
        for (field, value) in try ProtoField.fields(bytes) {
            switch field {
            case 1: nodes.append(try Self.node(try value.data))
            case 5:
                let t = try Self.tensor(try value.data)
                guard initializers[t.name] == nil else { throw ONNXReadError("two initializers named '\(t.name)'") }
                initializers[t.name] = t
            case 11: inputs.append(try Self.valueInfo(try value.data))
            case 12: outputs.append(try Self.valueInfo(try value.data))
            default: break
            }
        }
    }

    private static func node(_ bytes: ArraySlice<UInt8>) throws -> Node {
        var node = Node()
        for (field, value) in try ProtoField.fields(bytes) {
            switch field {
            case 1: node.inputs.append(try value.string)
            case 2: node.outputs.append(try value.string)
            case 3: node.name = try value.string
            case 4: node.opType = try value.string
            case 5:
                var name = "", type = 0, i = 0, f: Float = 0, ints: [Int] = []
                for (af, av) in try ProtoField.fields(try value.data) {
                    switch af {
                    case 1: name = try av.string
                    case 2: f = try av.float
                    case 3: i = try av.int
                    case 8: ints += try av.ints
                    case 20: type = try av.int
                    default: throw ONNXReadError("attribute field \(af) not expected")
                    }
                }
                switch type {
                case 1: node.attributes[name] = .float(f)
                case 2: node.attributes[name] = .int(i)
                case 7: node.attributes[name] = .ints(ints)
                default: throw ONNXReadError("attribute \(name) of type \(type) not expected")
                }
            default: break
            }
        }
        return node
    }

    private static func tensor(_ bytes: ArraySlice<UInt8>) throws -> Tensor {
        var t = Tensor(name: "", dims: [], dataType: 0, raw: [])
        for (field, value) in try ProtoField.fields(bytes) {
            switch field {
            case 1: t.dims += try value.ints
            case 2: t.dataType = try value.int
            case 8: t.name = try value.string
            case 9: t.raw = try value.data
            default: throw ONNXReadError("tensor field \(field) not expected")
            }
        }
        return t
    }

    private static func valueInfo(_ bytes: ArraySlice<UInt8>) throws -> ValueInfo {
        var info = ValueInfo(name: "", dims: [], symbols: [])
        for (field, value) in try ProtoField.fields(bytes) {
            if field == 1 { info.name = try value.string }
            guard field == 2 else { continue }
            for (f, tensorType) in try ProtoField.fields(try value.data) where f == 1 {
                for (g, shape) in try ProtoField.fields(try tensorType.data) where g == 2 {
                    for (h, dim) in try ProtoField.fields(try shape.data) where h == 1 {
                        var d: Int?, symbol = ""
                        for (k, v) in try ProtoField.fields(try dim.data) {
                            if k == 1 { d = try v.int } else if k == 2 { symbol = try v.string }
                        }
                        info.dims.append(d)
                        info.symbols.append(symbol)
                    }
                }
            }
        }
        return info
    }
}

/// A float tensor of the interpreter.
struct NDArray {
    var shape: [Int]
    var data: [Float]
    init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count)
        self.shape = shape
        self.data = data
    }
}

/// Runs an ``ONNXModel`` on float inputs with the semantics of the ONNX operators (opset 17).
struct ONNXInterpreter {
    let model: ONNXModel

    func run(_ feeds: [String: NDArray]) throws -> [String: NDArray] {
        var values = feeds
        var int64s: [String: [Int]] = [:]
        for (name, t) in model.initializers {
            if t.dataType == 7 { int64s[name] = try t.int64s } else { values[name] = NDArray(shape: t.dims, data: try t.floats) }
        }
        for node in model.nodes {
            func input(_ k: Int) throws -> NDArray {
                guard k < node.inputs.count, let v = values[node.inputs[k]] else { throw ONNXReadError("\(node.name): input \(k) is not computed") }
                return v
            }
            func ints(_ k: Int) throws -> [Int] {
                guard k < node.inputs.count, let v = int64s[node.inputs[k]] else { throw ONNXReadError("\(node.name): int64 input \(k) missing") }
                return v
            }
            let out: NDArray
            switch node.opType {
            case "Conv": out = try conv(node, try input(0), try input(1), node.inputs.count > 2 ? try input(2) : nil)
            case "BatchNormalization": out = try batchNorm(node, try input(0), try input(1), try input(2), try input(3), try input(4))
            case "Relu": out = try map(input(0)) { max($0, 0) }
            case "Identity": out = try input(0)
            case "Add": out = try broadcast(input(0), input(1), +)
            case "Sub": out = try broadcast(input(0), input(1), -)
            case "Div": out = try broadcast(input(0), input(1), /)
            case "MatMul": out = try matmul(input(0), input(1), transposeB: false)
            case "Gemm":
                guard try node.int("transA", default: 0) == 0, try node.float("alpha", default: 1) == 1, try node.float("beta", default: 1) == 1 else {
                    throw ONNXReadError("Gemm with transA/alpha/beta")
                }
                var y = try matmul(input(0), input(1), transposeB: try node.int("transB", default: 0) == 1)
                if node.inputs.count > 2 { y = try broadcast(y, input(2), +) }
                out = y
            case "Flatten":
                let x = try input(0)
                let axis = try node.int("axis", default: 1)
                out = NDArray(shape: [x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)], data: x.data)
            case "Reshape":
                let x = try input(0)
                var shape = try ints(1)
                for (k, d) in shape.enumerated() where d == 0 { shape[k] = x.shape[k] }
                if let k = shape.firstIndex(of: -1) { shape[k] = x.data.count / shape.filter { $0 != -1 }.reduce(1, *) }
                guard shape.reduce(1, *) == x.data.count else { throw ONNXReadError("\(node.name): cannot reshape \(x.shape) to \(shape)") }
                out = NDArray(shape: shape, data: x.data)
            case "GlobalAveragePool":
                let x = try input(0)
                let plane = x.shape[2] * x.shape[3]
                out = NDArray(shape: [x.shape[0], x.shape[1], 1, 1],
                              data: (0..<(x.shape[0] * x.shape[1])).map { i in x.data[(i * plane)..<((i + 1) * plane)].reduce(0, +) / Float(plane) })
            case "MaxPool", "AveragePool": out = try pool(node, try input(0))
            case "Softmax":
                let x = try input(0)
                guard try node.int("axis", default: -1) == 1 || x.shape.count == 2, x.shape.count == 2 else { throw ONNXReadError("Softmax on \(x.shape)") }
                let k = x.shape[1]
                var y = x.data
                for n in 0..<x.shape[0] {
                    let row = x.data[(n * k)..<((n + 1) * k)]
                    let m = row.max()!
                    let sum = row.reduce(Float(0)) { $0 + exp($1 - m) }
                    for j in 0..<k { y[n * k + j] = exp(x.data[n * k + j] - m) / sum }
                }
                out = NDArray(shape: x.shape, data: y)
            case "Slice": out = try slice(input(0), starts: ints(1), ends: ints(2), axes: ints(3), steps: ints(4))
            case "Pad":
                guard node.inputs.count == 2, try node.int("mode", default: 0) == 0 else { throw ONNXReadError("Pad other than constant zeros") }
                out = try pad(input(0), ints(1))
            case "Gather":
                let x = try input(0), indices = try ints(1)
                guard try node.int("axis", default: 0) == 1, x.shape.count == 4 else { throw ONNXReadError("Gather other than on channels") }
                let plane = x.shape[2] * x.shape[3]
                var y: [Float] = []
                for n in 0..<x.shape[0] {
                    for c in indices { y += x.data[((n * x.shape[1] + c) * plane)..<((n * x.shape[1] + c + 1) * plane)] }
                }
                out = NDArray(shape: [x.shape[0], indices.count, x.shape[2], x.shape[3]], data: y)
            default:
                throw ONNXReadError("operator \(node.opType) (\(node.name)) is not one the exporter should use")
            }
            guard node.outputs.count == 1, values[node.outputs[0]] == nil else { throw ONNXReadError("\(node.name): outputs \(node.outputs) not new") }
            values[node.outputs[0]] = out
        }
        var result: [String: NDArray] = [:]
        for o in model.outputs {
            guard let v = values[o.name] else { throw ONNXReadError("output \(o.name) is not computed") }
            result[o.name] = v
        }
        return result
    }

    private func map(_ x: NDArray, _ f: (Float) -> Float) -> NDArray { NDArray(shape: x.shape, data: x.data.map(f)) }

    /// NumPy broadcasting of two tensors.
    private func broadcast(_ a: NDArray, _ b: NDArray, _ f: (Float, Float) -> Float) throws -> NDArray {
        let rank = max(a.shape.count, b.shape.count)
        let sa = [Int](repeating: 1, count: rank - a.shape.count) + a.shape
        let sb = [Int](repeating: 1, count: rank - b.shape.count) + b.shape
        var shape: [Int] = []
        for (x, y) in zip(sa, sb) {
            guard x == y || x == 1 || y == 1 else { throw ONNXReadError("cannot broadcast \(a.shape) and \(b.shape)") }
            shape.append(max(x, y))
        }
        func strides(_ s: [Int]) -> [Int] {
            var result = [Int](repeating: 0, count: rank), step = 1
            for k in stride(from: rank - 1, through: 0, by: -1) {
                result[k] = s[k] == 1 ? 0 : step
                step *= s[k]
            }
            return result
        }
        let (ta, tb) = (strides(sa), strides(sb))
        let count = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        for i in 0..<count {
            var oa = 0, ob = 0
            for k in 0..<rank { oa += index[k] * ta[k]; ob += index[k] * tb[k] }
            out[i] = f(a.data[oa], b.data[ob])
            var k = rank - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return NDArray(shape: shape, data: out)
    }

    private func matmul(_ a: NDArray, _ b: NDArray, transposeB: Bool) throws -> NDArray {
        guard a.shape.count == 2, b.shape.count == 2 else { throw ONNXReadError("MatMul of \(a.shape) and \(b.shape)") }
        let (n, k) = (a.shape[0], a.shape[1])
        let m = transposeB ? b.shape[0] : b.shape[1]
        guard (transposeB ? b.shape[1] : b.shape[0]) == k else { throw ONNXReadError("MatMul of \(a.shape) and \(b.shape)") }
        var out = [Float](repeating: 0, count: n * m)
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    for i in 0..<n {
                        for j in 0..<m {
                            var s: Double = 0
                            for t in 0..<k { s += Double(pa[i * k + t]) * Double(transposeB ? pb[j * k + t] : pb[t * m + j]) }
                            po[i * m + j] = Float(s)
                        }
                    }
                }
            }
        }
        return NDArray(shape: [n, m], data: out)
    }

    private func conv(_ node: ONNXModel.Node, _ x: NDArray, _ w: NDArray, _ b: NDArray?) throws -> NDArray {
        guard x.shape.count == 4, w.shape.count == 4, x.shape[1] == w.shape[1], try node.int("group", default: 1) == 1,
              (try node.ints("dilations") ?? [1, 1]) == [1, 1] else {
            throw ONNXReadError("\(node.name): Conv of \(x.shape) with \(w.shape)")
        }
        let strides = try node.ints("strides") ?? [1, 1], pads = try node.ints("pads") ?? [0, 0, 0, 0]
        guard (try node.ints("kernel_shape") ?? [w.shape[2], w.shape[3]]) == [w.shape[2], w.shape[3]] else { throw ONNXReadError("kernel_shape") }
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let oh = (h + pads[0] + pads[2] - kh) / strides[0] + 1, ow = (wd + pads[1] + pads[3] - kw) / strides[1] + 1
        var out = [Double](repeating: 0, count: n * o * oh * ow)
        x.data.withUnsafeBufferPointer { px in
            w.data.withUnsafeBufferPointer { pw in
                out.withUnsafeMutableBufferPointer { po in
                    for i in 0..<n {
                        for f in 0..<o {
                            let plane = po.baseAddress! + (i * o + f) * oh * ow
                            for ch in 0..<c {
                                let image = px.baseAddress! + (i * c + ch) * h * wd
                                for ky in 0..<kh {
                                    for kx in 0..<kw {
                                        let weight = Double(pw[((f * c + ch) * kh + ky) * kw + kx])
                                        for y in 0..<oh {
                                            let iy = y * strides[0] - pads[0] + ky
                                            if iy < 0 || iy >= h { continue }
                                            for xx in 0..<ow {
                                                let ix = xx * strides[1] - pads[1] + kx
                                                if ix < 0 || ix >= wd { continue }
                                                plane[y * ow + xx] += weight * Double(image[iy * wd + ix])
                                            }
                                        }
                                    }
                                }
                            }
                            if let b { for p in 0..<(oh * ow) { plane[p] += Double(b.data[f]) } }
                        }
                    }
                }
            }
        }
        return NDArray(shape: [n, o, oh, ow], data: out.map(Float.init))
    }

    private func batchNorm(_ node: ONNXModel.Node, _ x: NDArray, _ scale: NDArray, _ bias: NDArray, _ mean: NDArray, _ variance: NDArray) throws -> NDArray {
        guard try node.int("training_mode", default: 0) == 0, x.shape.count == 4, scale.data.count == x.shape[1] else {
            throw ONNXReadError("\(node.name): BatchNormalization of \(x.shape)")
        }
        let epsilon = try node.float("epsilon", default: 1e-5)
        let plane = x.shape[2] * x.shape[3], c = x.shape[1]
        var y = x.data
        for i in 0..<(x.shape[0] * c) {
            let ch = i % c
            let s = Double(scale.data[ch]) / (Double(variance.data[ch]) + Double(epsilon)).squareRoot()
            for p in 0..<plane { y[i * plane + p] = Float((Double(x.data[i * plane + p]) - Double(mean.data[ch])) * s + Double(bias.data[ch])) }
        }
        return NDArray(shape: x.shape, data: y)
    }

    private func pool(_ node: ONNXModel.Node, _ x: NDArray) throws -> NDArray {
        guard let kernel = try node.ints("kernel_shape"), x.shape.count == 4, try node.int("ceil_mode", default: 0) == 0 else {
            throw ONNXReadError("\(node.name): pooling of \(x.shape)")
        }
        let strides = try node.ints("strides") ?? [1, 1], pads = try node.ints("pads") ?? [0, 0, 0, 0]
        let isMax = node.opType == "MaxPool"
        let includePadding = try node.int("count_include_pad", default: 0) == 1
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1, ow = (w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1
        var out = [Float](repeating: 0, count: n * c * oh * ow)
        for i in 0..<(n * c) {
            for y in 0..<oh {
                for xx in 0..<ow {
                    var best = -Float.infinity, sum: Float = 0, count = 0
                    for ky in 0..<kernel[0] {
                        for kx in 0..<kernel[1] {
                            let iy = y * strides[0] - pads[0] + ky, ix = xx * strides[1] - pads[1] + kx
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            let v = x.data[(i * h + iy) * w + ix]
                            best = max(best, v)
                            sum += v
                            count += 1
                        }
                    }
                    out[(i * oh + y) * ow + xx] = isMax ? best : sum / Float(includePadding ? kernel[0] * kernel[1] : count)
                }
            }
        }
        return NDArray(shape: [n, c, oh, ow], data: out)
    }

    private func slice(_ x: NDArray, starts: [Int], ends: [Int], axes: [Int], steps: [Int]) throws -> NDArray {
        guard x.shape.count == 4, axes == [2, 3], starts == [0, 0], steps.allSatisfy({ $0 > 0 }) else {
            throw ONNXReadError("Slice other than strided subsampling of H and W")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (eh, ew) = (min(ends[0], h), min(ends[1], w))
        let oh = (eh + steps[0] - 1) / steps[0], ow = (ew + steps[1] - 1) / steps[1]
        var out: [Float] = []
        for i in 0..<(n * c) {
            for y in 0..<oh { for xx in 0..<ow { out.append(x.data[(i * h + y * steps[0]) * w + xx * steps[1]]) } }
        }
        return NDArray(shape: [n, c, oh, ow], data: out)
    }

    private func pad(_ x: NDArray, _ pads: [Int]) throws -> NDArray {
        guard x.shape.count == 4, pads.count == 8, pads.allSatisfy({ $0 >= 0 }) else { throw ONNXReadError("Pad \(pads) of \(x.shape)") }
        let shape = (0..<4).map { x.shape[$0] + pads[$0] + pads[$0 + 4] }
        var out = [Float](repeating: 0, count: shape.reduce(1, *))
        for n in 0..<x.shape[0] {
            for c in 0..<x.shape[1] {
                for y in 0..<x.shape[2] {
                    for xx in 0..<x.shape[3] {
                        let to = (((n + pads[0]) * shape[1] + c + pads[1]) * shape[2] + y + pads[2]) * shape[3] + xx + pads[3]
                        out[to] = x.data[((n * x.shape[1] + c) * x.shape[2] + y) * x.shape[3] + xx]
                    }
                }
            }
        }
        return NDArray(shape: shape, data: out)
    }
}
