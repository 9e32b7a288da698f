import Foundation
import ResNetData
import ResNetTensors
import ResNetTraining
import Testing

// `--micro-batches` and `--sync-bn` decide batch norm's statistics, so a run records them and a
// resume keeps them (issue 17): the rank count may change, the statistics may not.
@Suite("Batch-norm settings of a run: recorded, kept on resume", .serialized)
struct BatchNormSettingsTests {
    /// A resnet8 run of 4 steps of 16 images on the tiny data set (trained only when `steps`).
    func trainer(in directory: URL, resume: Bool = false, microBatches: Int? = nil, synchronizesBatchNorm: Bool = false,
                 precision: Precision = .fp32, steps: Bool = true) throws -> Trainer {
        var request = self.request()
        request.precision = precision == .fp32 ? .fp32 : .bf16
        let data = tinyDataset()
        let configuration = resume ? try Trainer.loadConfiguration(directory)
            : try request.configuration(data: data, dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        let train = data.split("train")!
        let (t, v) = try configuration.split(train)
        let trainer = try Trainer(configuration: configuration, training: train.subset(t), validation: train.subset(v),
                                  runDirectory: directory, resume: resume, microBatches: microBatches,
                                  synchronizesBatchNorm: synchronizesBatchNorm)
        trainer.log = { _ in }
        if steps { _ = try trainer.run() }
        return trainer
    }

    func request() -> RunRequest {
        var request = RunRequest()
        request.model = "resnet8"
        request.overrides.iterations = 4
        request.overrides.batchSize = 16
        request.overrides.validation = 30
        return request
    }

    func message(_ body: () throws -> Any) -> String { do { _ = try body(); return "" } catch { return "\(error)" } }

    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("resnet-bn-settings-\(UUID().uuidString)")
    }

    @Test("--micro-batches is recorded in config.json; --resume takes it when not given and refuses a value that changes the statistics")
    func microBatchesRecordedAndKept() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try trainer(in: directory, microBatches: 2)
        #expect(first.microBatches == 2 && first.configuration.microBatches == 2)
        let json = try String(contentsOf: directory.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(json.contains("\"microBatches\" : 2"), "\(json)")
        #expect(!json.contains("synchronizesBatchNorm"), "the default is not written")

        let resumed = try trainer(in: directory, resume: true, steps: false)
        #expect(resumed.microBatches == 2, "taken from the run")
        #expect(try trainer(in: directory, resume: true, microBatches: 2, steps: false).microBatches == 2, "the same value is accepted")
        let changed = message { try trainer(in: directory, resume: true, microBatches: 1, steps: false) }
        #expect(changed == "this run normalizes batch norm in 2 parts of 8 images (2 micro-batches or ranks), 1 micro-batches would change that: use --micro-batches 2, or leave --micro-batches out", "\(changed)")
        let synchronized = message { try trainer(in: directory, resume: true, synchronizesBatchNorm: true, steps: false) }
        #expect(synchronized.contains("--sync-bn would normalize over the whole batch: resume without --sync-bn"), "\(synchronized)")
    }

