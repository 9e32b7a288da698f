import Foundation

/// How pixels outside the image are filled when an augmentation moves it.
public enum FillMode: String, Codable, Sendable, CaseIterable {
    /// Zero (black) pixels: the paper's and torchvision's pad-and-crop.
    case constant
    /// The nearest edge pixel (Keras `nearest`, torchvision `edge`).
    case nearest
    /// Mirror without repeating the edge (`d c b | a b c d`, torchvision and NumPy `reflect`).
    case reflect
}

/// One random image transformation, drawn afresh for every image and epoch.
///
/// Written on the command line as a comma-separated list, e.g. `flip,crop:4` (the paper's) or
/// `flip,shift:0.1,rotate:15,zoom:0.1` (the Keras tutorial's); see ``parseList(_:)``.
public enum Augmentation: Codable, Sendable, Equatable {
    /// Mirror left-right with probability 1/2.
    case horizontalFlip
    /// Pad by `padding` pixels on each side and take a random crop of the original size
    /// (He et al. 2016: 4 pixels, zero fill).
    case padCrop(padding: Int, fill: FillMode)
    /// Translate by up to the given fractions of width and height (Keras `width_shift_range`).
    case shift(width: Float, height: Float, fill: FillMode)
    /// Rotate by up to +-`degrees` (at most 360) about the centre.
    case rotation(degrees: Float, fill: FillMode)
    /// Shear along x by an angle of up to +-`degrees`, below 90 (Keras `shear_range`).
    case shear(degrees: Float, fill: FillMode)
    /// Scale by a factor in `1-range ... 1+range` per axis (Keras `zoom_range`).
    case zoom(range: Float, fill: FillMode)
    /// Zero a random `size` x `size` square (DeVries & Taylor 2017), clipped at the borders;
    /// `size` is at most ``DataLimits/maximumImageSide``.
    case cutout(size: Int)

    /// The list syntax of one item: `flip`, `crop:4[:reflect]`, `shift:0.1[:0.1][:nearest]`,
    /// `rotate:15[:fill]`, `shear:10[:fill]`, `zoom:0.1[:fill]`, `cutout:8`.
    public var specification: String {
        switch self {
        case .horizontalFlip: "flip"
        case .padCrop(let p, let f): "crop:\(p):\(f.rawValue)"
        case .shift(let w, let h, let f): "shift:\(w):\(h):\(f.rawValue)"
        case .rotation(let d, let f): "rotate:\(d):\(f.rawValue)"
        case .shear(let d, let f): "shear:\(d):\(f.rawValue)"
        case .zoom(let r, let f): "zoom:\(r):\(f.rawValue)"
        case .cutout(let s): "cutout:\(s)"
        }
    }

    /// Parses `flip,crop:4` and the like; `none` or an empty string is the empty list.
    public static func parseList(_ text: String) throws -> [Augmentation] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty || trimmed == "none" { return [] }
        return try trimmed.split(separator: ",").map { try parse(String($0).trimmingCharacters(in: .whitespaces)) }
    }

    /// Parses one item of ``parseList(_:)``.
    public static func parse(_ item: String) throws -> Augmentation {
        let parts = item.lowercased().split(separator: ":").map(String.init)
        func bad(_ why: String) -> DataOptionError { DataOptionError("augmentation '\(item)': \(why)") }
        var fill = FillMode.constant
        var numbers: [Float] = []
        for part in parts.dropFirst() {
            if let mode = FillMode(rawValue: part) { fill = mode }
            else if let value = Float(part), value.isFinite, value >= 0 { numbers.append(value) }
            else { throw bad("'\(part)' is neither a non-negative number nor a fill mode (constant, nearest, reflect)") }
        }
        func number(_ i: Int, default value: Float? = nil) throws -> Float {
            if i < numbers.count { return numbers[i] }
            if let value { return value }
            throw bad("needs a value, e.g. \(parts[0]):\(parts[0] == "crop" ? "4" : "0.1")")
        }
        switch parts[0] {
        case "flip", "hflip": return .horizontalFlip
        case "crop", "pad-crop":
            let p = try number(0, default: 4)
            guard p == p.rounded(), p <= 64 else { throw bad("padding must be a whole number of pixels up to 64") }
            return .padCrop(padding: Int(p), fill: fill)
        case "shift":
            let w = try number(0)
            let h = try number(1, default: w)
            guard w < 1, h < 1 else { throw bad("shift fractions must be below 1") }
            return .shift(width: w, height: h, fill: fill)
        case "rotate", "rotation":
            let d = try number(0)
            guard d <= 360 else { throw bad("rotation must be at most 360 degrees") }
            return .rotation(degrees: d, fill: fill)
        case "shear":
            let d = try number(0)
            // tan(90 degrees) is infinite: the sheared image would be a line.
            guard d < 90 else { throw bad("shear must be below 90 degrees") }
            return .shear(degrees: d, fill: fill)
        case "zoom":
            let r = try number(0)
            guard r < 1 else { throw bad("zoom range must be below 1") }
            return .zoom(range: r, fill: fill)
        case "cutout":
            let s = try number(0, default: 8)
            guard s == s.rounded(), s >= 1, s <= Float(DataLimits.maximumImageSide) else {
                throw bad("cutout size must be a whole number of pixels from 1 to \(DataLimits.maximumImageSide)")
            }
            return .cutout(size: Int(s))
        default:
            throw bad("unknown; known: flip, crop, shift, rotate, shear, zoom, cutout")
        }
    }
}

