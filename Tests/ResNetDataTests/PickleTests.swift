import Foundation
import Testing
@testable import ResNetData

/// Pickle bytes from opcodes written as text: `"\u{80}\u{02}"` etc. (each scalar one byte).
func pickleBytes(_ text: String) -> [UInt8] {
    text.unicodeScalars.map { UInt8($0.value) }
}

@Suite("Pickle reader")
struct PickleTests {
    /// The embedded fixtures, unpacked: variant -> (data_batch, batches.meta).
    static func embedded() throws -> [String: (batch: [UInt8], meta: [UInt8])] {
        let tar = try TarArchive(bytes: GzipReader.decompress(EmbeddedPickles.archive, path: "embedded"), path: "embedded")
        var result: [String: (batch: [UInt8], meta: [UInt8])] = [:]
        for variant in EmbeddedPickles.variants {
            let batch = try #require(tar.entry(named: variant + "/data_batch"))
            let meta = try #require(tar.entry(named: variant + "/batches.meta"))
            result[variant] = (Array(tar.contents(of: batch)), Array(tar.contents(of: meta)))
        }
        return result
    }

    @Test("Embedded pickles of protocols 2-5, numpy 1 and 2 paths and Python 2 read to the same arrays", arguments: EmbeddedPickles.variants)
    func embeddedVariant(variant: String) throws {
        let (batchBytes, metaBytes) = try #require(try Self.embedded()[variant])
        let batch = try Pickle.parse(batchBytes[...], path: variant)
        guard case .array(let data)? = batch["data"] else {
            Issue.record("no data array in \(variant): \(batch)")
            return
        }
        #expect(data.shape == [2, 3072] && data.kind == .unsigned && data.itemSize == 1)
        #expect(data.bytes == EmbeddedPickles.images)
        #expect(batch["labels"] == .list([.int(3), .int(7)]))
        #expect(batch["batch_label"]?.text == "training batch 1 of 5")
        #expect(batch["filenames"] == .list([.bytes(Array("img_0.png".utf8)), .bytes(Array("img_1.png".utf8))]))
        let meta = try Pickle.parse(metaBytes[...], path: variant)
        guard case .list(let names)? = meta["label_names"] else {
            Issue.record("no label_names in \(variant)")
            return
        }
        #expect(names.compactMap(\.text) == cifar10Names)
        #expect(meta["num_vis"] == .int(3072))

        // A whole cifar-10-batches-py folder made of copies of the batch.
        try withTemporaryDirectory { dir in
            let folder = dir + "/cifar-10-batches-py"
            try writeFiles((1...5).map { ("data_batch_\($0)", batchBytes) } + [("test_batch", batchBytes), ("batches.meta", metaBytes)], to: folder)
            let loaded = try CIFAR.load(.cifar10, from: dir)
            #expect(loaded.classNames == cifar10Names)
            #expect(loaded.split("train")?.images == Array([[UInt8]](repeating: EmbeddedPickles.images, count: 5).joined()))
            #expect(loaded.split("train")?.labels == Array([[Int32]](repeating: EmbeddedPickles.labels, count: 5).joined()))
            #expect(loaded.split("test")?.images == EmbeddedPickles.images)
            #expect(loaded.split("test")?.labels == EmbeddedPickles.labels)
        }
    }

    static var pythonSkip: String {
        if case .failure(let failure) = PythonFixtures.full { return "Python fixtures unavailable (\(failure.reason)); skipping" }
        return ""
    }

    static var pythonAvailable: Bool {
        if case .success = PythonFixtures.full { return true }
        print("PickleTests: \(pythonSkip)")
        return false
    }

