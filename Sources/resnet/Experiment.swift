import ArgumentParser
import Dispatch
import Foundation
import ResNetData
import ResNetEngine
import ResNetTraining

extension Experiment: ExpressibleByArgument {}

/// `resnet experiment`: the paper's comparisons by one command.
struct ExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Run one of the paper's experiments on CIFAR-10 as a resumable campaign of runs, and draw its tables and figures.",
        discussion: """
            degradation: plain and residual networks of --depths (default 20, 56), he2016 at --schedule-scale \
            (default 0.25: 16k iterations, /10 at 8k and 12k), the paper's Fig. 6. depth: ResNet-20/32/44/56 with \
            the fast recipe, two seeds, Table 6. shortcuts: ResNet-32 with options A, B, C, fast, two seeds, Table 3. \
            transfer: ResNet-20 pretrained on classes 0-4, then classes 5-9 with 100 images each, fine-tuned and \
            from scratch, three seeds. All with the 45k/5k split (transfer: 2,500 and 50 validation images) and option A (except the shortcut comparison), fp32. A stopped campaign \
            continues where it was; a finished run is never redone. Touch RUNS/NAME/PAUSE to pause the run in \
            progress (remove it to continue). Results: RUNS/NAME/NAME.csv, NAME.md and NAME.png (--publish DIR copies them, e.g. to docs/experiments).
            """)

    @Argument(help: "degradation, depth, shortcuts or transfer.") var name: Experiment
    @Option(help: "The folder of campaigns; this one runs in RUNS/NAME.") var runs: String
    @Option(help: "Multiplies the recipe's length (he2016: iterations and milestones; fast: epochs).") var scheduleScale: Double?
    @Option(help: "Network depths, comma-separated (6n+2), e.g. 20,32,44,56,110.") var depths: String?
    @Option(help: "Seeds, comma-separated.") var seeds: String?
    @Option(help: "CIFAR-10 (a folder, the binary or Python layout, or the .tar.gz; default: the download cache).") var data: String?
    @Flag(help: "List the runs, their state and estimated time (measured speed of each network here), and exit.") var dryRun = false
    @Flag(help: "Only (re)draw the tables and figures from what has finished.") var report = false
    @Option(help: "Also write the CSV, the Markdown table and the figure here (e.g. docs/experiments).") var publish: String?
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        func list<T>(_ text: String?, _ what: String, _ parse: (Substring) -> T?) throws -> [T]? {
            guard let text else { return nil }
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let parsed = items.map { parse(Substring($0)) }
            guard !items.isEmpty, parsed.allSatisfy({ $0 != nil }) else { throw UserError("--\(what) must be a comma-separated list, got '\(text)'") }
            return parsed.map { $0! }
        }
        try checkFolder(runs, option: "runs")
        if let publish { try checkFolder(publish, option: "publish") }
        let plan = try name.runs(depths: try list(depths, "depths") { Int($0) }, seeds: try list(seeds, "seeds") { UInt64($0) },
                                 scheduleScale: scheduleScale)
        let runner = ExperimentRunner(experiment: name, runs: plan, directory: URL(fileURLWithPath: runs))
        runner.log = { say($0) }
        if report { return try writeReport(ExperimentReport.ofStartedCampaign(runner), folder: runner.folder) }

        let resolved: LoadedDataset.Resolved
        do {
            resolved = try LoadedDataset.loadWithFallback(.cifar10, from: data, download: true, log: { say($0) })
        } catch let error as DataError {
            throw UserError(error.description)
        }
        guard !resolved.isSample else {
            throw UserError("the paper's experiments need the full CIFAR-10, not the shipped sample: pass --data (e.g. the binary layout that ../shared/data/make-cifar10.sh builds) or run `resnet download cifar10`")
        }
        let threads = ComputeEngine.shared.threadCount
        if dryRun {
            let estimates = try runner.estimate(data: resolved.dataset, dataPath: resolved.path, threads: threads)
            say("\(name.rawValue): \(plan.count) runs in \(runner.folder.path)")
            func column(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
            for e in estimates {
                if let reused = e.reused {
                    say("  \(column(e.run.name, 22)) \(column("will be \(reused)", 28)) finished there, not trained again")
                    continue
                }
                let state = e.status.stage == .partial ? "partial, step \(e.status.step)/\(e.totalSteps)" : e.status.stage.rawValue
                guard let speed = e.imagesPerSecond else {
                    say("  \(column(e.run.name, 22)) \(column(state, 28)) \(e.totalSteps) iterations")
                    continue
                }
                let unless = e.reusableIfFinishedFirst.map { " (none if \($0) finishes first)" } ?? ""
                say("  \(column(e.run.name, 22)) \(column(state, 28)) \(e.totalSteps) iterations, \(String(format: "%.0f", speed)) img/s here: \(duration(e.secondsLeft)) left\(unless)")
            }
            say("about \(duration(estimates.map(\.secondsLeft).reduce(0, +))) left in all at \(threads) threads, alone on this machine")
            return
        }
        let source = stopOnControlC(runner.interruption)
        let finished = try runner.run(data: resolved.dataset, dataPath: resolved.path, threads: threads)
        source.cancel()
        try writeReport(ExperimentReport(runner), folder: runner.folder)
        if !finished { throw ExitCode(130) }
    }

    private func writeReport(_ report: ExperimentReport, folder: URL) throws {
        print(report.markdown, terminator: "")
        say("wrote " + (try report.write(into: folder)).map(\.path).joined(separator: ", "))
        if let publish { say("copied to " + (try report.write(into: URL(fileURLWithPath: publish))).map(\.path).joined(separator: ", ")) }
    }
}

/// `path` is a folder, or will be made in one: the nearest part of it that exists must be a
/// folder. (Otherwise Foundation's error on creating it was the message: `--runs /etc/passwd`
/// ended in "Error Domain=NSCocoaErrorDomain Code=512".)
private func checkFolder(_ path: String, option: String) throws {
    guard !path.isEmpty else { throw UserError("--\(option) needs a folder, got an empty path") }
    var existing = URL(fileURLWithPath: path).standardizedFileURL
    while !FileManager.default.fileExists(atPath: existing.path), existing.pathComponents.count > 1 {
        existing.deleteLastPathComponent()
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: existing.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw UserError("--\(option) \(path): \(existing.path) is not a folder")
    }
}
