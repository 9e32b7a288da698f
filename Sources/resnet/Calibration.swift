import Foundation
import ResNetData
import ResNetInference
import ResNetTraining

/// Prepared images (planar bytes of the model's input, one after another) that an int8 network's
/// scales are measured on (`--precision int8`): the JPEG and PNG files under `folder` (found
/// recursively), or else the training images of the data set the model card names (a run's
/// training part, never its validation images). At most `count`, spread evenly over them.
func calibrationImages(for trained: TrainedModel, folder: String?, count: Int) throws -> (pixels: [UInt8], count: Int, source: String) {
    let card = trained.loaded.card
    if let folder {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue,
              let walker = FileManager.default.enumerator(atPath: folder) else {
            throw UserError("--calibration \(folder): not a folder")
        }
        let files = walker.compactMap { $0 as? String }
            .filter { ["jpg", "jpeg", "png"].contains(URL(fileURLWithPath: $0).pathExtension.lowercased()) }.sorted()
        guard !files.isEmpty else { throw UserError("--calibration \(folder): no JPEG or PNG files in it") }
        var pixels: [UInt8] = []
        let chosen = evenlySpaced(min(count, files.count), of: files.count)
        for i in chosen {
            let path = (folder as NSString).appendingPathComponent(files[i])
            do {
                pixels += try card.prepare(readImage(path: path, channels: card.input.channels)).pixels
            } catch let error as DataError {
                throw UserError("\(path): \(error.description)")
            }
        }
        return (pixels, chosen.count, "\(chosen.count) images of \(folder)")
    }
    guard let name = card.provenance.dataset else {
        throw UserError("\(trained.loaded.url.path): the model card names no training data: give --calibration DIR, a folder of images like those it will classify")
    }
    var source = try loadDatasetForUser(name, card.provenance.dataPath, imageSize: trained.run?.loadedImageSize)
    if let run = trained.run { source = try run.prepared(source) }
    guard let train = source.split("train") else { throw UserError("\(source.name) has no training split to calibrate int8 on: give --calibration DIR") }
    return try calibrationImages(training: train, run: trained.run, count: count, expecting: card.input.shape)
}

/// At most `count` images of a data set's training split (a run's training part when `run` is given).
func calibrationImages(training train: ImageDataset, run: RunConfiguration?, count: Int,
                       expecting shape: [Int]) throws -> (pixels: [UInt8], count: Int, source: String) {
    guard [train.channels, train.height, train.width] == shape else {
        throw UserError("the training data has \(train.channels)x\(train.height)x\(train.width) images; the model takes \(shape.map(String.init).joined(separator: "x")): give --calibration DIR")
    }
    let pool = try run.map { try $0.split(train).train } ?? Array(0..<train.count)
    guard !pool.isEmpty else { throw UserError("no training images to calibrate int8 on: give --calibration DIR") }
    let chosen = evenlySpaced(min(count, pool.count), of: pool.count).map { pool[$0] }
    return (train.subset(chosen).images, chosen.count, "\(chosen.count) training images")
}

/// `k` indices spread evenly over `0..<n` (k <= n).
func evenlySpaced(_ k: Int, of n: Int) -> [Int] { (0..<k).map { $0 * n / k } }
