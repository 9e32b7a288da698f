import Foundation

/// A data set loaded into memory: its class names and its splits in source order.
public struct LoadedDataset: Sendable {
    /// The data set's name (`cifar10`, `fashion-mnist`, the folder's name, ...).
    public var name: String
    /// Human-readable name of each class index, shared by every split.
    public var classNames: [String]
    /// The splits in source order: `train` then `test` for CIFAR and MNIST.
    public var splits: [(name: String, data: ImageDataset)]

    /// Creates a loaded data set from its parts.
    public init(name: String, classNames: [String], splits: [(name: String, data: ImageDataset)]) {
        self.name = name
        self.classNames = classNames
        self.splits = splits
    }

    /// The split called `name`, if there is one.
    public func split(_ name: String) -> ImageDataset? {
        splits.first { $0.name == name }?.data
    }
}

/// The data sets ``LoadedDataset/load(_:from:options:environment:)`` reads, by the name users type.
public enum DatasetName: String, CaseIterable, Sendable {
    /// CIFAR-10, binary or Python distribution, folder or `.tar.gz`.
    case cifar10
    /// CIFAR-100 (fine labels by default), binary or Python distribution, folder or `.tar.gz`.
    case cifar100
    /// Fashion-MNIST IDX files, raw or `.gz`.
    case fashionMNIST = "fashion-mnist"
    /// MNIST IDX files, raw or `.gz`.
    case mnist
    /// A folder of images, one subfolder per class, or its `.tar.gz` (see ``ImageFolder``).
    case folder

    /// The per-user folder where `resnet download` puts the data set and where
    /// ``LoadedDataset/load(_:from:options:environment:)`` looks when given no path:
    /// `$XDG_CACHE_HOME/swiftresnet/<name>`, by default `~/.cache/swiftresnet/<name>`.
    public var cacheDirectory: String { Self.cacheRoot() + "/" + rawValue }

    /// `$XDG_CACHE_HOME/swiftresnet` when that is an absolute path, else `$HOME/.cache/swiftresnet`.
    public static func cacheRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/swiftresnet" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.cache/swiftresnet"
    }

    /// Other places a copy may be installed (Debian's `dataset-fashion-mnist` package).
    var systemDirectories: [String] { self == .fashionMNIST ? [FashionMNIST.defaultDirectory] : [] }

    /// How to get the data set, for the error that says it is missing.
    var howToGet: String {
        switch self {
        case .cifar10, .cifar100:
            let variant = CIFAR.Variant(rawValue: rawValue)!
            return "get it with `resnet download \(rawValue)`, or give the \(variant.binaryFolder) or \(variant.pythonFolder) folder, its parent, or \(variant.archiveNames[0])"
        case .fashionMNIST:
            return "get it with `resnet download fashion-mnist` or `apt-get install dataset-fashion-mnist`, or give the folder of its IDX files"
        case .mnist:
            return "give the folder holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
        case .folder:
            return "give the image folder (with train/ and test/ subfolders, or one subfolder per class) or its .tar.gz"
        }
    }
}

/// Options of ``LoadedDataset/load(_:from:options:environment:)`` that only some formats use.
public struct DatasetOptions: Sendable {
    /// CIFAR-100: the 100 fine classes (default) or the 20 coarse ones.
    public var cifar100Labels: CIFAR.LabelSet
    /// Image folders: the size every image is brought to (`nil`: the first image's), each side
    /// at most ``DataLimits/maximumImageSide``.
    public var imageSize: (height: Int, width: Int)?
    /// Image folders: the most bytes the decoded data set may take (see ``DataLimits/memoryBudget``).
    public var memoryBudget: Int

    /// Creates options; the defaults are fine CIFAR-100 labels, images at their own size and
    /// half the machine's memory.
    public init(cifar100Labels: CIFAR.LabelSet = .fine, imageSize: (height: Int, width: Int)? = nil,
                memoryBudget: Int = DataLimits.memoryBudget) {
        self.cifar100Labels = cifar100Labels
        self.imageSize = imageSize
        self.memoryBudget = memoryBudget
    }

