import Foundation
import ResNetData

/// An opaque 8-bit RGB color.
public struct Color: Sendable, Equatable, Hashable {
    public var r: UInt8, g: UInt8, b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    /// `0xRRGGBB`.
    public init(hex: UInt32) {
        self.init(UInt8((hex >> 16) & 0xFF), UInt8((hex >> 8) & 0xFF), UInt8(hex & 0xFF))
    }

    /// The gray of level `v`.
    public init(gray v: UInt8) { self.init(v, v, v) }

    public static let white = Color(255, 255, 255)
    public static let black = Color(0, 0, 0)

    /// `self` moved towards `other` by `fraction` (0: `self`, 1: `other`).
    public func mixed(with other: Color, _ fraction: Double) -> Color {
        let t = min(1, max(0, fraction))
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) + (Double(b) - Double(a)) * t).rounded()) }
        return Color(mix(r, other.r), mix(g, other.g), mix(b, other.b))
    }
}

/// Where a line of text sits relative to the x coordinate it is drawn at.
public enum TextAlignment: Sendable {
    case left, center, right
}

/// A small RGB raster for plots: filled rectangles, thick lines, discs, images and text in a
/// built-in 5x7 bitmap font at integer scales, written out as PNG.
///
/// Coordinates are pixels, x to the right and y down from the top-left corner. Drawing outside
/// the canvas is clipped, never an error.
public struct Canvas: Sendable {
    public let width: Int, height: Int
    /// `height * width * 3` bytes, row after row, RGB interleaved (what ``writePNG(path:)`` encodes).
    public private(set) var pixels: [UInt8]

    public init(width: Int, height: Int, background: Color = .white) {
        precondition(width > 0 && height > 0, "Canvas: empty size \(width)x\(height)")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(background)
    }

    /// The color at (`x`, `y`), which must be on the canvas.
    public func pixel(x: Int, y: Int) -> Color {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "Canvas: (\(x), \(y)) is outside \(width)x\(height)")
        let i = (y * width + x) * 3
        return Color(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Sets one pixel; nothing happens outside the canvas.
    @inline(__always)
    public mutating func setPixel(x: Int, y: Int, _ color: Color) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = color.r
        pixels[i + 1] = color.g
        pixels[i + 2] = color.b
    }

    /// Paints the whole canvas.
    public mutating func fill(_ color: Color) {
        fillRect(x: 0, y: 0, width: width, height: height, color)
    }

