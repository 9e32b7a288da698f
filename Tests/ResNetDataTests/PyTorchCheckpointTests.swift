import Foundation
import Testing
@testable import ResNetData

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The checkpoints `benchmarks/make-pytorch-fixtures.py` wrote with torch.save (torch 2.13.0+cpu),
/// beside `expected.json`: each state_dict's names, shapes, dtypes and values (float32 bit
/// patterns after torch's own `.float()`).
enum PyTorchFixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pytorch").path

    static func path(_ name: String) -> String { folder + "/" + name }

    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path(name)))) }

    struct Tensor: Decodable {
        let name: String
        let shape: [Int]
        let dtype: String
        let bits: [String]?
        let ints: [Int]?
    }

    struct Expected: Decodable {
        let torch: String
        let fixtures: [String: [Tensor]]
    }

    static let expected: Expected? = {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path("expected.json"))) else { return nil }
        return try? JSONDecoder().decode(Expected.self, from: data)
    }()

    static let valid = ["float32.pth", "float16.pth", "bfloat16.pth", "views.pth", "legacy.pth", "legacy-views.pth", "deflated.pth"]
}

@Suite("PyTorchCheckpoint")
struct PyTorchCheckpointTests {
    @Test("Each torch.save fixture decodes to exactly PyTorch's names, shapes, dtypes and values", arguments: PyTorchFixtures.valid)
    func fixtureMatchesPyTorch(file: String) throws {
        let expected = try #require(PyTorchFixtures.expected?.fixtures[file])
        let tensors = try PyTorchCheckpoint.read(path: PyTorchFixtures.path(file))
        #expect(tensors.map(\.name) == expected.map(\.name))
        for (tensor, want) in zip(tensors, expected) {
            #expect(tensor.shape == want.shape, "\(tensor.name)")
            #expect(tensor.dtype.rawValue == want.dtype, "\(tensor.name)")
            if let bits = want.bits {
                #expect(tensor.isFloatingPoint)
                #expect(tensor.values.map { String(format: "%08x", $0.bitPattern) } == bits, "\(file) \(tensor.name)")
            } else {
                #expect(!tensor.isFloatingPoint)
                #expect(tensor.values == (want.ints ?? []).map { Float($0) }, "\(file) \(tensor.name)")
            }
        }
    }