    /// Parses an image size written `HxW` (`32x32`, `224X224`), each side in
    /// 1...``DataLimits/maximumImageSide``.
    ///
    /// - Throws: ``DataOptionError`` saying what is wrong, in one line.
    public static func parseImageSize(_ text: String) throws -> (height: Int, width: Int) {
        let parts = text.trimmingCharacters(in: .whitespaces).lowercased().split(separator: "x", omittingEmptySubsequences: false)
        let sides = 1...DataLimits.maximumImageSide
        guard parts.count == 2, let height = Int(parts[0]), let width = Int(parts[1]) else {
            throw DataOptionError("image size '\(text)' is not HxW, like 32x32")
        }
        guard sides.contains(height), sides.contains(width) else {
            throw DataOptionError("image size '\(text)': each side must be in 1...\(DataLimits.maximumImageSide)")
        }
        return (height, width)
    }
}

extension LoadedDataset {
    /// Loads a data set, detecting its format from `path`.
    ///
    /// - CIFAR-10/100: the binary or Python folder, a folder holding one of them or an official
    ///   archive, or the `.tar.gz` itself (see ``CIFAR/load(_:from:labels:)``). For CIFAR-10,
    ///   an image folder (or its `.tar.gz`) whose classes are CIFAR-10's is read as well, such as
    ///   the shipped sample (see ``ShippedSample``) or the JPEG version.
    /// - Fashion-MNIST, MNIST: the folder of the four IDX files, raw or `.gz`.
    /// - folder: an image folder or its `.tar`, `.tar.gz` or `.tgz` archive (see
    ///   ``ImageFolder/load(root:imageSize:channels:memoryBudget:)``).
    ///
    /// With no `path`, looks in ``DatasetName/cacheDirectory`` (where `resnet download` puts it)
    /// and, for Fashion-MNIST, in Debian's `/usr/share/datasets/fashion-mnist`.
    ///
    /// - Parameter environment: where `XDG_CACHE_HOME` and `HOME` are read to find the cache.
    /// - Throws: ``DataError/datasetNotFound(name:searched:hint:)`` naming every place looked in
    ///   and how to get the data, or the ``DataError`` of a damaged file.
    public static func load(_ name: DatasetName, from path: String?, options: DatasetOptions = DatasetOptions(),
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LoadedDataset {
        let candidates = searchPaths(name, path: path, environment: environment)
        switch name {
        case .cifar10, .cifar100:
            let variant = CIFAR.Variant(rawValue: name.rawValue)!
            for candidate in candidates where fileExists(candidate) {
                do {
                    return try CIFAR.load(variant, from: candidate, labels: options.cifar100Labels)
                } catch let error as DataError {
                    guard case .datasetNotFound = error, variant == .cifar10, path != nil,
                          let folder = try ImageFolder.load(root: candidate, imageSize: options.imageSize, memoryBudget: options.memoryBudget,
                                                            requiringClasses: ShippedSample.classNames) else { throw error }
                    return folder
                }
            }
        case .fashionMNIST, .mnist:
            for candidate in candidates where ["", ".gz"].contains(where: { fileExists(candidate + "/train-images-idx3-ubyte" + $0) }) {
                return try loadIDX(name, directory: candidate)
            }
        case .folder:
            guard let path, fileExists(path) else { break }
            return try ImageFolder.load(root: path, imageSize: options.imageSize, memoryBudget: options.memoryBudget)
        }
        throw DataError.datasetNotFound(name: name.rawValue, searched: path == nil && name == .folder ? ["no path given"] : candidates,
                                        hint: name.howToGet)
    }

    /// Where ``load(_:from:options:environment:)`` looks: `path` if given, else the cache folder
    /// and the system-wide install, if any.
    static func searchPaths(_ name: DatasetName, path: String?,
                            environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        path.map { [$0] } ?? [DatasetName.cacheRoot(environment: environment) + "/" + name.rawValue] + name.systemDirectories
    }

    /// MNIST or Fashion-MNIST from a folder of IDX files.
    static func loadIDX(_ name: DatasetName, directory: String) throws -> LoadedDataset {
        let classNames = name == .mnist ? (0..<10).map(String.init) : FashionMNIST.classNames
        let splits = try FashionMNIST.Split.allCases.map { split in
            var data = try FashionMNIST.load(directory: directory, split: split)
            data.classNames = classNames
            return (name: split.rawValue, data: data)
        }
        return LoadedDataset(name: name.rawValue, classNames: classNames, splits: splits)
    }

    /// What ``loadWithFallback(_:from:options:download:environment:log:)`` loaded, and from where.
    public struct Resolved: Sendable {
        /// The data set.
        public var dataset: LoadedDataset
        /// Its kind: the one asked for, or ``DatasetName/folder`` for the shipped sample.
        public var name: DatasetName
        /// Where it was loaded from (`nil`: the default places); record this to load it again.
        public var path: String?
        /// Whether it is the CIFAR-10 sample shipped with SwiftResNet.
        public var isSample: Bool
    }

    /// Loads a data set as ``load(_:from:options:environment:)`` does; when no `path` is given
    /// and it is not on disk, downloads it (if `download` and it has a standard download) and,
    /// for CIFAR-10, falls back to the sample shipped with SwiftResNet (``ShippedSample``),
    /// unpacked once into the cache. `log` receives one line for each of these steps.
    ///
    /// - Throws: the error of the download when there is no sample to fall back to, or else
    ///   the ``DataError/datasetNotFound(name:searched:hint:)`` of the first attempt (with the
    ///   sample's archive among the places searched for CIFAR-10), or the ``DataError`` of a
    ///   damaged file.
    public static func loadWithFallback(_ name: DatasetName, from path: String?, options: DatasetOptions = DatasetOptions(),
                                        download: Bool, environment: [String: String] = ProcessInfo.processInfo.environment,
                                        log: @escaping @Sendable (String) -> Void) throws -> Resolved {
        let notFound: DataError
        do {
            let dataset = try load(name, from: path, options: options, environment: environment)
            return Resolved(dataset: dataset, name: name, path: path, isSample: false)
        } catch let error as DataError {
            guard case .datasetNotFound = error, path == nil else { throw error }
            notFound = error
        }
        let cache = DatasetName.cacheRoot(environment: environment) + "/" + name.rawValue
        var downloadFailure: (any Error)?
        if download, let files = DatasetDownload.standard(name) {
            log("\(name.rawValue) is not in \(cache): downloading it")
            do {
                try Downloader(log: log).download(files, to: cache)
                return Resolved(dataset: try load(name, from: cache, options: options, environment: environment),
                                name: name, path: nil, isSample: false)
            } catch {
                downloadFailure = error
            }
        }
        guard name == .cifar10 else { throw downloadFailure ?? notFound }
        let root: String
        do {
            root = try ShippedSample.extract(environment: environment)
        } catch DataError.datasetNotFound(_, let searched, _) {
            if let downloadFailure { throw downloadFailure }
            guard case .datasetNotFound(let asked, let places, let hint) = notFound else { throw notFound }
            throw DataError.datasetNotFound(name: asked, searched: places + searched, hint: hint)
        }
        let reason = downloadFailure.map { "the download failed (\($0))" } ?? "it is not in \(cache)"
        log("\(name.rawValue): \(reason); using the CIFAR-10 sample shipped with SwiftResNet (5,000 training and 1,000 test images, far too few for the paper's accuracy; `resnet download cifar10` gets the full set)")
        let dataset = try ImageFolder.load(root: root, imageSize: options.imageSize, memoryBudget: options.memoryBudget)
        return Resolved(dataset: dataset, name: .folder, path: root, isSample: true)
    }
}
