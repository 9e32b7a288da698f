import Foundation
import ResNetData
import ResNetDistributed
import ResNetInference
import ResNetTraining
import Testing

// Data-parallel training over Open MPI, end to end: the built `resnet` binary under
// `mpirun -np 2` on loopback, against one process on the same data (issue 17).

/// Open MPI's launcher, when installed.
let mpirun: String? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// The `resnet` binary built beside the test bundle.
let resnetBinary: String? = {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let candidates = [here.deletingLastPathComponent(), here.deletingLastPathComponent().deletingLastPathComponent(),
                      Bundle.main.bundleURL.deletingLastPathComponent()].map { $0.appendingPathComponent("resnet").path }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("data/cifar10-sample.tar.gz").path

struct Finished {
    let status: Int32
    let output: String
    let errors: String
    let seconds: Double
    /// Lines of standard error that start with `Error:`.
    var errorLines: [String] { errors.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error:") } }
}

/// Runs `arguments[0]` with the rest, waits at most `timeout` seconds (then kills it), and
/// calls `whileRunning` with its process id once started.
func run(_ arguments: [String], environment extra: [String: String] = [:], timeout: Double = 120,
         whileRunning: ((Int32) -> Void)? = nil) throws -> Finished {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    var environment = ProcessInfo.processInfo.environment
    for key in environment.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") { environment[key] = nil }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment.merge(extra) { $1 }
    process.environment = environment
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-mpi-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
    FileManager.default.createFile(atPath: out.path, contents: nil)
    FileManager.default.createFile(atPath: err.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: err)
    let start = Date()
    try process.run()
    whileRunning?(process.processIdentifier)
    while process.isRunning, -start.timeIntervalSinceNow < timeout { usleep(20_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    process.waitUntilExit()
    return Finished(status: process.terminationStatus, output: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                    errors: (try? String(contentsOf: err, encoding: .utf8)) ?? "", seconds: -start.timeIntervalSinceNow)
}

func mpi(_ ranks: Int, _ arguments: [String]) -> [String] {
    [mpirun!, "--oversubscribe", "--allow-run-as-root", "-np", "\(ranks)", resnetBinary!] + arguments
}

/// A short ResNet-8 run on the shipped CIFAR-10 sample, fp32, one thread per process.
func trainArguments(_ directory: String, iterations: Int = 50, extra: [String] = []) -> [String] {
    ["train", "--model", "resnet8", "--data", sample, "--iterations", "\(iterations)", "--batch-size", "128", "--validation", "200",
     "--skip-test", "--precision", "fp32", "--threads", "1", "--run-dir", directory] + extra
}

/// The ssh client Open MPI's launcher would use, if one is installed.
let sshClient = ["/usr/bin/ssh", "/bin/ssh"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })

func temporaryRunDirectory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("resnet-mpi-run-\(UUID().uuidString)").path
}

/// The largest difference between the trainable weights of two checkpoints, relative to
/// max(|w|, 1e-3) (running statistics and optimizer buffers left out).
func largestWeightDifference(_ a: String, _ b: String) throws -> (Float, Int) {
    let x = try SafeTensors.read(URL(fileURLWithPath: a)).tensors, y = try SafeTensors.read(URL(fileURLWithPath: b)).tensors
    var worst: Float = 0, compared = 0
    for (name, t) in x where !name.hasPrefix("optimizer/") && !name.contains("running") && !name.hasPrefix("preprocessing/") {
        let u = try #require(y[name], "\(name) missing")
        #expect(u.shape == t.shape)
        for (p, q) in zip(t.values, u.values) { worst = max(worst, abs(p - q) / max(abs(p), 1e-3)); compared += 1 }
    }
    return (worst, compared)
}

/// The relative L2 distance between the trainable weights of two checkpoints.
func relativeWeightDistance(_ a: String, _ b: String) throws -> Double {
    let x = try SafeTensors.read(URL(fileURLWithPath: a)).tensors, y = try SafeTensors.read(URL(fileURLWithPath: b)).tensors
    var difference = 0.0, norm = 0.0
    for (name, t) in x where !name.hasPrefix("optimizer/") && !name.contains("running") && !name.hasPrefix("preprocessing/") {
        let u = try #require(y[name], "\(name) missing")
        for (p, q) in zip(t.values, u.values) { difference += Double(p - q) * Double(p - q); norm += Double(p) * Double(p) }
    }
    return (difference / max(norm, 1e-30)).squareRoot()
}

let distributedReady = mpirun != nil && resnetBinary != nil

@Suite("Data-parallel training over Open MPI", .serialized)
struct DistributedTests {
    @Test("Each rank's shard of a batch is its contiguous part of the single-process batch, augmented identically")
    func shardsPartitionTheBatch() throws {
        var state: UInt64 = 7
        let pixels = (0..<(64 * 3 * 8 * 8)).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let dataset = ImageDataset(images: pixels, labels: (0..<64).map { Int32($0 % 4) }, channels: 3, height: 8, width: 8,
                                   classNames: ["a", "b", "c", "d"])
        let augment = try Augmentation.parseList("flip,crop:2")
        let whole = try BatchLoader(dataset: dataset, batchSize: 16, shuffle: true, dropLast: true, augmentations: augment, seed: 3)
        let parts = try (0..<4).map {
            try BatchLoader(dataset: dataset, batchSize: 16, shuffle: true, dropLast: true, augmentations: augment, seed: 3, shard: ($0, 4))
        }
        #expect(parts.allSatisfy { $0.batchesPerEpoch == whole.batchesPerEpoch && $0.imagesPerBatch == 4 })
        let epoch = whole.epoch(1), pieces = parts.map { $0.epoch(1) }
        defer { epoch.cancel(); pieces.forEach { $0.cancel() } }
        var batches = 0
        while let batch = epoch.next() {
            batches += 1
            let images = Array(batch.images), labels = Array(batch.labels)
            var joined: [Float] = [], joinedLabels: [Int32] = []
            for piece in pieces {
                let b = try #require(piece.next())
                joined += Array(b.images)
                joinedLabels += Array(b.labels)
            }
            #expect(joined == images)
            #expect(joinedLabels == labels)
        }
        #expect(batches == whole.batchesPerEpoch && batches > 0)
        #expect(pieces.allSatisfy { $0.next() == nil }, "a shard has batches the whole loader does not")
        #expect(throws: DataOptionError.self) { try BatchLoader(dataset: dataset, batchSize: 16, shuffle: true, dropLast: true, shard: (0, 3)) }
    }

    @Test("Under mpirun with the library missing: one Error line")
    func missingLibrary() throws {
        guard let resnetBinary else { Issue.record("the resnet binary was not built beside the tests"); return }
        let r = try run([resnetBinary] + trainArguments(temporaryRunDirectory()),
                        environment: ["OMPI_COMM_WORLD_SIZE": "2", "RESNET_LIBMPI": "/nonexistent/libmpi.so.40"], timeout: 60)
        #expect(r.status == 1)
        #expect(r.errorLines.count == 1)
        #expect(r.errors.contains("cannot be loaded"))
    }

    @Test("2 ranks give the weights of one process training the two halves as micro-batches (50 steps, global batch 128), also after a resume with another rank count",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"))
    func twoRanksMatchMicroBatches() throws {
        let single = temporaryRunDirectory(), parallel = temporaryRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: single); try? FileManager.default.removeItem(atPath: parallel) }
        let one = try run([resnetBinary!] + trainArguments(single, extra: ["--micro-batches", "2"]))
        #expect(one.status == 0, "\(one.errors)")
        let two = try run(mpi(2, trainArguments(parallel)))
        #expect(two.status == 0, "\(two.errors)")
        // Rank 0 alone speaks and writes.
        #expect(two.output.components(separatedBy: "finished: completed 50 iterations").count == 2)
        #expect(two.output.contains("data parallel: 2 ranks"))
        for file in ["config.json", "last.safetensors", "best.safetensors", "metrics.csv"] {
            #expect(FileManager.default.fileExists(atPath: parallel + "/" + file), "\(file)")
        }
        let (difference, count) = try largestWeightDifference(single + "/last.safetensors", parallel + "/last.safetensors")
        print("2 ranks against 2 micro-batches: \(count) weights, largest relative difference \(difference)")
        #expect(count > 70_000)
        #expect(difference <= 1e-5)
        // Both record 2 parts of the batch for batch norm (2 micro-batches, 2 ranks).
        for directory in [single, parallel] {
            let json = try String(contentsOfFile: directory + "/config.json", encoding: .utf8)
            #expect(json.contains("\"microBatches\" : 2"), "\(directory): \(json)")
        }
        // Buckets of 64 KiB: ResNet-8's 0.30 MB of gradients travel in 5 all-reduces, each started
        // during backward as soon as its gradients are final; the same sums, the same weights.
        let small = temporaryRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: small) }
        let overlapped = try run(mpi(2, trainArguments(small, extra: ["--mpi-bucket-mb", "0.0625"])))
        #expect(overlapped.status == 0, "\(overlapped.errors)")
        let (smallBuckets, _) = try largestWeightDifference(single + "/last.safetensors", small + "/last.safetensors")
        print("2 ranks with 64 KiB buckets against 2 micro-batches: largest relative difference \(smallBuckets)")
        #expect(smallBuckets == 0)
        // A resume that would change batch norm's statistics is refused in one line, by rank 0.
        let changed = try run(mpi(2, ["train", "--resume", single, "--threads", "1", "--micro-batches", "2"]), timeout: 60)
        #expect(changed.status != 0)
        #expect(changed.errorLines == ["Error: this run normalizes batch norm in 2 parts of 64 images (2 micro-batches or ranks), 2 ranks x 2 micro-batches would change that: use --micro-batches 1, or leave --micro-batches out"],
                "\(changed.errors)")
        // The sharded validation counts every image once.
        let validation = try String(contentsOfFile: parallel + "/validation.csv", encoding: .utf8)
        #expect(validation.split(separator: "\n").count == 3)   // header + 2 epoch ends

        // A single-process run interrupted and resumed by 2 ranks: the global step and batch
        // are all the run state records, so it ends where the uninterrupted run does.
        let resumed = temporaryRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: resumed) }
        let interrupted = try run([resnetBinary!] + trainArguments(resumed, extra: ["--micro-batches", "2"])) { pid in
            usleep(2_500_000)
            kill(pid, SIGINT)
        }
        // Stopped mid-run (exit 130, a checkpoint short of the end), or the 2-rank resume below
        // would find a finished run and the comparison would test nothing.
        #expect(interrupted.status == 130, "the run was to be interrupted after 2.5 s: \(interrupted.errors)")
        let stopped = try ExperimentRunStatus.read(URL(fileURLWithPath: resumed))
        #expect(stopped.stage == .partial && stopped.step > 0 && stopped.step < 50, "\(stopped.stage) at step \(stopped.step)")
        let continued = try run(mpi(2, ["train", "--resume", resumed, "--threads", "1"]))
        #expect(continued.status == 0, "\(continued.errors)")
        let (afterResume, _) = try largestWeightDifference(single + "/last.safetensors", resumed + "/last.safetensors")
        print("interrupted alone (exit \(interrupted.status)), resumed by 2 ranks: largest relative difference \(afterResume)")
        #expect(afterResume <= 1e-5)
    }

    @Test("With --sync-bn, 2 ranks take the step of one process with the whole batch (fp32 rounding apart)",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"))
    func synchronizedBatchNormMatchesOneProcess() throws {
        let single = temporaryRunDirectory(), synchronized = temporaryRunDirectory(), perRank = temporaryRunDirectory()
        defer { for d in [single, synchronized, perRank] { try? FileManager.default.removeItem(atPath: d) } }
        let arguments = { (directory: String) in trainArguments(directory, iterations: 1).filter { $0 != "--validation" && $0 != "200" } + ["--validation", "0"] }
        let one = try run([resnetBinary!] + arguments(single) + ["--sync-bn"])   // accepted alone; changes nothing
        #expect(one.status == 0, "\(one.errors)")
        let two = try run(mpi(2, arguments(synchronized) + ["--sync-bn"]))
        #expect(two.status == 0, "\(two.errors)")
        #expect(two.output.contains("synchronized batch norm"))
        let alone = try run(mpi(2, arguments(perRank)))
        #expect(alone.status == 0, "\(alone.errors)")
        let synced = try relativeWeightDistance(single + "/last.safetensors", synchronized + "/last.safetensors")
        let unsynced = try relativeWeightDistance(single + "/last.safetensors", perRank + "/last.safetensors")
        print("one step of batch 128, relative L2 distance to one process: --sync-bn \(synced), per-rank statistics \(unsynced)")
        #expect(synced < 1e-4)
        #expect(unsynced > 10 * synced)
        // bf16 is refused in one line.
        let bf16 = try run(mpi(2, arguments(temporaryRunDirectory()).filter { $0 != "fp32" && $0 != "--precision" } + ["--precision", "bf16", "--sync-bn"]), timeout: 60)
        #expect(bf16.status != 0)
        #expect(bf16.errorLines.count == 1 && bf16.errorLines[0].contains("needs fp32"), "\(bf16.errors)")
    }

    @Test("Bad input: more ranks than images in a batch, options that differ between ranks",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"))
    func badInput() throws {
        let tooMany = try run(mpi(3, ["train", "--model", "resnet8", "--data", sample, "--iterations", "2", "--batch-size", "2",
                                      "--validation", "0", "--skip-test", "--threads", "1", "--run-dir", temporaryRunDirectory()]), timeout: 60)
        #expect(tooMany.status != 0)
        #expect(tooMany.errorLines.count == 1 && tooMany.errorLines.allSatisfy { $0.contains("3 processes for a global batch of 2") },
                "\(tooMany.errors)")
        let directory = temporaryRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let common = trainArguments(directory, iterations: 5)
        let mismatched = try run([mpirun!, "--oversubscribe", "--allow-run-as-root", "-np", "1", resnetBinary!] + common + ["--lr", "0.1", ":",
                                  "-np", "1", resnetBinary!] + common + ["--lr", "0.05"], timeout: 60)
        #expect(mismatched.status != 0)
        #expect(mismatched.errorLines.count == 1, "\(mismatched.errors)")
        #expect(mismatched.errorLines.first?.contains("rank 1: its run configuration differs from rank 0's (recipe)") == true, "\(mismatched.errors)")
    }

    @Test("An error every rank meets is printed once (rank 0's); an error of one rank alone is still printed; both end the job in bounded time",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"))
    func errorsPrintOnce() throws {
        // Before MPI starts (a bad flag), and after (missing data).
        let badFlag = try run(mpi(2, ["train", "--batch-size", "many"]), timeout: 60)
        #expect(badFlag.status != 0)
        #expect(badFlag.errorLines.count == 1 && badFlag.errorLines[0].contains("many"), "\(badFlag.errors)")
        let missing = try run(mpi(2, trainArguments(temporaryRunDirectory()).map { $0 == sample ? "/nonexistent/cifar" : $0 }), timeout: 60)
        #expect(missing.status != 0)
        #expect(missing.errorLines.count == 1 && missing.errorLines[0].contains("/nonexistent/cifar"), "\(missing.errors)")
        let bucket = try run(mpi(2, trainArguments(temporaryRunDirectory(), extra: ["--mpi-bucket-mb", "0"])), timeout: 60)
        #expect(bucket.status != 0)
        #expect(bucket.errorLines == ["Error: --mpi-bucket-mb must be between 1/1024 (1 KiB) and 1024, got 0.0"], "\(bucket.errors)")
        print("the same error on 2 ranks: \(String(format: "%.1f", badFlag.seconds)) s and \(String(format: "%.1f", missing.seconds)) s, \(missing.errorLines)")
        // Rank 1's host lacks the data: rank 0 waits for it at the configuration check, rank 1
        // says why after its delay, and mpirun ends rank 0.
        let directory = temporaryRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let common = trainArguments(directory, iterations: 5)
        let alone = try run([mpirun!, "--oversubscribe", "--allow-run-as-root", "-np", "1", resnetBinary!] + common + [":",
                             "-np", "1", resnetBinary!] + common.map { $0 == sample ? "/nonexistent/rank1" : $0 }, timeout: 60)
        #expect(alone.status != 0)
        #expect(alone.errorLines.count == 1 && alone.errorLines[0].contains("/nonexistent/rank1"), "\(alone.errors)")
        #expect(alone.seconds < 30, "the job took \(alone.seconds) s")
        print("an error of rank 1 alone: \(String(format: "%.1f", alone.seconds)) s, \(alone.errorLines)")
    }

    @Test("A hostfile naming an unreachable host: mpirun's launcher gives up within ssh's connect timeout, with a non-zero exit",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"),
          .enabled(if: sshClient != nil, "needs an ssh client, which Open MPI's launcher uses to reach another host"))
    func unreachableHost() throws {
        let ssh = try #require(sshClient)
        let hostfile = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-hostfile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: hostfile) }
        // 10.255.255.1: a private address that nothing answers (packets are dropped, not refused).
        try Data("localhost slots=1\n10.255.255.1 slots=1\n".utf8).write(to: hostfile)
        let r = try run([mpirun!, "--allow-run-as-root", "--hostfile", hostfile.path, "-np", "2",
                         "--mca", "plm_rsh_agent", ssh, "--mca", "plm_rsh_args", "-o ConnectTimeout=2 -o BatchMode=yes"]
                        + [resnetBinary!] + trainArguments(temporaryRunDirectory(), iterations: 5), timeout: 60)
        print("unreachable host: exit \(r.status) after \(String(format: "%.1f", r.seconds)) s; \(r.errors.split(separator: "\n").prefix(3))")
        #expect(r.status != 0)
        #expect(r.seconds < 30, "mpirun took \(r.seconds) s")
        #expect(r.errors.contains("10.255.255.1") || r.errors.contains("unable to reliably start"), "\(r.errors)")
    }

    @Test("--sync-bn alone refuses what mpirun would refuse (bf16, micro-batches) with one line")
    func synchronizedBatchNormRefusedAlone() throws {
        guard let resnetBinary else { Issue.record("the resnet binary was not built beside the tests"); return }
        let arguments = trainArguments(temporaryRunDirectory(), iterations: 1).filter { $0 != "--precision" && $0 != "fp32" }
        let bf16 = try run([resnetBinary] + arguments + ["--sync-bn", "--precision", "bf16"], timeout: 60)
        #expect(bf16.status == 1)
        #expect(bf16.errorLines == ["Error: synchronized batch norm needs fp32 training: add --precision fp32"], "\(bf16.errors)")
        let micro = try run([resnetBinary] + arguments + ["--sync-bn", "--micro-batches", "2", "--precision", "fp32"], timeout: 60)
        #expect(micro.status == 1)
        #expect(micro.errorLines == ["Error: synchronized batch norm works on whole shards: use --micro-batches 1"], "\(micro.errors)")
    }

    @Test("A rank that dies or hangs ends the job within a bounded time",
          .enabled(if: distributedReady, "needs mpirun (apt-get install openmpi-bin) and the built resnet binary"))
    func deadOrHungRank() throws {
        for signal in [SIGKILL, SIGSTOP] {
            let directory = temporaryRunDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var signalled: Date?
            let r = try run(mpi(2, trainArguments(directory, iterations: 100_000, extra: ["--mpi-timeout", "5"])), timeout: 90) { launcher in
                // Rank 1 once it trains (its run is under way after a few seconds).
                for _ in 0..<400 {
                    usleep(50_000)
                    if let pid = rankProcess(1, under: launcher), (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8))?.contains("Threads:") == true {
                        usleep(3_000_000)
                        kill(pid, signal)
                        signalled = Date()
                        return
                    }
                }
            }
            let after = try #require(signalled, "rank 1 not found").timeIntervalSince(Date()) * -1
            #expect(r.status != 0)
            print("signal \(signal): the job ended \(String(format: "%.1f", r.seconds)) s after start; stderr: \(r.errorLines)")
            #expect(r.seconds < 60 && after < 30, "the job took \(r.seconds) s")
            if signal == SIGSTOP { #expect(r.errorLines.count == 1 && r.errorLines[0].contains("waited 5 s for the other ranks"), "\(r.errors)") }
        }
    }
}

/// The process of rank `rank` started by the mpirun of process id `launcher`.
func rankProcess(_ rank: Int, under launcher: Int32) -> Int32? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for entry in entries {
        guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { continue }
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        guard fields.count > 2, Int32(fields[1]) == launcher,
              let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
        let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
    }
    return nil
}
