import Foundation
import ResNetInference
import ResNetModels

/// The tables and figures of a campaign, from whatever has finished: `NAME.csv` (one row per
/// run and evaluation point), `NAME.md` (the campaign's table and, but for transfer, its
/// findings) and `NAME.png` (its curves; for depth and shortcuts also the table's test errors).
public struct ExperimentReport {
    /// One evaluation point of one run, errors in percent.
    public struct Row: Sendable, Equatable {
        public var run: String
        public var network: String
        public var seed: UInt64
        public var shortcut: ShortcutOption
        public var epoch: Int
        public var iteration: Int
        public var trainError: Double
        public var validationError: Double?
        public var testError: Double?
    }

    /// One run's result: the checkpoint chosen on validation, and the test error of that
    /// checkpoint (from `test.json`, or the test error logged at that epoch for monitored runs).
    public struct Result: Sendable {
        public var run: ExperimentRun
        public var status: ExperimentRunStatus
        public var bestValidationError: Double?
        public var chosenEpoch: Int?
        public var testError: Double?
        public var finalTrainError: Double?
        /// Training time in hours (the sum of the epochs' wall seconds, ``EpochRecord/seconds``).
        public var hours: Double
        /// The same epochs' CPU time in hours, all threads (``EpochRecord/cpuSeconds``); `nil`
        /// when an epoch has none (a run made before it was recorded).
        public var cpuHours: Double? = nil
        /// The other campaign's run this one is (``ExperimentRun/sameAs``), when it was reused.
        public var reused: String? = nil
    }

    public let experiment: Experiment
    public let rows: [Row]
    public let results: [Result]
    /// Every run of the campaign, started or not.
    public let planned: [ExperimentRun]

    /// A report of results at hand (tests of the tables and figures).
    init(experiment: Experiment, planned: [ExperimentRun], rows: [Row], results: [Result]) {
        self.experiment = experiment
        self.planned = planned
        self.rows = rows
        self.results = results
    }

    /// Reads every run of `runner` that has started.
    public init(_ runner: ExperimentRunner) throws {
        experiment = runner.experiment
        planned = runner.runs
        var rows: [Row] = [], results: [Result] = []
        for run in runner.runs {
            let directory = runner.directory(of: run)
            let status = try runner.status(of: run)
            guard status.stage != .notStarted else { continue }
            for r in status.history {
                rows.append(Row(run: run.name, network: run.network, seed: run.seed, shortcut: run.shortcut, epoch: r.epoch,
                                iteration: r.step, trainError: 100 * (1 - r.trainAccuracy),
                                validationError: r.validationAccuracy.map { 100 * (1 - $0) },
                                testError: r.testAccuracy.map { 100 * (1 - $0) }))
            }
            // The checkpoint chosen on validation, and the test error of exactly those weights:
            // test.json, or the test error logged at the same step (monitored runs in progress).
            let best = status.best
            var test: Double?
            if status.stage == .finished, let classes = status.configuration?.classNames.count,
               let result = try readTestResult(of: directory, classCount: classes) {
                test = 100 * (1 - result.top1)
            } else if let best, let accuracy = status.history.first(where: { $0.step == best.step })?.testAccuracy {
                test = 100 * (1 - accuracy)
            }
            results.append(Result(run: run, status: status, bestValidationError: best.map { 100 * (1 - $0.accuracy) },
                                  chosenEpoch: best?.epoch, testError: test,
                                  finalTrainError: status.history.last.map { 100 * (1 - $0.trainAccuracy) },
                                  hours: status.history.reduce(0) { $0 + max(0, $1.seconds) } / 3_600,
                                  cpuHours: status.history.allSatisfy { $0.cpuSeconds != nil }
                                      ? status.history.reduce(0) { $0 + $1.cpuSeconds! } / 3_600 : nil,
                                  reused: runner.reusedRun(of: run)))
        }
        self.rows = rows
        self.results = results
    }

