import Foundation
import ResNetData
import ResNetModels
import ResNetOptimizers
import ResNetTensors
import ResNetTraining
import Testing

private func scratchFile(_ name: String, _ text: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-request-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

private func message(_ body: () throws -> Any) -> String { do { _ = try body(); return "" } catch { return "\(error)" } }

@Suite("Run requests: flags, run files, defaults")
struct RunRequestTests {
    @Test func flagsWinOverTheRunFileWhichWinsOverTheRecipe() throws {
        let path = try scratchFile("run.yaml", "model: resnet8\nbatch_size: 16\nlr: 0.05\nepochs: 3\nvalidation: 30\nseed: 4\nprecision: fp32\n")
        let file = try RunRequest.load(runFile: path)
        #expect(file.model == "resnet8" && file.overrides.batchSize == 16 && file.seed == 4 && file.precision == .fp32)
        var flags = RunRequest()
        flags.overrides.batchSize = 32
        flags.seed = 9
        let asked = flags.over(file)
        #expect(asked.overrides.batchSize == 32 && asked.seed == 9, "flags win")
        #expect(asked.overrides.lr == 0.05 && asked.model == "resnet8", "the file fills the rest")
        let configuration = try asked.configuration(data: tinyDataset(), dataset: "folder", dataPath: "/data", isSample: false, threads: 1)
        #expect(configuration.recipe.batchSize == 32 && configuration.seed == 9)
        #expect(configuration.recipe.duration == .epochs(3) && configuration.recipe.validationCount == 30)
        #expect(abs(configuration.recipe.schedule.peak - 0.05) < 1e-7 && configuration.recipe.name == "he2016")
        #expect(configuration.trainingCount == 270 && configuration.imageShape == [3, 8, 8] && configuration.dataPath == "/data")
        #expect(asked.directory(for: configuration).path.hasPrefix(FileManager.default.currentDirectoryPath + "/runs/resnet8-folder-he2016-"))
    }

    @Test func theShortcutIsTheRecipesForCIFARNetworksAndBForImageNetOnes() throws {
        #expect(try RunRequest.shortcut(requested: nil, model: "resnet20", recipe: .he2016) == .a)
        #expect(try RunRequest.shortcut(requested: nil, model: "resnet20", recipe: .fast) == .b)
        #expect(try RunRequest.shortcut(requested: nil, model: "resnet18", recipe: .he2016) == .b)
        #expect(try RunRequest.shortcut(requested: .c, model: "resnet20", recipe: .he2016) == .c)
    }

    @Test func theShippedSampleGetsAShortRunUnlessTheUserChoseOne() throws {
        var lines: [String] = []
        let sample = try RunRequest().configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: true, threads: 1,
                                                    log: { lines.append($0) })
        #expect(sample.recipe.validationCount == 30 && sample.recipe.duration == .epochs(15))
        #expect(sample.recipe.schedule == .multiStep(base: 0.1, milestones: [10, 13], multipliers: [0.1, 0.01], unit: .epoch))
        #expect(lines == ["on the sample: 30 validation images, 15 epochs"])
        var scheduled = RunRequest()
        scheduled.schedule = .multiStep(base: 0.05, milestones: [100], multipliers: [0.5], unit: .iteration)
        let kept = try scheduled.configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: true, threads: 1)
        #expect(kept.recipe.schedule == scheduled.schedule, "a run file's schedule is kept on the sample")
        var chosen = RunRequest()
        chosen.overrides.iterations = 7
        chosen.overrides.validation = 10
        let mine = try chosen.configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: true, threads: 1)
        #expect(mine.recipe.duration == .iterations(7) && mine.recipe.validationCount == 10)
    }

    @Test func resumeRefusesEverySettingThatWouldChangeTheRun() {
        var r = RunRequest()
        #expect(r.settingsThatChangeARun.isEmpty)
        r.skipTest = true
        #expect(r.settingsThatChangeARun.isEmpty, "--skip-test changes no weight")
        r.model = "resnet56"
        r.overrides.lr = 0.2
        r.precision = .bf16
        #expect(r.settingsThatChangeARun == ["--model", "--precision", "--lr"])
    }

    @Test func badRunFilesEndInOneLine() throws {
        #expect(message { try RunRequest.load(runFile: try scratchFile("a.yaml", "modle: resnet8\n")) }.contains("unknown option 'modle'"))
        #expect(message { try RunRequest.load(runFile: try scratchFile("a.json", "{\"batch_size\": \"big\"}")) }.contains("'batch_size'"))
        #expect(message { try RunRequest.load(runFile: try scratchFile("a.json", "[1, 2]")) }.contains("expected a JSON object"))
        #expect(message { try RunRequest.load(runFile: try scratchFile("a.yaml", "precision: fp16\n")) }.contains("precision must be auto, fp32 or bf16"))
        #expect(message { try RunRequest.load(runFile: "/nonexistent/run.yaml") }.contains("cannot read the run file"))
        #expect(message { try RunRequest.load(runFile: "/dev/zero") }.contains("not a regular file"))
        let negative = "{\"schedule\": {\"multiStep\": {\"base\": 0.1, \"milestones\": [10, 20], \"multipliers\": [0.1, -0.5], \"unit\": \"iteration\"}}}"
        #expect(message { try RunRequest.load(runFile: try scratchFile("a.json", negative)) }.contains("-0.05 is not a finite rate"))
        // A billion laughs: nine levels of nine aliases is refused before it is expanded.
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        for (previous, name) in zip(names, names.dropFirst()) {
            bomb += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]\n"
        }
        let start = Date()
        #expect(message { try RunRequest.load(runFile: try scratchFile("bomb.yaml", bomb)) }.contains("expands to more than 10000 values"))
        #expect(-start.timeIntervalSinceNow < 5)
        #expect(message { try RunRequest.load(runFile: try scratchFile("deep.json", String(repeating: "[", count: 5_000))) }
            .contains("nested brackets"))
        var lr = RecipeOverrides()
        lr.lr = .nan
        var recipe = Recipe.he2016
        #expect(message { try lr.apply(to: &recipe) }.contains("--lr must be a positive number"))
    }
}

