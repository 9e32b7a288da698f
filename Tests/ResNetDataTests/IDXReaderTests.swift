import Foundation
import Testing
@testable import ResNetData

@Suite("IDX and gzip reading")
struct IDXReaderTests {
    @Test("Round trip, raw and gzip", arguments: [[7], [3, 4], [2, 3, 5], [2, 1, 3, 2], [0, 5]], [false, true])
    func roundTrip(dimensions: [Int], compressed: Bool) throws {
        var rng = SplitMix64(seed: UInt64(dimensions.count))
        let payload = randomBytes(dimensions.reduce(1, *), using: &rng)
        let file = makeIDX(dimensions: dimensions, payload: payload)
        try withTemporaryDirectory { dir in
            let path = try write(compressed ? gzip(file) : file, to: dir, name: compressed ? "a.idx.gz" : "a.idx")
            let array = try IDXArray.read(path: path)
            #expect(array.dimensions == dimensions)
            #expect(array.bytes == payload)
        }
    }

    @Test("Gzip round trip of a larger file grows the output buffer correctly")
    func largeGzip() throws {
        var rng = SplitMix64(seed: 42)
        // Highly compressible, so the output is many times the input.
        let payload = (0..<300_000).map { i in i % 1000 == 0 ? UInt8.random(in: 0...255, using: &rng) : 0 }
        let file = makeIDX(dimensions: [300, 1000], payload: payload)
        let compressed = gzip(file)
        #expect(try GzipReader.decompress(compressed, path: "x.gz") == file)
        // The size hint comes from the last member's ISIZE, here far too small: the buffer must grow.
        let twoMembers = gzip(Array(file[..<299_990])) + gzip(Array(file[299_990...]))
        #expect(try GzipReader.decompress(twoMembers, path: "x.gz") == file)
        // A wrong ISIZE fails zlib's length check.
        var badLength = compressed
        badLength.replaceSubrange((compressed.count - 4)..., with: [1, 0, 0, 0])
        let error = #expect(throws: DataError.self) { try GzipReader.decompress(badLength, path: "x.gz") }
        #expect(error?.path == "x.gz")
    }

    @Test("Concatenated gzip members are inflated as one stream")
    func multiMember() throws {
        let file = makeIDX(dimensions: [2, 3], payload: [1, 2, 3, 4, 5, 6])
        let joined = gzip(Array(file[..<7])) + gzip(Array(file[7...])) + [0, 0, 0, 0]
        try withTemporaryDirectory { dir in
            let path = try write(joined, to: dir, name: "multi.gz")
            #expect(try readFileDecompressingIfGzip(path: path) == file)
            #expect(try IDXArray.read(path: path) == IDXArray.parse(file, path: "x"))
        }
    }

