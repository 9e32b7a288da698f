import Foundation
import Testing
@testable import ResNetData

@Suite("CIFAR binary version")
struct CIFARBinaryTests {
    @Test("CIFAR-10 loads from its folder, the parent folder, a .tar.gz and a folder holding the .tar.gz")
    func cifar10Layouts() throws {
        let layout = binaryLayout(.cifar10, trainPerFile: 4, test: 3)
        try withTemporaryDirectory { dir in
            let folder = try writeFiles(layout.files, to: dir + "/extracted/cifar-10-batches-bin")
            let tar = makeTar(layout.files.map { ("cifar-10-batches-bin/" + $0.0, $0.1) }, directories: ["cifar-10-batches-bin"])
            try FileManager.default.createDirectory(atPath: dir + "/archive", withIntermediateDirectories: true)
            let archive = try write(gzip(tar), to: dir + "/archive", name: "cifar-10-binary.tar.gz")
            let plainTar = try write(tar, to: dir, name: "plain.tar")
            for path in [folder, folder + "/", dir + "/extracted", archive, dir + "/archive", plainTar] {
                let loaded = try CIFAR.load(.cifar10, from: path)
                #expect(loaded.name == "cifar10")
                #expect(loaded.classNames == cifar10Names, "\(path)")
                #expect(loaded.splits.map(\.name) == ["train", "test"])
                expectSplit(loaded.split("train"), equals: layout.train, classNames: cifar10Names)
                expectSplit(loaded.split("test"), equals: layout.test, classNames: cifar10Names)
                #expect(loaded.split("train")?.count == 20)
            }
        }
    }

    @Test("CIFAR-100 gives fine labels by default and coarse ones on request", arguments: CIFAR.LabelSet.allCases)
    func cifar100(labels: CIFAR.LabelSet) throws {
        let layout = binaryLayout(.cifar100, trainPerFile: 9, test: 4, labels: labels)
        let names = labels == .fine ? fineNames : coarseNames
        try withTemporaryDirectory { dir in
            let folder = try writeFiles(layout.files, to: dir + "/cifar-100-binary")
            // POSIX ustar with a long path split into prefix and name.
            let deep = String(repeating: "d", count: 90) + "/cifar-100-binary/"
            let archive = try write(gzip(makeTar(layout.files.map { (deep + $0.0, $0.1) }, posixPrefix: true)), to: dir, name: "c100.tar.gz")
            for path in [folder, dir, archive] {
                let loaded = try CIFAR.load(.cifar100, from: path, labels: labels)
                #expect(loaded.classNames == names)
                expectSplit(loaded.split("train"), equals: layout.train, classNames: names)
                expectSplit(loaded.split("test"), equals: layout.test, classNames: names)
            }
        }
    }