    /// The report `resnet experiment NAME --report` draws: as ``init(_:)``, but a campaign none
    /// of whose runs has started is an error. A mistyped `--runs` (or a report asked for before
    /// the campaign) would otherwise write an empty table, and with `--publish` put it over the
    /// published one.
    public static func ofStartedCampaign(_ runner: ExperimentRunner) throws -> ExperimentReport {
        let report = try ExperimentReport(runner)
        guard !report.results.isEmpty else {
            let name = runner.experiment.rawValue, runs = runner.folder.deletingLastPathComponent().path
            throw TrainingError.invalidOption("no run of the \(name) campaign has started in \(runner.folder.path): start it with `resnet experiment \(name) --runs \(runs) --data CIFAR10`, or pass the --runs folder it ran in")
        }
        return report
    }

    /// The paper's orderings as the finished runs show them (``ExperimentFindings``).
    public var findings: [String] {
        ExperimentFindings.sentences(experiment, rows: rows, runs: planned.map { run in
            let result = results.first { $0.run.name == run.name }
            return ExperimentFindings.Outcome(run: run.name, network: run.network, seed: run.seed, shortcut: run.shortcut,
                                              finished: result?.status.stage == .finished, testError: result?.testError)
        })
    }

    /// `network,seed,shortcut,epoch,iteration,train_error,val_error,test_error` (percent).
    public var csv: String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "" }
        var text = "network,seed,shortcut,epoch,iteration,train_error,val_error,test_error\n"
        for r in rows {
            text += "\(r.network),\(r.seed),\(r.shortcut),\(r.epoch),\(r.iteration),\(f(r.trainError)),\(f(r.validationError)),\(f(r.testError))\n"
        }
        return text
    }

    /// The campaign's table in Markdown, with how each figure was chosen.
    public var markdown: String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "—" }
        func meanStd(_ values: [Double]) -> String {
            guard !values.isEmpty else { return "—" }
            let mean = values.reduce(0, +) / Double(values.count)
            guard values.count > 1 else { return String(format: "%.2f (1 run)", mean) }
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
            return String(format: "%.2f ± %.2f (%d runs)", mean, std, values.count)
        }
        /// Wall hours, and CPU hours when every run counted has them: "2.10 (3.95)"; "—" for no run.
        func hours(_ results: [Result]) -> String {
            guard !results.isEmpty else { return "—" }
            let wall = String(format: "%.2f", results.reduce(0) { $0 + $1.hours })
            guard !results.isEmpty, results.allSatisfy({ $0.cpuHours != nil }) else { return wall }
            return wall + String(format: " (%.2f)", results.reduce(0) { $0 + $1.cpuHours! })
        }
        func progress(_ r: Result) -> String {
            r.status.stage == .finished ? "finished" : "\(r.status.step)/\(r.status.totalSteps ?? 0) iterations"
        }
        var lines: [String] = []
        switch experiment {
        case .degradation:
            lines += ["| network | seed | state | final training error % | best validation error % (epoch) | test error % of that checkpoint | hours (CPU hours) |",
                      "|---|---|---|---|---|---|---|"]
            for r in results {
                lines.append("| \(r.run.network) | \(r.run.seed) | \(progress(r)) | \(f(r.finalTrainError)) | \(f(r.bestValidationError)) (\(r.chosenEpoch.map(String.init) ?? "—")) | \(f(r.testError)) | \(hours([r])) |")
            }
        case .depth:
            lines += ["| network | runs finished | test error % (mean ± std over seeds) | paper, Table 6 (original images, 64k iterations) | hours (CPU hours) |",
                      "|---|---|---|---|---|"]
            for network in Array(Set(results.map(\.run.network))).sorted(by: { depthOf($0) < depthOf($1) }) {
                let finished = results.filter { $0.run.network == network && $0.status.stage == .finished }
                let paper = Experiment.paperTable6[depthOf(network)].map { String(format: "%.2f", $0) } ?? "—"
                lines.append("| \(network) | \(finished.count) | \(meanStd(finished.compactMap(\.testError))) | \(paper) | \(hours(finished)) |")
            }
        case .transfer:
            lines += ["| start | data | runs finished | test accuracy % (mean ± std over seeds) | hours (CPU hours) |", "|---|---|---|---|---|"]
            for (label, prefix, data) in [("CIFAR-10 classes 0-4 (all 25,000 images less 2,500 for validation)", "pretrain", "pretraining"),
                                          ("the pretrained weights", "fine-tuned", "classes 5-9, 100 images each"),
                                          ("scratch", "scratch", "classes 5-9, 100 images each")] {
                let matching = results.filter { $0.run.name.hasPrefix(prefix) }
                guard !matching.isEmpty else { continue }
                let finished = matching.filter { $0.status.stage == .finished }
                lines.append("| \(label) | \(data) | \(finished.count) | \(meanStd(finished.compactMap { $0.testError.map { 100 - $0 } })) | \(hours(finished)) |")
            }
        case .shortcuts:
            lines += ["| network | shortcut | runs finished | test error % (mean ± std over seeds) | hours (CPU hours) |", "|---|---|---|---|---|"]
            for network in Array(Set(results.map(\.run.network))).sorted() {
                for option in ShortcutOption.allCases {
                    let finished = results.filter { $0.run.network == network && $0.run.shortcut == option && $0.status.stage == .finished }
                    guard results.contains(where: { $0.run.network == network && $0.run.shortcut == option }) else { continue }
                    lines.append("| \(network) | \(option) | \(finished.count) | \(meanStd(finished.compactMap(\.testError))) | \(hours(finished)) |")
                }
            }
        }
        lines.append("")
        let findings = self.findings
        if !findings.isEmpty {
            lines.append("What the runs say about the paper's orderings:")
            lines.append("")
            lines += findings.map { "- " + $0 }
            lines.append("")
        }
        let reused = results.compactMap { r in r.reused.map { "\(r.run.name) is \($0)" } }
        if !reused.isEmpty {
            lines.append("Trained once for two campaigns (the same settings): " + reused.joined(separator: ", ") + ".")
            lines.append("")
        }
        lines.append(experiment == .degradation
            ? "Test error of the checkpoint chosen on the 5,000 validation images (best validation accuracy at an epoch's end); the test error logged during training is only plotted."
            : experiment == .transfer
            ? "Test accuracy on all 5,000 test images of the run's classes, with the checkpoint chosen on its validation images (2,500 for pretraining, 50 for the 500-image runs), evaluated once; runs still in progress are not counted."
            : "Test error of each run's checkpoint chosen on the 5,000 validation images, evaluated once; runs still in progress are not counted.")
        lines.append("")
        lines.append("Hours: wall time of the training epochs (evaluations and `PAUSE` pauses not counted; time the machine was shared or the process stopped is). CPU hours: the same epochs' CPU time over all threads, which a stopped process does not add to and a shared machine barely does (about the threads' count times the wall time on an idle machine); shown only where every epoch recorded it.")
        if experiment == .degradation, let note = degradationAxisNote(rows) {
            lines.append("")
            lines.append(note)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `NAME.csv`, `NAME.md` and `NAME.png` into `folder`; returns their paths.
    @discardableResult
    public func write(into folder: URL) throws -> [URL] {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let name = experiment.rawValue
        let csvFile = folder.appendingPathComponent("\(name).csv"), markdownFile = folder.appendingPathComponent("\(name).md")
        let figure = folder.appendingPathComponent("\(name).png")
        try writeAtomically(Data(csv.utf8), to: csvFile)
        try writeAtomically(Data(markdown.utf8), to: markdownFile)
        try writeFigure(to: figure.path)
        return [csvFile, markdownFile, figure]
    }

    /// Draws the campaign's figure: for degradation the paper's Fig. 6 (plain networks left,
    /// ResNets right; training error thin, test error bold, against iterations); for transfer
    /// the validation error of every run against iterations; for depth and shortcuts those
    /// curves and, beside them, the test errors of the table (``testErrorPanel()``).
    public func writeFigure(to path: String) throws {
        let depths = Array(Set(rows.map { depthOf($0.network) })).sorted()
        func color(_ depth: Int) -> Color { seriesColors[(depths.firstIndex(of: depth) ?? 0) % seriesColors.count] }
        var panels: [CurvePanel] = []
        if experiment == .degradation {
            for (family, title) in [("plain", "plain networks"), ("resnet", "ResNets")] {
                var series: [CurveSeries] = []
                for run in Array(Set(rows.filter { $0.network.hasPrefix(family) }.map(\.run))).sorted(by: { depthOf($0) < depthOf($1) }) {
                    let points = rows.filter { $0.run == run }
                    let depth = depthOf(run)
                    series.append(CurveSeries(label: "\(family)-\(depth) train", color: color(depth), thickness: 1,
                                              points: points.map { (Double($0.iteration), Optional($0.trainError)) }))
                    series.append(CurveSeries(label: "\(family)-\(depth) test", color: color(depth), thickness: 4,
                                              points: points.map { (Double($0.iteration), $0.testError) }))
                }
                panels.append(CurvePanel(title: title, series: series, legend: depths.map { ("\(family)-\($0)", color($0)) }))
            }
            try writeCurvePanels(panels, title: "CIFAR-10: training error (thin) and test error (bold)", xLabel: "iterations",
                                 yLabel: "error %", yRange: (0, degradationErrorAxisTop(rows)), to: path)
        } else if experiment == .transfer {
            func curve(_ run: String, _ color: Color) -> CurveSeries {
                CurveSeries(label: run, color: color, thickness: 2,
                            points: rows.filter { $0.run == run }.map { (Double($0.iteration), $0.validationError) })
            }
            let runs = Array(Set(rows.map(\.run))).sorted()
            let pretraining = runs.filter { $0.hasPrefix("pretrain") }.map { curve($0, seriesColors[2]) }
            let small = runs.filter { !$0.hasPrefix("pretrain") }.map { curve($0, $0.hasPrefix("fine-tuned") ? seriesColors[0] : seriesColors[1]) }
            panels = [CurvePanel(title: "pretraining, classes 0-4", series: pretraining, legend: [("pretraining", seriesColors[2])]),
                      CurvePanel(title: "classes 5-9, 100 images each", series: small,
                                 legend: [("fine-tuned from it", seriesColors[0]), ("from scratch", seriesColors[1])])]
            try writeCurvePanels(panels, title: "CIFAR-10 transfer: validation error, every seed", xLabel: "iterations",
                                 yLabel: "error %", yRange: nil, to: path)
        } else {
            // One color per network (depth) or shortcut option; the seeds of one share it.
            let key = { (r: Row) in self.experiment == .shortcuts ? "option \(r.shortcut)" : r.network }
            let keys = Array(Set(rows.map(key))).sorted { (depthOf($0), $0) < (depthOf($1), $1) }
            func color(_ k: String) -> Color { seriesColors[(keys.firstIndex(of: k) ?? 0) % seriesColors.count] }
            let runs = Array(Set(rows.map(\.run))).sorted()
            let series = runs.map { run in
                let points = rows.filter { $0.run == run }
                return CurveSeries(label: run, color: color(points.first.map(key) ?? ""), thickness: 2,
                                   points: points.map { (Double($0.iteration), $0.validationError) })
            }
            panels.append(CurvePanel(title: "validation error, every seed", series: series, legend: keys.map { ($0, color($0)) }))
            panels.append(testErrorPanel())
            try writeCurvePanels(panels, title: "CIFAR-10 \(experiment.rawValue) campaign", xLabel: "iterations", yLabel: "error %",
                                 yRange: nil, to: path)
        }
    }

    /// The depth and shortcut figures' right panel: what their table says, drawn. Each finished
    /// run's test error (its checkpoint chosen on validation) by depth or by option, the seeds
    /// thin and their mean bold, and for depth the paper's Table 6 beside them; on a y axis of
    /// its own, since the validation curves' axis (10-70% for ResNet-20's, `resnet experiment
    /// depth --report`, 2026-12-02) would press differences of a point into one band.
    func testErrorPanel() -> CurvePanel {
        let finished = results.filter { $0.status.stage == .finished && $0.testError?.isFinite == true }
        let networks = Array(Set(planned.map(\.network))).sorted { (depthOf($0), $0) < (depthOf($1), $1) }
        let seeds = Array(Set(planned.map(\.seed))).sorted()
        func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
        func lighter(_ color: Color) -> Color { color.mixed(with: Color(hex: 0xFFFFFF), 0.55) }
        // Colors of their own: the curves beside them already give one color to each depth or
        // option. The mean is dark; further networks of the shortcut campaign take colors its
        // curves (options A, B, C: the first three) do not use.
        let networkColors = [PlotStyle.text, seriesColors[5], seriesColors[4], seriesColors[6]]
        var series: [CurveSeries] = [], legend: [(String, Color)] = []
        if experiment == .depth {
            // One position per planned depth, evenly spaced whatever the depths (20 ... 110).
            let color = networkColors[0], paperColor = seriesColors[9]
            let position = { (network: String) in Double(networks.firstIndex(of: network) ?? 0) }
            for seed in seeds {
                series.append(CurveSeries(label: "seed \(seed)", color: lighter(color), thickness: 1, points: networks.map { n in
                    (position(n), finished.first { $0.run.network == n && $0.run.seed == seed }?.testError)
                }, markers: true))
            }
            series.append(CurveSeries(label: "mean", color: color, thickness: 4, points: networks.map { n in
                (position(n), mean(finished.filter { $0.run.network == n }.compactMap(\.testError)))
            }, markers: true))
            legend = [("mean of seeds", color), ("each seed", lighter(color))]
            let paper = networks.map { (position($0), Experiment.paperTable6[depthOf($0)]) }
            if paper.contains(where: { $0.1 != nil }) {
                series.append(CurveSeries(label: "paper", color: paperColor, thickness: 2, points: paper, markers: true))
                legend.append(("paper, Table 6", paperColor))
            }
            return CurvePanel(title: "test error of the chosen checkpoint", series: series, legend: legend,
                              xCategories: networks.enumerated().map { (Double($0.offset), "\(depthOf($0.element))") },
                              xLabel: "layers", ownYRange: true)
        }
        // Shortcuts: A, B, C along x; each network's mean dark or in a color of its own, its
        // seeds in a lighter shade of it.
        let options = ShortcutOption.allCases.filter { o in planned.contains { $0.shortcut == o } }
        let position = { (o: ShortcutOption) in Double(options.firstIndex(of: o) ?? 0) }
        for (k, network) in networks.enumerated() {
            let color = networkColors[k % networkColors.count]
            for seed in seeds {
                series.append(CurveSeries(label: "\(network) seed \(seed)", color: lighter(color), thickness: 1, points: options.map { o in
                    (position(o), finished.first { $0.run.network == network && $0.run.shortcut == o && $0.run.seed == seed }?.testError)
                }, markers: true))
            }
            series.append(CurveSeries(label: "\(network) mean", color: color, thickness: 4, points: options.map { o in
                (position(o), mean(finished.filter { $0.run.network == network && $0.run.shortcut == o }.compactMap(\.testError)))
            }, markers: true))
            legend.append((networks.count == 1 ? "mean of seeds" : network, color))
        }
        legend.append((networks.count == 1 ? "each seed" : "each seed: lighter", lighter(networkColors[0])))
        return CurvePanel(title: "test error of the chosen checkpoint", series: series, legend: legend,
                          xCategories: options.map { (position($0), "option \($0.rawValue)") }, xLabel: "shortcut", ownYRange: true)
    }
}