/// An impossible data-pipeline setting (an augmentation list, a split, a normalization).
public struct DataOptionError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A small, fast, seedable generator (SplitMix64) for augmentation and shuffling: a stream per
/// (seed, epoch, image) so that results do not depend on batching or threads.
public struct DataRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one image of one epoch.
    public init(seed: UInt64, epoch: Int, index: Int) {
        var mixer = DataRandom(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        state = mixer.next() ^ UInt64(truncatingIfNeeded: epoch) &* 0xD1B5_4A32_D192_ED03
        state = next() ^ UInt64(truncatingIfNeeded: index) &* 0xABC9_8388_FB8B_5D8D
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `-1 ... 1`.
    mutating func symmetric() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
}

/// Applies a list of augmentations to uint8 CHW images.
///
/// Geometric augmentations compose into one map from output to input pixels, sampled once:
/// a flip and integer translations (the paper's recipe) copy pixels exactly; rotation, shear,
/// zoom and fractional shifts sample bilinearly. Cutout applies last.
public struct Augmenter: Sendable {
    public let augmentations: [Augmentation]
    public let channels: Int, height: Int, width: Int

    public init(_ augmentations: [Augmentation], channels: Int, height: Int, width: Int) {
        self.augmentations = augmentations
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// Whether the list changes images at all.
    public var isIdentity: Bool { augmentations.isEmpty }

    /// Writes the augmented copy of `source` to `destination` (both `channels * height * width` bytes).
    public func apply(_ source: UnsafePointer<UInt8>, to destination: UnsafeMutablePointer<UInt8>,
                      using random: inout DataRandom) {
        // Output pixel (y, x) reads input (a*x + b*y + c, d*x + e*y + f) in (x, y) order.
        var flip = false
        var tx: Float = 0, ty: Float = 0          // translation in pixels
        var angle: Float = 0, shear: Float = 0    // radians
        var zx: Float = 1, zy: Float = 1
        var fill = FillMode.constant
        var cutout = 0
        var integral = true
        for augmentation in augmentations {
            switch augmentation {
            case .horizontalFlip:
                flip = random.next() & 1 == 1
            case .padCrop(let p, let f):
                // A run file's JSON reaches here without `parse`: keep `p` where 2p + 1 cannot overflow.
                let p = min(max(p, 0), DataLimits.maximumImageSide)
                tx += Float(Int(random.next() % UInt64(2 * p + 1)) - p)
                ty += Float(Int(random.next() % UInt64(2 * p + 1)) - p)
                fill = f
            case .shift(let w, let h, let f):
                let dx = random.symmetric() * w * Float(width), dy = random.symmetric() * h * Float(height)
                // Keras shifts by whole pixels when given fractions; we do too, so the copy stays exact.
                tx += dx.rounded()
                ty += dy.rounded()
                fill = f
            case .rotation(let degrees, let f):
                angle += random.symmetric() * degrees * .pi / 180
                fill = f
                integral = false
            case .shear(let degrees, let f):
                shear += random.symmetric() * degrees * .pi / 180
                fill = f
                integral = false
            case .zoom(let range, let f):
                zx *= 1 + random.symmetric() * range
                zy *= 1 + random.symmetric() * range
                fill = f
                integral = false
            case .cutout(let size):
                cutout = min(max(size, 0), DataLimits.maximumImageSide)
            }
        }
        if integral {
            copyTranslated(source, destination, flip: flip, tx: Int(tx), ty: Int(ty), fill: fill)
        } else {
            sampleAffine(source, destination, flip: flip, tx: tx, ty: ty, angle: angle, shear: shear, zx: zx, zy: zy, fill: fill)
        }
        if cutout > 0 {
            let cy = Int(random.next() % UInt64(height)), cx = Int(random.next() % UInt64(width))
            let y0 = max(0, cy - cutout / 2), y1 = min(height, cy - cutout / 2 + cutout)
            let x0 = max(0, cx - cutout / 2), x1 = min(width, cx - cutout / 2 + cutout)
            if y0 < y1, x0 < x1 {
                for c in 0..<channels {
                    for y in y0..<y1 { (destination + (c * height + y) * width + x0).update(repeating: 0, count: x1 - x0) }
                }
            }
        }
    }

    /// ``resolve(_:_:_:)`` for tests.
    public static func resolveForTesting(_ i: Int, _ n: Int, _ fill: FillMode) -> Int { resolve(i, n, fill) }

    /// Resolves an out-of-range coordinate; -1 means "fill with zero".
    @inline(__always) static func resolve(_ i: Int, _ n: Int, _ fill: FillMode) -> Int {
        if i >= 0, i < n { return i }
        switch fill {
        case .constant: return -1
        case .nearest: return i < 0 ? 0 : n - 1
        case .reflect:
            guard n > 1 else { return 0 }
            let period = 2 * (n - 1)
            var r = i % period
            if r < 0 { r += period }
            return r < n ? r : period - r
        }
    }

    private func copyTranslated(_ source: UnsafePointer<UInt8>, _ destination: UnsafeMutablePointer<UInt8>,
                                flip: Bool, tx: Int, ty: Int, fill: FillMode) {
        // Output (y, x) = flipped input (y - ty, x - tx).
        withUnsafeTemporaryAllocation(of: Int.self, capacity: width) { columns in
            for x in 0..<width {
                let sx = Self.resolve(x - tx, width, fill)
                columns[x] = sx < 0 ? -1 : (flip ? width - 1 - sx : sx)
            }
            let plane = height * width
            for y in 0..<height {
                let sy = Self.resolve(y - ty, height, fill)
                for c in 0..<channels {
                    let out = destination + c * plane + y * width
                    if sy < 0 { out.update(repeating: 0, count: width); continue }
                    let row = source + c * plane + sy * width
                    if !flip, tx == 0 { out.update(from: row, count: width); continue }
                    for x in 0..<width {
                        let sx = columns[x]
                        out[x] = sx < 0 ? 0 : row[sx]
                    }
                }
            }
        }
    }

    /// A coordinate beyond any image (whose sides are at most ``DataLimits/maximumImageSide``)
    /// that still converts to `Int`.
    private static let farOutside: Float = 16_777_216  // 2^24

    private func sampleAffine(_ source: UnsafePointer<UInt8>, _ destination: UnsafeMutablePointer<UInt8>,
                              flip: Bool, tx: Float, ty: Float, angle: Float, shear: Float, zx: Float, zy: Float,
                              fill: FillMode) {
        // Inverse map about the image centre: input = R^-1 S^-1 Z^-1 (output - centre - t) + centre.
        let cx = Float(width - 1) / 2, cy = Float(height - 1) / 2
        let cosA = cos(angle), sinA = sin(angle), tanS = tan(shear)
        let plane = height * width
        for y in 0..<height {
            for x in 0..<width {
                var u = Float(x) - cx - tx, v = Float(y) - cy - ty
                // undo zoom, shear (x += tan * y), rotation
                u /= zx; v /= zy
                u -= tanS * v
                let ru = cosA * u + sinA * v, rv = -sinA * u + cosA * v
                var sx = ru + cx
                var sy = rv + cy
                if flip { sx = Float(width - 1) - sx }
                // Chained zooms can shrink the scale to zero (an infinite or NaN coordinate), and
                // converting a Float beyond Int's range stops the program: clamp far outside first.
                sx = sx.isNaN ? -Self.farOutside : min(max(sx, -Self.farOutside), Self.farOutside)
                sy = sy.isNaN ? -Self.farOutside : min(max(sy, -Self.farOutside), Self.farOutside)
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = sx - Float(x0), fy = sy - Float(y0)
                let xa = Self.resolve(x0, width, fill), xb = Self.resolve(x0 + 1, width, fill)
                let ya = Self.resolve(y0, height, fill), yb = Self.resolve(y0 + 1, height, fill)
                for c in 0..<channels {
                    let p = source + c * plane
                    @inline(__always) func at(_ yy: Int, _ xx: Int) -> Float { yy < 0 || xx < 0 ? 0 : Float(p[yy * width + xx]) }
                    let value = (at(ya, xa) * (1 - fx) + at(ya, xb) * fx) * (1 - fy) + (at(yb, xa) * (1 - fx) + at(yb, xb) * fx) * fy
                    destination[c * plane + y * width + x] = UInt8(max(0, min(255, value.rounded())))
                }
            }
        }
    }
}
