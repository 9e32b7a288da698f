import Foundation
import Testing
@testable import ResNetData

@Suite("Fuzzing the readers")
struct FuzzTests {
    /// Checks that parsing `data` throws a DataError naming `path` or returns a consistent array.
    /// Returns the array when parsing succeeds.
    @discardableResult
    static func check(_ data: [UInt8], path: String, gzipped: Bool = false) -> IDXArray? {
        do {
            let raw = gzipped ? try GzipReader.decompress(data, path: path) : data
            let array = try IDXArray.parse(raw, path: path)
            let product = array.dimensions.reduce(1) { $0 * $1 }
            #expect(IDXArray.supportedRanks.contains(array.dimensions.count))
            #expect(product == array.bytes.count)
            #expect(raw.count == 4 + 4 * array.dimensions.count + array.bytes.count)
            #expect(Array(raw.suffix(array.bytes.count)) == array.bytes)
            return array
        } catch let error as DataError {
            #expect(error.path == path)
            #expect(error.description.contains(path))
            #expect(!error.description.contains("\n"))
        } catch {
            Issue.record("unexpected error type \(type(of: error)): \(error)")
        }
        return nil
    }

    @Test("Random and mutated inputs throw or parse consistently")
    func fuzz() throws {
        var rng = SplitMix64(seed: 0x5EED)
        let dims = [3, 4, 5]
        let valid = makeIDX(dimensions: dims, payload: randomBytes(60, using: &rng))
        let validGzip = gzip(valid)
        let original = try IDXArray.parse(valid, path: "valid")
        let start = ContinuousClock.now
        var parsed = 0, cases = 0

        func run(_ data: [UInt8], gzipped: Bool = false) {
            cases += 1
            if Self.check(data, path: "fuzz-\(cases)", gzipped: gzipped) != nil { parsed += 1 }
        }

        for _ in 0..<1000 {  // random bytes, sometimes behind a plausible header
            var data = randomBytes(Int.random(in: 0...80, using: &rng), using: &rng)
            if Bool.random(using: &rng), data.count >= 4 {
                data.replaceSubrange(0..<4, with: [0, 0, 0x08, UInt8.random(in: 0...5, using: &rng)])
            }
            run(data)
        }
        for _ in 0..<1000 {  // bit flips; flips confined to the payload must parse to the same shape
            var data = valid
            var headerTouched = false
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let bit = Int.random(in: 0..<(data.count * 8), using: &rng)
                data[bit / 8] ^= 1 << UInt8(bit % 8)
                headerTouched = headerTouched || bit / 8 < 16
            }
            cases += 1
            let result = Self.check(data, path: "flip-\(cases)")
            if !headerTouched { #expect(result?.dimensions == dims) }
            if result != nil { parsed += 1 }
        }
        for _ in 0..<500 {  // truncations and extensions
            let cut = Int.random(in: 0..<valid.count, using: &rng)
            #expect(Self.check(Array(valid[..<cut]), path: "cut") == nil)
            #expect(Self.check(valid + randomBytes(Int.random(in: 1...8, using: &rng), using: &rng), path: "long") == nil)
            cases += 2
        }
        for _ in 0..<1000 {  // header edits: random values, extreme sizes, other ranks and types
            var data = valid
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: data[Int.random(in: 0..<16, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            case 1: data[3] = UInt8.random(in: 0...6, using: &rng)
            case 2: data[2] = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF][Int.random(in: 0..<8, using: &rng)]
            default:
                let axis = Int.random(in: 0..<3, using: &rng)
                let value: UInt32 = [0, 1, 0xFFFF_FFFF, 0x8000_0000, UInt32.random(in: 0...100, using: &rng)][Int.random(in: 0..<5, using: &rng)]
                data.replaceSubrange((4 + 4 * axis)..<(8 + 4 * axis),
                                     with: [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)])
            }
            run(data)
        }
        for _ in 0..<1000 {  // gzip streams: bit flips, truncations, byte edits
            var data = validGzip
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                let bit = Int.random(in: 0..<(data.count * 8), using: &rng)
                data[bit / 8] ^= 1 << UInt8(bit % 8)
            case 1: data = Array(data[..<Int.random(in: 2..<data.count, using: &rng)])
            default: data[Int.random(in: 2..<data.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            cases += 1
            if let array = Self.check(data, path: "gz-\(cases)", gzipped: true) {
                parsed += 1
                // CRC-32 protects the data; anything that still inflates must be the original
                // (flips in header fields such as the mtime are not covered by it).
                #expect(array == original)
            }
        }
        try withTemporaryDirectory { dir in  // a few through the file-reading path as well
            for i in 0..<200 {
                var data = i.isMultiple(of: 2) ? validGzip : valid
                data[Int.random(in: 0..<data.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                let path = try write(data, to: dir, name: "f\(i)")
                cases += 1
                do {
                    let array = try IDXArray.read(path: path)
                    #expect(array.dimensions.reduce(1, *) == array.bytes.count)
                    parsed += 1
                } catch let error as DataError {
                    #expect(error.path == path)
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        print("fuzz: \(cases) inputs, \(parsed) parsed, \(cases - parsed) rejected, in \(elapsed)")
        #expect(cases > 5000)
        #expect(elapsed < .seconds(10))
    }

    @Test("Absurd IDX dimensions: whatever parses has products that cannot overflow; loaders refuse impossible sides")
    func absurdHeaders() throws {
        var rng = SplitMix64(seed: 0xAB5D)
        let extremes = [0, 1, 2, 28, 4_096, 4_097, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF]
        var cases = 0, parsed = 0
        for _ in 0..<3000 {
            let rank = Int.random(in: 1...4, using: &rng)
            let dims = (0..<rank).map { _ in
                Bool.random(using: &rng) ? extremes[Int.random(in: 0..<extremes.count, using: &rng)] : Int.random(in: 0...6, using: &rng)
            }
            let product = DataLimits.product(dims)
            let payload = product.map { $0 <= 64 ? randomBytes($0, using: &rng) : randomBytes(8, using: &rng) } ?? []
            cases += 1
            guard let array = Self.check(makeIDX(dimensions: dims, payload: payload), path: "absurd-\(cases)") else { continue }
            parsed += 1
            // Every partial product (a reader's height x width, say) is representable.
            for start in 0..<dims.count { #expect(DataLimits.product(Array(array.dimensions[start...])) != nil, "\(dims)") }
        }
        // Rank-3 files through the Fashion-MNIST loader: empty files with absurd sides are refused.
        try withTemporaryDirectory { dir in
            try write(makeIDX(dimensions: [0], payload: []), to: dir, name: "train-labels-idx1-ubyte")
            for _ in 0..<100 {
                let dims = [0] + (0..<2).map { _ in extremes[Int.random(in: 0..<extremes.count, using: &rng)] }
                let path = try write(makeIDX(dimensions: dims, payload: []), to: dir, name: "train-images-idx3-ubyte")
                cases += 1
                do {
                    let data = try FashionMNIST.load(directory: dir, split: .train)
                    #expect((1...DataLimits.maximumImageSide).contains(data.height) && (1...DataLimits.maximumImageSide).contains(data.width))
                    #expect(data.count == 0)
                } catch let error as DataError {
                    #expect(error.path == path, "\(error)")
                }
            }
        }
        print("absurd IDX headers: \(cases) inputs, \(parsed) parsed")
        #expect(parsed > 100)
    }

    @Test("Gzip bombs and random multi-member streams never decompress past the limit")
    func gzipBombs() throws {
        var rng = SplitMix64(seed: 0xB0B)
        let members = [gzip([UInt8](repeating: 0, count: 1 << 16), level: 9), gzip(randomBytes(1000, using: &rng)),
                       gzip([UInt8](repeating: 0xAA, count: 300_000), level: 1)]
        for i in 0..<300 {
            var data: [UInt8] = []
            var total = 0
            for _ in 0..<Int.random(in: 1...40, using: &rng) {
                let k = Int.random(in: 0..<members.count, using: &rng)
                data += members[k]
                total += [1 << 16, 1000, 300_000][k]
            }
            let limit = Int.random(in: 0...(2 * total), using: &rng)
            do {
                let output = try GzipReader.decompress(data, path: "bomb-\(i).gz", maximumSize: limit)
                #expect(output.count == total && total <= limit)
            } catch let error as DataError {
                guard case .tooLarge(let path, _, let errorLimit, _) = error else {
                    Issue.record("bomb-\(i): \(error)")
                    continue
                }
                #expect(path == "bomb-\(i).gz" && errorLimit == limit && total > limit)
            }
        }
    }
}