    /// Fills the rectangle of `width` x `height` pixels whose top-left pixel is (`x`, `y`).
    public mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, _ color: Color) {
        let x0 = max(0, x), x1 = min(width, x + w), y0 = max(0, y), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        pixels.withUnsafeMutableBufferPointer { p in
            for yy in y0..<y1 {
                var i = (yy * width + x0) * 3
                for _ in x0..<x1 {
                    p[i] = color.r; p[i + 1] = color.g; p[i + 2] = color.b
                    i += 3
                }
            }
        }
    }

    /// Outlines a rectangle with a border `thickness` pixels wide, inside its bounds.
    public mutating func strokeRect(x: Int, y: Int, width w: Int, height h: Int, _ color: Color, thickness: Int = 1) {
        let t = max(1, min(thickness, (min(w, h) + 1) / 2))
        fillRect(x: x, y: y, width: w, height: t, color)
        fillRect(x: x, y: y + h - t, width: w, height: t, color)
        fillRect(x: x, y: y, width: t, height: h, color)
        fillRect(x: x + w - t, y: y, width: t, height: h, color)
    }

    /// Draws a straight line from (`x0`, `y0`) to (`x1`, `y1`) (pixel centers), `thickness`
    /// pixels wide: a square brush stamped at every pixel step along the longer axis.
    /// - Parameter dash: pixels drawn and skipped in turn, e.g. `(6, 4)`; `nil` for a solid line.
    public mutating func drawLine(from x0: Double, _ y0: Double, to x1: Double, _ y1: Double, _ color: Color,
                                  thickness: Int = 1, dash: (on: Int, off: Int)? = nil) {
        guard x0.isFinite, y0.isFinite, x1.isFinite, y1.isFinite else { return }
        let dx = x1 - x0, dy = y1 - y0
        let steps = max(1, Int(max(abs(dx), abs(dy)).rounded(.up)))
        let t = max(1, thickness)
        let offset = Double(t - 1) / 2
        let period = dash.map { max(1, $0.on + $0.off) }
        for i in 0...steps {
            if let dash, let period, i % period >= dash.on { continue }
            let f = Double(i) / Double(steps)
            let px = Int((x0 + f * dx - offset).rounded()), py = Int((y0 + f * dy - offset).rounded())
            if t == 1 { setPixel(x: px, y: py, color) } else { fillRect(x: px, y: py, width: t, height: t, color) }
        }
    }

    /// Fills the disc of `radius` pixels around (`x`, `y`).
    public mutating func fillCircle(x: Double, y: Double, radius: Double, _ color: Color) {
        guard x.isFinite, y.isFinite, radius > 0 else { return }
        let r2 = radius * radius
        for yy in Int((y - radius).rounded(.down))...Int((y + radius).rounded(.up)) {
            for xx in Int((x - radius).rounded(.down))...Int((x + radius).rounded(.up)) {
                let ddx = Double(xx) - x, ddy = Double(yy) - y
                if ddx * ddx + ddy * ddy <= r2 + 0.25 { setPixel(x: xx, y: yy, color) }
            }
        }
    }

    /// Copies a planar 8-bit image (1 channel: gray, 3: RGB) with its top-left corner at
    /// (`x`, `y`), each pixel becoming a `scale` x `scale` block (nearest-neighbour upscaling).
    public mutating func drawImage(_ image: PlanarImage, x: Int, y: Int, scale: Int = 1) {
        precondition(image.channels == 1 || image.channels == 3, "Canvas.drawImage: \(image.channels) channels (1 or 3 supported)")
        let s = max(1, scale)
        let plane = image.height * image.width
        for iy in 0..<image.height {
            for ix in 0..<image.width {
                let p = iy * image.width + ix
                let color = image.channels == 1 ? Color(gray: image.pixels[p])
                    : Color(image.pixels[p], image.pixels[plane + p], image.pixels[2 * plane + p])
                if s == 1 { setPixel(x: x + ix, y: y + iy, color) } else { fillRect(x: x + ix * s, y: y + iy * s, width: s, height: s, color) }
            }
        }
    }

    // MARK: - Text

    /// Horizontal distance between character origins at scale 1 (5 pixels of glyph, 1 of space).
    public static let glyphAdvance = 6
    /// Height of a line of text at scale 1: 7 rows above the baseline, 1 for descenders.
    public static let glyphHeight = 8
    /// Height of capitals and digits at scale 1.
    public static let capHeight = 7

    /// The width in pixels of `text` drawn at `scale` (no trailing spacing).
    public static func textWidth(_ text: String, scale: Int = 1) -> Int {
        let n = text.unicodeScalars.count
        return n == 0 ? 0 : (n * glyphAdvance - 1) * max(1, scale)
    }

    /// Draws one line of `text` whose top is `y` (the top of capitals) and whose left edge,
    /// center or right edge is `x`. Characters outside printable ASCII draw as `?`.
    public mutating func drawText(_ text: String, x: Int, y: Int, _ color: Color, scale: Int = 1,
                                  alignment: TextAlignment = .left) {
        let s = max(1, scale)
        let w = Self.textWidth(text, scale: s)
        var cx: Int
        switch alignment {
        case .left: cx = x
        case .center: cx = x - w / 2
        case .right: cx = x - w
        }
        for scalar in text.unicodeScalars {
            let code = (32...126).contains(scalar.value) ? Int(scalar.value) : Int(UInt8(ascii: "?"))
            let bits = Self.font[code - 32]
            for row in 0..<Self.glyphHeight {
                let rowBits = (bits >> UInt64(8 * (Self.glyphHeight - 1 - row))) & 0x1F
                guard rowBits != 0 else { continue }
                for column in 0..<5 where rowBits & (0x10 >> UInt64(column)) != 0 {
                    if s == 1 { setPixel(x: cx + column, y: y + row, color) }
                    else { fillRect(x: cx + column * s, y: y + row * s, width: s, height: s, color) }
                }
            }
            cx += Self.glyphAdvance * s
        }
    }

    /// The glyphs of ASCII 32 (space) to 126 (`~`), 5 pixels wide and 8 rows tall: each
    /// `UInt64` holds 8 row bytes, the top row in the high byte; in a row byte, bit 4 is the
    /// leftmost pixel. So the hex digits read as the picture: `A` is `0E 11 11 1F 11 11 11 00`.
    /// Drawn for this project; capitals and digits use rows 0-6, descenders reach row 7.
    static let font: [UInt64] = [
        0x0000000000000000, 0x0404040404000400, 0x0A0A0A0000000000, 0x0A0A1F0A1F0A0A00, 0x040F140E051E0400, 0x1819020408130300,  //   ! " # $ %
        0x0C12140815120D00, 0x0404080000000000, 0x0204080808040200, 0x0804020202040800, 0x0004150E15040000, 0x0004041F04040000,  // & ' ( ) * +
        0x00000000000C0408, 0x0000001F00000000, 0x00000000000C0C00, 0x0001020408100000, 0x0E11131519110E00, 0x040C040404040E00,  // , - . / 0 1
        0x0E11010204081F00, 0x1F02040201110E00, 0x02060A121F020200, 0x1F101E0101110E00, 0x0608101E11110E00, 0x1F01020408080800,  // 2 3 4 5 6 7
        0x0E11110E11110E00, 0x0E11110F01020C00, 0x000C0C000C0C0000, 0x000C0C000C040800, 0x0204081008040200, 0x00001F001F000000,  // 8 9 : ; < =
        0x0804020102040800, 0x0E11010204000400, 0x0E11171517100F00, 0x0E11111F11111100, 0x1E11111E11111E00, 0x0E11101010110E00,  // > ? @ A B C
        0x1C12111111121C00, 0x1F10101E10101F00, 0x1F10101E10101000, 0x0E11101711110F00, 0x1111111F11111100, 0x0E04040404040E00,  // D E F G H I
        0x0702020202120C00, 0x1112141814121100, 0x1010101010101F00, 0x111B151511111100, 0x1111191513111100, 0x0E11111111110E00,  // J K L M N O
        0x1E11111E10101000, 0x0E11111115120D00, 0x1E11111E14121100, 0x0F10100E01011E00, 0x1F04040404040400, 0x1111111111110E00,  // P Q R S T U
        0x11111111110A0400, 0x1111111515150A00, 0x11110A040A111100, 0x11110A0404040400, 0x1F01020408101F00, 0x0E08080808080E00,  // V W X Y Z [
        0x0010080402010000, 0x0E02020202020E00, 0x040A110000000000, 0x000000000000001F, 0x0804020000000000, 0x00000E010F110F00,  // \ ] ^ _ ` a
        0x1010161911111E00, 0x00000E1010110E00, 0x01010D1311110F00, 0x00000E111F100E00, 0x0609081C08080800, 0x00000F11110F010E,  // b c d e f g
        0x1010161911111100, 0x04000C0404040E00, 0x020006020202120C, 0x1010121418141200, 0x0C04040404040E00, 0x00001A1515151500,  // h i j k l m
        0x0000161911111100, 0x00000E1111110E00, 0x00001E11111E1010, 0x00000F11110F0101, 0x0000161910101000, 0x00000F100E011E00,  // n o p q r s
        0x08081C0808090600, 0x0000111111130D00, 0x00001111110A0400, 0x0000111115150A00, 0x0000110A040A1100, 0x00001111110F010E,  // t u v w x y
        0x00001F0204081F00, 0x0204040804040200, 0x0404040404040400, 0x0804040204040800, 0x0000081502000000,  // z { | } ~
    ]

    // MARK: - Output

    /// Writes the canvas as an RGB PNG, atomically (see ResNetData's `writePNG`).
    public func writePNG(path: String) throws {
        try ResNetData.writePNG(path: path, pixels: pixels, width: width, height: height, channels: 3)
    }
}
