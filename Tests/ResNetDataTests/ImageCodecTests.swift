import Foundation
import Testing
@testable import ResNetData

/// Small images made with Pillow 9.4 (Debian 12) and a hand-written PNG encoder; the expected
/// values in the tests are Pillow's (or, for 16-bit PNG, libpng's scaling).
enum Fixtures {
    /// 16x16 RGB JPEG, quality 95, 4:4:4: 8x8 quadrants red, green / blue, gray 128.
    static let colorJPEG = bytes("""
        /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBD\
        AQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wAARCAAQABADAREAAhEBAxEB/8QAHwAAAQUB\
        AQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJico\
        KSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ\
        2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMi\
        MoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOk\
        paanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD4vr+Uz/fw/Siv5bP+Fc/Buv8AtMP9WD9jK/wD\
        P1Q//9k=
        """)
    /// 8x8 gray JPEG, quality 90, of the gradient 32 x + 3 y.
    static let grayJPEG = bytes("""
        /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/wAAL\
        CAAIAAgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS\
        0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5\
        usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AKH/AATb0T/kF/L/AHa//9k=
        """)
    /// 24x16 progressive JPEG, quality 85, 4:2:0, of (10 x, 15 y, 200 - 5 x).
    static let progressiveJPEG = bytes("""
        /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJCIeJBweHx7/2wBD\
        AQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAQABgDASIAAhEBAxEB/8QAFwABAQEB\
        AAAAAAAAAAAAAAAABgAEBf/EABUBAQEAAAAAAAAAAAAAAAAAAAUG/9oADAMBAAIQAxAAAAEVvU9BkwtOKRvP/8QAFhAAAwAAAAAAAAAAAAAAAAAAAAIE/9oACAEB\
        AAEFAklElElElElElP/EABkRAAIDAQAAAAAAAAAAAAAAAAAFBCIxYf/aAAgBAwEBPwFY36Rm9NP/xAAYEQACAwAAAAAAAAAAAAAAAAAABQMEIv/aAAgBAgEBPwG+\
        yJ2Wj//EABUQAQEAAAAAAAAAAAAAAAAAAAAx/9oACAEBAAY/AoiIiP/EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEAAT8hUkkn/9oADAMBAAIAAwAAABDkz//E\
        ABYRAQEBAAAAAAAAAAAAAAAAAAAhMf/aAAgBAwEBPxDIhP/EABYRAQEBAAAAAAAAAAAAAAAAACEAMf/aAAgBAgEBPxDRkt//xAAWEAADAAAAAAAAAAAAAAAAAAAA\
        McH/2gAIAQEAAT8QVAqBUCoFQKg//9k=
        """)
    /// 8x8 Adobe CMYK JPEG, quality 95, of (30 x, 30 y, 60, 40 + 10 x).
    static let cmykJPEG = bytes("""
        /9j/7gAOQWRvYmUAZAAAAAAA/9sAQwACAQEBAQECAQEBAgICAgIEAwICAgIFBAQDBAYFBgYGBQYGBgcJCAYHCQcGBggLCAkKCgoKCgYICwwLCgwJCgoK/8AAFAgA\
        CAAIBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGh\
        CCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqy\
        s7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwD1j/g4j/5jv/bT+tesf8REf/U8/wDkz/8AXr9DK+0P\
        2tv+Xr8a/9k=
        """)
    /// 2x2 RGB PNG, 16 bits per sample: (0, 65535, 32768) (25700, 51400, 1000) / (65535, 0, 128) (65280, 255, 32767).
    static let rgb16PNG = bytes("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACEAIAAACtREYwAAAAIElEQVR42mNgYPj/v4EhJeXECeYXQCYDA0MDkPhf/x8AkeMLvLYVfvkAAAAASUVORK5CYII=")
    /// 2x1 gray + alpha PNG, 16 bits per sample: (1799, 65535) (65535, 0).
    static let grayAlpha16PNG = bytes("iVBORw0KGgoAAAANSUhEUgAAAAIAAAABEAQAAAAOu2tCAAAAD0lEQVR42mNgZ/8PBAwMABJgBAsoX3DMAAAAAElFTkSuQmCC")
    /// 4x1 palette PNG: (10, 20, 30) (200, 100, 50, alpha 0) (0, 0, 0) (255, 255, 255).
    static let palettePNG = bytes("iVBORw0KGgoAAAANSUhEUgAAAAQAAAABCAMAAADO4v//AAAADFBMVEUKFB7IZDIAAAD///+QakSdAAAAAnRSTlP/AOW3MEoAAAANSURBVHjaY2BgZGIGAAAPAAdb0It9AAAAAElFTkSuQmCC")
    /// 8x1 one-bit gray PNG: 1 0 1 1 0 0 1 0.
    static let bit1PNG = bytes("iVBORw0KGgoAAAANSUhEUgAAAAgAAAABAQAAAADLe9LuAAAACklEQVR42mPYBAAAtACziZDNLwAAAABJRU5ErkJggg==")

