/// The Fashion-MNIST dataset: 28x28 grayscale images of clothing in 10 classes.
public enum FashionMNIST {
    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"

    /// The class names, indexed by label.
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// Which half of the dataset to load.
    public enum Split: String, Sendable, CaseIterable {
        /// 60,000 training images (`train-*` files).
        case train
        /// 10,000 test images (`t10k-*` files).
        case test

        /// The file name prefix of this split.
        public var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Loads one split from `directory`, reading `<prefix>-images-idx3-ubyte` and
    /// `<prefix>-labels-idx1-ubyte`, each either gzip-compressed (`.gz`) or not.
    ///
    /// - Throws: a ``DataError`` if a file is missing, not a regular file, too large
    ///   (``DataLimits/idxFileBytes``) or malformed, the images are not 3-D with sides in
    ///   1...``DataLimits/maximumImageSide``, the counts differ, or a label is not below 10.
    public static func load(directory: String = defaultDirectory, split: Split) throws -> ImageDataset {
        let imagesPath = try locate(directory: directory, name: "\(split.filePrefix)-images-idx3-ubyte")
        let labelsPath = try locate(directory: directory, name: "\(split.filePrefix)-labels-idx1-ubyte")

        let images = try IDXArray.read(path: imagesPath)
        guard images.dimensions.count == 3 else {
            throw DataError.unexpectedShape(path: imagesPath, dimensions: images.dimensions, expected: "3-D [count, height, width]")
        }
        // An empty file may declare any height and width; they must still be sizes a batch can hold.
        let sides = 1...DataLimits.maximumImageSide
        guard sides.contains(images.dimensions[1]), sides.contains(images.dimensions[2]) else {
            throw DataError.unexpectedShape(path: imagesPath, dimensions: images.dimensions,
                                            expected: "[count, height, width] with height and width in 1...\(DataLimits.maximumImageSide)")
        }
        let labels = try IDXArray.read(path: labelsPath)
        guard labels.dimensions.count == 1 else {
            throw DataError.unexpectedShape(path: labelsPath, dimensions: labels.dimensions, expected: "1-D [count]")
        }
        let count = images.dimensions[0]
        guard labels.dimensions[0] == count else {
            throw DataError.countMismatch(imagesPath: imagesPath, imageCount: count,
                                          labelsPath: labelsPath, labelCount: labels.dimensions[0])
        }
        if let index = labels.bytes.firstIndex(where: { Int($0) >= classNames.count }) {
            throw DataError.labelOutOfRange(path: labelsPath, index: index,
                                            label: Int(labels.bytes[index]), classCount: classNames.count)
        }
        return ImageDataset(images: images.bytes, labels: labels.bytes.map { Int32($0) },
                            channels: 1, height: images.dimensions[1], width: images.dimensions[2],
                            classNames: classNames)
    }

    /// The path of `name.gz` if it exists, else of `name` if it exists.
    private static func locate(directory: String, name: String) throws -> String {
        let base = directory.hasSuffix("/") ? directory + name : directory + "/" + name
        for candidate in [base + ".gz", base] where fileExists(candidate) {
            return candidate
        }
        throw DataError.fileNotFound(path: base + "[.gz]")
    }
}
