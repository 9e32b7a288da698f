import CPNG
import CTurboJPEG

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An 8-bit image stored planar, channels first (CHW), the layout of ``ImageDataset``:
/// every row of channel 0, then every row of channel 1, and so on.
public struct PlanarImage: Sendable, Equatable {
    /// `channels * height * width` bytes.
    public var pixels: [UInt8]
    /// Image geometry.
    public var channels: Int, height: Int, width: Int

    /// Creates an image; `pixels.count` must equal `channels * height * width`.
    public init(pixels: [UInt8], channels: Int, height: Int, width: Int) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "PlanarImage: negative dimension")
        precondition(pixels.count == channels * height * width,
                     "PlanarImage: \(pixels.count) bytes for \(channels)x\(height)x\(width)")
        self.pixels = pixels
        self.channels = channels
        self.height = height
        self.width = width
    }
}

/// The largest image the decoders accept, in pixels: Pillow's decompression-bomb limit, so
/// that a corrupt or hostile header cannot make us allocate gigabytes.
public let maximumImagePixels = 178_956_970

/// Decodes a JPEG or PNG image into planar bytes with `channels` channels (1 or 3).
///
/// The format is recognized by its signature, not by the name in `path`, which is only used
/// in errors. Color is converted the way Pillow's `convert` does it (and so torchvision's
/// image-folder loader): gray is replicated to RGB; RGB becomes gray with the ITU-R 601 luma
/// weights `(19595 R + 38470 G + 7471 B + 2^15) >> 16`; an alpha channel is dropped, not
/// composited; palettes are expanded; 16-bit PNG samples are scaled to 8 bits with rounding
/// (`v * 255 / 65535`; Pillow keeps the high byte). A color JPEG asked for one channel gives
/// its decoded luma (Y) plane. CMYK JPEGs are taken as Adobe (inverted) CMYK and converted
/// like Pillow: `R = K - K (255 - C) / 255` with `C`, `K` the stored values.
///
/// A PNG whose gAMA chunk is far from sRGB is converted to sRGB by libpng; EXIF orientation
/// is ignored (as by Pillow's `open` and torchvision's loader).
///
/// A JPEG whose entropy-coded data is damaged or cut short throws; harmless libjpeg warnings
/// (extraneous bytes before a marker, unknown JFIF revision) do not.
///
/// - Throws: ``DataError/notAnImage(path:reason:)`` when the bytes are neither JPEG nor PNG,
///   ``DataError/corruptImage(path:reason:)`` when decoding fails, and
///   ``DataError/unsupported(path:reason:)`` for a channel count other than 1 or 3 or an
///   image larger than `maximumPixels` (at most ``maximumImagePixels``), checked from the
///   header before the pixels are allocated.
public func decodeImage(_ bytes: [UInt8], channels: Int = 3, path: String, maximumPixels: Int = maximumImagePixels) throws -> PlanarImage {
    try checkChannels(channels, path: path)
    let decoder = ImageDecoder()
    decoder.pixelLimit = maximumPixels
    try bytes.withUnsafeBufferPointer { try decoder.decode($0, channels: channels, path: path) }
    var pixels = [UInt8](repeating: 0, count: channels * decoder.height * decoder.width)
    pixels.withUnsafeMutableBufferPointer { decoder.writePlanar(channels: channels, to: $0.baseAddress!) }
    return PlanarImage(pixels: pixels, channels: channels, height: decoder.height, width: decoder.width)
}

/// Reads and decodes the JPEG or PNG image at `path`; see ``decodeImage(_:channels:path:)``.
///
/// The path must name a regular file of at most ``DataLimits/imageFileBytes``; a device such
/// as `/dev/zero`, a FIFO or a folder is refused before anything is read.
///
/// - Throws: ``DataError/fileNotFound(path:)``, ``DataError/notARegularFile(path:kind:)``,
///   ``DataError/tooLarge(path:what:limit:hint:)`` or ``DataError/readFailed(path:reason:)``
///   when the file cannot be read, otherwise the errors of ``decodeImage(_:channels:path:)``.
public func readImage(path: String, channels: Int = 3) throws -> PlanarImage {
    try checkChannels(channels, path: path)
    return try decodeImage(readImageFile(path), channels: channels, path: path)
}

