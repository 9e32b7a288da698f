import Foundation
import Testing
@testable import ResNetData

@Suite("Fuzzing the CIFAR, pickle and tar readers")
struct FormatFuzzTests {
    /// Runs `body`, which must either return or throw a one-line ``DataError`` naming `path`.
    @discardableResult
    static func check<T>(_ path: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch let error as DataError {
            #expect(error.description.contains(path), "\(error)")
            #expect(!error.description.contains("\n"))
        } catch {
            Issue.record("\(path): unexpected error type \(type(of: error)): \(error)")
        }
        return nil
    }

    /// A random edit of `data`: bit flips, byte values, cuts, insertions, or a 4- or 8-byte field
    /// overwritten with an extreme length.
    static func mutate(_ data: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
        var data = data
        guard !data.isEmpty else { return randomBytes(Int.random(in: 0...16, using: &rng), using: &rng) }
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let bit = Int.random(in: 0..<(data.count * 8), using: &rng)
                data[bit / 8] ^= 1 << UInt8(bit % 8)
            }
        case 1:
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                data[Int.random(in: 0..<data.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case 2: data = Array(data[..<Int.random(in: 0..<data.count, using: &rng)])
        case 3: data.insert(contentsOf: randomBytes(Int.random(in: 1...8, using: &rng), using: &rng), at: Int.random(in: 0...data.count, using: &rng))
        case 4:
            let width = Bool.random(using: &rng) ? 4 : 8
            let at = Int.random(in: 0..<data.count, using: &rng)
            let value: UInt64 = [0xFFFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, UInt64.random(in: 0...100_000, using: &rng)][Int.random(in: 0..<5, using: &rng)]
            for i in 0..<width where at + i < data.count { data[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        default:
            let at = Int.random(in: 0..<data.count, using: &rng)
            data.removeSubrange(at..<min(data.count, at + Int.random(in: 1...64, using: &rng)))
        }
        return data
    }

    @Test("Random and mutated CIFAR binary batches load consistently or throw DataError")
    func cifarBinary() throws {
        var rng = SplitMix64(seed: 0xC1FA)
        let start = ContinuousClock.now
        var cases = 0, loaded = 0
        for variant in CIFAR.Variant.allCases {
            let valid = SyntheticCIFAR(variant, count: 3, using: &rng).records
            for i in 0..<1500 {
                let data = i < 300 ? randomBlock(Int.random(in: 0...(4 * variant.recordSize), using: &rng), using: &rng)
                    : Self.mutate(valid, using: &rng)
                let path = "\(variant)-\(i).bin"
                cases += 1
                var images: [UInt8] = [], labels: [Int32] = []
                if Self.check(path, {
                    try CIFAR.appendBinary(data[...], variant: variant, labels: .fine, path: path, images: &images, labelValues: &labels)
                }) != nil {
                    loaded += 1
                    #expect(data.count == labels.count * variant.recordSize)
                    #expect(images.count == labels.count * CIFAR.imageBytes)
                    #expect(labels.allSatisfy { (0..<(variant == .cifar10 ? 10 : 100)).contains($0) })
                }
            }
        }
        // A few whole folders through the loader (writing files is slow on some disks: one file per case).
        let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files, to: dir)
            for i in 0..<60 {
                let target = Int.random(in: 0..<layout.files.count, using: &rng)
                try write(Self.mutate(layout.files[target].1, using: &rng), to: dir, name: layout.files[target].0)
                cases += 1
                if let result = Self.check(dir, { try CIFAR.load(.cifar10, from: dir) }) {
                    loaded += 1
                    #expect(result.split("train")!.count + result.split("test")!.count > 0, "\(i)")
                }
                try write(layout.files[target].1, to: dir, name: layout.files[target].0)
            }
        }
        let elapsed = ContinuousClock.now - start
        print("CIFAR binary fuzz: \(cases) inputs, \(loaded) loaded, \(cases - loaded) rejected, in \(elapsed)")
        #expect(cases >= 3000)  // 1,500 per variant + 60 folders
        #expect(elapsed < .seconds(10))
    }

