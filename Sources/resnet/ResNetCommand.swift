import ArgumentParser
import Dispatch
import Foundation
import ResNetDistributed
import ResNetEngine
import ResNetTensors
import ResNetTraining

@main
struct ResNetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet",
        abstract: "Define, train and benchmark residual networks on the CPU (oneDNN \(ComputeEngine.version)).",
        version: "SwiftResNet \(SwiftResNetVersion.current) (oneDNN \(ComputeEngine.version))",
        subcommands: [Train.self, Evaluate.self, Predict.self, Export.self, Convert.self, Probe.self, ExperimentCommand.self, Compare.self, AugmentPreview.self, Summary.self, Download.self, DatasetInfo.self, Bench.self, BenchData.self, BenchKernels.self, Demo.self, Serve.self]
    )

    /// Runs the command; every failure ends in one `Error:` line on standard error and exit
    /// code 1 (ArgumentParser's own usage errors would print usage text and exit 64), once per
    /// mpirun job when all ranks fail alike (``MPICommunicator/exitWithError(_:)``).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            if exitCode(for: error) == .success { self.exit(withError: error) }   // --help, --version
            let message = fullMessage(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .first { !$0.isEmpty } ?? "\(error)"
            // Under mpirun every rank may meet the same error: rank 0 alone says it, unless the
            // ranks agreed that this one reports.
            MPICommunicator.exitWithError(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message,
                                          atOnce: (error as? UserError)?.ownRankFailure == true)
        }
    }
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

/// What `--precision` of the commands that run a trained model accepts.
enum InferencePrecision: String, CaseIterable, ExpressibleByArgument {
    case fp32, bf16, int8, auto
}

/// `--precision` of the commands that run a trained model.
struct InferencePrecisionOption: ParsableArguments {
    @Option(help: "Number format of the network: fp32 (the default), bf16 (bfloat16 activations and convolutions: about 2x faster where the CPU has native bf16, probabilities within about 1e-2 of fp32's), int8 (8-bit convolutions scaled on calibration images: about 3x faster at batch 1 where the CPU has VNNI, accuracy loss measured in docs/performance.md), or auto (bf16 where native, else fp32).")
    var precision: InferencePrecision = .fp32
    @Option(help: "With --precision int8: how many images to measure the activations' ranges on (taken from the training images, never from those evaluated).")
    var calibrationImages = 512
    @Option(help: "With --precision int8: a folder of JPEG or PNG images like those the model will classify, to measure on (default: the training images the model card names).")
    var calibration: String?

    /// Whether the network runs in 8-bit integers.
    var quantizes: Bool { precision == .int8 }

    /// The precision graphs are traced in (int8 networks are traced in fp32), after a warning when bf16 would be emulated.
    func resolved() throws -> Precision {
        guard (1...100_000).contains(calibrationImages) else { throw UserError("--calibration-images must be in 1...100000, got \(calibrationImages)") }
        let resolved: Precision
        switch precision {
        case .fp32, .int8: resolved = .fp32
        case .bf16: resolved = .bf16
        case .auto: resolved = .automatic
        }
        if let warning = resolved.warning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        return resolved
    }
}

/// The first Ctrl-C sets `interruption` (the run stops after its step, with a checkpoint); a
/// second one quits at once. Cancel the returned source when the run is over.
func stopOnControlC(_ interruption: Interruption) -> DispatchSourceSignal {
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler {
        if interruption.isSet { _exit(130) }
        interruption.set()
        FileHandle.standardError.write(Data("\nstopping after this step (Ctrl-C again to quit at once)\n".utf8))
    }
    source.resume()
    return source
}

/// A one-line error for the user, with a non-zero exit, instead of a stack trace.
struct UserError: Error, CustomStringConvertible {
    let description: String
    /// Under mpirun: this rank's own failure, which the other ranks end for quietly (``RankFailure``).
    var ownRankFailure = false
    init(_ description: String, ownRankFailure: Bool = false) {
        self.description = description
        self.ownRankFailure = ownRankFailure
    }
}