    @Test("The zip and legacy formats and deflated members give the same tensors")
    func formatsAgree() throws {
        let reference = try PyTorchCheckpoint.read(path: PyTorchFixtures.path("float32.pth"))
        #expect(try PyTorchCheckpoint.read(path: PyTorchFixtures.path("legacy.pth")) == reference)
        #expect(try PyTorchCheckpoint.read(path: PyTorchFixtures.path("deflated.pth")) == reference)
        #expect(try PyTorchCheckpoint.read(path: PyTorchFixtures.path("legacy-views.pth"))
                == PyTorchCheckpoint.read(path: PyTorchFixtures.path("views.pth")))
        #expect(reference.map(\.name) == ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                          "bn.num_batches_tracked", "fc.weight", "fc.bias"])
        #expect(reference.first { $0.name == "bn.num_batches_tracked" }?.dtype == .int64)
    }

    @Test("A pickle calling os.system is refused naming the global, and runs nothing",
          arguments: ["malicious.pth", "malicious-legacy.pth"])
    func maliciousPickleRunsNothing(file: String) throws {
        let marker = "/tmp/pwned-by-pth"
        unlink(marker)
        let path = PyTorchFixtures.path(file)
        expectDescription(of: { try PyTorchCheckpoint.read(path: path) }, contains: [path, "global 'os.system' is not allowed"])
        #expect(access(marker, F_OK) != 0, "\(marker) exists")
    }

    @Test("Globals and opcodes outside the allow-list are refused in the PyTorch dialect too", arguments: [
        ("\u{80}\u{04}\u{95}\u{10}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{8c}\u{08}builtins\u{8c}\u{04}eval\u{93}.", "'builtins.eval' is not allowed"),
        ("\u{80}\u{02}cposix\nsystem\n.", "'posix.system' is not allowed"),
        ("\u{80}\u{04}\u{8c}\u{04}o\ns\n\u{8c}\u{06}system\u{93}.", "'o?s?.system' is not allowed"),
        ("\u{80}\u{02}ctorch\nUntypedStorage\n.", "'torch.UntypedStorage' is not allowed"),
        ("\u{80}\u{02}ctorch._utils\n_rebuild_tensor\n.", "'torch._utils._rebuild_tensor' is not allowed"),
        ("\u{80}\u{02}}\u{81}.", "NEWOBJ"),
        ("\u{80}\u{02}X\u{01}\u{00}\u{00}\u{00}xQ.", "persistent id str"),
        ("\u{80}\u{02}ctorch\nFloatStorage\n)R.", "calling 'torch.FloatStorage'"),
    ])
    func pytorchDialectRefuses(text: String, message: String) {
        let bytes = Array(text.unicodeScalars.map { UInt8($0.value) })
        expectDescription(of: { try Pickle.parse(bytes[...], path: "evil.pkl", dialect: .pytorch) }, contains: ["evil.pkl", message])
    }

    @Test("The numpy dialect still refuses PyTorch's globals and persistent ids")
    func numpyDialectUnchanged() {
        for (text, message) in [("\u{80}\u{02}ccollections\nOrderedDict\n.", "'collections.OrderedDict' is not allowed"),
                                ("\u{80}\u{02}X\u{01}\u{00}\u{00}\u{00}xQ.", "BINPERSID")] {
            let bytes = Array(text.unicodeScalars.map { UInt8($0.value) })
            expectDescription(of: { try Pickle.parse(bytes[...], path: "cifar.pkl") }, contains: ["cifar.pkl", message])
        }
    }

    @Test("A pickled module, a big-endian archive and other files are refused with one line", arguments: [
        ("module.pth", "'__main__.Tiny' is not allowed"),
        ("bigendian.pth", "big-endian"),
        ("expected.json", "not a PyTorch checkpoint"),
    ])
    func refusedFiles(file: String, message: String) {
        let path = PyTorchFixtures.path(file)
        expectDescription(of: { try PyTorchCheckpoint.read(path: path) }, contains: [path, message])
    }

    @Test("A tensor view reaching past its storage is refused")
    func viewOutsideStorage() throws {
        // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 4), 2, (3,), (1,), False, OrderedDict())
        let text = "\u{80}\u{02}ctorch._utils\n_rebuild_tensor_v2\n((X\u{07}\u{00}\u{00}\u{00}storagectorch\nFloatStorage\nX\u{01}\u{00}\u{00}\u{00}0X\u{03}\u{00}\u{00}\u{00}cpuK\u{04}tQK\u{02}K\u{03}\u{85}K\u{01}\u{85}\u{89}}tR."
        let bytes = Array(text.unicodeScalars.map { UInt8($0.value) })
        expectDescription(of: { try Pickle.parse(bytes[...], path: "view.pkl", dialect: .pytorch) },
                          contains: ["view.pkl", "reaches element 4 of storage '0' of 4"])
        var inside = bytes
        inside[inside.firstIndex(of: 0x85)! - 1] = 2  // size (2,): elements 2 and 3
        guard case .torchTensor(let tensor) = try Pickle.parse(inside[...], path: "view.pkl", dialect: .pytorch) else {
            Issue.record("not a tensor")
            return
        }
        #expect(tensor.offset == 2 && tensor.shape == [2] && tensor.strides == [1] && tensor.storage.count == 4)
    }

    @Test("Half precision widens exactly, for all 65,536 bit patterns")
    func halfConversion() {
        #if !(os(macOS) && arch(x86_64))
        for bits in 0...UInt16.max {
            let mine = PyTorchCheckpoint.floatFromHalf(bits), swift = Float(Float16(bitPattern: bits))
            #expect(mine.bitPattern == swift.bitPattern || (mine.isNaN && swift.isNaN), "\(bits)")
        }
        #endif
        #expect(PyTorchCheckpoint.floatFromHalf(0x3c00) == 1 && PyTorchCheckpoint.floatFromHalf(0xc000) == -2)
        #expect(PyTorchCheckpoint.floatFromHalf(0x0001) == 0x1p-24)
    }

    // MARK: Damaged files

    /// Reads `bytes`, recording an issue for any error that is not a one-line ``DataError``.
    static func readOnlyThrowsDataError(_ bytes: [UInt8], _ label: String) {
        do {
            _ = try PyTorchCheckpoint.read(bytes: bytes, path: label)
        } catch let error as DataError {
            #expect(!error.description.contains("\n"), "\(label): \(error)")
        } catch {
            Issue.record("\(label): \(type(of: error)) \(error)")
        }
    }

    @Test("Truncated and byte-flipped checkpoints only ever throw typed errors, fast",
          arguments: ["float32.pth", "legacy.pth", "views.pth", "deflated.pth"])
    func mutationsThrowTypedErrors(file: String) throws {
        let original = try PyTorchFixtures.bytes(file)
        var rng = SplitMix64(seed: 0x15_0000 + UInt64(file.utf8.count))
        let start = ContinuousClock.now
        for round in 0..<100 {
            var bytes = original
            switch round % 4 {
            case 0:
                bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &rng)...)
            case 1, 2:
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
            default:
                // Aim at the tail: central directory, end records, legacy storages.
                let at = Int.random(in: max(0, bytes.count - 400)..<bytes.count, using: &rng)
                bytes[at] = UInt8.random(in: 0...255, using: &rng)
            }
            Self.readOnlyThrowsDataError(bytes, "\(file) round \(round)")
        }
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test("Byte-flipped data.pkl pickles only ever throw typed errors")
    func mutatedPicklesThrowTypedErrors() throws {
        let archive = try ZipArchive(bytes: PyTorchFixtures.bytes("views.pth"), path: "views.pth", maximumEntryBytes: 1 << 20)
        let pickle = Array(try archive.data(of: try #require(archive.entries.first { $0.name.hasSuffix("/data.pkl") })))
        var rng = SplitMix64(seed: 15)
        for round in 0..<300 {
            var bytes = pickle
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if round % 3 == 0 { bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &rng)...) }
            do {
                _ = try Pickle.parse(bytes[...], path: "data.pkl", dialect: .pytorch)
            } catch is DataError {
            } catch {
                Issue.record("round \(round): \(type(of: error)) \(error)")
            }
        }
    }

    /// The offset of the central directory entry of the member whose name ends with `suffix`.
    static func centralEntry(_ bytes: [UInt8], endingWith suffix: String) -> Int? {
        var at = 0
        while at + 46 <= bytes.count {
            if bytes[at..<(at + 4)].elementsEqual([0x50, 0x4b, 0x01, 0x02]) {
                let length = Int(bytes[at + 28]) | Int(bytes[at + 29]) << 8
                if at + 46 + length <= bytes.count, String(decoding: bytes[(at + 46)..<(at + 46 + length)], as: UTF8.self).hasSuffix(suffix) {
                    return at
                }
            }
            at += 1
        }
        return nil
    }

    static func put32(_ value: UInt32, into bytes: inout [UInt8], at: Int) {
        for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    @Test("A zip entry claiming a huge size is refused without allocating it")
    func hugeEntryRefused() throws {
        // A stored entry claiming 4 GiB - 16 bytes: refused from the directory alone.
        var stored = try PyTorchFixtures.bytes("float32.pth")
        let entry = try #require(Self.centralEntry(stored, endingWith: "/data.pkl"))
        Self.put32(0xFFFF_FFF0, into: &stored, at: entry + 20)
        Self.put32(0xFFFF_FFF0, into: &stored, at: entry + 24)
        let start = ContinuousClock.now
        let error = #expect(throws: DataError.self) { try PyTorchCheckpoint.read(bytes: stored, path: "huge.pth") }
        guard case .tooLarge(_, let what, _, _)? = error else {
            Issue.record("not tooLarge: \(String(describing: error))")
            return
        }
        #expect(what.contains("data.pkl") && what.contains("4294967280"))

        // A deflated entry claiming 1 GiB (under the limit) inflates in small steps and stops
        // at the end of its stream instead of allocating the claim.
        var deflated = try PyTorchFixtures.bytes("deflated.pth")
        let member = try #require(Self.centralEntry(deflated, endingWith: "/data.pkl"))
        Self.put32(1 << 30, into: &deflated, at: member + 24)
        let archive = try ZipArchive(bytes: deflated, path: "bomb.pth", maximumEntryBytes: 2 << 30)
        let pickle = try #require(archive.entries.first { $0.name.hasSuffix("/data.pkl") })
        #expect(pickle.size == 1 << 30)
        expectDescription(of: { try archive.data(of: pickle) }, contains: ["bomb.pth", "data.pkl", "not its declared 1073741824"])
        expectDescription(of: { try PyTorchCheckpoint.read(bytes: deflated, path: "bomb.pth") }, contains: ["bomb.pth", "the pickle exceeds"])

        // A storage member claiming more than the archive holds.
        var long = try PyTorchFixtures.bytes("float32.pth")
        let storage = try #require(Self.centralEntry(long, endingWith: "/data/0"))
        Self.put32(0x7FFF_0000, into: &long, at: storage + 20)
        Self.put32(0x7FFF_0000, into: &long, at: storage + 24)
        expectDescription(of: { try PyTorchCheckpoint.read(bytes: long, path: "long.pth") }, contains: ["long.pth", "truncated"])
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("Limits on tensors and elements are checked before decoding")
    func limits() throws {
        var limits = PyTorchCheckpoint.Limits()
        limits.totalElements = 100
        let path = PyTorchFixtures.path("float32.pth")
        expectDescription(of: { try PyTorchCheckpoint.read(path: path, limits: limits) }, contains: [path, "elements"])
        limits = PyTorchCheckpoint.Limits()
        limits.tensors = 3
        expectDescription(of: { try PyTorchCheckpoint.read(path: path, limits: limits) }, contains: [path, "number of tensors (8)"])
        limits = PyTorchCheckpoint.Limits()
        limits.fileBytes = 1000
        expectDescription(of: { try PyTorchCheckpoint.read(path: path, limits: limits) }, contains: [path, "exceeds the limit"])
    }
}