    @Test("Pickles written by Python with numpy now load to the same arrays as the binary version",
          .enabled(if: pythonAvailable, "needs python3 with numpy (or pip to install it into ~/.cache/swiftresnet-test/venv)"),
          arguments: PythonFixtures.variants)
    func pythonVariant(variant: String) throws {
        // The trait above skips (visibly) when the fixtures are unavailable; reaching here without them is a failure.
        guard case .success(let root) = PythonFixtures.full else {
            Issue.record("Python fixtures unavailable: \(Self.pythonSkip)")
            return
        }
        let binary10 = try CIFAR.load(.cifar10, from: root + "/bin10")
        let python10 = try CIFAR.load(.cifar10, from: root + "/py10-" + variant)
        #expect(python10.classNames == binary10.classNames)
        for split in ["train", "test"] {
            #expect(python10.split(split)?.images == binary10.split(split)?.images, "\(variant) \(split)")
            #expect(python10.split(split)?.labels == binary10.split(split)?.labels, "\(variant) \(split)")
        }
        #expect(binary10.split("train")?.count == 30 && binary10.split("test")?.count == 5)
        for labels in CIFAR.LabelSet.allCases {
            let binary100 = try CIFAR.load(.cifar100, from: root + "/bin100", labels: labels)
            let python100 = try CIFAR.load(.cifar100, from: root + "/py100-" + variant, labels: labels)
            #expect(python100.classNames == binary100.classNames)
            #expect(python100.classNames == (labels == .fine ? fineNames : coarseNames))
            for split in ["train", "test"] {
                #expect(python100.split(split)?.images == binary100.split(split)?.images, "\(variant) \(split)")
                #expect(python100.split(split)?.labels == binary100.split(split)?.labels, "\(variant) \(split) \(labels)")
            }
        }
    }

    @Test("Python scalars, containers and the memo")
    func values() throws {
        // {'a': [1, -2, 300, 70000, 2**40, -2**63, 1.5, True, None, u'é', b'xy'], 'b': (), 'c': <the same list>}
        let text = "\u{80}\u{02}}q\u{00}(X\u{01}\u{00}\u{00}\u{00}a]q\u{01}(K\u{01}J\u{fe}\u{ff}\u{ff}\u{ff}M\u{2c}\u{01}J\u{70}\u{11}\u{01}\u{00}"
            + "\u{8a}\u{06}\u{00}\u{00}\u{00}\u{00}\u{00}\u{01}\u{8a}\u{08}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{80}"
            + "G?\u{f8}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{88}N\u{8c}\u{02}\u{c3}\u{a9}C\u{02}xyeX\u{01}\u{00}\u{00}\u{00}b)"
            + "X\u{01}\u{00}\u{00}\u{00}ch\u{01}u."
        let value = try Pickle.parse(pickleBytes(text)[...], path: "values")
        let list: PickleValue = .list([.int(1), .int(-2), .int(300), .int(70000), .int(1 << 40), .int(Int.min), .float(1.5),
                                       .bool(true), .none, .string("é"), .bytes(Array("xy".utf8))])
        #expect(value["a"] == list)
        #expect(value["b"] == .tuple([]))
        #expect(value["c"] == list)  // memo: the list with the items appended after BINPUT
        #expect(value["missing"] == nil && PickleValue.int(1)["a"] == nil)
    }

    @Test("Big-endian, Fortran-order and integer arrays")
    func arrays() throws {
        // numpy._core.numeric._frombuffer(bytearray(...), dtype('>i2'), (2, 3), 'F') in protocol 5 style.
        let data: [UInt8] = [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0xff, 0xfa]  // big-endian int16: 1 2 3 4 5 -6, column-major
        var bytes = pickleBytes("\u{80}\u{05}\u{8c}\u{13}numpy._core.numeric\u{8c}\u{0b}_frombuffer\u{93}(\u{96}")
        bytes += [12, 0, 0, 0, 0, 0, 0, 0] + data
        bytes += pickleBytes("\u{8c}\u{05}numpy\u{8c}\u{05}dtype\u{93}\u{8c}\u{02}i2\u{89}\u{88}\u{87}R(K\u{03}\u{8c}\u{01}>NNNJ\u{ff}\u{ff}\u{ff}\u{ff}J\u{ff}\u{ff}\u{ff}\u{ff}K\u{00}tb")
        bytes += pickleBytes("K\u{02}K\u{03}\u{86}\u{8c}\u{01}FtR.")
        let value = try Pickle.parse(bytes[...], path: "fortran")
        guard case .array(let array) = value else {
            Issue.record("not an array: \(value)")
            return
        }
        #expect(array.shape == [2, 3] && array.dtype == ">i2")
        // Column-major [[1, 3, 5], [2, 4, -6]] read back in row-major order.
        #expect(array.integers() == [1, 3, 5, 2, 4, -6])
    }