    @Test("A run's config.json without the fields (the default, and runs made before them) reads as 1 micro-batch without --sync-bn")
    func oldConfigurationsDecode() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let plain = try trainer(in: directory)
        #expect(plain.microBatches == 1 && !plain.synchronizesBatchNorm)
        let url = directory.appendingPathComponent("config.json")
        let json = try String(contentsOf: url, encoding: .utf8)
        #expect(!json.contains("microBatches") && !json.contains("synchronizesBatchNorm"), "byte for byte the old layout")
        let decoded = try Trainer.decodeConfiguration(Data(json.utf8), path: url.path)
        #expect(decoded.microBatches == nil && decoded.synchronizesBatchNorm == nil)
        #expect(try decoded.batchNormLaunch(processes: 1, microBatches: nil, synchronizesBatchNorm: false) == (1, false))
        // 2 ranks keep one process's whole-batch statistics only by synchronizing.
        #expect(try decoded.batchNormLaunch(processes: 2, microBatches: nil, synchronizesBatchNorm: true) == (1, true))
        let unsynchronized = message { try decoded.batchNormLaunch(processes: 2, microBatches: nil, synchronizesBatchNorm: false) }
        #expect(unsynchronized == "this run normalizes batch norm over each whole batch of 16 images; 2 ranks cannot keep that: add --sync-bn", "\(unsynchronized)")
        // An explicit 1 written by hand is the same run as the default.
        let explicit = json.replacingOccurrences(of: "\"model\" :", with: "\"microBatches\" : 1, \"synchronizesBatchNorm\" : false, \"model\" :")
        #expect(explicit != json)
        try Data(explicit.utf8).write(to: url)
        #expect(try trainer(in: directory, resume: true, steps: false).microBatches == 1)
        // A bad recorded value is refused by name.
        try Data(json.replacingOccurrences(of: "\"model\" :", with: "\"microBatches\" : 3, \"model\" :").utf8).write(to: url)
        #expect(message { try Trainer.loadConfiguration(directory) }.contains("run configuration: 3 micro-batches for batches of 16"))
    }

    @Test("Resuming with another rank count: the recorded parts are shared among the ranks, or the change is refused")
    func rankCountOnResume() throws {
        var configuration = try request().configuration(data: tinyDataset(), dataset: "folder", dataPath: nil, isSample: false, threads: 1)
        configuration.microBatches = 4   // e.g. 2 ranks x 2 micro-batches, or 4 ranks
        #expect(try configuration.batchNormLaunch(processes: 1, microBatches: nil, synchronizesBatchNorm: false) == (4, false))
        #expect(try configuration.batchNormLaunch(processes: 2, microBatches: nil, synchronizesBatchNorm: false) == (2, false))
        #expect(try configuration.batchNormLaunch(processes: 4, microBatches: 1, synchronizesBatchNorm: false) == (1, false))
        #expect(message { try configuration.batchNormLaunch(processes: 3, microBatches: nil, synchronizesBatchNorm: false) }
            .hasSuffix("3 ranks cannot keep that: use a rank count that divides 4"))
        #expect(message { try configuration.batchNormLaunch(processes: 2, microBatches: 1, synchronizesBatchNorm: false) }
            .hasSuffix("2 ranks x 1 micro-batches would change that: use --micro-batches 2, or leave --micro-batches out"))
        configuration.microBatches = nil
        configuration.synchronizesBatchNorm = true
        #expect(try configuration.batchNormLaunch(processes: 8, microBatches: nil, synchronizesBatchNorm: false) == (1, true), "kept without the flag")
    }

    @Test("--sync-bn alone is recorded and kept; in one process it still refuses bf16 and micro-batches, as mpirun would")
    func synchronizedBatchNormAlone() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let synchronized = try trainer(in: directory, synchronizesBatchNorm: true)
        #expect(synchronized.synchronizesBatchNorm && synchronized.microBatches == 1)
        #expect(try String(contentsOf: directory.appendingPathComponent("config.json"), encoding: .utf8).contains("\"synchronizesBatchNorm\" : true"))
        #expect(try trainer(in: directory, resume: true, steps: false).synchronizesBatchNorm, "kept without the flag")

        let other = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: other) }
        let bf16 = message { try trainer(in: other, synchronizesBatchNorm: true, precision: .bf16, steps: false) }
        #expect(bf16 == "synchronized batch norm needs fp32 training: add --precision fp32", "\(bf16)")
        let micro = message { try trainer(in: other, microBatches: 2, synchronizesBatchNorm: true, steps: false) }
        #expect(micro == "synchronized batch norm works on whole shards: use --micro-batches 1", "\(micro)")
        #expect(!FileManager.default.fileExists(atPath: other.appendingPathComponent("config.json").path), "nothing written")
    }
}
