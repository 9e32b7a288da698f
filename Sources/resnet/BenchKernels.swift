import ArgumentParser
import Foundation
import ResNetEngine
import ResNetTensors

/// GFLOP/s of the 3x3 convolutions of ResNet-20's three stages, forward and both backward passes.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Measure GFLOP/s of ResNet-20's 3x3 convolutions (forward, backward-data, backward-weights).")

    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Timed calls per primitive (the median is reported).") var repeats = 25
    @Option(help: "Numeric precision: fp32 or bf16.") var precision: Precision = .fp32
    // No default peak: the CPU of this project's VM changed between sessions (230 GFLOP/s fp32
    // on 2026-11-22, 527 on 2026-12-01, `benchmarks/peak-flops.c`), so a built-in figure would
    // print wrong percentages on the next machine.
    @Option(help: "This CPU's peak GFLOP/s at this precision and thread count, to show each rate as a share of it (measure it with benchmarks/peak-flops.c).")
    var peak: Double?
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        guard batchSize > 0, repeats > 0 else { throw UserError("--batch-size and --repeats must be positive") }
        if let peak { guard peak.isFinite, peak > 0 else { throw UserError("--peak must be a positive number of GFLOP/s, got \(peak)") } }
        print("3x3 convolutions, stride 1, batch \(batchSize), \(precision), \(ComputeEngine.shared.threadCount) threads, oneDNN \(ComputeEngine.version), median of \(repeats)")
        print("GFLOP/s count the direct method's 2*N*C*C*9*H*W flops, also for Winograd (effective rate)"
              + (peak.map { "; % of \(Int($0)) GFLOP/s" } ?? "; --peak GFLOPS (benchmarks/peak-flops.c) adds the share of this CPU's peak"))
        print("| shape (C, HxW) | forward GFLOP/s | backward-data GFLOP/s | backward-weights GFLOP/s | kernels |")
        print("|---|---|---|---|---|")
        var worst = Double.infinity
        for (channels, size) in [(16, 32), (32, 16), (64, 8)] {
            let t = try KernelBenchmark.convolution(batch: batchSize, channels: channels, size: size, precision: precision, repeats: repeats)
            let rates = [t.forward, t.backwardData, t.backwardWeights].map { t.flops / $0 / 1e9 }
            worst = min(worst, rates.min()!)
            let cells = rates.map { rate in peak.map { String(format: "%.0f (%.0f%%)", rate, 100 * rate / $0) } ?? String(format: "%.0f", rate) }
            print("| \(channels), \(size)x\(size) | \(cells.joined(separator: " | ")) | \(t.implementations.joined(separator: ", ")) |")
        }
        if let peak {
            print(String(format: "slowest: %.0f GFLOP/s = %.0f%% of the %.0f GFLOP/s peak", worst, 100 * worst / peak, peak))
        } else {
            print(String(format: "slowest: %.0f GFLOP/s", worst))
        }
    }
}
