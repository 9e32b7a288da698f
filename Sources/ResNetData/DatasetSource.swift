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

/// The data sets ``LoadedDataset/load(_:from:options:)`` reads, by the name users type.
public enum DatasetName: String, CaseIterable, Sendable {
    /// CIFAR-10, binary or Python distribution, folder or `.tar.gz`.
    case cifar10
    /// CIFAR-100 (fine labels by default), binary or Python distribution, folder or `.tar.gz`.
    case cifar100
    /// Fashion-MNIST IDX files, raw or `.gz`.
    case fashionMNIST = "fashion-mnist"
    /// MNIST IDX files, raw or `.gz`.
    case mnist
    /// A folder of images, one subfolder per class (see ``ImageFolder``).
    case folder

    /// The per-user folder where `resnet download` puts the data set and where
    /// ``LoadedDataset/load(_:from:options:)`` looks when given no path:
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
            return "give the image folder (with train/ and test/ subfolders, or one subfolder per class)"
        }
    }
}

/// Options of ``LoadedDataset/load(_:from:options:)`` that only some formats use.
public struct DatasetOptions: Sendable {
    /// CIFAR-100: the 100 fine classes (default) or the 20 coarse ones.
    public var cifar100Labels: CIFAR.LabelSet
    /// Image folders: the size every image is brought to (`nil`: the images' own, which must agree).
    public var imageSize: (height: Int, width: Int)?

    /// Creates options; the defaults are fine CIFAR-100 labels and images at their own size.
    public init(cifar100Labels: CIFAR.LabelSet = .fine, imageSize: (height: Int, width: Int)? = nil) {
        self.cifar100Labels = cifar100Labels
        self.imageSize = imageSize
    }
}

extension LoadedDataset {
    /// Loads a data set, detecting its format from `path`.
    ///
    /// - CIFAR-10/100: the binary or Python folder, a folder holding one of them or an official
    ///   archive, or the `.tar.gz` itself (see ``CIFAR/load(_:from:labels:)``).
    /// - Fashion-MNIST, MNIST: the folder of the four IDX files, raw or `.gz`.
    /// - folder: an image folder (see ``ImageFolder/load(root:imageSize:channels:)``).
    ///
    /// With no `path`, looks in ``DatasetName/cacheDirectory`` (where `resnet download` puts it)
    /// and, for Fashion-MNIST, in Debian's `/usr/share/datasets/fashion-mnist`.
    ///
    /// - Throws: ``DataError/datasetNotFound(name:searched:hint:)`` naming every place looked in
    ///   and how to get the data, or the ``DataError`` of a damaged file.
    public static func load(_ name: DatasetName, from path: String?,
                            options: DatasetOptions = DatasetOptions()) throws -> LoadedDataset {
        let candidates = searchPaths(name, path: path)
        switch name {
        case .cifar10, .cifar100:
            let variant = CIFAR.Variant(rawValue: name.rawValue)!
            for candidate in candidates where fileExists(candidate) {
                return try CIFAR.load(variant, from: candidate, labels: options.cifar100Labels)
            }
        case .fashionMNIST, .mnist:
            for candidate in candidates where ["", ".gz"].contains(where: { fileExists(candidate + "/train-images-idx3-ubyte" + $0) }) {
                return try loadIDX(name, directory: candidate)
            }
        case .folder:
            guard let path, fileExists(path) else { break }
            return try ImageFolder.load(root: path, imageSize: options.imageSize)
        }
        throw DataError.datasetNotFound(name: name.rawValue, searched: path == nil && name == .folder ? ["no path given"] : candidates,
                                        hint: name.howToGet)
    }

    /// Where ``load(_:from:options:)`` looks: `path` if given, else the cache folder and the
    /// system-wide install, if any.
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
}
