import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The bounds every reader of the data layer checks before it allocates, so that a damaged,
/// hostile or mistaken input (a `/dev/zero`, a 10000x10000 image at the head of a folder, a
/// gzip bomb, a header declaring 2^32 x 2^32 items) ends in a ``DataError`` instead of an
/// allocation failure, a hang or a crash.
///
/// Each file format has a size bound well above the largest official file of that format and
/// far below any machine's memory; the data set decoded from the files must also fit in
/// ``memoryBudget``. Every bound is checked with overflow-checked arithmetic, before the
/// allocation it protects.
public enum DataLimits {
    /// The most memory one data set may take once decoded: half the machine's physical memory
    /// (`ProcessInfo.physicalMemory`). Images are held once, as uint8; training needs the other
    /// half for the network, its activations, the batches in flight and the operating system.
    public static let memoryBudget: Int = Int(clamping: ProcessInfo.processInfo.physicalMemory / 2)

    /// The largest image file read (JPEG or PNG): 256 MiB. A 24-megapixel camera JPEG is about
    /// 12 MB and a CIFAR-10 JPEG about 1 KB (the largest of `cifar-10-jpeg` is 1,124 bytes).
    public static let imageFileBytes = 256 << 20

    /// The largest CIFAR batch read, binary or pickled, compressed or not, after decompression:
    /// 256 MiB. The largest official one is CIFAR-100's `train.bin`, 153,700,000 bytes (50,000
    /// records of 3,074 bytes); a CIFAR-10 batch is 30,730,000 bytes.
    public static let batchFileBytes = 256 << 20

    /// The largest IDX file read, after decompression: 256 MiB. Fashion-MNIST's and MNIST's
    /// `train-images-idx3-ubyte` are 47,040,016 bytes. (The IDX readers load 10-class data
    /// sets; EMNIST's larger files have more classes.)
    public static let idxFileBytes = 256 << 20

    /// The largest tar archive read into memory, after decompression: 512 MiB. The official
    /// `cifar-10-binary.tar` is 184,391,680 bytes and the shipped sample's tar 9,287,680.
    /// A larger archive is better unpacked with `tar -xf` and given as a folder. The bound
    /// also bounds the time a gzip bomb costs: `resnet dataset-info --data bomb.tar.gz` on
    /// 17 gzip members of 64 MiB of zeros (1.06 GiB) is refused in 1.3 s, where `gzip -dc`
    /// needs 8.8 s for the whole (release build, 2-core AMD EPYC VM at load average 9 from a
    /// training run, 2026-12-01).
    public static let archiveBytes = 512 << 20

    /// The largest side, in pixels, an image folder's images may be brought to
    /// (``DatasetOptions/imageSize``): 4,096, the size of ImageNet's largest images and 128
    /// times CIFAR's.
    public static let maximumImageSide = 4_096

    /// `bytes` in binary units, as a person reads them: `256 MiB`, `1.5 TiB`, `700 bytes`.
    public static func describe(bytes: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.1f", rounded)
        return "\(text) \(units[unit])"
    }

    /// The product of `factors`, or `nil` if it overflows `Int` or a factor is negative. A zero
    /// factor does not hide an overflow of the others: `[0, 2^40, 2^40]` is `nil`, so that
    /// code multiplying a subset of the factors later cannot overflow either.
    public static func product(_ factors: [Int]) -> Int? {
        var nonzero = 1
        var hasZero = false
        for factor in factors {
            guard factor >= 0 else { return nil }
            if factor == 0 {
                hasZero = true
                continue
            }
            let (next, overflow) = nonzero.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            nonzero = next
        }
        return hasZero ? 0 : nonzero
    }

    /// Checks that `count` images of `channels` x `height` x `width` bytes fit in `budget`,
    /// before they are allocated; returns their size in bytes.
    ///
    /// - Throws: ``DataError/tooLarge(path:what:limit:hint:)`` naming `path`, with `hint`.
    @discardableResult
    static func checkDataset(count: Int, channels: Int, height: Int, width: Int, budget: Int = memoryBudget,
                             path: String, hint: String) throws -> Int {
        let what = "the data set (\(count) images of \(channels)x\(height)x\(width) bytes"
        guard let bytes = product([count, channels, height, width]) else {
            throw DataError.tooLarge(path: path, what: what + ", more than fits in memory)", limit: budget, hint: hint)
        }
        guard bytes <= budget else {
            let why = budget == memoryBudget ? " (the limit is half the machine's memory)" : ""
            throw DataError.tooLarge(path: path, what: what + " = \(describe(bytes: bytes)))", limit: budget, hint: hint + why)
        }
        return bytes
    }
}

// MARK: - Reading files

