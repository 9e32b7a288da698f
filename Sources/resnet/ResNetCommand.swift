import ArgumentParser
import Foundation
import ResNetEngine

@main
struct ResNetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet",
        abstract: "Define, train and benchmark residual networks on the CPU (oneDNN \(ComputeEngine.version)).",
        subcommands: [Train.self, Evaluate.self, Predict.self, Export.self, AugmentPreview.self, Summary.self, Download.self, DatasetInfo.self, Bench.self, BenchData.self, BenchKernels.self, Demo.self]
    )
}

/// Options every compute command shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "oneDNN threads, at most the cores present (default: the number of cores, or RESNET_THREADS).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw UserError("--threads must be at least 1, got \(threads)") }
            if threads > ComputeEngine.coreCount {
                FileHandle.standardError.write(Data("note: --threads \(threads) is more than the \(ComputeEngine.coreCount) cores present; using \(ComputeEngine.coreCount)\n".utf8))
            }
            ComputeEngine.shared.setThreadCount(threads)
        } else {
            _ = ComputeEngine.shared
        }
    }
}

/// A one-line error for the user, with a non-zero exit, instead of a stack trace.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
