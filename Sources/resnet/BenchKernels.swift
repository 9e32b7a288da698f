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
    @Option(help: "Peak GFLOP/s to compare with (default: this project's 2-core machine as benchmarks/peak-flops.c measured it: 230 fp32, 460 bf16).")
    var peak: Double?
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        guard batchSize > 0, repeats > 0 else { throw UserError("--batch-size and --repeats must be positive") }
        let peak = self.peak ?? (precision == .fp32 ? 230 : 460)
        print("3x3 convolutions, stride 1, batch \(batchSize), \(precision), \(ComputeEngine.shared.threadCount) threads, oneDNN \(ComputeEngine.version), median of \(repeats)")
        print("GFLOP/s count the direct method's 2*N*C*C*9*H*W flops, also for Winograd (effective rate); % of \(Int(peak)) GFLOP/s")
        print("| shape (C, HxW) | forward GFLOP/s | backward-data GFLOP/s | backward-weights GFLOP/s | kernels |")
        print("|---|---|---|---|---|")
        var worst = Double.infinity
        for (channels, size) in [(16, 32), (32, 16), (64, 8)] {
            let t = try KernelBenchmark.convolution(batch: batchSize, channels: channels, size: size, precision: precision, repeats: repeats)
            let rates = [t.forward, t.backwardData, t.backwardWeights].map { t.flops / $0 / 1e9 }
            worst = min(worst, rates.min()!)
            let cells = rates.map { String(format: "%.0f (%.0f%%)", $0, 100 * $0 / peak) }
            print("| \(channels), \(size)x\(size) | \(cells.joined(separator: " | ")) | \(t.implementations.joined(separator: ", ")) |")
        }
        print(String(format: "slowest: %.0f GFLOP/s = %.0f%% of the %.0f GFLOP/s peak", worst, 100 * worst / peak, peak))
    }
}
