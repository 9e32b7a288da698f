import Foundation
import Testing
@testable import ResNetData

/// Synthetic CIFAR data: records, images and labels that agree.
struct SyntheticCIFAR {
    var images: [UInt8]
    var labels: [Int32]          // the labels the loader should return
    var records: [UInt8]         // the binary file

    /// `count` random records; CIFAR-100 records carry coarse then fine labels.
    init(_ variant: CIFAR.Variant, count: Int, labels kind: CIFAR.LabelSet = .fine, using rng: inout SplitMix64) {
        images = []
        labels = []
        records = []
        for _ in 0..<count {
            let pixels = randomBlock(CIFAR.imageBytes, using: &rng)
            let coarse = UInt8.random(in: 0..<20, using: &rng), fine = UInt8.random(in: 0..<100, using: &rng)
            let label10 = UInt8.random(in: 0..<10, using: &rng)
            switch variant {
            case .cifar10:
                records.append(label10)
                labels.append(Int32(label10))
            case .cifar100:
                records += [coarse, fine]
                labels.append(Int32(kind == .fine ? fine : coarse))
            }
            records += pixels
            images += pixels
        }
    }
}

let cifar10Names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
let fineNames = (0..<100).map { "fine\($0 < 10 ? "0" : "")\($0)" }
let coarseNames = (0..<20).map { "coarse\($0 < 10 ? "0" : "")\($0)" }

/// The files of a binary CIFAR distribution: name -> contents, and the expected splits.
func binaryLayout(_ variant: CIFAR.Variant, trainPerFile: Int, test: Int, labels: CIFAR.LabelSet = .fine,
                  seed: UInt64 = 1) -> (files: [(String, [UInt8])], train: SyntheticCIFAR, test: SyntheticCIFAR) {
    var rng = SplitMix64(seed: seed)
    var files: [(String, [UInt8])] = []
    var train = SyntheticCIFAR(variant, count: 0, using: &rng)
    for name in variant.files(.binary, split: "train") {
        let part = SyntheticCIFAR(variant, count: trainPerFile, labels: labels, using: &rng)
        files.append((name, part.records))
        train.images += part.images
        train.labels += part.labels
        train.records += part.records
    }
    let testSet = SyntheticCIFAR(variant, count: test, labels: labels, using: &rng)
    files.append((variant.files(.binary, split: "test")[0], testSet.records))
    switch variant {
    case .cifar10:
        files.append(("batches.meta.txt", Array((cifar10Names.joined(separator: "\n") + "\n\n").utf8)))
    case .cifar100:
        files.append(("fine_label_names.txt", Array(fineNames.joined(separator: "\n").utf8)))
        files.append(("coarse_label_names.txt", Array(coarseNames.joined(separator: "\n").utf8)))
    }
    return (files, train, testSet)
}

/// Writes `files` into `directory` (created), returning it.
@discardableResult
func writeFiles(_ files: [(String, [UInt8])], to directory: String) throws -> String {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (name, bytes) in files { try write(bytes, to: directory, name: name) }
    return directory
}

/// A tar archive in memory, written the way GNU tar does (ustar headers; `././@LongLink`
/// entries for names over 100 bytes), or POSIX ustar with the `prefix` field.
func makeTar(_ entries: [(name: String, bytes: [UInt8])], directories: [String] = [], posixPrefix: Bool = false) -> [UInt8] {
    func header(_ name: String, size: Int, type: UInt8) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in text.utf8.prefix(width).enumerated() { block[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: width - 1 - digits.count) + digits, at: offset, width: width - 1)
        }
        var stored = name
        if posixPrefix, name.utf8.count > 100, let slash = name.lastIndex(of: "/") {
            put(String(name[..<slash]), at: 345, width: 155)
            stored = String(name[name.index(after: slash)...])
        }
        put(stored, at: 0, width: 100)
        octal(0o644, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(1_700_000_000, at: 136, width: 12)
        block[156] = type
        put(posixPrefix ? "ustar\0" : "ustar ", at: 257, width: 6)
        put(posixPrefix ? "00" : " \0", at: 263, width: 2)
        for i in 148..<156 { block[i] = 32 }
        let sum = block.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - digits.count) + digits, at: 148, width: 6)
        block[154] = 0
        block[155] = 32
        return block
    }
    func padded(_ bytes: [UInt8]) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
    }
    var archive: [UInt8] = []
    for directory in directories { archive += header(directory + "/", size: 0, type: UInt8(ascii: "5")) }
    for (name, bytes) in entries {
        if !posixPrefix, name.utf8.count > 100 {
            let longName = Array(name.utf8) + [0]
            archive += header("././@LongLink", size: longName.count, type: UInt8(ascii: "L")) + padded(longName)
        }
        archive += header(name, size: bytes.count, type: UInt8(ascii: "0")) + padded(bytes)
    }
    return archive + [UInt8](repeating: 0, count: 1024)
}

