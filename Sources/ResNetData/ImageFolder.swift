import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Image-folder data sets in torchvision's `ImageFolder` layout: one folder per class,
/// named after the class, holding JPEG and PNG files.
///
/// Two layouts are recognized:
///
/// - `root/<class>/*.jpg|*.jpeg|*.png`: one split, named ``flatSplitName``;
/// - `root/train/<class>/...`, optionally with `root/val/<class>/...` and
///   `root/test/<class>/...`: one split per folder, in the order train, val, test.
///
/// Class names are the folder names, sorted; with splits they are the union over the splits,
/// so a label means the same class in every split. A class may be missing from val or test
/// but every class must have training images. Files are taken in name order, recursing into
/// subfolders of a class folder as torchvision does; extensions are matched case-insensitively.
/// Hidden files and folders (names starting with `.`, such as `.DS_Store` and macOS's `._*`)
/// are skipped, as are plain files directly in `root` or in a split folder. Any other file in
/// a class folder must be an image: a stray file is an error rather than silently ignored.
public enum ImageFolder {
    /// The file extensions taken as images (compared in lower case).
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]
    /// The split folders recognized under the root, in the order the splits are returned.
    public static let splitNames = ["train", "val", "test"]
    /// The name of the only split of a folder without split folders.
    public static let flatSplitName = "train"

    /// Loads every image under `root`, decoding in parallel on all cores.
    ///
    /// The real CIFAR-10 as 60,000 32x32 JPEGs (`../shared/data/cifar-10-jpeg.tar.gz`, unpacked)
    /// loads in 1.1-1.3 s with a warm page cache and about 6 s with a cold one (release build,
    /// 2-core AMD EPYC VM, TurboJPEG 2.1.5, 2026-11-22); Pillow takes 3.9 s on one core.
    ///
    /// `root` may also be a `.tar`, `.tar.gz` or `.tgz` archive of such a folder (like the
    /// shipped `data/cifar10-sample.tar.gz`), read into memory without unpacking: the folder
    /// is the archive's top level or, when that holds a single folder and nothing else, that
    /// folder (repeatedly), and files are named `archive.tar.gz:member/path` in errors.
    ///
    /// Nothing is decoded before the whole data set is known to fit: the image count times
    /// `channels x height x width` must be within `memoryBudget`, and each image's pixel count
    /// (read from its header) within what the decoding threads can hold in it, at most
    /// ``maximumImagePixels``.
    ///
    /// - Parameters:
    ///   - root: the data set folder or archive; the data set is named after its last path
    ///     component (or, for the shipped sample, ``ShippedSample/datasetName``).
    ///   - imageSize: the size every image is resized to (Pillow-compatible bilinear, see
    ///     ``resizeImage(_:height:width:)``; the aspect ratio is not kept), each side at most
    ///     ``DataLimits/maximumImageSide``. `nil` takes the size of the first image (first file
    ///     of the first class of the first split) and resizes any image of another size to it.
    ///   - channels: 1 (gray) or 3 (RGB); images are converted as ``decodeImage(_:channels:path:)`` does.
    ///   - memoryBudget: the most bytes the decoded data set may take (default
    ///     ``DataLimits/memoryBudget``, half the machine's memory).
    /// - Throws: ``DataError/noClasses(path:)`` when there is no class folder,
    ///   ``DataError/emptyClassFolder(path:)`` naming a class folder without images,
    ///   ``DataError/notAnImage(path:reason:)`` or ``DataError/corruptImage(path:reason:)``
    ///   naming a file that is not a readable image, ``DataError/invalidLayout(path:reason:)``
    ///   for a folder next to `train` that is not a split or a class without training images,
    ///   ``DataError/tooLarge(path:what:limit:hint:)`` when the data set would not fit in
    ///   `memoryBudget`, ``DataError/unsupported(path:reason:)`` for an image size out of range,
    ///   and ``DataError/fileNotFound(path:)``, ``DataError/notARegularFile(path:kind:)`` or
    ///   ``DataError/readFailed(path:reason:)``.
    public static func load(root: String, imageSize: (height: Int, width: Int)? = nil, channels: Int = 3,
                            memoryBudget: Int = DataLimits.memoryBudget) throws -> LoadedDataset {
        try load(root: root, imageSize: imageSize, channels: channels, memoryBudget: memoryBudget, requiringClasses: nil)!
    }

    /// ``load(root:imageSize:channels:memoryBudget:)``, or with `requiringClasses`, `nil` when
    /// `root` is not a readable image folder (or archive of one) with exactly those classes.
    /// Errors after the layout is recognized (a damaged image, a data set too large) are thrown.
    static func load(root: String, imageSize: (height: Int, width: Int)? = nil, channels: Int = 3,
                     memoryBudget: Int = DataLimits.memoryBudget, requiringClasses: [String]?) throws -> LoadedDataset? {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        try checkChannels(channels, path: root)
        if let imageSize {
            try checkImageSize(imageSize, path: root)
        }
        let opened: Opened
        if let requiringClasses {
            guard let found = try? open(root), found.layout.classNames == requiringClasses else { return nil }
            opened = found
        } else {
            opened = try open(root)
        }
        let (source, layout) = (opened.source, opened.layout)
        root = opened.root
        var name = opened.name
        let pixelLimit = decodingPixelLimit(budget: memoryBudget)
        let firstPath = layout.splits[0].files[0].path
        // The first image's own size is bounded only by the decoders' absolute limit: when it is
        // too large for the budget, the data-set check below says so and suggests --image-size.
        let size = try imageSize ?? firstImageSize(firstPath, source: source, pixelLimit: maximumImagePixels)
        let count = layout.splits.reduce(0) { $0 + $1.files.count }
        let hint = imageSize == nil
            ? "every image is brought to the size of the first, \(firstPath) (\(size.height)x\(size.width)): pass --image-size HxW (e.g. 32x32) to resize them to a smaller size"
            : "pass a smaller --image-size"
        try DataLimits.checkDataset(count: count, channels: channels, height: size.height, width: size.width,
                                    budget: memoryBudget, path: root, hint: hint)
        let splits = try layout.splits.map { split in
            let data = try decodeAll(split.files, source: source, channels: channels, height: size.height, width: size.width,
                                     pixelLimit: pixelLimit)
            return (name: split.name, data: ImageDataset(images: data, labels: split.files.map(\.label), channels: channels,
                                                          height: size.height, width: size.width, classNames: layout.classNames))
        }
        if ShippedSample.isSample(folderName: name, classNames: layout.classNames) { name = ShippedSample.datasetName }
        return LoadedDataset(name: name, classNames: layout.classNames, splits: splits)
    }

    /// An image folder found on disk or in an archive, before anything is decoded.
    private struct Opened {
        var source: FolderSource
        /// The folder (for an archive, `archive.tar.gz:member`).
        var root: String
        /// The data set's name: the folder's.
        var name: String
        var layout: Layout
    }

    /// Finds the image folder at `root`: the folder itself, or the one in the archive `root` names.
    private static func open(_ root: String) throws -> Opened {
        guard isArchiveName(root) && isRegularFile(root) else {
            return Opened(source: .disk, root: root, name: root.split(separator: "/").last.map(String.init) ?? root,
                          layout: try scan(root: root))
        }
        let archive = FolderSource.reading(try TarArchive.read(path: root))
        return Opened(source: archive, root: archive.root, name: archive.name, layout: try scan(root: archive.root, source: archive))
    }

    /// Checks an image size asked for: each side in 1...``DataLimits/maximumImageSide``.
    static func checkImageSize(_ size: (height: Int, width: Int), path: String) throws {
        let sides = 1...DataLimits.maximumImageSide
        guard sides.contains(size.height), sides.contains(size.width) else {
            throw DataError.unsupported(
                path: path, reason: "image size \(size.height)x\(size.width): each side must be in 1...\(DataLimits.maximumImageSide)")
        }
    }

    /// Whether `path` names a tar archive (by its extension).
    static func isArchiveName(_ path: String) -> Bool {
        let lower = path.lowercased()
        return [".tar", ".tar.gz", ".tgz"].contains { lower.hasSuffix($0) }
    }

    /// Bytes a decoding thread holds per pixel of the image it decodes: up to 4 interleaved
    /// samples (RGBA, CMYK) and 3 planar ones before resizing.
    static let decodingBytesPerPixel = 7

    /// The largest image, in pixels, that the decoding threads (one per core) can hold at once
    /// within `budget`, at most ``maximumImagePixels``.
    static func decodingPixelLimit(budget: Int) -> Int {
        let threads = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, min(maximumImagePixels, budget / (decodingBytesPerPixel * threads)))
    }

    /// The files of a data set, found before any is decoded.
    struct Layout {
        var classNames: [String]
        var splits: [(name: String, files: [(path: String, label: Int32)])]
    }

    /// Lists the splits, classes and image files under `root` (in the order they are returned).
    static func scan(root: String, source: FolderSource = .disk) throws -> Layout {
        let top = try source.list(root)
        let folders = top.filter(\.isDirectory).map(\.name)
        var splitFolders: [(name: String, path: String)] = []
        if folders.contains(splitNames[0]) {
            if let stray = folders.first(where: { !splitNames.contains($0) }) {
                throw DataError.invalidLayout(
                    path: source.child(root, stray),
                    reason: "a folder next to train/ that is not a split (expected only \(splitNames.joined(separator: ", ")))")
            }
            splitFolders = splitNames.filter(folders.contains).map { ($0, source.child(root, $0)) }
        } else {
            splitFolders = [(flatSplitName, root)]
        }

        // Class folder -> its image files, per split.
        var found: [(name: String, path: String, classes: [(name: String, files: [String])])] = []
        for (name, path) in splitFolders {
            let classes = try source.list(path).filter(\.isDirectory).map { entry in
                let folder = source.child(path, entry.name)
                var files: [String] = []
                try collectImages(in: folder, source: source, into: &files, depth: 0)
                guard !files.isEmpty else { throw DataError.emptyClassFolder(path: folder) }
                return (name: entry.name, files: files)
            }
            guard !classes.isEmpty else { throw DataError.noClasses(path: path) }
            found.append((name, path, classes))
        }
        let training = Set(found[0].classes.map(\.name))
        for split in found.dropFirst() {
            if let orphan = split.classes.first(where: { !training.contains($0.name) }) {
                throw DataError.invalidLayout(
                    path: source.child(split.path, orphan.name),
                    reason: "class '\(orphan.name)' has no folder in \(found[0].path)/, so it has no training images")
            }
        }
        let classNames = training.sorted()
        let labels = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, Int32($0)) })
        return Layout(classNames: classNames, splits: found.map { split in
            (split.name, split.classes.flatMap { folder in
                folder.files.map { (path: $0, label: labels[folder.name]!) }
            })
        })
    }

    /// Appends the image files under `folder` (its files in name order, then its subfolders')
    /// to `files`, checking each extension.
    private static func collectImages(in folder: String, source: FolderSource, into files: inout [String], depth: Int) throws {
        guard depth < 32 else {
            throw DataError.invalidLayout(path: folder, reason: "folders nested more than 32 deep (a symbolic-link loop?)")
        }
        let entries = try source.list(folder)
        for entry in entries where !entry.isDirectory {
            let path = source.child(folder, entry.name)
            let dot = entry.name.lastIndex(of: ".")
            guard let dot, imageExtensions.contains(entry.name[entry.name.index(after: dot)...].lowercased()) else {
                throw DataError.notAnImage(path: path, reason: "the file name does not end in .jpg, .jpeg or .png")
            }
            files.append(path)
        }
        for entry in entries where entry.isDirectory {
            try collectImages(in: source.child(folder, entry.name), source: source, into: &files, depth: depth + 1)
        }
    }

    /// The size of the first image of the first split, from its header (nothing is decoded).
    private static func firstImageSize(_ path: String, source: FolderSource, pixelLimit: Int) throws -> (height: Int, width: Int) {
        let decoder = ImageDecoder()
        decoder.pixelLimit = pixelLimit
        var scratch: [UInt8] = []
        return try source.withBytes(of: path, scratch: &scratch) { try decoder.readSize($0, path: path) }
    }

    /// Decodes `files` into one planar buffer of `files.count` images of `channels x height x width`,
    /// in parallel over contiguous chunks, one decoder (and one file buffer) per chunk. The error
    /// reported is the one of the first failing file, whatever the threads' timing. The caller
    /// has checked that the buffer fits (``DataLimits/checkDataset(count:channels:height:width:budget:path:hint:)``).
    static func decodeAll(_ files: [(path: String, label: Int32)], source: FolderSource = .disk, channels: Int,
                          height: Int, width: Int, pixelLimit: Int = maximumImagePixels) throws -> [UInt8] {
        guard let perImage = DataLimits.product([channels, height, width]),
              let total = DataLimits.product([files.count, perImage]) else {
            throw DataError.tooLarge(path: files.first?.path ?? "", what: "the decoded images", limit: DataLimits.memoryBudget,
                                     hint: "pass a smaller --image-size")
        }
        let cores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let chunkCount = min(files.count, cores * 8)
        var errors = [(any Error)?](repeating: nil, count: chunkCount)
        let pixels = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            errors.withUnsafeMutableBufferPointer { errorSlots in
                let output = Shared(pixels: buffer.baseAddress!, errors: errorSlots.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
                    let decoder = ImageDecoder()
                    decoder.pixelLimit = pixelLimit
                    var scratch: [UInt8] = []
                    let range = (files.count * chunk / chunkCount)..<(files.count * (chunk + 1) / chunkCount)
                    do {
                        for index in range {
                            let path = files[index].path
                            try source.withBytes(of: path, scratch: &scratch) { try decoder.decode($0, channels: channels, path: path) }
                            decoder.writePlanar(channels: channels, height: height, width: width,
                                                to: output.pixels + index * perImage)
                        }
                    } catch {
                        output.errors[chunk] = error
                    }
                }
            }
            initialized = buffer.count
        }
        if let error = errors.lazy.compactMap({ $0 }).first { throw error }
        return pixels
    }

    /// Where the decoding threads write: each chunk its own images and its own error slot.
    private struct Shared: @unchecked Sendable {
        let pixels: UnsafeMutablePointer<UInt8>
        let errors: UnsafeMutablePointer<(any Error)?>
    }
}

