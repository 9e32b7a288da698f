import Foundation
import ResNetData

/// A small labelled data set: `count` random 8x8 RGB images over `classes` classes.
func tinyDataset(count: Int = 300, classes: Int = 3) -> LoadedDataset {
    var state: UInt64 = 1
    let pixels = (0..<(count * 3 * 8 * 8)).map { _ -> UInt8 in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
    let names = (0..<classes).map { "class\($0)" }
    let train = ImageDataset(images: pixels, labels: (0..<count).map { Int32($0 % classes) }, channels: 3, height: 8, width: 8,
                             classNames: names)
    return LoadedDataset(name: "folder", classNames: names, splits: [("train", train), ("test", train.prefix(max(30, 3 * classes)))])
}

