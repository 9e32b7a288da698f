import Foundation
import Testing
@testable import ResNetData

/// The real CIFAR-10, built once from `../shared/data` (beside the repository) into the test
/// cache by `make-cifar10.sh`, which needs python3 with venv and PyPI the first time (~30 s).
enum RealCIFAR {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let sharedData = repository.deletingLastPathComponent().appendingPathComponent("shared/data").path
    static let folder = testCacheRoot + "/cifar10"

    /// The folder holding `cifar-10-batches-bin` and `cifar-10-binary.tar.gz`, or why there is none.
    static let prepared: Result<String, PythonUnavailable> = {
        let manager = FileManager.default
        if manager.fileExists(atPath: folder + "/cifar-10-batches-bin/test_batch.bin")
            && manager.fileExists(atPath: folder + "/cifar-10-binary.tar.gz") {
            return .success(folder)
        }
        let script = sharedData + "/make-cifar10.sh"
        guard manager.fileExists(atPath: script) else { return .failure(PythonUnavailable(reason: "\(script) not found")) }
        guard manager.isExecutableFile(atPath: "/usr/bin/python3") else { return .failure(PythonUnavailable(reason: "no /usr/bin/python3")) }
        // Build beside the cache folder, then rename: an interrupted build never looks complete.
        let staging = folder + ".building-\(getpid())"
        try? manager.removeItem(atPath: staging)
        print("RealCIFAR: building the real CIFAR-10 binary layout into \(folder) (once; about 30 s)")
        let result = try? runProcess("/bin/bash", [script, staging])
        guard result?.status == 0 else {
            try? manager.removeItem(atPath: staging)
            return .failure(PythonUnavailable(reason: "\(script) failed: \(result?.output.suffix(500) ?? "could not run")"))
        }
        try? manager.removeItem(atPath: folder)
        do { try manager.moveItem(atPath: staging, toPath: folder) } catch {
            return .failure(PythonUnavailable(reason: "cannot move \(staging) to \(folder): \(error)"))
        }
        return .success(folder)
    }()

    static var available: Bool {
        switch prepared {
        case .success: return true
        case .failure(let failure):
            print("RealCIFAR: skipping the real CIFAR-10 checks: \(failure.reason)")
            return false
        }
    }
}

@Suite("Real CIFAR-10")
struct RealCIFARTests {
    @Test("The real CIFAR-10 binary layout loads from its folder and its .tar.gz: 5,000 per class train, 1,000 test",
          .enabled(if: RealCIFAR.available, "real CIFAR-10 unavailable (needs ../shared/data/make-cifar10.sh and python3 with venv and PyPI once); skipping"))
    func real() throws {
        // The trait above skips (visibly) when the data is unavailable; reaching here without it is a failure.
        guard case .success(let folder) = RealCIFAR.prepared else {
            Issue.record("real CIFAR-10 unavailable")
            return
        }
        let clock = ContinuousClock()
        var results: [LoadedDataset] = []
        for path in [folder + "/cifar-10-batches-bin", folder + "/cifar-10-binary.tar.gz"] {
            var loaded: LoadedDataset?
            let time = try clock.measure { loaded = try LoadedDataset.load(.cifar10, from: path) }
            print("real CIFAR-10 from \(path): loaded in \(time)")
            let dataset = try #require(loaded)
            #expect(dataset.classNames == cifar10Names)
            let train = try #require(dataset.split("train")), test = try #require(dataset.split("test"))
            #expect(train.count == 50_000 && test.count == 10_000)
            #expect(train.images.count == 50_000 * 3072)
            for (split, expected) in [(train, 5_000), (test, 1_000)] {
                var perClass = [Int](repeating: 0, count: 10)
                for label in split.labels { perClass[Int(label)] += 1 }
                #expect(perClass == [Int](repeating: expected, count: 10))
            }
            // CIFAR-10's training mean is about (0.491, 0.482, 0.447).
            let (mean, _) = train.channelStatistics()
            #expect(zip(mean, [0.491, 0.482, 0.447]).allSatisfy { abs(Double($0) - $1) < 0.01 }, "\(mean)")
            results.append(dataset)
        }
        #expect(results[0].split("train")?.images == results[1].split("train")?.images)
        #expect(results[0].split("test")?.labels == results[1].split("test")?.labels)
    }
}
