import Foundation
import ResNetLayers
import ResNetTensors

/// What `resnet summary` prints: every layer's output shape and parameters, and totals,
/// in the manner of Keras's `model.summary()`.
///
/// Made by tracing one image through the model (nothing is computed), so the shapes and
/// counts are those of the graph that trains.
public struct ModelSummary: Sendable, Codable {
    /// One traced operation.
    public struct Row: Sendable, Codable, Equatable {
        /// The layer's dotted path (`stage1.block1.conv1`).
        public let name: String
        /// The layer's type (`Conv2D`), or the op's for functional ops (`ReLU`, `Add`).
        public let type: String
        /// Output shape of one image, `[C, H, W]` or `[features]`.
        public let outputShape: [Int]
        /// Trainable parameters.
        public let parameters: Int
        /// Multiply-accumulates for one image.
        public let multiplyAccumulates: Int

        enum CodingKeys: String, CodingKey {
            case name, type, outputShape = "output_shape", parameters = "params", multiplyAccumulates = "macs"
        }
    }

    public let model: String
    /// `[C, H, W]`.
    public let inputShape: [Int]
    public let classes: Int
    public let layers: [Row]
    /// All learnable parameters. Batch-norm running statistics are state, not parameters.
    public let totalParameters: Int
    /// The parameters an optimizer updates.
    public let trainableParameters: Int
    /// Non-trainable state: batch-norm running means and variances.
    public let stateCount: Int
    /// Multiply-accumulates of one image's forward pass (convolutions and linear layers).
    public let multiplyAccumulates: Int
    /// Bytes of every layer's float32 output for one image: the forward activations.
    public let activationBytes: Int

    enum CodingKeys: String, CodingKey {
        case model, inputShape = "input_shape", classes, layers, totalParameters = "total_params"
        case trainableParameters = "trainable_params", stateCount = "non_trainable_state"
        case multiplyAccumulates = "macs", activationBytes = "activation_bytes"
    }

    /// Traces `model` on one image of `input` in training mode (so dropout shows) and tabulates it.
    public init(of model: any Layer, name: String, input: ImageShape, classes: Int) throws {
        let wasTraining = model.isTraining
        model.train()
        defer { if !wasTraining { model.eval() } }
        if model.path.isEmpty { model.assignNames() }

        var leafTypes: [String: String] = [:]
        func visit(_ module: Module) {
            if module.namedChildren.isEmpty, !(module is Shortcut) {
                leafTypes[module.path] = String(describing: Swift.type(of: module))
            }
            for (_, child) in module.namedChildren { visit(child) }
        }
        visit(model)

        let graph = Graph(computesGradients: false)
        _ = try model(graph.input([1] + input.chw))
        layers = graph.tracedOperations.map { op in
            Row(name: op.label, type: leafTypes[op.label] ?? op.kind, outputShape: Array(op.outputShape.dropFirst()),
                parameters: op.parameterCount, multiplyAccumulates: op.multiplyAccumulates)
        }
        self.model = name
        inputShape = input.chw
        self.classes = classes
        // Count each parameter once, even if a layer were applied twice.
        let all = model.namedParameters().map(\.1)
        trainableParameters = all.filter(\.isTrainable).reduce(0) { $0 + $1.count }
        totalParameters = trainableParameters
        stateCount = all.filter { !$0.isTrainable }.reduce(0) { $0 + $1.count }
        multiplyAccumulates = layers.reduce(0) { $0 + $1.multiplyAccumulates }
        activationBytes = layers.reduce(0) { $0 + $1.outputShape.reduce(1, *) } * MemoryLayout<Float>.size
    }

    /// The Keras-style table.
    public var table: String {
        let header = ("Layer (type)", "Output shape", "Param #")
        let cells = layers.map { row in
            ("\(row.name) (\(row.type))", "(" + row.outputShape.map(String.init).joined(separator: ", ") + ")",
             grouped(row.parameters))
        }
        let w0 = max(header.0.count, cells.map(\.0.count).max() ?? 0) + 2
        let w1 = max(header.1.count, cells.map(\.1.count).max() ?? 0) + 2
        let w2 = max(header.2.count, cells.map(\.2.count).max() ?? 0)
        let rule = String(repeating: "=", count: w0 + w1 + w2)
        func line(_ c: (String, String, String)) -> String {
            c.0.padding(toLength: w0, withPad: " ", startingAt: 0) + c.1.padding(toLength: w1, withPad: " ", startingAt: 0)
                + String(repeating: " ", count: w2 - c.2.count) + c.2
        }
        let input = "\(inputShape[1])x\(inputShape[2])x\(inputShape[0])"
        var lines = ["Model: \(model) (input \(input), \(classes) classes)", rule, line(header), rule]
        lines += cells.map(line)
        lines += [
            rule,
            "Total params: \(grouped(totalParameters))",
            "Trainable params: \(grouped(trainableParameters))",
            "Non-trainable state (batch-norm running statistics): \(grouped(stateCount))",
            "Multiply-accumulates per image: \(grouped(multiplyAccumulates)) (\(scaled(Double(multiplyAccumulates), units: ["", "K", "M", "G", "T"], base: 1000)))",
            "Activation memory per image (forward outputs, float32): \(scaled(Double(activationBytes), units: ["B", "KiB", "MiB", "GiB"], base: 1024))",
        ]
        return lines.joined(separator: "\n")
    }

    /// The summary as JSON (keys `model`, `total_params`, `trainable_params`, `macs`, `layers`, ...).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

/// `272474` as `272,474`.
public func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return value < 0 ? "-" + out : out
}

/// `40813184` as `40.81 M`.
func scaled(_ value: Double, units: [String], base: Double) -> String {
    var v = value, unit = 0
    while v >= base, unit < units.count - 1 { v /= base; unit += 1 }
    return String(format: unit == 0 ? "%.0f %@" : "%.2f %@", v, units[unit]).trimmingCharacters(in: .whitespaces)
}

extension ModelSummary {
    /// Refuses a batch whose forward outputs alone (and, when training, their gradients) need
    /// more than this machine's memory: planning such a graph would abort on allocation. The
    /// graphs share memory, so what passes may still be large; what fails cannot fit.
    /// The largest batch of at most `limit` images that ``checkFits(batchSize:training:)``
    /// accepts, halving from `limit`; throws when not even one image fits.
    public func largestFittingBatch(upTo limit: Int, training: Bool) throws -> Int {
        var batch = max(1, limit)
        while batch > 1, (try? checkFits(batchSize: batch, training: training)) == nil { batch /= 2 }
        try checkFits(batchSize: batch, training: training)
        return batch
    }

    public func checkFits(batchSize: Int, training: Bool) throws {
        let perImage = activationBytes * (training ? 2 : 1)
        let (total, overflow) = perImage.multipliedReportingOverflow(by: max(batchSize, 1))
        let memory = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        guard !overflow, total <= memory else {
            let gib = { (bytes: Int) in String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }
            throw ModelError.invalidArgument("a batch of \(batchSize) \(inputShape.map(String.init).joined(separator: "x")) images through \(model) needs \(overflow ? "more than 8 EiB" : gib(total)) of activations\(training ? " and gradients" : ""), more than this machine's \(gib(memory)): use a smaller batch or input")
        }
    }
}