@Suite("Run requests: the protocols of the seeds")
struct ProtocolFlagTests {
    @Test func plateauAndEarlyStoppingComeFromFlagsOrRunFiles() throws {
        // The seeds' protocols: ReduceLROnPlateau(sqrt(0.1), patience 5, min lr 0.5e-6) on the
        // validation loss; early stopping every 50 batches with patience 5, at most 50 epochs.
        let path = try scratchFile("protocol.yaml", "plateau: 0.316:5:0:5e-7\nearly_stopping: 5:50\nepochs: 50\noptimizer: rmsprop\nvalidation: 30\n")
        let file = try RunRequest.load(runFile: path)
        let configuration = try RunRequest().over(file).configuration(data: tinyDataset(), dataset: "folder", dataPath: nil,
                                                                     isSample: false, threads: 1)
        let plateau = try #require(configuration.recipe.plateau)
        #expect(abs(plateau.factor - 0.316) < 1e-6 && plateau.patience == 5 && plateau.cooldown == 0)
        #expect(abs(plateau.minimumLearningRate - 5e-7) < 1e-12 && !plateau.maximize)
        #expect(configuration.recipe.earlyStopping == Recipe.EarlyStop(patience: 5, everyBatches: 50))
        #expect(configuration.recipe.duration == .epochs(50) && configuration.recipe.optimizer == .rmsprop)
        #expect(try configuration.recipe.makeOptimizer() is RMSprop)

        var flags = RecipeOverrides()
        flags.plateauMonitor = "accuracy"
        flags.plateau = "0.5:2"
        flags.earlyStopping = "none"
        var recipe = Recipe.pytorchNote
        try flags.apply(to: &recipe)
        #expect(recipe.plateau?.maximize == true && recipe.plateau?.factor == 0.5 && recipe.earlyStopping == nil)
        for (bad, flag) in [("1.5:2", "plateau"), ("0.5", "plateau"), ("0.5:-1", "plateau"), ("0", "early"), ("5:0", "early"), ("x", "early")] {
            var o = RecipeOverrides()
            if flag == "plateau" { o.plateau = bad } else { o.earlyStopping = bad }
            #expect(message { try o.apply(to: &recipe) }.contains(flag == "plateau" ? "--plateau must be" : "--early-stopping must be"), "\(bad)")
        }
    }

    @Test func modelOptionsReachTheNetwork() throws {
        var request = RunRequest()
        request.model = "resnet8"
        request.initializer = "he-normal-fan-in"
        request.zeroInitializedResidual = true
        request.overrides.validation = 30
        let configuration = try request.configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        #expect(configuration.modelOptions.initializer == "he-normal-fan-in" && configuration.modelOptions.zeroInitializedResidual)
        #expect(request.settingsThatChangeARun == ["--model", "--initializer", "--zero-init-residual", "--validation"])
        // He normal with fan-in: std sqrt(2 / (in * 9)) for a 3x3 convolution from 16 channels.
        let model = try configuration.buildModel()
        let weight = try #require(model.namedParameters().first { $0.0 == "stage1.block1.conv2.weight" }?.1.values)
        let std = (weight.reduce(0) { $0 + Double($1 * $1) } / Double(weight.count)).squareRoot()
        #expect(abs(std - (2.0 / (16 * 9)).squareRoot()) < 0.01)
        // --zero-init-residual: every block's last batch norm starts with a zero scale, the others at 1.
        let scales = model.namedParameters().filter { $0.0.hasSuffix(".scale") }
        let residual = scales.filter { $0.0.hasSuffix(".bn2.scale") }
        #expect(residual.count == 3 && residual.allSatisfy { $0.1.values.allSatisfy { $0 == 0 } }, "\(residual.map(\.0))")
        #expect(scales.count > residual.count && scales.filter { !$0.0.hasSuffix(".bn2.scale") }.allSatisfy { $0.1.values.allSatisfy { $0 == 1 } })
        var unknown = request
        unknown.initializer = "lecun"
        #expect(message { try unknown.configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: false, threads: 1) }
            .contains("unknown initializer 'lecun'"))
        var dropout = request
        dropout.dropout = 1.5
        #expect(message { try dropout.configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: false, threads: 1) }
            .contains("dropout must be in 0..<1"))
    }
}