/// Where an image folder's files are: on disk, or in a tar archive held in memory whose
/// members are named `archive.tar.gz:member/path`.
enum FolderSource: Sendable {
    case disk
    /// The archive, its folders' entries (key: the folder's name as above) and its files.
    case archive(TarArchive, folders: [String: [(name: String, isDirectory: Bool)]], files: [String: TarArchive.Entry],
                 root: String, name: String)

    /// An archive's tree: folders implied by member paths are listed too, hidden names left out,
    /// links, devices and members with `..` or absolute names ignored. The root is the top level,
    /// or the single folder it holds (repeatedly) when it holds nothing else and no `train/`.
    static func reading(_ archive: TarArchive) -> FolderSource {
        let prefix = archive.path + ":"
        var children: [String: [String: Bool]] = [prefix: [:]]
        var files: [String: TarArchive.Entry] = [:]
        for entry in archive.entries where entry.kind != .other {
            let components = entry.name.split(separator: "/").map(String.init)
            guard !entry.name.hasPrefix("/"), !components.contains(".."), !components.isEmpty else { continue }
            var parent = prefix
            for (i, component) in components.enumerated() where component != "." {
                let isFolder = i < components.count - 1 || entry.kind == .directory
                let path = parent == prefix ? parent + component : parent + "/" + component
                if !component.hasPrefix(".") {
                    children[parent, default: [:]][component] = (children[parent]?[component] ?? false) || isFolder
                }
                if isFolder {
                    if children[path] == nil { children[path] = [:] }
                } else {
                    files[path] = entry
                }
                parent = path
            }
        }
        let folders = children.mapValues { entries in
            entries.map { (name: $0.key, isDirectory: $0.value) }.sorted { $0.name < $1.name }
        }
        var root = prefix
        var name = archive.path.split(separator: "/").last.map(String.init) ?? archive.path
        for suffix in [".tar.gz", ".tgz", ".tar"] where name.lowercased().hasSuffix(suffix) {
            name.removeLast(suffix.count)
            break
        }
        while let entries = folders[root], entries.count == 1, entries[0].isDirectory, entries[0].name != ImageFolder.splitNames[0] {
            let next = root == prefix ? root + entries[0].name : root + "/" + entries[0].name
            // A lone folder holding only files is a class of a flat layout, not a wrapper.
            guard folders[next]?.contains(where: \.isDirectory) == true else { break }
            root = next
            name = entries[0].name
        }
        return .archive(archive, folders: folders, files: files, root: root, name: name)
    }

