import Foundation

/// The CIFAR-10 sample shipped with SwiftResNet, `data/cifar10-sample.tar.gz`: an image folder
/// `cifar10-sample/{train,test}/<class>/*.jpg` of 5,000 training and 1,000 test images (a
/// tenth of CIFAR-10, the ten classes balanced), for when the real data set is not on disk and
/// cannot be downloaded.
///
/// The commands use it through ``LoadedDataset/loadWithFallback(_:from:options:download:environment:log:)``;
/// loaded in any way (its folder, its archive, `--dataset cifar10 --data` the archive), the data
/// set is named ``datasetName``.
public enum ShippedSample {
    /// The name of a data set loaded from the sample.
    public static let datasetName = "CIFAR-10 (sample)"
    /// The folder at the top of the archive, and the one it is unpacked to in the cache.
    public static let folderName = "cifar10-sample"
    /// CIFAR-10's classes, in label order (alphabetical, so an image folder sorts them the same way).
    public static let classNames = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    /// The environment variable that overrides where the archive is.
    public static let environmentVariable = "RESNET_SAMPLE"

    /// Where the archive is: `$RESNET_SAMPLE` when set, else `data/cifar10-sample.tar.gz` of
    /// the source tree this library was built from.
    public static func archivePath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let path = environment[environmentVariable], !path.isEmpty { return path }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("data/cifar10-sample.tar.gz").path
    }

    /// Where ``extract(environment:)`` unpacks the sample: `<cache>/folder/cifar10-sample`
    /// (see ``DatasetName/cacheRoot(environment:)``).
    public static func extractedPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        DatasetName.cacheRoot(environment: environment) + "/" + DatasetName.folder.rawValue + "/" + folderName
    }

    /// Unpacks the sample into ``extractedPath(environment:)`` unless it is there already, and
    /// returns that folder.
    ///
    /// The archive is read in-process (``TarArchive``, bounded by ``DataLimits/archiveBytes``),
    /// unpacked beside the destination and renamed into place, so an interrupted run never
    /// leaves a half folder that looks complete, and two runs at once both succeed.
    ///
    /// - Throws: ``DataError/datasetNotFound(name:searched:hint:)`` when the archive is missing,
    ///   ``DataError/invalidLayout(path:reason:)`` when it does not hold `cifar10-sample/train`,
    ///   or the ``DataError`` of a damaged archive or a failed write.
    public static func extract(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let root = extractedPath(environment: environment)
        if isDirectory(root + "/train") { return root }
        let archivePath = archivePath(environment: environment)
        guard fileExists(archivePath) else {
            throw DataError.datasetNotFound(
                name: "the CIFAR-10 sample", searched: [archivePath],
                hint: "run `resnet download cifar10` or pass --data (or set \(environmentVariable) to the sample's .tar.gz)")
        }
        let archive = try TarArchive.read(path: archivePath)
        guard archive.entries.contains(where: { $0.name.hasPrefix(folderName + "/train/") }) else {
            throw DataError.invalidLayout(path: archivePath, reason: "the archive holds no \(folderName)/train/ folder; is it the shipped sample?")
        }
        let parent = (root as NSString).deletingLastPathComponent
        let staging = parent + "/.unpacking-\(folderName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        try archive.extract(to: staging)
        do {
            try FileManager.default.moveItem(atPath: staging + "/" + folderName, toPath: root)
        } catch {
            // Another run may have got there first; its folder is as good as ours.
            guard isDirectory(root + "/train") else {
                throw DataError.writeFailed(path: root, reason: "cannot move the unpacked sample into place: \(error.localizedDescription)")
            }
        }
        return root
    }

    /// Whether an image folder named `folderName` with `classNames` is the sample (its folder
    /// or archive under any path).
    public static func isSample(folderName name: String, classNames names: [String]) -> Bool {
        name == folderName && names == classNames
    }
}