/// What a `stat` mode says a path is, for ``DataError/notARegularFile(path:kind:)``.
private func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: "a folder"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    case S_IFIFO: "a FIFO (named pipe)"
    case S_IFSOCK: "a socket"
    case S_IFLNK: "a symbolic link"
    default: "not a file"
    }
}

/// Opens `path` for reading if it is a regular file (following symbolic links) and returns
/// the descriptor and the file's size.
///
/// A FIFO, device, socket or folder is refused before it is opened (opening a FIFO blocks
/// until a writer appears; `/dev/zero` never ends), and again after, on the open descriptor,
/// in case the path changed in between. `O_NONBLOCK` keeps that second open from blocking.
///
/// - Throws: ``DataError/fileNotFound(path:)``, ``DataError/notARegularFile(path:kind:)`` or
///   ``DataError/readFailed(path:reason:)``.
func openRegularFile(_ path: String) throws -> (descriptor: Int32, size: Int) {
    var info = stat()
    if stat(path, &info) != 0 {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw DataError.fileNotFound(path: path) }
        throw DataError.readFailed(path: path, reason: String(cString: strerror(code)))
    }
    guard info.st_mode & S_IFMT == S_IFREG else { throw DataError.notARegularFile(path: path, kind: fileKind(info.st_mode)) }
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
    if descriptor < 0 {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw DataError.fileNotFound(path: path) }
        throw DataError.readFailed(path: path, reason: String(cString: strerror(code)))
    }
    guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
        let kind = fileKind(info.st_mode)
        close(descriptor)
        throw DataError.notARegularFile(path: path, kind: kind)
    }
    return (descriptor, max(Int(info.st_size), 0))
}

/// The error for a file of `size` bytes above `limit`.
private func fileTooLarge(_ path: String, size: Int, limit: Int, format: String) -> DataError {
    .tooLarge(path: path, what: "the file's size, \(DataLimits.describe(bytes: size)),", limit: limit,
              hint: "is it really \(format)?")
}

/// Reads at most `count` bytes of `descriptor` into `buffer`, stopping early at the end of
/// the file; returns the number read.
private func readFully(_ descriptor: Int32, into buffer: UnsafeMutableRawPointer, count: Int, path: String) throws -> Int {
    var filled = 0
    while filled < count {
        let n = read(descriptor, buffer + filled, count - filled)
        if n < 0 {
            let code = errno
            if code == EINTR { continue }
            throw DataError.readFailed(path: path, reason: String(cString: strerror(code)))
        }
        if n == 0 { break }  // the file shrank since fstat
        filled += n
    }
    return filled
}

/// Reads the whole regular file at `path`, refusing it before reading when it is larger than
/// `limit` (capped at ``DataLimits/memoryBudget``) bytes. At most the size `fstat` gave is
/// read, so a file that grows meanwhile cannot make the read unbounded.
///
/// - Parameter format: what the file should be, for the error (`"a JPEG or PNG image"`).
/// - Throws: ``DataError/fileNotFound(path:)``, ``DataError/notARegularFile(path:kind:)``,
///   ``DataError/tooLarge(path:what:limit:hint:)`` or ``DataError/readFailed(path:reason:)``.
public func readFileBytes(path: String, limit: Int, format: String) throws -> [UInt8] {
    let limit = min(limit, DataLimits.memoryBudget)
    let (descriptor, size) = try openRegularFile(path)
    defer { close(descriptor) }
    guard size <= limit else { throw fileTooLarge(path, size: size, limit: limit, format: format) }
    var failure: (any Error)?
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        do {
            initialized = size == 0 ? 0 : try readFully(descriptor, into: buffer.baseAddress!, count: size, path: path)
        } catch {
            failure = error
            initialized = 0
        }
    }
    if let failure { throw failure }
    return bytes
}

/// Reads the regular file at `path` into the start of `buffer`, growing it (without zeroing)
/// when it is too small, and returns the file's size; the same checks as
/// ``readFileBytes(path:limit:format:)``. Reusing one buffer across the files of a data set
/// avoids touching fresh pages for each.
func readFileBytes(path: String, into buffer: inout [UInt8], limit: Int, format: String) throws -> Int {
    let limit = min(limit, DataLimits.memoryBudget)
    let (descriptor, size) = try openRegularFile(path)
    defer { close(descriptor) }
    guard size <= limit else { throw fileTooLarge(path, size: size, limit: limit, format: format) }
    if buffer.count < size {
        buffer = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
    }
    return try buffer.withUnsafeMutableBytes { raw in
        size == 0 ? 0 : try readFully(descriptor, into: raw.baseAddress!, count: size, path: path)
    }
}

/// Whether something exists at `path`.
func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

/// Whether `path` is a regular file (following symbolic links).
func isRegularFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
}

/// Whether `path` is a folder (following symbolic links).
func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
}