    @Test("Random and mutated pickles parse or throw DataError, without crashing, hanging or huge allocations")
    func pickles() throws {
        var rng = SplitMix64(seed: 0x9C1E)
        let embedded = try PickleTests.embedded()
        var seeds = EmbeddedPickles.variants.flatMap { [embedded[$0]!.batch, embedded[$0]!.meta] }
        if case .success(let root) = PythonFixtures.full {  // CIFAR-100 and array variants too, when Python made them
            for variant in ["p2", "p4-arrays", "p5"] {
                seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: root + "/py100-\(variant)/cifar-100-python/test"))))
            }
        }
        let start = ContinuousClock.now
        var cases = 0, parsed = 0, batches = 0
        for i in 0..<4000 {
            var data: [UInt8]
            if i < 400 {
                data = [0x80, UInt8.random(in: 2...5, using: &rng)] + randomBytes(Int.random(in: 0...64, using: &rng), using: &rng)
            } else {
                data = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...3, using: &rng) { data = Self.mutate(data, using: &rng) }
            }
            let path = "fuzz-\(i).pkl"
            cases += 1
            guard let value = Self.check(path, { try Pickle.parse(data[...], path: path) }) else { continue }
            parsed += 1
            for variant in CIFAR.Variant.allCases {
                var images: [UInt8] = [], labels: [Int32] = []
                if Self.check(path, {
                    try CIFAR.appendPython(value, variant: variant, labels: .coarse, path: path, images: &images, labelValues: &labels)
                }) != nil {
                    batches += 1
                    #expect(images.count == labels.count * CIFAR.imageBytes)
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        print("pickle fuzz: \(cases) inputs, \(parsed) parsed (\(batches) still CIFAR batches), \(cases - parsed) rejected, in \(elapsed)")
        #expect(parsed > 100)  // many edits (in pixel data, say) leave a valid pickle
        #expect(elapsed < .seconds(10))
    }

    @Test("Random and mutated tar archives parse or throw DataError")
    func tars() throws {
        var rng = SplitMix64(seed: 0x7A2)
        let long = String(repeating: "x", count: 120) + "/data.bin"
        let seeds = [
            makeTar([("a/one.bin", randomBytes(700, using: &rng)), (long, randomBytes(10, using: &rng))], directories: ["a"]),
            makeTar([(long, randomBytes(513, using: &rng)), ("b", [])], posixPrefix: true),
        ]
        let start = ContinuousClock.now
        var cases = 0, parsed = 0
        for i in 0..<3000 {
            var data = seeds[i % 2]
            for _ in 0..<Int.random(in: 1...2, using: &rng) { data = Self.mutate(data, using: &rng) }
            if i % 10 == 0 { data = randomBlock(Int.random(in: 0...2048, using: &rng), using: &rng) }
            cases += 1
            if let archive = Self.check("t\(i).tar", { try TarArchive(bytes: data, path: "t\(i).tar") }) {
                parsed += 1
                for entry in archive.entries {
                    #expect(entry.range.lowerBound >= 0 && entry.range.upperBound <= data.count)
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        print("tar fuzz: \(cases) inputs, \(parsed) parsed, \(cases - parsed) rejected, in \(elapsed)")
        #expect(elapsed < .seconds(10))
    }

    @Test("Tar headers and pax records declaring absurd sizes are refused or stay within the archive")
    func absurdTarSizes() throws {
        var rng = SplitMix64(seed: 0x7A25)
        let seed = makeTar([("a/one.bin", randomBytes(700, using: &rng)), ("b.bin", randomBytes(10, using: &rng))], directories: ["a"])
        /// Rewrites the header at `offset`: its size field, then its checksum, so that only the size is wrong.
        func withSize(_ field: [UInt8], at offset: Int, in tar: [UInt8]) -> [UInt8] {
            var tar = tar
            tar.replaceSubrange((offset + 124)..<(offset + 136), with: field)
            tar.replaceSubrange((offset + 148)..<(offset + 156), with: [UInt8](repeating: 32, count: 8))
            let sum = tar[offset..<(offset + 512)].reduce(0) { $0 + Int($1) }
            tar.replaceSubrange((offset + 148)..<(offset + 156), with: Array(String(sum, radix: 8).leftPadded(to: 6).utf8) + [0, 32])
            return tar
        }
        let fields: [[UInt8]] = [
            Array("77777777777".utf8) + [0],                           // 8 GiB - 1, octal
            [0x80] + [UInt8](repeating: 0xFF, count: 11),             // base-256, beyond Int
            [0x80, 0, 0, 0] + [0x7F] + [UInt8](repeating: 0xFF, count: 7),  // base-256, Int.max
            [0xFF] + [UInt8](repeating: 0xFF, count: 11),             // base-256, negative
            Array("00000001000".utf8) + [0],                          // 512: more than the data there
        ]
        var cases = 0
        for offset in [0, 512, 1536 + 512] where offset + 512 <= seed.count {
            for field in fields {
                cases += 1
                let tar = withSize(field, at: offset, in: seed)
                if let archive = Self.check("size-\(cases).tar", { try TarArchive(bytes: tar, path: "size-\(cases).tar") }) {
                    for entry in archive.entries { #expect(entry.range.upperBound <= tar.count) }
                }
            }
        }
        // pax `size` records: huge, beyond Int, negative, not a number; "3" (the true size) is the control.
        for value in ["3", "99999999999999999999", "9223372036854775807", "9223372036854775800", "-1", "1e9", "0x10"] {
            let record = " size=\(value)\n"
            let text = "\(record.utf8.count + String(record.utf8.count + 2).count)\(record)"
            let pax = makeTar([("PaxHeaders/b.bin", Array(text.utf8)), ("b.bin", [1, 2, 3])])
            var tar = pax
            tar[156] = UInt8(ascii: "x")  // the first member is the pax header of the second
            tar = withSize(Array(String(text.utf8.count, radix: 8).leftPadded(to: 11).utf8) + [0], at: 0, in: tar)
            cases += 1
            let archive = Self.check("pax-\(value).tar", { try TarArchive(bytes: tar, path: "pax-\(value).tar") })
            if value == "3" {
                #expect(archive?.entries.map(\.name) == ["b.bin"] && archive?.entries.first?.range.count == 3)
            } else {
                // Each of these sizes is malformed or larger than the archive: none may parse.
                #expect(archive == nil, "\(value)")
            }
        }
        #expect(cases >= 20)
    }

    @Test("Pickled arrays with absurd shapes are refused before any product can overflow")
    func absurdPickleShapes() throws {
        var rng = SplitMix64(seed: 0x5A9E)
        let extremes = [0, 1, 3, 32, 3072, 1 << 31, 1 << 40, 1 << 62, Int.max]
        var parsed = 0
        for i in 0..<500 {
            let shape = (0..<Int.random(in: 1...4, using: &rng)).map { _ in extremes[Int.random(in: 0..<extremes.count, using: &rng)] }
            let path = "shape-\(i).pkl"
            guard let value = Self.check(path, { try Pickle.parse(InputBoundsTests.frombufferPickle(shape: shape)[...], path: path) }) else {
                continue
            }
            parsed += 1
            guard case .array(let array)? = value["data"] else {
                Issue.record("\(path): no array")
                continue
            }
            #expect(array.count == 0 && DataLimits.product(array.shape) == 0)
            for start in 0..<array.shape.count { #expect(DataLimits.product(Array(array.shape[start...])) != nil, "\(shape)") }
            var images: [UInt8] = [], labels: [Int32] = []
            Self.check(path) { try CIFAR.appendPython(value, variant: .cifar10, labels: .fine, path: path, images: &images, labelValues: &labels) }
        }
        #expect(parsed > 10)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
