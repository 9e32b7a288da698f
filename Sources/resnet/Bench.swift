import ArgumentParser
import Foundation
import ResNetEngine
import ResNetInference
import ResNetLayers
import ResNetModels
import ResNetOptimizers
import ResNetTensors

/// Times whole training or inference steps of a zoo network on random data.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training or inference speed of a network (images/s, median of several runs) and peak memory.")

    @OptionGroup var choice: ModelChoice
    @Option(help: "train (forward, backward, SGD update) or eval (forward in inference mode).") var mode = "train"
    @Option(help: "Batch size (default: 128 for train, 256 for eval).") var batchSize: Int?
    @Option(help: "Numeric precision: fp32, bf16 (mixed: bfloat16 activations and convolutions, float32 weights, statistics and loss), or int8 (eval only: 8-bit convolutions, scales measured on the random input images).") var precision: InferencePrecision = .fp32
    @Option(help: "Timed runs; the median is reported.") var repeats = 5
    @Option(help: "Steps per timed run.") var iterations = 20
    @Option(help: "Untimed steps first.") var warmup = 3
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        guard mode == "train" || mode == "eval" else { throw UserError("--mode must be train or eval, got '\(mode)'") }
        guard repeats > 0, iterations > 0, warmup >= 0 else { throw UserError("--repeats and --iterations must be positive") }
        let batch = batchSize ?? (mode == "train" ? 128 : 256)
        guard (1...65_536).contains(batch) else { throw UserError("--batch-size must be in 1...65536, got \(batch)") }
        let (definition, input, classes) = try choice.resolve()
        let model: any Layer
        do { model = try definition.build(input: input, classes: classes) } catch let e as ModelError { throw UserError(e.description) }
        let training = mode == "train"
        guard precision != .auto, !(training && precision == .int8) else { throw UserError("--precision must be fp32, bf16 or int8 (int8 with --mode eval only)") }
        let format: Precision = precision == .bf16 ? .bf16 : .fp32
        do {
            try ModelSummary(of: model, name: definition.name, input: input, classes: classes).checkFits(batchSize: batch, training: training)
        } catch let e as ModelError { throw UserError(e.description) }
        if training { model.train() } else { model.eval() }

        // Inference runs as a deployed model does (the Classifier's Evaluator): weights folded and
        // reordered once, convolution algorithms and chunking measured at plan time, 8-bit pixels in,
        // probabilities out.
        var step: () throws -> Void
        var describeKernels: () -> (algorithms: String, winograd: Int, chunk: Int, note: String) = { ("rule", 0, batch, "") }
        var generator = SeededGenerator(seed: 1)
        if training {
            let graph = Graph(computesGradients: true, precision: format)
            let images = graph.input([batch] + input.chw)
            let labels = graph.labels(count: batch)
            try graph.plan(loss: try softmaxCrossEntropy(try model(images), labels: labels))
            let optimizer = try SGD(learningRate: 0.01, momentum: 0.9, weightDecay: 5e-4)
            let parameters = model.trainableParameters
            optimizer.register(parameters)
            try graph.setInput(images, (0..<(batch * input.chw.reduce(1, *))).map { _ in generator.nextNormal() })
            try graph.setLabels(labels, (0..<batch).map { Int32($0 % classes) })
            describeKernels = { ("rule", graph.winogradConvolutionCount, batch, "") }
            step = {
                graph.forward()
                graph.backward()
                optimizer.update(parameters)
            }
        } else {
            let evaluator = Evaluator(model: model, imageShape: input.chw, classCount: classes, batchSize: batch,
                                      parametersAreConstant: true, precision: format)
            let pixels = (0..<(batch * input.chw.reduce(1, *))).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if precision == .int8 {
                try pixels.withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: batch, normalization: .none) }
            }
            var probabilities = [Float](repeating: 0, count: batch * classes)
            step = {
                try pixels.withUnsafeBufferPointer { p in
                    try probabilities.withUnsafeMutableBufferPointer {
                        try evaluator.probabilities(ofPrepared: p, count: batch, normalization: .none, into: $0)
                    }
                }
            }
            try step()   // plans, measuring the candidates
            describeKernels = {
                let chunk = evaluator.runSizes[batch] ?? batch
                let choice = evaluator.convolutionChoices[chunk]
                let note = choice.map { $0.measured ? String(format: " (measured at plan time: rule %.2f ms, direct only %.2f ms)", 1000 * $0.seconds[.rule]!, 1000 * $0.seconds[.direct]!) : "" } ?? ""
                return (choice?.algorithms.rawValue ?? "rule", evaluator.winogradConvolutionCount(batch: chunk), chunk, note)
            }
        }
        for _ in 0..<warmup { try step() }
        var rates: [Double] = []
        // Every step's duration too: the latency percentiles a server's caller sees at this batch size.
        var stepSeconds: [Double] = []
        stepSeconds.reserveCapacity(repeats * iterations)
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            var previous = start
            for _ in 0..<iterations {
                try step()
                let now = DispatchTime.now().uptimeNanoseconds
                stepSeconds.append(Double(now - previous) / 1e9)
                previous = now
            }
            let seconds = Double(previous - start) / 1e9
            rates.append(Double(batch * iterations) / seconds)
        }
        let median = rates.sorted()[rates.count / 2]
        let kernels = describeKernels()
        let latency = StepLatency(stepSeconds)
        let peakMiB = peakResidentMiB()
        if json {
            let out: [String: Any] = ["model": definition.name, "mode": mode, "batch_size": batch,
                                      "threads": ComputeEngine.shared.threadCount, "precision": precision.rawValue,
                                      "images_per_second": (median * 10).rounded() / 10, "peak_rss_mib": peakMiB.rounded(),
                                      "runs": rates.map { ($0 * 10).rounded() / 10 }, "input": input.description,
                                      "step_ms_p50": latency.p50Milliseconds, "step_ms_p99": latency.p99Milliseconds, "steps_timed": stepSeconds.count,
                                      "convolutions": kernels.algorithms, "winograd_convolutions": kernels.winograd, "run_batch_size": kernels.chunk]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "%@ %@, batch %d, %@, %d threads: %.1f images/s (median of %d runs of %d steps: %@), step p50 %.2f ms, p99 %.2f ms, peak RSS %.0f MiB, runs as batches of %d, %d Winograd convolutions%@",
                         definition.name, mode, batch, precision.rawValue, ComputeEngine.shared.threadCount, median, rates.count, iterations,
                         rates.map { String(format: "%.0f", $0) }.joined(separator: ", "), latency.p50Milliseconds, latency.p99Milliseconds, peakMiB,
                         kernels.chunk, kernels.winograd, kernels.note))
        }
    }
}

/// Percentiles of step durations (nearest rank), in milliseconds rounded to 0.01.
struct StepLatency {
    let p50Milliseconds: Double
    let p99Milliseconds: Double

    init(_ seconds: [Double]) {
        let sorted = seconds.sorted()
        func percentile(_ q: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
            return (sorted[rank] * 100_000).rounded() / 100
        }
        p50Milliseconds = percentile(0.5)
        p99Milliseconds = percentile(0.99)
    }
}

/// This process's peak resident memory in MiB: VmHWM from /proc/self/status, which starts
/// afresh at exec. (getrusage's ru_maxrss does not: Linux carries it across execve, so a
/// benchmark started by a large parent, such as a Python script, would report the parent's size.)
func peakResidentMiB() -> Double {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kib = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Double($0) }) {
        return kib / 1024
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024   // KiB on Linux
}