    @Test("A file that is not a whole number of records is reported with its size and the cut record's offset")
    func truncatedRecord() throws {
        var layout = binaryLayout(.cifar10, trainPerFile: 3, test: 2)
        layout.files[2].1.removeLast(100)  // data_batch_3.bin: record 2 is 100 bytes short
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files, to: dir)
            let path = dir + "/data_batch_3.bin"
            #expect(throws: DataError.truncatedRecord(path: path, record: 2, recordSize: 3073, fileSize: 3 * 3073 - 100)) {
                try CIFAR.load(.cifar10, from: dir)
            }
            expectDescription(of: { try CIFAR.load(.cifar10, from: dir) },
                              contains: [path, "record 2", "byte offset 6146", "3073-byte records"])
            layout.files[2].1 = []
            try writeFiles(layout.files, to: dir)
            #expect(throws: DataError.truncated(path: path, expected: 3073, actual: 0)) { try CIFAR.load(.cifar10, from: dir) }
        }
    }

    @Test("Labels out of range name the file and record", arguments: [
        (CIFAR.Variant.cifar10, 0, UInt8(10), 10), (.cifar100, 0, 20, 20), (.cifar100, 1, 100, 100), (.cifar100, 1, 255, 100),
    ])
    func labelOutOfRange(variant: CIFAR.Variant, labelByte: Int, value: UInt8, classCount: Int) throws {
        var files = binaryLayout(variant, trainPerFile: 3, test: 5).files
        let testIndex = files.firstIndex { $0.0.hasPrefix("test") }!
        files[testIndex].1[4 * variant.recordSize + labelByte] = value
        let damaged = files
        try withTemporaryDirectory { dir in
            try writeFiles(damaged, to: dir)
            let path = dir + "/" + damaged[testIndex].0
            let expected = DataError.labelOutOfRange(path: path, index: 4, label: Int(value), classCount: classCount)
            // CIFAR-100 checks both labels, whichever is used.
            #expect(throws: expected) { try CIFAR.load(variant, from: dir, labels: .fine) }
            #expect(throws: expected) { try CIFAR.load(variant, from: dir, labels: .coarse) }
            expectDescription(of: { try CIFAR.load(variant, from: dir) }, contains: [path, "record 4", "label \(value)"])
        }
    }

    @Test("Class-name files must have the right number of names")
    func classNameCount() throws {
        var layout = binaryLayout(.cifar10, trainPerFile: 1, test: 1)
        let meta = layout.files.firstIndex { $0.0 == "batches.meta.txt" }!
        layout.files[meta].1 = Array("a\nb\n\n c \n".utf8)
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files, to: dir)
            #expect(throws: DataError.unexpectedShape(path: dir + "/batches.meta.txt", dimensions: [3], expected: "10 class names")) {
                try CIFAR.load(.cifar10, from: dir)
            }
            try FileManager.default.removeItem(atPath: dir + "/batches.meta.txt")
            #expect(throws: DataError.fileNotFound(path: dir + "/batches.meta.txt")) { try CIFAR.load(.cifar10, from: dir) }
        }
    }

    @Test("Missing batches, missing data sets and foreign archives are reported with where the loader looked")
    func missing() throws {
        let layout = binaryLayout(.cifar10, trainPerFile: 1, test: 1)
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files.filter { $0.0 != "data_batch_4.bin" }, to: dir + "/cifar-10-batches-bin")
            #expect(throws: DataError.fileNotFound(path: dir + "/cifar-10-batches-bin/data_batch_4.bin")) {
                try CIFAR.load(.cifar10, from: dir)
            }
            // A CIFAR-10 folder is not CIFAR-100.
            expectDescription(of: { try CIFAR.load(.cifar100, from: dir) },
                              contains: ["cifar100", "not found", dir, "resnet download cifar100"])
            let absent = dir + "/nothing-here"
            expectDescription(of: { try CIFAR.load(.cifar10, from: absent) }, contains: [absent, "resnet download cifar10"])
            let other = try write(gzip(makeTar([("readme.txt", Array("hello".utf8))])), to: dir, name: "other.tar.gz")
            expectDescription(of: { try CIFAR.load(.cifar10, from: other) }, contains: [other, "data_batch_1.bin"])
            let archive = try write(gzip(makeTar(layout.files.filter { $0.0 != "test_batch.bin" }.map { ("x/" + $0.0, $0.1) })),
                                    to: dir, name: "partial.tar.gz")
            #expect(throws: DataError.fileNotFound(path: archive + ":x/test_batch.bin")) { try CIFAR.load(.cifar10, from: archive) }
        }
    }

    @Test("Archives written by the system's tar are read, pax long names included",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tar"), "/usr/bin/tar is not installed"))
    func systemTar() throws {
        let layout = binaryLayout(.cifar10, trainPerFile: 2, test: 2)
        try withTemporaryDirectory { dir in
            let long = String(repeating: "long-", count: 30)
            try writeFiles(layout.files, to: dir + "/src/\(long)/cifar-10-batches-bin")
            for format in ["gnu", "pax", "ustar"] {
                let archive = dir + "/\(format).tar.gz"
                let result = try runProcess("/usr/bin/tar", ["--format=\(format)", "-czf", archive, "-C", dir + "/src", "."])
                if format == "ustar" {  // ustar cannot store this path; tar refuses
                    #expect(result.status != 0)
                    continue
                }
                try #require(result.status == 0, "\(result.output)")
                let loaded = try CIFAR.load(.cifar10, from: archive)
                expectSplit(loaded.split("train"), equals: layout.train, classNames: cifar10Names)
                let tar = try TarArchive.read(path: archive)
                #expect(tar.entries.contains { $0.name == "\(long)/cifar-10-batches-bin/test_batch.bin" && $0.kind == .file })
                #expect(tar.entries.contains { $0.name == long && $0.kind == .directory })
            }
        }
    }
}