    /// The folder an archive's image folder starts at.
    var root: String {
        if case .archive(_, _, _, let root, _) = self { return root }
        return ""
    }

    /// The name of an archive's image folder.
    var name: String {
        if case .archive(_, _, _, _, let name) = self { return name }
        return ""
    }

    /// The path of `name` in the folder `parent`.
    func child(_ parent: String, _ name: String) -> String {
        parent.hasSuffix(":") ? parent + name : parent + "/" + name
    }

    /// The entries of a folder, sorted by name, hidden ones left out.
    func list(_ path: String) throws -> [(name: String, isDirectory: Bool)] {
        switch self {
        case .disk:
            return try listDirectory(path)
        case .archive(_, let folders, let files, _, _):
            if let entries = folders[path] { return entries }
            if files[path] != nil { throw DataError.readFailed(path: path, reason: "not a folder") }
            throw DataError.fileNotFound(path: path)
        }
    }

    /// Calls `body` with the bytes of the file at `path`: read into `scratch` from disk (bounded
    /// by ``DataLimits/imageFileBytes``), or the archive's own bytes.
    func withBytes<R>(of path: String, scratch: inout [UInt8], _ body: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R {
        switch self {
        case .disk:
            let count = try readFileBytes(path: path, into: &scratch, limit: DataLimits.imageFileBytes, format: "a JPEG or PNG image")
            return try scratch.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[..<count])) }
        case .archive(let archive, _, let files, _, _):
            guard let entry = files[path] else { throw DataError.fileNotFound(path: path) }
            guard entry.range.count <= DataLimits.imageFileBytes else {
                throw DataError.tooLarge(path: path, what: "the file's size, \(DataLimits.describe(bytes: entry.range.count)),",
                                         limit: DataLimits.imageFileBytes, hint: "is it really a JPEG or PNG image?")
            }
            return try archive.bytes.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[entry.range])) }
        }
    }
}

/// The entries of the folder at `path`, hidden ones (names starting with `.`) left out,
/// sorted by name; symbolic links are followed to decide what is a folder.
func listDirectory(_ path: String) throws -> [(name: String, isDirectory: Bool)] {
    guard let directory = opendir(path) else {
        let code = errno
        if code == ENOENT { throw DataError.fileNotFound(path: path) }
        throw DataError.readFailed(path: path, reason: code == ENOTDIR ? "not a folder" : String(cString: strerror(code)))
    }
    defer { closedir(directory) }
    var entries: [(name: String, isDirectory: Bool)] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name.hasPrefix(".") { continue }
        var isDirectory = Int32(entry.pointee.d_type) == DT_DIR
        if Int32(entry.pointee.d_type) == DT_LNK || Int32(entry.pointee.d_type) == DT_UNKNOWN {
            var info = stat()
            isDirectory = stat(path + "/" + name, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
        }
        entries.append((name, isDirectory))
    }
    return entries.sorted { $0.name < $1.name }
}