/// Checks that a loaded split holds exactly the synthetic data.
func expectSplit(_ data: ImageDataset?, equals expected: SyntheticCIFAR, classNames: [String],
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard let data else {
        Issue.record("split missing", sourceLocation: sourceLocation)
        return
    }
    #expect(data.channels == 3 && data.height == 32 && data.width == 32, sourceLocation: sourceLocation)
    #expect(data.count == expected.labels.count, sourceLocation: sourceLocation)
    #expect(data.labels == expected.labels, sourceLocation: sourceLocation)
    #expect(data.images == expected.images, sourceLocation: sourceLocation)
    #expect(data.classNames == classNames, sourceLocation: sourceLocation)
}

/// Runs `executable` with `arguments`; returns the exit status and the combined output.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// A per-user cache folder for test artefacts: `$XDG_CACHE_HOME/swiftresnet-test` or `~/.cache/swiftresnet-test`.
let testCacheRoot: String = {
    let environment = ProcessInfo.processInfo.environment
    if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/swiftresnet-test" }
    return NSHomeDirectory() + "/.cache/swiftresnet-test"
}()

/// A Python 3 interpreter that can import numpy, or why there is none.
///
/// Tries `$PYTHON`, `/usr/bin/python3`, `python3` on the `PATH`, then a virtual environment in
/// the test cache; if none has numpy and pip works, creates that environment (outside the
/// repository) with numpy from PyPI, once.
let numpyPython: Result<String, PythonUnavailable> = {
    let environment = ProcessInfo.processInfo.environment
    let venv = testCacheRoot + "/venv"
    var candidates = [environment["PYTHON"], "/usr/bin/python3"].compactMap { $0 }
    for directory in (environment["PATH"] ?? "").split(separator: ":") where !directory.contains(".build") {
        candidates.append(directory + "/python3")
    }
    candidates.append(venv + "/bin/python3")
    func hasNumpy(_ python: String) -> Bool {
        FileManager.default.isExecutableFile(atPath: python)
            && (try? runProcess(python, ["-c", "import numpy"]).status) == 0
    }
    if let found = candidates.first(where: hasNumpy) { return .success(found) }
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
        return .failure(PythonUnavailable(reason: "no python3 found"))
    }
    try? FileManager.default.createDirectory(atPath: testCacheRoot, withIntermediateDirectories: true)
    let made = (try? runProcess("/usr/bin/python3", ["-m", "venv", venv]))?.status == 0
        && (try? runProcess(venv + "/bin/pip", ["install", "-q", "--disable-pip-version-check", "numpy"]))?.status == 0
    return made && hasNumpy(venv + "/bin/python3") ? .success(venv + "/bin/python3")
        : .failure(PythonUnavailable(reason: "no python3 with numpy, and `python3 -m venv` + `pip install numpy` into \(venv) failed"))
}()

struct PythonUnavailable: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// `count` random bytes, eight per draw (fast enough for megabytes in a debug build).
func randomBlock(_ count: Int, using rng: inout SplitMix64) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var word = rng.next()
        for _ in 0..<min(8, count - i) {
            bytes[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return bytes
}