/// The bytes of the image file at `path`, bounded by ``DataLimits/imageFileBytes``.
func readImageFile(_ path: String) throws -> [UInt8] {
    try readFileBytes(path: path, limit: DataLimits.imageFileBytes, format: "a JPEG or PNG image")
}

/// Encodes 8-bit pixels as a PNG file's bytes.
///
/// - Parameters:
///   - pixels: interleaved (HWC) samples, row after row, `height * width * channels` bytes.
///   - channels: 1 gray, 2 gray + alpha, 3 RGB or 4 RGBA.
/// - Throws: ``DataError/writeFailed(path:reason:)`` when the geometry does not match
///   `pixels` or libpng refuses the image.
public func encodePNG(pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> [UInt8] {
    try encodePNG(pixels: pixels, width: width, height: height, channels: channels, path: "PNG in memory")
}

/// Encodes 8-bit interleaved (HWC) pixels as PNG (see ``encodePNG(pixels:width:height:channels:)``)
/// and writes them to `path` atomically: to a temporary file in the same directory, which is
/// synced and then renamed over `path`, so a reader never sees a partial file.
///
/// - Throws: ``DataError/writeFailed(path:reason:)`` naming `path`.
public func writePNG(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int) throws {
    let png = try encodePNG(pixels: pixels, width: width, height: height, channels: channels, path: path)
    try writeFileAtomically(path: path, bytes: png)
}

/// The channel counts decoding supports.
func checkChannels(_ channels: Int, path: String) throws {
    guard channels == 1 || channels == 3 else {
        throw DataError.unsupported(path: path, reason: "images can be decoded to 1 or 3 channels, not \(channels)")
    }
}

func encodePNG(pixels: [UInt8], width: Int, height: Int, channels: Int, path: String) throws -> [UInt8] {
    guard (1...4).contains(channels), width > 0, height > 0, width <= Int(Int32.max) / 4, height <= Int(Int32.max) else {
        throw DataError.writeFailed(path: path, reason: "cannot encode a \(width)x\(height) PNG with \(channels) channels")
    }
    guard pixels.count == width * height * channels else {
        throw DataError.writeFailed(
            path: path, reason: "\(pixels.count) pixel bytes for a \(width)x\(height) image with \(channels) channels")
    }
    // Gray, gray + alpha, RGB, RGBA (png.h's composite PNG_FORMAT_* macros are not imported).
    let formats = [0, PNG_FORMAT_FLAG_ALPHA, PNG_FORMAT_FLAG_COLOR, PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA]
    // Deflate never expands by more than ~0.1%; the filter bytes, chunk headers and zlib
    // framing are covered by the extra. If libpng still needs more it says how much.
    var capacity = pixels.count + height + pixels.count / 64 + 1024
    for _ in 0..<2 {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = png_uint_32(formats[channels - 1])
        var output = [UInt8](repeating: 0, count: capacity)
        var size = png_alloc_size_t(capacity)
        let ok = output.withUnsafeMutableBytes { out in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, out.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
        }
        if ok != 0 {
            output.removeSubrange(Int(size)...)
            return output
        }
        guard Int(size) > capacity else {
            throw DataError.writeFailed(path: path, reason: "libpng: \(pngMessage(&image))")
        }
        capacity = Int(size)
    }
    throw DataError.writeFailed(path: path, reason: "libpng needed more output space than it asked for")
}

/// Writes `bytes` to a fresh temporary file next to `path`, syncs it and renames it to `path`.
func writeFileAtomically(path: String, bytes: [UInt8]) throws {
    let slash = path.lastIndex(of: "/")
    let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
    let directory = slash.map { String(path[...$0]) } ?? ""
    func failure(_ what: String) -> DataError {
        DataError.writeFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }
    var temporary = ""
    var fd: Int32 = -1
    for attempt in 0..<100 {
        temporary = "\(directory).\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd >= 0 || errno != EEXIST || attempt == 99 { break }
    }
    guard fd >= 0 else { throw failure("cannot create temporary file \(temporary)") }
    var written = 0
    var failed: DataError?
    bytes.withUnsafeBytes { raw in
        while written < raw.count {
            let count = write(fd, raw.baseAddress! + written, raw.count - written)
            if count < 0 {
                if errno == EINTR { continue }
                failed = failure("cannot write \(temporary)")
                return
            }
            written += count
        }
    }
    if failed == nil && fsync(fd) != 0 { failed = failure("cannot sync \(temporary)") }
    if close(fd) != 0 && failed == nil { failed = failure("cannot close \(temporary)") }
    if failed == nil && rename(temporary, path) != 0 { failed = failure("cannot rename \(temporary) to it") }
    if let failed {
        unlink(temporary)
        throw failed
    }
}

/// The message libpng left in `image` after a failed call.
private func pngMessage(_ image: inout png_image) -> String {
    let message = withUnsafeBytes(of: &image.message) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    return message.isEmpty ? "unknown error" : message
}

/// Decodes JPEG and PNG images into a reusable interleaved (HWC) buffer, then writes them
/// planar with the channel count and size asked for. One decoder per thread; it keeps its
/// TurboJPEG handle and buffers between images, so decoding many small images allocates little.
final class ImageDecoder {
    /// Geometry of the last decoded image.
    private(set) var height = 0, width = 0
    /// Interleaved samples per pixel of the last decoded image: 1 gray, 2 gray + alpha,
    /// 3 RGB, 4 RGBA.
    private(set) var sourceChannels = 0
    /// The last decoded image, `height * width * sourceChannels` bytes (the array may be longer).
    private var interleaved: [UInt8] = []
    /// Planar scratch for images that must be resized.
    private var planar: [UInt8] = []
    private var resizeScratch: [UInt8] = []
    /// The resampler of the last resize, reused while the geometry stays the same.
    private var resampler: Resampler?
    private var jpegHandle: tjhandle?
    /// The largest image this decoder decodes, in pixels (at most ``maximumImagePixels``);
    /// checked from the header, before the pixel buffer is allocated.
    var pixelLimit = maximumImagePixels

    deinit {
        if let jpegHandle { tjDestroy(jpegHandle) }
    }

    /// Decodes `bytes`; `channels` (1 or 3) lets a JPEG decode straight to gray or RGB.
    func decode(_ bytes: UnsafeBufferPointer<UInt8>, channels: Int, path: String) throws {
        height = 0
        width = 0
        sourceChannels = 0
        switch ImageSignature(bytes) {
        case .jpeg: try decodeJPEG(bytes, channels: channels, path: path)
        case .png: try decodePNG(bytes, path: path)
        case .other(let reason): throw DataError.notAnImage(path: path, reason: reason)
        }
    }

    /// Writes the last decoded image planar with `channels` channels (1 or 3) at its own size;
    /// `destination` must hold `channels * height * width` bytes.
    func writePlanar(channels: Int, to destination: UnsafeMutablePointer<UInt8>) {
        let plane = height * width
        let stride = sourceChannels
        interleaved.withUnsafeBufferPointer { buffer in
            let source = buffer.baseAddress!
            if stride < 3 {  // gray, maybe with alpha
                for i in 0..<plane { destination[i] = source[i * stride] }
                for c in 1..<max(channels, 1) { (destination + c * plane).update(from: destination, count: plane) }
            } else if channels == 3 {
                let green = destination + plane, blue = destination + 2 * plane
                for i in 0..<plane {
                    destination[i] = source[i * stride]
                    green[i] = source[i * stride + 1]
                    blue[i] = source[i * stride + 2]
                }
            } else {
                for i in 0..<plane {
                    let r = UInt32(source[i * stride]), g = UInt32(source[i * stride + 1]), b = UInt32(source[i * stride + 2])
                    destination[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
                }
            }
        }
    }

    /// Writes the last decoded image planar with `channels` channels, resized to
    /// `targetHeight` x `targetWidth` (see ``resizeImage(_:height:width:)``) when its size differs.
    func writePlanar(channels: Int, height targetHeight: Int, width targetWidth: Int,
                     to destination: UnsafeMutablePointer<UInt8>) {
        if targetHeight == height && targetWidth == width {
            writePlanar(channels: channels, to: destination)
            return
        }
        let count = channels * height * width
        if planar.count < count { planar = [UInt8](repeating: 0, count: count) }
        let geometry = (height, width, targetHeight, targetWidth)
        if resampler.map({ ($0.height, $0.width, $0.outHeight, $0.outWidth) != geometry }) ?? true {
            resampler = Resampler(height: height, width: width, toHeight: targetHeight, width: targetWidth)
        }
        planar.withUnsafeMutableBufferPointer { buffer in
            writePlanar(channels: channels, to: buffer.baseAddress!)
            resampler!.resample(UnsafePointer(buffer.baseAddress!), channels: channels, to: destination, scratch: &resizeScratch)
        }
    }

    /// Makes room for `count` interleaved bytes.
    private func reserve(_ count: Int) {
        if interleaved.count < count { interleaved = [UInt8](repeating: 0, count: count) }
    }

    private func checkSize(width: Int, height: Int, path: String) throws {
        guard width > 0, height > 0 else {
            throw DataError.corruptImage(path: path, reason: "image size \(width)x\(height)")
        }
        let limit = min(pixelLimit, maximumImagePixels)
        guard let pixels = DataLimits.product([width, height]), pixels <= limit else {
            throw DataError.unsupported(
                path: path, reason: "image of \(width)x\(height) pixels exceeds the limit of \(limit) pixels")
        }
    }

    /// The width and height in the header of a JPEG or PNG image, without decoding it.
    ///
    /// - Throws: the errors of ``decode(_:channels:path:)`` for a file that is not an image or
    ///   whose header is damaged, and ``DataError/unsupported(path:reason:)`` for an image
    ///   larger than ``pixelLimit``.
    func readSize(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> (height: Int, width: Int) {
        switch ImageSignature(bytes) {
        case .jpeg:
            if jpegHandle == nil { jpegHandle = tjInitDecompress() }
            guard let handle = jpegHandle else {
                throw DataError.corruptImage(path: path, reason: "cannot create a TurboJPEG decompressor")
            }
            var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
            if tjDecompressHeader3(handle, bytes.baseAddress, UInt(bytes.count), &w, &h, &subsampling, &colorspace) != 0 {
                let text = String(cString: tjGetErrorStr2(handle))
                guard Self.isHarmlessJPEGWarning(text) else {
                    throw DataError.corruptImage(path: path, reason: "libjpeg-turbo: \(text)")
                }
            }
            try checkSize(width: Int(w), height: Int(h), path: path)
            return (Int(h), Int(w))
        case .png:
            var image = png_image()
            image.version = png_uint_32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
                throw DataError.corruptImage(path: path, reason: "libpng: \(pngMessage(&image))")
            }
            png_image_free(&image)
            try checkSize(width: Int(image.width), height: Int(image.height), path: path)
            return (Int(image.height), Int(image.width))
        case .other(let reason):
            throw DataError.notAnImage(path: path, reason: reason)
        }
    }

    private func decodePNG(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw DataError.corruptImage(path: path, reason: "libpng: \(pngMessage(&image))")
        }
        // 16-bit samples without a gAMA or sRGB chunk are sRGB-encoded, like 8-bit ones (libpng
        // would otherwise take them as linear and gamma-encode them on the way to 8 bits).
        image.flags |= png_uint_32(PNG_IMAGE_FLAG_16BIT_sRGB)
        // 8-bit samples; palettes expanded; the file's own color and alpha kept.
        let format = image.format & png_uint_32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        let samples = (format & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1)
            + (format & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0 ? 1 : 0)
        let w = Int(image.width), h = Int(image.height)
        do {
            try checkSize(width: w, height: h, path: path)
        } catch {
            png_image_free(&image)
            throw error
        }
        image.format = format
        reserve(h * w * samples)
        let ok = interleaved.withUnsafeMutableBytes { out in
            png_image_finish_read(&image, nil, out.baseAddress, png_int_32(w * samples), nil)
        }
        guard ok != 0 else {
            throw DataError.corruptImage(path: path, reason: "libpng: \(pngMessage(&image))")
        }
        (height, width, sourceChannels) = (h, w, samples)
    }

    private func decodeJPEG(_ bytes: UnsafeBufferPointer<UInt8>, channels: Int, path: String) throws {
        if jpegHandle == nil { jpegHandle = tjInitDecompress() }
        guard let handle = jpegHandle else {
            throw DataError.corruptImage(path: path, reason: "cannot create a TurboJPEG decompressor")
        }
        // A failed call leaves the message of its first warning or of its error. (Its error code
        // is no guide: libjpeg-turbo 2.1 reports TJERR_WARNING for an error that follows a warning.)
        func message() -> String { String(cString: tjGetErrorStr2(handle)) }
        func failure(_ message: String) -> DataError {
            DataError.corruptImage(path: path, reason: "libjpeg-turbo: \(message)")
        }
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        if tjDecompressHeader3(handle, bytes.baseAddress, UInt(bytes.count), &w, &h, &subsampling, &colorspace) != 0 {
            let text = message()
            guard Self.isHarmlessJPEGWarning(text) else { throw failure(text) }
        }
        try checkSize(width: Int(w), height: Int(h), path: path)
        let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let format = cmyk ? TJPF_CMYK : channels == 1 ? TJPF_GRAY : TJPF_RGB
        let samples = cmyk ? 4 : channels == 1 ? 1 : 3
        let plane = Int(w) * Int(h)
        reserve(plane * samples)
        try interleaved.withUnsafeMutableBufferPointer { out in
            // Stop at the first warning; if it is harmless, decode again letting warnings pass.
            func decompress(_ flags: Int32) -> Int32 {
                tjDecompress2(handle, bytes.baseAddress, UInt(bytes.count), out.baseAddress, w, 0, h, Int32(format.rawValue), flags)
            }
            if decompress(TJFLAG_STOPONWARNING) != 0 {
                let first = message()
                guard Self.isHarmlessJPEGWarning(first) else { throw failure(first) }
                if decompress(0) != 0 && message() != first { throw failure(message()) }
            }
            if cmyk {  // Adobe CMYK is stored inverted; Pillow's cmyk2rgb on the inverted values.
                let p = out.baseAddress!
                for i in 0..<plane {
                    let k = Int(p[4 * i + 3])
                    for c in 0..<3 {
                        let t = (255 - Int(p[4 * i + c])) * k + 128
                        p[3 * i + c] = UInt8(k - (((t >> 8) + t) >> 8))
                    }
                }
            }
        }
        (height, width, sourceChannels) = (Int(h), Int(w), cmyk ? 3 : samples)
    }

    /// Whether a libjpeg warning leaves the pixels intact: extraneous bytes between markers
    /// (common in files from some cameras and web crawls; Pillow loads them too), an unknown
    /// JFIF revision or Adobe transform code, a bad ICC marker.
    static func isHarmlessJPEGWarning(_ message: String) -> Bool {
        ["extraneous bytes before marker", "unknown JFIF revision", "Unknown Adobe color transform", "bad ICC marker"]
            .contains { message.contains($0) }
    }
}

/// What the first bytes of a file say it is.
enum ImageSignature: Equatable {
    case jpeg, png
    /// Anything else, with a one-line reason naming the format when it is a known one.
    case other(String)

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + magic.count && magic.indices.allSatisfy { bytes[offset + $0] == magic[$0] }
        }
        if starts([0xFF, 0xD8, 0xFF]) {
            self = .jpeg
        } else if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            self = .png
        } else if bytes.isEmpty {
            self = .other("the file is empty")
        } else {
            let known: [(magic: [UInt8], offset: Int, name: String)] = [
                (Array("GIF8".utf8), 0, "GIF"), (Array("BM".utf8), 0, "BMP"), (Array("WEBP".utf8), 8, "WebP"),
                ([0x49, 0x49, 0x2A, 0x00], 0, "TIFF"), ([0x4D, 0x4D, 0x00, 0x2A], 0, "TIFF"),
            ]
            let hex = bytes.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            if let format = known.first(where: { starts($0.magic, at: $0.offset) }) {
                self = .other("\(format.name) images are not supported, only JPEG and PNG")
            } else {
                self = .other("neither JPEG nor PNG (the file starts with \(hex.joined(separator: " ")))")
            }
        }
    }
}