    @Test("Globals outside the allowed list are refused with the byte offset", arguments: [
        ("\u{80}\u{02}cos\nsystem\nq\u{00}X\u{02}\u{00}\u{00}\u{00}lsq\u{01}\u{85}R.", "os.system", 2),
        ("\u{80}\u{04}\u{95}\u{10}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{8c}\u{08}builtins\u{8c}\u{04}eval\u{93}.", "builtins.eval", 27),
        ("\u{80}\u{02}ccopy_reg\n_reconstructor\n.", "copy_reg._reconstructor", 2),
        ("\u{80}\u{02}cnumpy\nload\n.", "numpy.load", 2),
    ])
    func forbiddenGlobals(text: String, name: String, offset: Int) throws {
        expectDescription(of: { try Pickle.parse(pickleBytes(text)[...], path: "evil.pkl") },
                          contains: ["evil.pkl", "'\(name)' is not allowed", "byte offset \(offset)"])
    }

    @Test("Opcodes that build objects, and broken pickles, are refused with the byte offset", arguments: [
        ("\u{80}\u{02}}\u{81}.", "NEWOBJ", "offset 3"),
        ("\u{80}\u{02}(i__main__\nX\n.", "INST", "offset 3"),
        ("\u{80}\u{02}P1\n.", "PERSID", "offset 2"),
        ("\u{80}\u{05}\u{97}.", "NEXT_BUFFER", "offset 2"),
        ("\u{80}\u{04}\u{8f}.", "EMPTY_SET", "offset 2"),
        ("\u{80}\u{06}N.", "protocol 6", "offset 0"),
        ("\u{80}\u{02}.", "stack underflow", "offset 2"),
        ("\u{80}\u{02}N", "truncated", "offset 3"),
        ("\u{80}\u{02}h\u{05}.", "memo entry 5", "offset 2"),
        ("\u{80}\u{02}NNa.", "not a list", "offset 4"),
        ("\u{80}\u{02}}K\u{01}s.", "stack underflow", "offset 5"),
        ("\u{80}\u{02}X\u{02}\u{00}\u{00}\u{00}\u{ff}\u{fe}.", "not valid UTF-8", "offset 9"),
        ("\u{80}\u{02}T\u{ff}\u{ff}\u{ff}\u{ff}.", "negative BINSTRING", "offset 2"),
        ("\u{80}\u{02}X\u{ff}\u{ff}\u{ff}\u{7f}.", "truncated", "offset 8"),
        ("\u{80}\u{04}\u{8e}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}.", "truncated", "offset 12"),
        ("\u{80}\u{02}\u{8a}\u{09}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{00}\u{01}.", "larger than 64 bits", "offset 2"),
        ("\u{80}\u{02}cnumpy\ndtype\nU\u{02}O8\u{85}R.", "numpy dtype 'O8'", "offset 20"),
        ("\u{80}\u{02}]q\u{00}h\u{00}a.", "nested deeper", "offset 8"),
    ])
    func refused(text: String, message: String, offset: String) throws {
        expectDescription(of: { try Pickle.parse(pickleBytes(text)[...], path: "bad.pkl") }, contains: ["bad.pkl", message, offset])
    }

    @Test("Shared references cannot multiply into a huge tree")
    func sharedReferenceBomb() throws {
        // l0 = [], l1 = [l0, l0], l2 = [l1, l1], ... l40: 2^40 leaves if expanded.
        var bytes = pickleBytes("\u{80}\u{02}]q\u{00}")
        for level in UInt8(1)...40 {
            bytes += pickleBytes("](h") + [level - 1] + pickleBytes("h") + [level - 1] + pickleBytes("eq") + [level]
        }
        bytes += pickleBytes(".")
        let start = ContinuousClock.now
        expectDescription(of: { try Pickle.parse(bytes[...], path: "bomb.pkl") }, contains: ["bomb.pkl", "shared references"])
        #expect(ContinuousClock.now - start < .seconds(1))
    }
}