@Suite("Tar archives")
struct TarArchiveTests {
    @Test("GNU long names and POSIX prefixes give full member names")
    func names() throws {
        let long = String(repeating: "n", count: 150) + "/file.bin"
        for posix in [false, true] {
            let tar = try TarArchive(bytes: makeTar([(long, [1, 2, 3]), ("./short", [])], directories: ["dir"], posixPrefix: posix), path: "t.tar")
            #expect(tar.entries.map(\.name) == ["dir", long, "short"])
            #expect(tar.entries.map(\.kind) == [.directory, .file, .file])
            #expect(tar.contents(of: tar.entry(named: long)!) == [1, 2, 3])
            #expect(tar.entry(named: "short")?.range.isEmpty == true)
        }
    }

    @Test("Damaged headers and cut data are reported with the byte offset")
    func damaged() throws {
        let good = makeTar([("a", [UInt8](repeating: 7, count: 600)), ("b", [1])])
        var badSum = good
        badSum[512 + 512 + 512 + 3] ^= 1  // second header (after a's header and two data blocks)
        let error = #expect(throws: DataError.self) { try TarArchive(bytes: badSum, path: "bad.tar") }
        guard case .malformed(let path, let offset, let reason)? = error else {
            Issue.record("expected .malformed, got \(String(describing: error))")
            return
        }
        #expect(path == "bad.tar" && offset == 1536 && reason.contains("checksum"))
        #expect(throws: DataError.truncated(path: "cut.tar", expected: 512 + 600, actual: 900)) {
            try TarArchive(bytes: Array(good[..<900]), path: "cut.tar")
        }
        #expect(throws: DataError.truncated(path: "cut.tar", expected: 2048, actual: 1600)) {
            try TarArchive(bytes: Array(good[..<1600]), path: "cut.tar")
        }
        expectDescription(of: { try TarArchive(bytes: Array("hello, this is not a tar file".utf8) + [UInt8](repeating: 1, count: 600), path: "text") },
                          contains: ["text", "byte offset 0", "not a tar"])
        // An archive without its end-of-archive blocks is still read.
        #expect(try TarArchive(bytes: Array(good.dropLast(1024)), path: "x").entries.count == 2)
    }

    @Test("Extraction writes files and refuses names that escape the folder")
    func extract() throws {
        try withTemporaryDirectory { dir in
            let tar = try TarArchive(bytes: makeTar([("top/a.txt", Array("A".utf8)), ("top/sub/b.txt", Array("B".utf8))], directories: ["top"]), path: "ok.tar")
            try tar.extract(to: dir + "/out")
            #expect(try String(contentsOfFile: dir + "/out/top/sub/b.txt", encoding: .utf8) == "B")
            for name in ["../evil.txt", "top/../../evil.txt", "/tmp/evil.txt"] {
                let evil = try TarArchive(bytes: makeTar([(name, [1])]), path: "evil.tar")
                expectDescription(of: { try evil.extract(to: dir + "/out2") }, contains: ["evil.tar", "unsafe member name"])
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/evil.txt"))
        }
    }
}
