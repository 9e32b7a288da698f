import Foundation
import ResNetData
import ResNetInference
import ResNetModels
@testable import ResNetTraining
import Testing

@Suite("Experiments: campaigns, reports, comparisons", .serialized)
struct ExperimentTests {
    @Test func theCampaignsAreThePapersSettings() throws {
        let degradation = try Experiment.degradation.runs()
        #expect(degradation.map(\.name) == ["plain20-seed0", "resnet20-seed0", "plain56-seed0", "resnet56-seed0"])
        let r = degradation[3].request
        #expect(r.model == "resnet56" && r.shortcut == .a && r.recipe == "he2016" && r.monitorTest == true && r.precision == .fp32)
        #expect(r.overrides.iterations == 16_000)
        #expect(r.schedule == .multiStep(base: 0.1, milestones: [8_000, 12_000], multipliers: [0.1, 0.01], unit: .iteration))
        let depth = try Experiment.depth.runs()
        #expect(depth.count == 8 && depth.allSatisfy { $0.request.recipe == "fast" && $0.request.shortcut == .a && $0.request.skipTest == nil })
        let shortcuts = try Experiment.shortcuts.runs(seeds: [0])
        #expect(shortcuts.map(\.name) == ["resnet32-A-seed0", "resnet32-B-seed0", "resnet32-C-seed0"])
        #expect(shortcuts.map(\.sameAs) == ["depth/resnet32-seed0", nil, nil] && depth[2].name == "resnet32-seed0")
        #expect(try Experiment.depth.runs(scheduleScale: 0.5)[0].request.overrides.epochs == 15)
        #expect(throws: TrainingError.self) { try Experiment.depth.runs(depths: [21]) }
        #expect(throws: TrainingError.self) { try Experiment.degradation.runs(scheduleScale: .nan) }
    }

    @Test func aTinyDegradationCampaignRunsResumesReportsAndCompares() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runs = try Experiment.degradation.runs(depths: [8], scheduleScale: 0.0005)   // 32 iterations, /10 at 16 and 24
        let runner = ExperimentRunner(experiment: .degradation, runs: runs, directory: folder)
        runner.overrides.batchSize = 16
        runner.overrides.validation = 30
        var lines: [String] = []
        let lock = NSLock()
        nonisolated(unsafe) var paused = false
        runner.log = { line in
            lines.append(line)
            if line.contains("paused at step 16") { lock.withLock { paused = true } }
        }
        let data = tinyDataset()

        // A PAUSE file holds the run in progress until it is removed (here half a second after
        // the run says it paused).
        let pause = runner.folder.appendingPathComponent("PAUSE")
        try FileManager.default.createDirectory(at: runner.folder, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: pause.path, contents: Data())
        let remover = Thread {
            for _ in 0..<600 where !lock.withLock({ paused }) { usleep(50_000) }
            usleep(500_000)
            try? FileManager.default.removeItem(at: pause)
        }
        remover.start()
        #expect(try runner.run(data: data, dataPath: nil, threads: 1))
        #expect(lines.contains { $0.contains("paused at step 16") })
        #expect(lines.contains { $0.contains("resumed after") })
        for run in runs {
            let status = try ExperimentRunStatus.read(runner.directory(of: run))
            #expect(status.stage == .finished && status.step == 32)
            #expect(status.history.allSatisfy { $0.testAccuracy != nil }, "degradation runs log the test error during training")
            #expect(FileManager.default.fileExists(atPath: runner.directory(of: run).appendingPathComponent("test.json").path))
        }
        // A finished run is never redone.
        lines.removeAll()
        #expect(try runner.run(data: data, dataPath: nil, threads: 1))
        #expect(lines == ["[1/2] plain8-seed0: finished", "[2/2] resnet8-seed0: finished"])

        let report = try ExperimentReport(runner)
        #expect(report.results.count == 2 && report.rows.count == 4)   // 270 images / 16 = 16 steps an epoch: 2 epochs each
        #expect(report.csv.hasPrefix("network,seed,shortcut,epoch,iteration,train_error,val_error,test_error\nplain8,0,A,1,"))
        #expect(report.markdown.contains("| plain8 | 0 | finished |") && report.markdown.contains("| resnet8 | 0 | finished |"))
        // Wall hours and CPU hours of every run, and what each means.
        #expect(report.results.allSatisfy { ($0.cpuHours ?? 0) > 0 && $0.hours > 0 })
        #expect(report.markdown.contains("| hours (CPU hours) |") && report.markdown.contains("CPU hours: the same epochs' CPU time"))
        #expect(report.markdown.split(separator: "\n").filter { $0.contains("| finished |") }.allSatisfy { $0.hasSuffix(") |") })
        let written = try report.write(into: folder.appendingPathComponent("docs"))
        #expect(written.map(\.lastPathComponent) == ["degradation.csv", "degradation.md", "degradation.png"])
        #expect(written.allSatisfy { FileManager.default.fileExists(atPath: $0.path) })

        // Another schedule in the same folder is refused, not mixed in.
        let longer = ExperimentRunner(experiment: .degradation, runs: try Experiment.degradation.runs(depths: [8], scheduleScale: 0.001),
                                      directory: folder)
        longer.overrides = runner.overrides
        #expect(throws: TrainingError.self) { try longer.run(data: data, dataPath: nil, threads: 1) }