    static func bytes(_ base64: String) -> [UInt8] {
        [UInt8](Data(base64Encoded: base64.filter { !$0.isWhitespace })!)
    }
}

/// Planar (CHW) bytes of interleaved (HWC) ones.
func planar(_ interleaved: [UInt8], channels: Int) -> [UInt8] {
    let plane = interleaved.count / channels
    return (0..<channels).flatMap { c in (0..<plane).map { interleaved[$0 * channels + c] } }
}

/// Pillow's luma of an RGB pixel.
func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
    let sum: UInt32 = UInt32(r) * 19595 + UInt32(g) * 38470 + UInt32(b) * 7471
    return UInt8((sum + 0x8000) >> 16)
}

/// Per-channel sums of a planar image.
func channelSums(_ image: PlanarImage) -> [Int] {
    let plane = image.height * image.width
    return (0..<image.channels).map { c in image.pixels[(c * plane)..<((c + 1) * plane)].reduce(0) { $0 + Int($1) } }
}

@Suite("Image decoding and encoding")
struct ImageCodecTests {
    @Test("PNG round trip converts channels like Pillow", arguments: 1...4)
    func pngRoundTrip(channels: Int) throws {
        var rng = SplitMix64(seed: UInt64(channels))
        let (width, height) = (7, 5)
        let pixels = randomBytes(width * height * channels, using: &rng)
        let png = try encodePNG(pixels: pixels, width: width, height: height, channels: channels)
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))

        let rgb = try decodeImage(png, channels: 3, path: "rgb.png")
        let gray = try decodeImage(png, channels: 1, path: "gray.png")
        #expect(rgb.channels == 3 && rgb.height == height && rgb.width == width)
        #expect(gray.channels == 1 && gray.height == height && gray.width == width)
        let pixelsPerImage = width * height
        if channels <= 2 {  // gray (+ alpha, dropped)
            let values = (0..<pixelsPerImage).map { pixels[$0 * channels] }
            #expect(gray.pixels == values)
            #expect(rgb.pixels == values + values + values)
        } else {  // RGB (+ alpha, dropped)
            let rgbPixels = (0..<pixelsPerImage).flatMap { pixels[($0 * channels)..<($0 * channels + 3)] }
            #expect(rgb.pixels == planar(rgbPixels, channels: 3))
            #expect(gray.pixels == (0..<pixelsPerImage).map { luma(rgbPixels[3 * $0], rgbPixels[3 * $0 + 1], rgbPixels[3 * $0 + 2]) })
        }
    }

    @Test("16-bit, gray + alpha, palette and 1-bit PNGs")
    func pngFormats() throws {
        // libpng scales 16-bit samples to 8 bits with rounding (Pillow truncates to the high byte).
        let rgb16 = try decodeImage(Fixtures.rgb16PNG, path: "rgb16.png")
        #expect(rgb16.height == 2 && rgb16.width == 2)
        #expect(rgb16.pixels == planar([0, 255, 128, 100, 200, 4, 255, 0, 0, 254, 1, 127], channels: 3))
        let grayAlpha = try decodeImage(Fixtures.grayAlpha16PNG, channels: 1, path: "ga16.png")
        #expect(grayAlpha.pixels == [7, 255])
        let palette = try decodeImage(Fixtures.palettePNG, path: "palette.png")
        #expect(palette.pixels == planar([10, 20, 30, 200, 100, 50, 0, 0, 0, 255, 255, 255], channels: 3))
        let paletteGray = try decodeImage(Fixtures.palettePNG, channels: 1, path: "palette.png")
        #expect(paletteGray.pixels == [luma(10, 20, 30), luma(200, 100, 50), 0, 255])
        let bits = try decodeImage(Fixtures.bit1PNG, channels: 1, path: "bits.png")
        #expect(bits.pixels == [255, 0, 255, 255, 0, 0, 255, 0])
    }

    @Test("JPEG decoding matches Pillow")
    func jpeg() throws {
        let color = try decodeImage(Fixtures.colorJPEG, path: "color.jpg")
        #expect(color.channels == 3 && color.height == 16 && color.width == 16)
        #expect(channelSums(color) == [24448, 24512, 24512])
        let plane = 256
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { (0..<3).map { color.pixels[$0 * plane + y * 16 + x] } }
        #expect(pixel(3, 3) == [254, 0, 0] && pixel(12, 3) == [0, 255, 1] && pixel(3, 12) == [0, 0, 254])
        #expect(pixel(12, 12) == [128, 128, 128])

        let gray = try decodeImage(Fixtures.grayJPEG, channels: 1, path: "gray.jpg")
        #expect(gray.height == 8 && gray.width == 8)
        #expect(Array(gray.pixels.prefix(8)) == [0, 31, 65, 96, 129, 160, 193, 224])
        #expect(channelSums(gray) == [7834])
        let grayAsRGB = try decodeImage(Fixtures.grayJPEG, channels: 3, path: "gray.jpg")
        #expect(grayAsRGB.pixels == gray.pixels + gray.pixels + gray.pixels)

        let progressive = try decodeImage(Fixtures.progressiveJPEG, path: "progressive.jpg")
        #expect(progressive.height == 16 && progressive.width == 24)
        #expect(channelSums(progressive) == [43923, 43254, 54671])
        // One channel of a color JPEG is its luma plane: within rounding of Pillow's RGB -> L.
        let progressiveGray = try decodeImage(Fixtures.progressiveJPEG, channels: 1, path: "progressive.jpg")
        #expect(abs(channelSums(progressiveGray)[0] - 44756) <= 16 * 24)

        let cmyk = try decodeImage(Fixtures.cmykJPEG, path: "cmyk.jpg")
        #expect(channelSums(cmyk) == [7176, 6783, 8808])
        let first: [UInt8] = (0..<3).map { cmyk.pixels[$0 * 64] }, last: [UInt8] = (0..<3).map { cmyk.pixels[$0 * 64 + 63] }
        #expect(first == [215, 215, 164] && last == [26, 26, 111])
    }

    @Test("Truncated JPEG and PNG files throw, naming the file")
    func truncated() throws {
        for (name, file) in [("a.jpg", Fixtures.colorJPEG), ("b.jpg", Fixtures.progressiveJPEG), ("c.jpg", Fixtures.cmykJPEG),
                             ("d.png", Fixtures.rgb16PNG), ("e.png", try encodePNG(pixels: [UInt8](repeating: 9, count: 300),
                                                                                    width: 10, height: 10, channels: 3))] {
            let whole = try decodeImage(file, path: name)
            for cut in 0..<file.count {
                do {
                    let image = try decodeImage(Array(file[..<cut]), path: name)
                    // libpng stops reading after the image data: a PNG cut inside its final
                    // 12-byte IEND chunk still has all its pixels.
                    if !(name.hasSuffix(".png") && cut >= file.count - 12 && image == whole) {
                        Issue.record("\(name) cut at \(cut) of \(file.count) bytes decoded")
                    }
                } catch let error as DataError {
                    #expect(error.path == name)
                    #expect(error.description.hasPrefix(name + ": ") && !error.description.contains("\n"))
                    switch error {
                    case .corruptImage: #expect(cut >= 3)
                    case .notAnImage: #expect(cut < 8)
                    default: Issue.record("unexpected \(error)")
                    }
                }
            }
        }
    }

    @Test("JPEG warnings that leave the pixels intact are tolerated")
    func harmlessWarnings() throws {
        // Bytes between the entropy-coded data and the EOI marker: libjpeg warns
        // "Corrupt JPEG data: 5 extraneous bytes before marker 0xd9" and Pillow loads the file.
        var file = Fixtures.colorJPEG
        file.insert(contentsOf: [0x12, 0x34, 0x56, 0x78, 0x9A], at: file.count - 2)
        #expect(try decodeImage(file, path: "extra.jpg") == decodeImage(Fixtures.colorJPEG, path: "color.jpg"))
        #expect(ImageDecoder.isHarmlessJPEGWarning("Corrupt JPEG data: 5 extraneous bytes before marker 0xd9"))
        #expect(!ImageDecoder.isHarmlessJPEGWarning("Premature end of JPEG file"))
        #expect(!ImageDecoder.isHarmlessJPEGWarning("Corrupt JPEG data: bad Huffman code"))
    }

    @Test("Damaged images throw or decode with their geometry, never crash")
    func fuzz() throws {
        var rng = SplitMix64(seed: 0xC0DEC)
        var decoded = 0, rejected = 0
        let files = [Fixtures.colorJPEG, Fixtures.grayJPEG, Fixtures.progressiveJPEG, Fixtures.cmykJPEG,
                     Fixtures.rgb16PNG, Fixtures.palettePNG]
        for (index, file) in files.enumerated() {
            let original = try decodeImage(file, path: "original")
            for trial in 0..<300 {
                var data = file
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let position = trial < 150 ? Int.random(in: 0..<min(data.count, 200), using: &rng)
                                               : Int.random(in: 0..<data.count, using: &rng)
                    data[position] = UInt8.random(in: 0...255, using: &rng)
                }
                let path = "fuzz-\(index)-\(trial)"
                do {
                    let image = try decodeImage(data, channels: trial % 2 == 0 ? 3 : 1, path: path)
                    #expect(image.pixels.count == image.channels * image.height * image.width)
                    if data[..<2] == file[..<2] { #expect(image.height > 0 && image.width > 0) }
                    _ = original
                    decoded += 1
                } catch let error as DataError {
                    #expect(error.path == path)
                    rejected += 1
                }
            }
        }
        print("image fuzz: \(decoded) decoded, \(rejected) rejected")
        #expect(rejected > 0)
    }

    @Test("Files that are not JPEG or PNG are named with their format")
    func notImages() {
        let cases: [([UInt8], String)] = [
            ([], "the file is empty"), (Array("hello world".utf8), "68 65 6c 6c 6f 20 77 6f"),
            (Array("GIF89a....".utf8), "GIF images are not supported"), (Array("RIFF\0\0\0\0WEBPVP8 ".utf8), "WebP"),
        ]
        for (bytes, expected) in cases {
            do {
                _ = try decodeImage(bytes, path: "x.png")
                Issue.record("decoded \(bytes)")
            } catch let error as DataError {
                guard case .notAnImage(let path, _) = error else { Issue.record("unexpected \(error)"); continue }
                #expect(path == "x.png")
                #expect(error.description.hasPrefix("x.png: not an image: ") && error.description.contains(expected))
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
        #expect(throws: DataError.unsupported(path: "a.png", reason: "images can be decoded to 1 or 3 channels, not 4")) {
            try decodeImage(Fixtures.palettePNG, channels: 4, path: "a.png")
        }
        #expect(throws: DataError.fileNotFound(path: "/nonexistent/a.png")) {
            try readImage(path: "/nonexistent/a.png")
        }
    }

    /// The test pattern the Pillow reference resizes were made from.
    static func pattern(height: Int, width: Int) -> PlanarImage {
        var pixels: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                let value: Int = x * 37 + y * 11 + (x * y) % 7 * 20
                pixels.append(UInt8(value % 256))
            }
        }
        return PlanarImage(pixels: pixels, channels: 1, height: height, width: width)
    }

    /// `Image.resize((w, h), Image.BILINEAR)` of `pattern` in Pillow 13.0.0 (PyPI, what torchvision
    /// users get): (input HxW, output HxW, pixels). 7x5 -> 2x3, 20x6 -> 4x5 and 15x9 -> 4x8 run the
    /// vertical pass first (the height shrinks by more than twice as many pixels as the width);
    /// Pillow 9.4 ran the horizontal pass first and gave 102, not 103, for 7x5 -> 2x3's fourth pixel.
    static let pillowResizes: [((Int, Int), (Int, Int), [UInt8])] = [
        ((7, 5), (2, 3), [47, 142, 180, 103, 183, 130]),
        ((20, 6), (4, 5), [45, 130, 176, 165, 109, 97, 176, 144, 98, 77, 134, 132, 79, 73, 116, 170, 111, 94, 125, 167]),
        ((15, 9), (4, 8), [30, 105, 164, 182, 131, 108, 45, 82, 73, 173, 176, 133, 91, 72, 62, 154, 109, 171, 133, 65, 82, 120, 111, 162,
                           132, 113, 84, 62, 106, 130, 138, 121]),
        ((7, 5), (9, 14), [0, 1, 15, 28, 41, 54, 67, 81, 94, 107, 120, 133, 147, 148, 7, 9, 27, 45, 63, 81, 99, 117, 135, 153, 171, 189, 207, 209,
                           16, 18, 41, 66, 89, 112, 136, 159, 183, 207, 214, 216, 217, 217, 24, 27, 56, 86, 114, 144, 173, 196, 214, 233, 216, 187,
                           156, 153, 33, 36, 71, 106, 140, 175, 210, 219, 204, 189, 144, 87, 31, 25, 42, 45, 86, 126, 155, 156, 157, 172, 202, 230,
                           226, 207, 188, 186, 50, 55, 101, 146, 177, 173, 169, 175, 193, 211, 197, 170, 143, 140, 59, 64, 115, 167, 203, 204, 206,
                           191, 162, 133, 106, 80, 53, 51, 66, 72, 128, 184, 225, 231, 237, 197, 112, 27, 5, 11, 17, 18]),
        ((7, 5), (5, 2), [47, 135, 85, 196, 119, 167, 134, 187, 160, 97]),
        ((7, 5), (7, 9), [0, 12, 33, 53, 74, 95, 115, 136, 148, 11, 30, 62, 93, 125, 157, 188, 220, 239, 22, 48, 90, 133, 176, 219, 246, 211, 190,
                          33, 65, 119, 173, 227, 203, 166, 78, 25, 44, 83, 148, 151, 138, 203, 252, 240, 232, 55, 101, 177, 191, 189, 187, 173,
                          107, 67, 66, 118, 206, 231, 240, 107, 3, 12, 18]),
        ((7, 5), (3, 5), [9, 64, 118, 172, 196, 33, 130, 186, 217, 128, 57, 196, 196, 135, 85]),
        ((12, 20), (3, 3), [121, 110, 116, 121, 111, 117, 117, 111, 109]),
        ((7, 5), (1, 1), [136]),
    ]

    @Test("Resizing matches Pillow's bilinear filter, with antialiasing when downscaling")
    func resizeMatchesPillow() {
        for (input, output, expected) in Self.pillowResizes {
            let image = Self.pattern(height: input.0, width: input.1)
            let resized = resizeImage(image, height: output.0, width: output.1)
            #expect(resized.height == output.0 && resized.width == output.1 && resized.channels == 1)
            #expect(resized.pixels == expected, "\(input) -> \(output)")

            // Channels are resampled independently.
            let inverted = image.pixels.map { 255 - $0 }
            let three = PlanarImage(pixels: image.pixels + inverted + image.pixels, channels: 3, height: input.0, width: input.1)
            let resizedThree = resizeImage(three, height: output.0, width: output.1)
            let second = resizeImage(PlanarImage(pixels: inverted, channels: 1, height: input.0, width: input.1),
                                     height: output.0, width: output.1)
            #expect(resizedThree.pixels == expected + second.pixels + expected)
        }
    }

    @Test("One decoder resizes images of several sizes in turn")
    func decoderResizes() throws {
        var rng = SplitMix64(seed: 11)
        let decoder = ImageDecoder()
        for (height, width) in [(9, 7), (9, 7), (4, 12), (6, 5), (9, 7)] {
            let pixels = randomBytes(height * width * 3, using: &rng)
            let png = try encodePNG(pixels: pixels, width: width, height: height, channels: 3)
            try png.withUnsafeBufferPointer { try decoder.decode($0, channels: 3, path: "x.png") }
            var output = [UInt8](repeating: 0, count: 3 * 6 * 5)
            output.withUnsafeMutableBufferPointer { decoder.writePlanar(channels: 3, height: 6, width: 5, to: $0.baseAddress!) }
            let expected = resizeImage(PlanarImage(pixels: planar(pixels, channels: 3), channels: 3, height: height, width: width),
                                       height: 6, width: 5)
            #expect(output == expected.pixels, "\(height)x\(width)")
        }
    }

    @Test("Resizing keeps identity and constants")
    func resizeInvariants() {
        let image = Self.pattern(height: 9, width: 13)
        #expect(resizeImage(image, height: 9, width: 13) == image)
        let constant = PlanarImage(pixels: [UInt8](repeating: 77, count: 2 * 40 * 30), channels: 2, height: 40, width: 30)
        for (h, w) in [(3, 4), (40, 7), (100, 30), (41, 29), (1, 1), (13, 97)] {
            #expect(resizeImage(constant, height: h, width: w).pixels.allSatisfy { $0 == 77 })
        }
        // Downscaling a fine checkerboard 8x averages it instead of sampling it.
        let checker = PlanarImage(pixels: (0..<64 * 64).map { ($0 / 64 + $0 % 64) % 2 == 0 ? 255 : 0 },
                                  channels: 1, height: 64, width: 64)
        #expect(resizeImage(checker, height: 8, width: 8).pixels.allSatisfy { (126...129).contains($0) })
    }

    @Test("writePNG writes atomically and reports failures")
    func writePNGFile() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/plot.png"
            let pixels: [UInt8] = (0..<(6 * 4 * 3)).map { UInt8($0 * 3) }
            try writePNG(path: path, pixels: pixels, width: 6, height: 4, channels: 3)
            #expect(try readImage(path: path).pixels == planar(pixels, channels: 3))
            let gray: [UInt8] = Array(repeating: 200, count: 12)
            try writePNG(path: path, pixels: gray, width: 3, height: 4, channels: 1)  // replaces it
            #expect(try readImage(path: path, channels: 1) == PlanarImage(pixels: gray, channels: 1, height: 4, width: 3))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["plot.png"])  // no temporary left

            let missing = dir + "/no/such/folder/plot.png"
            do {
                try writePNG(path: missing, pixels: gray, width: 3, height: 4, channels: 1)
                Issue.record("wrote into a missing folder")
            } catch let error as DataError {
                #expect(error.path == missing && error.description.hasPrefix(missing + ": cannot write: "))
            }
            #expect(throws: DataError.writeFailed(path: path, reason: "12 pixel bytes for a 3x4 image with 3 channels")) {
                try writePNG(path: path, pixels: gray, width: 3, height: 4, channels: 3)
            }
            #expect(throws: DataError.self) { try encodePNG(pixels: [], width: 0, height: 0, channels: 1) }
            #expect(throws: DataError.self) { try encodePNG(pixels: gray, width: 3, height: 4, channels: 5) }
        }
    }
}