    @Test("Files written by /usr/bin/gzip are read",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/gzip"), "/usr/bin/gzip is not installed"))
    func systemGzip() throws {
        let file = makeIDX(dimensions: [4, 4], payload: Array(0..<16))
        try withTemporaryDirectory { dir in
            let path = try write(file, to: dir, name: "b.idx")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/gzip")
            process.arguments = ["-9", path]
            try process.run()
            process.waitUntilExit()
            try #require(process.terminationStatus == 0)
            #expect(try IDXArray.read(path: path + ".gz").bytes == Array(0..<16))
        }
    }

    @Test("Non-gzip and empty files are returned unchanged")
    func rawPassThrough() throws {
        try withTemporaryDirectory { dir in
            let empty = try write([], to: dir, name: "empty")
            #expect(try readFileDecompressingIfGzip(path: empty) == [])
            let one = try write([0x1f], to: dir, name: "one")
            #expect(try readFileDecompressingIfGzip(path: one) == [0x1f])
            let text = try write(Array("hello".utf8), to: dir, name: "text")
            #expect(try readFileDecompressingIfGzip(path: text) == Array("hello".utf8))
        }
    }

    // MARK: - Bad input

    @Test("Truncated payload")
    func truncatedPayload() throws {
        let file = makeIDX(dimensions: [2, 3], payload: [1, 2, 3, 4, 5])
        try withTemporaryDirectory { dir in
            let path = try write(file, to: dir, name: "short.idx")
            #expect(throws: DataError.truncated(path: path, expected: 18, actual: 17)) { try IDXArray.read(path: path) }
            let gzPath = try write(gzip(file), to: dir, name: "short.idx.gz")
            #expect(throws: DataError.truncated(path: gzPath, expected: 18, actual: 17)) { try IDXArray.read(path: gzPath) }
            expectDescription(of: { try IDXArray.read(path: path) }, contains: [path, "18", "17"])
        }
    }

    @Test("Truncated header", arguments: [0, 1, 3, 4, 7, 11])
    func truncatedHeader(length: Int) throws {
        let file = Array(makeIDX(dimensions: [2, 3], payload: [1, 2, 3, 4, 5, 6])[..<length])
        let expected = length < 4 ? 4 : 12
        #expect(throws: DataError.truncated(path: "h", expected: expected, actual: length)) { try IDXArray.parse(file, path: "h") }
    }

    @Test("Trailing bytes")
    func trailingBytes() throws {
        let file = makeIDX(dimensions: [2, 3], payload: [1, 2, 3, 4, 5, 6, 7, 8])
        try withTemporaryDirectory { dir in
            let path = try write(file, to: dir, name: "long.idx")
            #expect(throws: DataError.trailingBytes(path: path, expected: 18, actual: 20)) { try IDXArray.read(path: path) }
            expectDescription(of: { try IDXArray.read(path: path) }, contains: [path, "2 unexpected trailing bytes", "offset 18"])
        }
    }

    @Test("Wrong magic")
    func wrongMagic() throws {
        try withTemporaryDirectory { dir in
            let path = try write([1, 2, 3, 4, 0, 0, 0, 1, 9], to: dir, name: "magic.idx")
            #expect(throws: DataError.badMagic(path: path, found: 0x0102_0304)) { try IDXArray.read(path: path) }
            expectDescription(of: { try IDXArray.read(path: path) }, contains: [path, "0x01020304"])
            // An element type byte the IDX format does not define is not an IDX file either.
            let unknown = try write([0, 0, 0x07, 1, 0, 0, 0, 1, 9], to: dir, name: "type07.idx")
            #expect(throws: DataError.badMagic(path: unknown, found: 0x0000_0701)) { try IDXArray.read(path: unknown) }
        }
    }

    @Test("Unsupported element type or rank", arguments: [
        makeIDX(type: 0x0D, dimensions: [1], payload: [0, 0, 0, 0]),
        makeIDX(type: 0x09, dimensions: [1], payload: [0]),
        makeIDX(dimensions: [], payload: [7]),
        makeIDX(dimensions: [1, 1, 1, 1, 1], payload: [7]),
        makeIDX(dimensions: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: []),
    ])
    func unsupported(file: [UInt8]) throws {
        try withTemporaryDirectory { dir in
            let path = try write(file, to: dir, name: "unsupported.idx")
            let error = #expect(throws: DataError.self) { try IDXArray.read(path: path) }
            guard case .unsupported(let errorPath, _) = error else {
                Issue.record("expected .unsupported, got \(String(describing: error))")
                return
            }
            #expect(errorPath == path)
            #expect(error?.description.contains(path) == true)
        }
    }

    @Test("A huge declared size that does not overflow is reported as truncated")
    func hugeDeclaredSize() throws {
        let file = makeIDX(dimensions: [0xFFFF_FFFF, 0x7FFF_FFFF], payload: [1, 2, 3])
        #expect(throws: DataError.truncated(path: "big", expected: 12 + 0xFFFF_FFFF * 0x7FFF_FFFF, actual: 15)) {
            try IDXArray.parse(file, path: "big")
        }
    }

    @Test("Corrupt gzip")
    func corruptGzip() throws {
        var rng = SplitMix64(seed: 7)
        let file = makeIDX(dimensions: [64, 64], payload: randomBytes(4096, using: &rng))
        let good = gzip(file)
        var damaged = good
        damaged[good.count / 2] ^= 0xff
        var badCRC = good
        badCRC[good.count - 6] ^= 0x01
        let cases: [(String, [UInt8])] = [
            ("damaged.gz", damaged),
            ("cut.gz", Array(good[..<(good.count / 2)])),
            ("no-trailer.gz", Array(good[..<(good.count - 3)])),
            ("magic-only.gz", [0x1f, 0x8b]),
            ("bad-crc.gz", badCRC),
            ("garbage-after.gz", good + [0x41, 0x42]),
        ]
        try withTemporaryDirectory { dir in
            for (name, bytes) in cases {
                let path = try write(bytes, to: dir, name: name)
                let error = #expect(throws: DataError.self, "\(name)") { try IDXArray.read(path: path) }
                guard case .corruptGzip(let errorPath, _) = error else {
                    Issue.record("\(name): expected .corruptGzip, got \(String(describing: error))")
                    continue
                }
                #expect(errorPath == path)
                #expect(error?.description.contains(path) == true)
            }
        }
    }

    @Test("Missing file and unreadable path")
    func missingFile() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/does-not-exist.idx"
            #expect(throws: DataError.fileNotFound(path: path)) { try IDXArray.read(path: path) }
            expectDescription(of: { try IDXArray.read(path: path) }, contains: [path, "not found"])
            // A folder is refused before it is opened, like any file that is not a regular file.
            #expect(throws: DataError.notARegularFile(path: dir, kind: "a folder")) { try IDXArray.read(path: dir) }
            expectDescription(of: { try IDXArray.read(path: dir) }, contains: [dir, "not a regular file but a folder"])
        }
    }
}

/// Expects `body` to throw a ``DataError`` whose one-line description contains every string in `parts`.
func expectDescription<T>(of body: () throws -> T, contains parts: [String],
                       sourceLocation: SourceLocation = #_sourceLocation) {
    let error = #expect(throws: DataError.self, sourceLocation: sourceLocation) { _ = try body() }
    guard let description = error?.description else { return }
    #expect(!description.contains("\n"), sourceLocation: sourceLocation)
    for part in parts {
        #expect(description.contains(part), "\(description)", sourceLocation: sourceLocation)
    }
}