        let comparison = try RunComparison(directories: runs.map(runner.directory(of:)))
        #expect(comparison.table.contains("| plain8-seed0 | plain8 | he2016 | finished |"))
        let figure = folder.appendingPathComponent("compare.png")
        try comparison.writeFigure(to: figure.path, byEpochs: false)
        #expect(FileManager.default.fileExists(atPath: figure.path))
        #expect(throws: TrainingError.self) { try RunComparison(directories: [folder.appendingPathComponent("nothing")]) }
    }

    @Test func theDegradationFigureShowsTheEndOfEveryCurve() {
        func rows(_ run: String, _ errors: [(iteration: Int, train: Double, test: Double)]) -> [ExperimentReport.Row] {
            errors.map { ExperimentReport.Row(run: run, network: run, seed: 0, shortcut: .a, epoch: 0, iteration: $0.iteration,
                                              trainError: $0.train, validationError: nil, testError: $0.test) }
        }
        // The paper's case: everything ends below 20% and the first iterations' 60-90% are clipped.
        let paperLike = rows("resnet20", [(400, 90, 88), (8_000, 12, 14), (16_000, 7, 9)])
            + rows("plain20", [(400, 80, 79), (8_000, 16, 18), (16_000, 10, 13)])
        #expect(degradationErrorAxisTop(paperLike) == 20)
        // A plain-56 that still errs on 40-47% in its later half raises the axis to 50, not a flat line at 25.
        let degraded = paperLike + rows("plain56", [(400, 90, 90), (6_000, 60, 61), (8_000, 47, 46), (16_000, 40.2, 40.1)])
        #expect(degradationErrorAxisTop(degraded) == 50)
        // A run in progress counts by its own iterations: 3,000 of them, the later half from 1,500.
        #expect(degradationErrorAxisTop(rows("plain56", [(351, 89.8, 89.5), (1_500, 77.1, 76.0), (3_000, 69, 68)])) == 80)
        #expect(degradationErrorAxisTop([]) == 20)
        // The report says which curves start above the axis, drawn on its top edge.
        #expect(degradationAxisNote(degraded) == "The figure's error axis stops at 50%: the points above it (early iterations of plain20, resnet20, plain56) are drawn on its top edge.")
        #expect(degradationAxisNote(rows("resnet20", [(400, 19, 18), (16_000, 7, 9)])) == nil)
        // The axis is drawn to its last tick: asked for 45, it reaches 50, and a 47 is drawn in full.
        let fortyFive = rows("plain56", [(400, 47, 46), (8_000, 41, 40), (16_000, 40, 39)])
        #expect(degradationErrorAxisTop(fortyFive) == 45 && degradationAxisNote(fortyFive) == nil)
        #expect(degradationAxisNote(fortyFive + rows("plain20", [(400, 52, 51), (16_000, 10, 12)]))
                == "The figure's error axis stops at 50%: the points above it (early iterations of plain20) are drawn on its top edge.")
    }

    @Test func theDepthAndShortcutFiguresDrawTheirTablesTestErrors() throws {
        func results(_ experiment: Experiment, _ planned: [ExperimentRun], _ errors: [String: Double?]) -> ExperimentReport {
            let finished = ExperimentRunStatus(stage: .finished, step: 1, totalSteps: 1, history: [], configuration: nil, bestEpoch: nil, best: nil)
            let partial = ExperimentRunStatus(stage: .partial, step: 1, totalSteps: 2, history: [], configuration: nil, bestEpoch: nil, best: nil)
            return ExperimentReport(experiment: experiment, planned: planned, rows: [], results: planned.compactMap { run in
                errors[run.name].map { e in ExperimentReport.Result(run: run, status: e == nil ? partial : finished, testError: e ?? nil, hours: 1) }
            })
        }
        func points(_ panel: CurvePanel, _ label: String) -> [Double?] { panel.series.first { $0.label == label }!.points.map(\.1) }
        // Depth: one position per planned depth; seeds thin, their mean, and Table 6. A run in
        // progress (resnet56-seed1) and one not started (resnet44-seed1) draw nothing.
        let depth = try Experiment.depth.runs()
        let panel = results(.depth, depth, ["resnet20-seed0": 13.15, "resnet20-seed1": 12.95, "resnet32-seed0": 12.4, "resnet32-seed1": 12.0,
                                            "resnet44-seed0": 11.5, "resnet56-seed0": 11.0, "resnet56-seed1": nil]).testErrorPanel()
        #expect(panel.ownYRange && panel.xLabel == "layers")
        #expect(panel.xCategories!.map(\.0) == [0, 1, 2, 3] && panel.xCategories!.map(\.1) == ["20", "32", "44", "56"])
        #expect(points(panel, "seed 0") == [13.15, 12.4, 11.5, 11.0] && points(panel, "seed 1") == [12.95, 12.0, nil, nil])
        let mean = points(panel, "mean")
        #expect(abs(mean[0]! - 13.05) < 1e-9 && abs(mean[1]! - 12.2) < 1e-9 && mean[2] == 11.5 && mean[3] == 11.0)
        #expect(points(panel, "paper") == [8.75, 7.51, 7.17, 6.97])
        #expect(panel.series.allSatisfy { $0.markers })
        // Depths the paper's table lacks draw no paper line (and name none), and a depth with
        // no run finished leaves a gap in the lines, not a bridge.
        let small = results(.depth, try Experiment.depth.runs(depths: [8, 14], seeds: [0]), ["resnet8-seed0": 20]).testErrorPanel()
        #expect(small.series.map(\.label) == ["seed 0", "mean"] && !small.legend.contains { $0.0.contains("paper") })
        // Shortcuts: options along x, a mean per network.
        let shortcuts = try Experiment.shortcuts.runs()
        let options = results(.shortcuts, shortcuts, ["resnet32-A-seed0": 12.4, "resnet32-A-seed1": 12.0, "resnet32-B-seed0": 12.2,
                                                      "resnet32-C-seed1": 11.8]).testErrorPanel()
        #expect(options.xCategories!.map(\.1) == ["option A", "option B", "option C"] && options.xLabel == "shortcut")
        #expect(points(options, "resnet32 mean").count == 3 && abs(points(options, "resnet32 mean")[0]! - 12.2) < 1e-9)
        #expect(points(options, "resnet32 mean")[1] == 12.2 && points(options, "resnet32 mean")[2] == 11.8)
        #expect(points(options, "resnet32 seed 1") == [12.0, nil, 11.8])
        #expect(options.legend.map(\.0) == ["mean of seeds", "each seed"])
        // Several networks: a color and a legend entry each.
        let two = results(.shortcuts, try Experiment.shortcuts.runs(depths: [20, 32], seeds: [0]), ["resnet20-A-seed0": 13]).testErrorPanel()
        #expect(two.legend.map(\.0) == ["resnet20", "resnet32", "each seed: lighter"] && two.legend[0].1 != two.legend[1].1)
        // The figure is drawn, the curves and the test errors side by side.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("figure-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let figure = folder.appendingPathComponent("depth.png").path
        try results(.depth, depth, ["resnet20-seed0": 13.15]).writeFigure(to: figure)
        let drawn = try readImage(path: figure, channels: 3)
        #expect(drawn.width == 120 + 2 * (760 + 110))
        // The right panel's plot area (y 190-670) holds the mean's dot (dark) and Table 6's line.
        func pixels(of color: UInt32, fromX: Int) -> Int {
            let plane = drawn.height * drawn.width
            return (191..<669).reduce(0) { count, y in
                count + (fromX..<drawn.width).filter { x in
                    let i = y * drawn.width + x
                    return UInt32(drawn.pixels[i]) << 16 | UInt32(drawn.pixels[plane + i]) << 8 | UInt32(drawn.pixels[2 * plane + i]) == color
                }.count
            }
        }
        let rightPanel = 120 + 760 + 110 + 1
        #expect(pixels(of: 0x222222, fromX: rightPanel) > 40 && pixels(of: 0x17BECF, fromX: rightPanel) > 600)
        try results(.shortcuts, shortcuts, [:]).writeFigure(to: folder.appendingPathComponent("shortcuts.png").path)
    }

    @Test func theFindingsStateWhetherThePapersOrderingsHeld() {
        func rows(_ run: String, _ train: [Double]) -> [ExperimentReport.Row] {
            train.enumerated().map { k, e in
                ExperimentReport.Row(run: run, network: String(run.prefix { $0 != "-" }), seed: 0, shortcut: .a, epoch: k + 1,
                                     iteration: 351 * (k + 1), trainError: e, validationError: nil, testError: nil)
            }
        }
        func outcome(_ run: String, _ test: Double?, seed: UInt64 = 0, shortcut: ShortcutOption = .a) -> ExperimentFindings.Outcome {
            ExperimentFindings.Outcome(run: run, network: String(run.prefix { $0 != "-" }), seed: seed, shortcut: shortcut,
                                       finished: test != nil, testError: test)
        }
        // Degradation: plain-56 above plain-20 throughout (held); ResNet-56 below ResNet-20 only
        // from the fourth point on, which is the whole last quarter (held).
        let curves = rows("plain20-seed0", [60, 40, 30, 20]) + rows("plain56-seed0", [90, 70, 55, 40])
            + rows("resnet20-seed0", [50, 35, 25, 15]) + rows("resnet56-seed0", [85, 40, 26, 12])
        let runs = [outcome("plain20-seed0", 14.8), outcome("resnet20-seed0", 14.7), outcome("plain56-seed0", 39.6), outcome("resnet56-seed0", 12.1)]
        #expect(ExperimentFindings.sentences(.degradation, rows: curves, runs: runs) == [
            "plain56 against plain20 (seed 0, the only one): training error higher at all 4 evaluation points (by 20.0 points or more); at the last (iteration 1,404) 40.00% against 20.00% (test error of the chosen checkpoints: 39.60% against 14.80%). The paper: deeper plain networks err more — held.",
            "resnet56 against resnet20 (seed 0, the only one): training error lower at 1 of 4 evaluation points, lower at every one from iteration 1,404 on; at the last (iteration 1,404) 12.00% against 15.00% (test error of the chosen checkpoints: 12.10% against 14.70%). The paper: deeper ResNets err less — held.",
        ])
        // A pair is not compared before both runs have finished.
        let unfinished = Array(runs.prefix(3)) + [outcome("resnet56-seed0", nil)]
        #expect(ExperimentFindings.sentences(.degradation, rows: curves, runs: unfinished).last
            == "resnet56 against resnet20 (seed 0, the only one): not compared until both have finished (1 of 2 finished).")
        // Plain-56 below plain-20 over the last quarter: did not hold, even if above it earlier.
        let closing = rows("plain20-seed0", [60, 40, 30, 20, 18, 15, 12, 10]) + rows("plain56-seed0", [90, 70, 55, 40, 30, 20, 11, 9.5])
        #expect(ExperimentFindings.sentences(.degradation, rows: closing, runs: Array(runs.prefix(3))).first?.hasSuffix(
            "training error higher at 6 of 8 evaluation points, lower at every one from iteration 2,457 on; at the last (iteration 2,808) 9.50% against 10.00% (test error of the chosen checkpoints: 39.60% against 14.80%). The paper: deeper plain networks err more — did not hold (not on the paper's side at every point of the last quarter of training).") == true)
        // Runs without a point in common, or an equal end, are said as such.
        let apartInTime = rows("plain20-seed0", [60]) + rows("plain56-seed0", [90, 70]).filter { $0.iteration == 702 }
        #expect(ExperimentFindings.sentences(.degradation, rows: apartInTime, runs: Array(runs.prefix(3))).first?.hasSuffix("no evaluation point in common.") == true)
        let tie = rows("plain20-seed0", [60, 40, 30, 20]) + rows("plain56-seed0", [90, 70, 55, 20])
        #expect(ExperimentFindings.sentences(.degradation, rows: tie, runs: Array(runs.prefix(3))).first?.contains("higher at 3 of 4 evaluation points; at the last (iteration 1,404) 20.00% against 20.00%") == true)

        // Depth: means over both seeds, a verdict only when every run has finished.
        var depth = [outcome("resnet20-seed0", 9.0), outcome("resnet20-seed1", 9.4, seed: 1), outcome("resnet32-seed0", 8.1),
                     outcome("resnet32-seed1", 8.3, seed: 1), outcome("resnet44-seed0", 7.6), outcome("resnet44-seed1", 7.4, seed: 1)]
        #expect(ExperimentFindings.sentences(.depth, rows: [], runs: depth)
            == ["Mean test error by depth over 2 seeds: resnet20 9.20%, resnet32 8.20%, resnet44 7.50%; steps resnet20 to resnet32 -1.00, resnet32 to resnet44 -0.70 points; two seeds of one depth differ by up to 0.40. It fell at every step, as in the paper's Table 6 — held, each step larger than the seeds' spread."])
        depth[5].testError = 8.2   // resnet44: 7.9 mean, 0.3 below resnet32: within its seeds' 0.6
        #expect(ExperimentFindings.sentences(.depth, rows: [], runs: depth).first?.hasSuffix(
            "held in the means, but resnet32 to resnet44 is within the seeds' spread, so not resolved by these runs.") == true)
        let rising = depth + [outcome("resnet56-seed0", 8.0), outcome("resnet56-seed1", 8.2, seed: 1)]
        #expect(ExperimentFindings.sentences(.depth, rows: [], runs: rising).first?.hasSuffix(
            "did not hold (resnet44 to resnet56); the rise resnet44 to resnet56 is within the seeds' spread: no gain from that step, not a resolved loss.") == true)
        let risingFar = depth + [outcome("resnet56-seed0", 9.0), outcome("resnet56-seed1", 9.2, seed: 1)]   // +1.2 against seeds' 0.6
        #expect(ExperimentFindings.sentences(.depth, rows: [], runs: risingFar).first?.hasSuffix("did not hold (resnet44 to resnet56).") == true)
        let partial = depth + [outcome("resnet56-seed0", 7.0), outcome("resnet56-seed1", nil, seed: 1)]
        #expect(ExperimentFindings.sentences(.depth, rows: [], runs: partial)
            == ["Mean test error by depth so far (7 of 8 runs finished): resnet20 9.20%, resnet32 8.20%, resnet44 7.90%, resnet56 7.00%; no verdict until all have finished."])

        // Shortcuts: options against each other within a seed, seeds within an option.
        let options = [outcome("resnet32-A-seed0", 8.0), outcome("resnet32-B-seed0", 8.2, shortcut: .b), outcome("resnet32-C-seed0", 8.1, shortcut: .c),
                       outcome("resnet32-A-seed1", 8.6, seed: 1), outcome("resnet32-B-seed1", 8.6, seed: 1, shortcut: .b),
                       outcome("resnet32-C-seed1", 8.3, seed: 1, shortcut: .c)]
        #expect(ExperimentFindings.sentences(.shortcuts, rows: [], runs: options)
            == ["resnet32: mean test error option A 8.30%, option B 8.40%, option C 8.20% (lowest first: C < A < B); within one seed the options differ by up to 0.30 points, two seeds of one option by up to 0.60: no difference between the options beyond seed noise. The paper (Table 3, ResNet-34 on ImageNet): A, B and C within 0.84 points, C < B < A."])
        var apart = options
        apart[2].testError = 6.0
        apart[5].testError = 6.2
        #expect(ExperimentFindings.sentences(.shortcuts, rows: [], runs: apart).first?.contains("(lowest first: C < A < B); within one seed the options differ by up to 2.40 points, two seeds of one option by up to 0.60: the options differ by at least as much as the seeds do.") == true)
        #expect(ExperimentFindings.sentences(.shortcuts, rows: [], runs: Array(options.prefix(3))).first?.contains("(one seed: no measure of seed noise)") == true)
        apart[5].finished = false
        #expect(ExperimentFindings.sentences(.shortcuts, rows: [], runs: apart).first?.hasPrefix("resnet32: mean test error so far (5 of 6 runs finished): option A 8.30%, option B 8.40%, option C 6.00%; no verdict") == true)
    }

    @Test func aDepthCampaignReportsTheTestErrorOfEveryRun() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runner = ExperimentRunner(experiment: .depth, runs: try Experiment.depth.runs(depths: [8, 14], seeds: [0, 1], scheduleScale: 0.04),
                                      directory: folder)   // the fast recipe for 1 epoch
        runner.overrides.batchSize = 16
        runner.overrides.validation = 30
        runner.log = { _ in }
        #expect(try runner.run(data: tinyDataset(), dataPath: nil, threads: 1))
        let report = try ExperimentReport(runner)
        #expect(report.results.count == 4 && report.results.allSatisfy { $0.testError != nil })
        #expect(report.markdown.contains("| resnet8 | 2 | ") && report.markdown.contains("| resnet14 | 2 | "))
        #expect(report.findings.count == 1 && report.findings[0].hasPrefix("Mean test error by depth over 2 seeds: resnet8 "))
        #expect(report.markdown.contains("What the runs say about the paper's orderings:\n\n- Mean test error by depth over 2 seeds"))
        let rows = report.markdown.split(separator: "\n").filter { $0.hasPrefix("| resnet") }
        #expect(rows.count == 2 && rows.allSatisfy { $0.contains(" ± ") && $0.contains("(2 runs)") })

        // A damaged test.json is an error of the report, not a missing figure; the campaign
        // measures that run's test error again, from the same weights, to the same value.
        let testFile = runner.directory(of: runner.runs[0]).appendingPathComponent("test.json")
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: testFile)) as? [String: Any])
        object["top1"] = 1.25
        try JSONSerialization.data(withJSONObject: object).write(to: testFile)
        let refusal = try #require(throws: TrainingError.self) { try ExperimentReport(runner) }
        #expect(refusal.description.hasPrefix(testFile.path + ": not a valid test result ('top1': an accuracy must be a fraction in 0...1"))
        var lines: [String] = []
        runner.log = { lines.append($0) }
        #expect(try runner.run(data: tinyDataset(), dataPath: nil, threads: 1))
        #expect(lines.contains { $0.hasPrefix("  \(testFile.path): not a valid test result (") && $0.hasSuffix("): measuring its test error again") })
        #expect(try ExperimentReport(runner).results.map(\.testError) == report.results.map(\.testError))
    }

    @Test func theShortcutCampaignReusesTheDepthCampaignsFinishedRunOfTheSameSettings() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        func runner(_ experiment: Experiment, scale: Double) throws -> ExperimentRunner {
            let r = ExperimentRunner(experiment: experiment, runs: try experiment.runs(depths: [8], seeds: [0], scheduleScale: scale),
                                     directory: folder)   // the fast recipe for 1 or 2 epochs
            r.overrides.batchSize = 16
            r.overrides.validation = 30
            return r
        }
        var lines: [String] = []
        // Nothing to reuse yet: the shortcut campaign trains option A itself, in its own folder.
        let alone = try runner(.shortcuts, scale: 0.04)
        let reuseBefore = try alone.configuration(of: alone.runs[0], data: tinyDataset(), dataPath: nil, threads: 1)
        #expect(alone.reusableRun(for: alone.runs[0], planned: reuseBefore) == nil)

        let depth = try runner(.depth, scale: 0.04)
        depth.log = { _ in }
        #expect(try depth.run(data: tinyDataset(), dataPath: nil, threads: 1))
        let shortcuts = try runner(.shortcuts, scale: 0.04)
        shortcuts.log = { lines.append($0) }
        #expect(try shortcuts.run(data: tinyDataset(), dataPath: nil, threads: 1))
        let a = shortcuts.directory(of: shortcuts.runs[0]), depthRun = depth.directory(of: depth.runs[0])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: a.path) == "../depth/resnet8-seed0")
        #expect(lines.filter { $0.contains("resnet8-A-seed0: finished, as") && $0.contains("not trained again") }.count == 1)
        #expect(lines.filter { $0.contains(": starting") }.map { $0.prefix { $0 != ":" } } == ["[2/3] resnet8-B-seed0", "[3/3] resnet8-C-seed0"])
        #expect(try Data(contentsOf: a.appendingPathComponent("best.safetensors")) == Data(contentsOf: depthRun.appendingPathComponent("best.safetensors")))
        let report = try ExperimentReport(shortcuts)
        #expect(report.results.count == 3 && report.results.allSatisfy { $0.testError != nil })
        #expect(report.results.map(\.reused) == ["depth/resnet8-seed0", nil, nil])
        #expect(report.markdown.contains("Trained once for two campaigns (the same settings): resnet8-A-seed0 is depth/resnet8-seed0."))
        // Run again: nothing trains, and the reused run says what it is.
        lines = []
        #expect(try shortcuts.run(data: tinyDataset(), dataPath: nil, threads: 1))
        #expect(lines.first == "[1/3] resnet8-A-seed0: finished (the same run as depth/resnet8-seed0)" && !lines.contains { $0.contains("starting") })

        // The run it links to removed: option A trains itself, in a folder of its own.
        let depthCopy = folder.appendingPathComponent("depth-kept")
        try FileManager.default.moveItem(at: depthRun, to: depthCopy)
        lines = []
        #expect(try shortcuts.run(data: tinyDataset(), dataPath: nil, threads: 1))
        #expect(lines.first == "[1/3] resnet8-A-seed0: the run it was linked to (../depth/resnet8-seed0) is gone or has not finished")
        #expect(lines.dropFirst().first?.hasPrefix("[1/3] resnet8-A-seed0: starting") == true)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: a.path)) == nil)
        #expect(try ExperimentRunStatus.read(a).stage == .finished && ExperimentReport(shortcuts).results.map(\.reused) == [nil, nil, nil])
        // Nor is a link to a run that has not finished (restarted, or training elsewhere) resumed
        // through: the link goes, and option A trains in its own folder.
        try FileManager.default.removeItem(at: a)
        try FileManager.default.createDirectory(at: depthRun, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: "../depth/resnet8-seed0")
        lines = []
        #expect(try shortcuts.run(data: tinyDataset(), dataPath: nil, threads: 1))
        #expect(lines.first?.hasSuffix("is gone or has not finished") == true)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: a.path)) == nil && (try? FileManager.default.contentsOfDirectory(atPath: depthRun.path)) == [])
        try FileManager.default.removeItem(at: a)
        try FileManager.default.removeItem(at: depthRun)
        try FileManager.default.moveItem(at: depthCopy, to: depthRun)
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: "../depth/resnet8-seed0")
        // Other data (here 240 images instead of 300) is not the same run either.
        let otherData = try shortcuts.configuration(of: shortcuts.runs[0], data: tinyDataset(count: 240), dataPath: nil, threads: 1)
        try FileManager.default.removeItem(at: a)
        #expect(shortcuts.reusableRun(for: shortcuts.runs[0], planned: otherData) == nil)
        let sameData = try shortcuts.configuration(of: shortcuts.runs[0], data: tinyDataset(), dataPath: nil, threads: 1)
        #expect(shortcuts.reusableRun(for: shortcuts.runs[0], planned: sameData) != nil)
        // A damaged test.json in the run to reuse does not make option A train again: the link
        // is made and the test error measured again through it, to the same result.
        let depthTest = depthRun.appendingPathComponent("test.json")
        let measured = try JSONDecoder().decode(EvaluationResult.self, from: Data(contentsOf: depthTest))
        try Data("{}".utf8).write(to: depthTest)
        lines = []
        #expect(try shortcuts.run(data: tinyDataset(), dataPath: nil, threads: 1))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: a.path) == "../depth/resnet8-seed0")
        #expect(!lines.contains { $0.contains(": starting") } && lines.contains { $0.hasSuffix(": measuring its test error again") })
        #expect(try readTestResult(of: depthRun, classCount: 3) == measured)

        // Other settings (another schedule scale) are not the same run: nothing is reused.
        let other = ExperimentRunner(experiment: .shortcuts, runs: try Experiment.shortcuts.runs(depths: [8], seeds: [0], scheduleScale: 0.07),
                                     directory: folder.appendingPathComponent("other"))
        other.overrides = shortcuts.overrides
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("other/depth"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("other/depth/resnet8-seed0"), withDestinationURL: depthRun)
        let planned = try other.configuration(of: other.runs[0], data: tinyDataset(), dataPath: nil, threads: 1)
        #expect(other.reusableRun(for: other.runs[0], planned: planned) == nil)
        // Nor is it while this run's own folder holds anything.
        let held = try runner(.shortcuts, scale: 0.04)
        try FileManager.default.removeItem(at: a)
        try FileManager.default.createDirectory(at: a, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: a.appendingPathComponent("config.json"))
        let same = try held.configuration(of: held.runs[0], data: tinyDataset(), dataPath: nil, threads: 1)
        #expect(held.reusableRun(for: held.runs[0], planned: same) == nil)
        try FileManager.default.removeItem(at: a.appendingPathComponent("config.json"))
        #expect(held.reusableRun(for: held.runs[0], planned: same)?.standardizedFileURL == depthRun.standardizedFileURL)
    }

    @Test func theReportOfACampaignThatHasNotStartedIsAnErrorAndWritesNothing() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        for experiment in Experiment.allCases {
            let runner = ExperimentRunner(experiment: experiment, runs: try experiment.runs(depths: nil, seeds: nil, scheduleScale: nil),
                                          directory: folder)
            let refusal = try #require(throws: TrainingError.self) { try ExperimentReport.ofStartedCampaign(runner) }
            #expect(refusal.description.contains("`resnet experiment \(experiment.rawValue) --runs \(folder.path) --data CIFAR10`"))
        }
        #expect(!FileManager.default.fileExists(atPath: folder.path))
    }

    @Test func aLinkToARunStillTrainingReadsAsNotStartedInReportsAndDryRuns() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        // The depth campaign's ResNet-8, stopped after its first of 3 epochs.
        let depth = ExperimentRunner(experiment: .depth, runs: try Experiment.depth.runs(depths: [8], seeds: [0], scheduleScale: 0.1),
                                     directory: folder)
        depth.overrides.batchSize = 16
        depth.overrides.validation = 30
        let interruption = depth.interruption
        depth.log = { if $0.contains("epoch   1/") { interruption.set() } }
        #expect(try depth.run(data: tinyDataset(), dataPath: nil, threads: 1) == false)
        let partial = try ExperimentRunStatus.read(depth.directory(of: depth.runs[0]))
        #expect(partial.stage == .partial && partial.step > 0)
        #expect(try depth.status(of: depth.runs[0]).stage == .partial && ExperimentReport(depth).results.count == 1)
        // No run of the row finished: no mean and no hours, rather than 0.00.
        let row = try #require(try ExperimentReport(depth).markdown.split(separator: "\n").first { $0.hasPrefix("| resnet8 |") })
        #expect(row.hasPrefix("| resnet8 | 0 | — |") && row.hasSuffix("| — |"), "\(row)")

        // Option A of the shortcut campaign linked to it (as a link made when that run had
        // finished, before it was restarted, would be): not this campaign's progress.
        let shortcuts = ExperimentRunner(experiment: .shortcuts, runs: try Experiment.shortcuts.runs(depths: [8], seeds: [0], scheduleScale: 0.1),
                                         directory: folder)
        let a = shortcuts.directory(of: shortcuts.runs[0])
        try FileManager.default.createDirectory(at: shortcuts.folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: "../depth/resnet8-seed0")
        #expect(try ExperimentRunStatus.read(a).stage == .partial)
        #expect(try shortcuts.status(of: shortcuts.runs[0]).stage == .notStarted)
        #expect(try ExperimentReport(shortcuts).results.isEmpty)
        // `--report` of a campaign with nothing started (here only a link to a run in progress)
        // is an error rather than an empty table; a partial run is something to report.
        let nothingStarted = try #require(throws: TrainingError.self) { try ExperimentReport.ofStartedCampaign(shortcuts) }
        #expect(nothingStarted.description.contains("no run of the shortcuts campaign has started in \(shortcuts.folder.path)"))
        #expect(try ExperimentReport.ofStartedCampaign(depth).results.map(\.status.stage) == [.partial])
        #expect(try ExperimentReport(shortcuts).findings
            == ["resnet8: mean test error so far (0 of 3 runs finished): option A —, option B —, option C —; no verdict until all have finished."])
        // A link to nothing, or to an unreadable run, is not started either; a real folder's
        // unreadable checkpoint is still an error.
        try Data("not a checkpoint".utf8).write(to: depth.directory(of: depth.runs[0]).appendingPathComponent("last.safetensors"))
        #expect(try shortcuts.status(of: shortcuts.runs[0]).stage == .notStarted)
        #expect(throws: (any Error).self) { try depth.status(of: depth.runs[0]) }
        try FileManager.default.removeItem(at: depth.directory(of: depth.runs[0]))
        #expect(try shortcuts.status(of: shortcuts.runs[0]).stage == .notStarted)
    }

    @Test func aTransferCampaignPretrainsOnHalfTheClassesAndComparesFineTuningWithScratch() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runs = try Experiment.transfer.runs(depths: [8], seeds: [0], scheduleScale: 0.04)
        #expect(runs.map(\.name) == ["pretrain-resnet8", "fine-tuned-resnet8-seed0", "scratch-resnet8-seed0"])
        #expect(runs[1].startsFrom == "pretrain-resnet8" && runs[1].request.classes == "5-9" && runs[1].request.perClass == 100)
        let runner = ExperimentRunner(experiment: .transfer, runs: runs, directory: folder)
        runner.overrides.batchSize = 16
        runner.overrides.validation = 20
        runner.log = { _ in }
        let data = tinyDataset(count: 600, classes: 10)
        #expect(try runner.run(data: data, dataPath: nil, threads: 1))
        let fineTuned = try ExperimentRunStatus.read(runner.directory(of: runs[1]))
        #expect(fineTuned.configuration?.transfer?.model == runner.directory(of: runs[0]).path)
        #expect(fineTuned.configuration?.classNames == (5...9).map { "class\($0)" })
        #expect(try ExperimentRunStatus.read(runner.directory(of: runs[2])).configuration?.transfer == nil)
        // Each run tests on its own classes: 5 of the 10.
        let test = try JSONDecoder().decode(EvaluationResult.self, from: Data(contentsOf: runner.directory(of: runs[1]).appendingPathComponent("test.json")))
        #expect(test.perClass.count == 5 && test.count == 15)
        let report = try ExperimentReport(runner)
        #expect(report.markdown.contains("| the pretrained weights | classes 5-9, 100 images each | 1 |"))
        #expect(report.markdown.contains("| scratch | classes 5-9, 100 images each | 1 |"))
    }

    @Test func aClassSubsetKeepsItsClassesRenumberedAndAtMostSoManyImagesOfEach() throws {
        let data = tinyDataset(count: 600, classes: 10)
        let subset = try DataSubset(parsing: "5-9", perClass: 7).apply(to: data, seed: 1)
        #expect(subset.classNames == (5...9).map { "class\($0)" })
        let train = try #require(subset.split("train"))
        #expect(train.count == 35 && Set(train.labels) == Set(0..<5))
        #expect(subset.split("test")!.count == 15, "test images are all kept")
        #expect(try DataSubset(parsing: "5-9", perClass: 7).apply(to: data, seed: 1).split("train")!.images == train.images, "seeded")
        #expect(throws: TrainingError.self) { try DataSubset(parsing: "5-12", perClass: nil).apply(to: data, seed: 0) }
        #expect(throws: TrainingError.self) { try DataSubset(parsing: "a-b", perClass: nil) }
        #expect(try DataSubset(parsing: "0,2,4", perClass: nil).classes == [0, 2, 4])
    }

    @Test func theDryRunMeasuresEachNetworksSpeed() throws {
        let runner = ExperimentRunner(experiment: .shortcuts, runs: try Experiment.shortcuts.runs(depths: [8], seeds: [0, 1], scheduleScale: 0.04),
                                      directory: FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)"))
        runner.overrides.batchSize = 8
        runner.overrides.validation = 30
        var configurations = try runner.runs.map { try runner.configuration(of: $0, data: tinyDataset(), dataPath: nil, threads: 1) }
        #expect(configurations.map(\.modelOptions.shortcut) == [.a, .b, .c, .a, .b, .c])
        configurations.append(configurations[0])
        configurations[6].recipe.batchSize = 16
        let started = Date()
        let speeds = try ExperimentRunner.measureSpeed(of: configurations, minimumSeconds: 0.25)
        #expect(-started.timeIntervalSinceNow >= 4 * 0.25, "4 distinct configurations, each timed for at least the minimum")
        #expect(speeds.count == 7 && speeds.allSatisfy { $0 > 0 && $0.isFinite })
        // Each distinct model and batch is timed once: the second seed has the first one's
        // figures, option C (a projection in every block) and another batch size are their own.
        #expect(speeds[3] == speeds[0] && speeds[4] == speeds[1] && speeds[5] == speeds[2])
        #expect(speeds[2] != speeds[0] && speeds[6] != speeds[0])
    }

    @Test func theDryRunEstimatesWhatIsLeftOfEachRunAndWhatAnotherCampaignTrains() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("experiment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        func runner(_ experiment: Experiment, scale: Double = 0.1) throws -> ExperimentRunner {
            let r = ExperimentRunner(experiment: experiment, runs: try experiment.runs(depths: [8], seeds: [0, 1], scheduleScale: scale),
                                     directory: folder)   // the fast recipe for 3 epochs
            r.overrides.batchSize = 16
            r.overrides.validation = 30
            r.log = { _ in }
            return r
        }
        let data = tinyDataset()
        var timed = 0
        let fixed: ([RunConfiguration]) throws -> [Double] = { configurations in   // 100 images/s
            timed = configurations.count
            return configurations.map { _ in 100 }
        }
        func refusal(_ body: () throws -> Any) -> String {
            do { _ = try body() } catch let error as TrainingError { return error.description } catch { return "\(error)" }
            return "no error"
        }
        // The depth campaign's first run, stopped after its first epoch.
        let depth = try runner(.depth)
        let interruption = depth.interruption
        depth.log = { if $0.contains("epoch   1/") { interruption.set() } }
        #expect(try depth.run(data: data, dataPath: nil, threads: 1) == false)
        let steps = 3 * (270 / 16)   // 270 of the 300 images train, 16 to a batch, 3 epochs
        var said: [String] = []
        depth.log = { said.append($0) }
        var estimates = try depth.estimate(data: data, dataPath: nil, threads: 1, speeds: fixed)
        #expect(said == ["measuring the training speed here of each network with steps left (a few seconds each) ..."])
        #expect(estimates.map(\.run.name) == ["resnet8-seed0", "resnet8-seed1"] && estimates.allSatisfy { $0.totalSteps == steps })
        #expect(estimates[0].status.stage == .partial && estimates[1].status.stage == .notStarted)
        let done = estimates[0].status.step
        #expect(done > 0 && done < steps)
        #expect(abs(estimates[0].secondsLeft - Double((steps - done) * 16) / 100 * 1.08) < 1e-9)
        #expect(abs(estimates[1].secondsLeft - Double(steps * 16) / 100 * 1.08) < 1e-9)
        #expect(estimates.allSatisfy { $0.reused == nil && $0.reusableIfFinishedFirst == nil && $0.imagesPerSecond == 100 } && timed == 2)
        // The same folder planned at another schedule scale is not this plan's to count, as it is
        // not the runner's to resume.
        let otherLength = "resnet8-seed0 holds a run of 3 epochs; the campaign plans 6 epochs for resnet8-seed0 (repeat its --schedule-scale)"
        #expect(refusal { try runner(.depth, scale: 0.2).estimate(data: data, dataPath: nil, threads: 1, speeds: fixed) }.contains(otherLength))
        #expect(refusal { try ExperimentReport(runner(.depth, scale: 0.2)) }.contains(otherLength))
        #expect(refusal { try runner(.depth, scale: 0.2).run(data: data, dataPath: nil, threads: 1) }.contains("holds a run with other settings"))

        // The shortcut campaign's option A, seed 0, is that run once it has finished; until then
        // it counts in full and says so. Seed 1's depth run has not started, and one that cannot
        // be read will not be reused: nothing is said of them.
        let unreadable = depth.directory(of: depth.runs[1])
        try FileManager.default.createDirectory(at: unreadable, withIntermediateDirectories: true)
        try Data("not a checkpoint".utf8).write(to: unreadable.appendingPathComponent("last.safetensors"))
        let shortcuts = try runner(.shortcuts)
        estimates = try shortcuts.estimate(data: data, dataPath: nil, threads: 1, speeds: fixed)
        #expect(estimates.map(\.reusableIfFinishedFirst) == ["depth/resnet8-seed0", nil, nil, nil, nil, nil])
        #expect(estimates.allSatisfy { $0.reused == nil && $0.secondsLeft == Double(steps * 16) / 100 * 1.08 } && timed == 6)
        try FileManager.default.removeItem(at: unreadable)

        let resumed = try runner(.depth)   // as a new process would: the stopped one's interruption stays set
        resumed.log = { _ in }
        #expect(try resumed.run(data: data, dataPath: nil, threads: 1))
        said = []
        estimates = try depth.estimate(data: data, dataPath: nil, threads: 1, speeds: fixed)
        #expect(estimates.allSatisfy { $0.status.stage == .finished && $0.secondsLeft == 0 && $0.imagesPerSecond == nil } && timed == 0,
                "finished runs are not timed")
        #expect(said.isEmpty, "nothing is said to be measured when nothing is")
        estimates = try shortcuts.estimate(data: data, dataPath: nil, threads: 1, speeds: fixed)
        #expect(estimates.map(\.reused) == ["depth/resnet8-seed0", nil, nil, "depth/resnet8-seed1", nil, nil] && timed == 4)
        #expect(estimates.map(\.secondsLeft).filter { $0 == 0 }.count == 2 && estimates.allSatisfy { $0.reusableIfFinishedFirst == nil })
        // A speed function that does not answer for every run it is given is a programming
        // error, not a guess.
        #expect(refusal { try shortcuts.estimate(data: data, dataPath: nil, threads: 1, speeds: { _ in [1] }) } == "1 speeds for 4 runs")

        // A run in the wrong folder (seeds swapped by hand), or a link to another seed's run, is
        // an error to reports and dry runs, as it is to the runner: never a row of the table.
        let seed0 = depth.directory(of: depth.runs[0]), seed1 = depth.directory(of: depth.runs[1])
        let kept = folder.appendingPathComponent("kept")
        try FileManager.default.moveItem(at: seed0, to: kept)
        try FileManager.default.moveItem(at: seed1, to: seed0)
        try FileManager.default.moveItem(at: kept, to: seed1)
        let swapped = "holds a run of resnet8, seed 1, shortcut A, not the campaign's resnet8-seed0"
        #expect(refusal { try ExperimentReport(depth) }.contains(swapped))
        #expect(refusal { try depth.estimate(data: data, dataPath: nil, threads: 1, speeds: fixed) }.contains(swapped))
        #expect(refusal { try runner(.depth).run(data: data, dataPath: nil, threads: 1) }.contains("holds a run with other settings"))
        let a = shortcuts.directory(of: shortcuts.runs[0])   // the link the shortcut campaign makes for option A
        try FileManager.default.createDirectory(at: shortcuts.folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: a.path, withDestinationPath: "../depth/resnet8-seed0")
        #expect(refusal { try shortcuts.status(of: shortcuts.runs[0]) }
            .contains("holds a run of resnet8, seed 1, shortcut A, not the campaign's resnet8-A-seed0"))
        try FileManager.default.moveItem(at: seed0, to: kept)
        try FileManager.default.moveItem(at: seed1, to: seed0)
        try FileManager.default.moveItem(at: kept, to: seed1)
        #expect(try shortcuts.status(of: shortcuts.runs[0]).stage == .finished && ExperimentReport(depth).results.count == 2)
    }
}