/// The top of the degradation figure's error axis, in percent.
///
/// Deviation from the paper: Fig. 6 stops its axis at 20% and clips the first iterations. Here
/// plain-56 still errs on ~40% of its training images after 16k iterations (quarter schedule,
/// JPEG images; `resnet experiment degradation --report`, 2-core VM, 2026-12-01), and an axis
/// of 0-25 drew its whole curve as a flat line along the top, hiding the very degradation the
/// figure is for. So the axis reaches the largest training or test error in the later half of
/// any run's iterations, rounded up to a multiple of 5, and never stops below the paper's 20:
/// the early transients are still clipped, no curve's end is.
func degradationErrorAxisTop(_ rows: [ExperimentReport.Row]) -> Double {
    var largest = 0.0
    for run in Set(rows.map(\.run)) {
        let points = rows.filter { $0.run == run }
        let last = points.map(\.iteration).max() ?? 0
        for point in points where 2 * point.iteration >= last {
            largest = max(largest, point.trainError, point.testError ?? 0)
        }
    }
    return min(100, max(20, (largest / 5).rounded(.up) * 5))
}

/// What the degradation figure clips: the networks with points above its axis
/// (``degradationErrorAxisTop(_:)``), which are drawn on its top edge; nil when none is.
func degradationAxisNote(_ rows: [ExperimentReport.Row]) -> String? {
    let requested = degradationErrorAxisTop(rows)
    let top = curvePanelYTicks((0, requested)).values.last ?? requested
    let clipped = Set(rows.filter { max($0.trainError, $0.testError ?? 0) > top }.map(\.network))
    guard !clipped.isEmpty else { return nil }
    let names = clipped.sorted { (depthOf($0), $0.hasPrefix("resnet") ? 1 : 0, $0) < (depthOf($1), $1.hasPrefix("resnet") ? 1 : 0, $1) }
    return "The figure's error axis stops at \(Int(top))%: the points above it (early iterations of \(names.joined(separator: ", "))) are drawn on its top edge."
}

