import ArgumentParser
import Foundation
import ResNetTraining

/// `resnet compare`: several runs side by side.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the training and validation curves of several runs in one PNG, and print a table of them.")

    @Argument(help: "Run directories.") var runs: [String] = []
    @Option(help: "The PNG to write.") var out = "compare.png"
    @Option(help: "x axis: iterations or epochs.") var x = "iterations"

    func run() throws {
        guard !runs.isEmpty else { throw UserError("give at least one run directory") }
        guard runs.count <= 20 else { throw UserError("at most 20 runs fit one figure, got \(runs.count)") }
        guard x == "iterations" || x == "epochs" else { throw UserError("--x must be iterations or epochs, got '\(x)'") }
        let comparison = try RunComparison(directories: runs.map { URL(fileURLWithPath: $0) })
        try comparison.writeFigure(to: out, byEpochs: x == "epochs")
        print(comparison.table, terminator: "")
        print("wrote \(out)")
    }
}
