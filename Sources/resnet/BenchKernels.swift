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
    @Option(help: "Peak GFLOP/s to compare with (2 cores x 2 AVX-512 FMA pipes x 32 flops x ~4 GHz).")
    var peak = 510.0
    @OptionGroup var engine: EngineOptions

    func run() throws {
        engine.apply()
        guard batchSize > 0, repeats > 0 else { throw UserError("--batch-size and --repeats must be positive") }
        print("3x3 convolutions, stride 1, batch \(batchSize), \(ComputeEngine.shared.threadCount) threads, oneDNN \(ComputeEngine.version), median of \(repeats)")
        print("| shape (C, HxW) | forward GFLOP/s | backward-data GFLOP/s | backward-weights GFLOP/s |")
        print("|---|---|---|---|")
        var worst = Double.infinity
        for (channels, size) in [(16, 32), (32, 16), (64, 8)] {
            let t = try KernelBenchmark.convolution(batch: batchSize, channels: channels, size: size, repeats: repeats)
            let rates = [t.forward, t.backwardData, t.backwardWeights].map { t.flops / $0 / 1e9 }
            worst = min(worst, rates.min()!)
            let cells = rates.map { String(format: "%.0f (%.0f%%)", $0, 100 * $0 / peak) }
            print("| \(channels), \(size)x\(size) | \(cells.joined(separator: " | ")) |")
            if ProcessInfo.processInfo.environment["RESNET_VERBOSE"] != nil { print("  implementations: \(t.implementations)") }
        }
        print(String(format: "slowest: %.0f GFLOP/s = %.0f%% of the %.0f GFLOP/s peak", worst, 100 * worst / peak, peak))
    }
}