/// The depth in a zoo name (`plain56` -> 56).
func depthOf(_ network: String) -> Int {
    Int(network.drop { !$0.isNumber }.prefix { $0.isNumber }) ?? 0
}

/// matplotlib's tab10, for as many series as a comparison has.
let seriesColors: [Color] = [0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD, 0x8C564B, 0xE377C2, 0x7F7F7F, 0xBCBD22, 0x17BECF]
    .map { Color(hex: $0) }

/// Several runs side by side (`resnet compare`): their curves in one figure and a table.
public struct RunComparison {
    public struct Entry {
        public var name: String
        public var status: ExperimentRunStatus
    }
    public let entries: [Entry]

    /// Reads each run directory; names are the directories' last components (made unique).
    public init(directories: [URL]) throws {
        var seen: [String: Int] = [:]
        entries = try directories.map { directory in
            let status = try ExperimentRunStatus.read(directory)
            guard status.stage != .notStarted else {
                throw TrainingError.checkpoint("\(directory.path): not a run directory (no last.safetensors)")
            }
            var name = directory.standardizedFileURL.lastPathComponent
            seen[name, default: 0] += 1
            if seen[name]! > 1 { name += " (\(seen[name]!))" }
            return Entry(name: name, status: status)
        }
    }

    /// One row per run: model, recipe, epochs, final training error, best validation error.
    public var table: String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "—" }
        var lines = ["| run | model | recipe | state | epochs | final train error % | best val error % (epoch) | hours |", "|---|---|---|---|---|---|---|---|"]
        for e in entries {
            let c = e.status.configuration
            let best = e.status.history.filter { $0.validationAccuracy != nil }.max { $0.validationAccuracy! < $1.validationAccuracy! }
            let hours = e.status.history.reduce(0) { $0 + $1.seconds } / 3_600
            lines.append("| \(e.name) | \(c?.model ?? "?") | \(c?.recipe.name ?? "?") | \(e.status.stage.rawValue) | \(e.status.history.count) | \(f(e.status.history.last.map { 100 * (1 - $0.trainAccuracy) })) | \(f(best?.validationAccuracy.map { 100 * (1 - $0) })) (\(best.map { String($0.epoch) } ?? "—")) | \(String(format: "%.2f", hours)) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Training error (left) and validation error (right), one color per run.
    public func writeFigure(to path: String, byEpochs: Bool) throws {
        func x(_ r: EpochRecord) -> Double { Double(byEpochs ? r.epoch : r.step) }
        let legend = entries.enumerated().map { ($0.element.name, seriesColors[$0.offset % seriesColors.count]) }
        let train = entries.enumerated().map { k, e in
            CurveSeries(label: e.name, color: legend[k].1, thickness: 2, points: e.status.history.map { (x($0), Optional(100 * (1 - $0.trainAccuracy))) })
        }
        let validation = entries.enumerated().map { k, e in
            CurveSeries(label: e.name, color: legend[k].1, thickness: 2, points: e.status.history.map { (x($0), $0.validationAccuracy.map { 100 * (1 - $0) }) })
        }
        try writeCurvePanels([CurvePanel(title: "training error", series: train, legend: legend),
                              CurvePanel(title: "validation error", series: validation, legend: [])],
                             title: "\(entries.count) run\(entries.count == 1 ? "" : "s")", xLabel: byEpochs ? "epoch" : "iterations",
                             yLabel: "%", yRange: nil, to: path)
    }
}
