/// Images kept as uint8 in memory, NCHW per image (channels, height, width).
public struct ImageDataset: Sendable {
    /// Pixel bytes, `count * channels * height * width`, image after image.
    public var images: [UInt8]      // count * channels * height * width
    /// One class index per image.
    public var labels: [Int32]
    /// Image geometry shared by every item.
    public var channels: Int, height: Int, width: Int
    /// Human-readable name of each class index.
    public var classNames: [String]
    /// The number of items.
    public var count: Int { labels.count }
    /// Bytes (and batch floats) per image: `channels * height * width`.
    public var elementsPerImage: Int { channels * height * width }

    /// Creates a dataset; `images.count` must equal `labels.count * channels * height * width`.
    public init(images: [UInt8], labels: [Int32], channels: Int, height: Int, width: Int, classNames: [String]) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "ImageDataset: negative image dimension")
        precondition(images.count == labels.count * channels * height * width,
                     "ImageDataset: \(images.count) pixel bytes for \(labels.count) images of \(channels)x\(height)x\(width)")
        self.images = images
        self.labels = labels
        self.channels = channels
        self.height = height
        self.width = width
        self.classNames = classNames
    }

    /// Returns a dataset of the first `n` items (or fewer).
    public func prefix(_ n: Int) -> ImageDataset {
        let kept = max(0, min(n, count))
        var result = self
        result.labels = Array(labels[..<kept])
        result.images = Array(images[..<(kept * elementsPerImage)])
        return result
    }

    /// Copies the items at `indices`, in order, into batch slots `0..<indices.count`: pixels
    /// into `images` as Float NCHW scaled to 0...1, and labels into `labels`. No allocation;
    /// the caller owns the buffers, which must hold `indices.count * elementsPerImage` floats
    /// and `indices.count` labels.
    ///
    /// A pixel byte `v` of channel `c` becomes `Float(v) / 255`, or with normalization
    /// `(Float(v) / 255 - mean[c]) / std[c]`; a missing `mean` means 0 and a missing `std` 1.
    /// `mean` and `std`, when given, must have `channels` entries, and every index must be in
    /// `0..<count` (violations stop the program with a message).
    public func fillBatch(indices: some Collection<Int>, images: UnsafeMutablePointer<Float>,
                          labels: UnsafeMutablePointer<Int32>, mean: [Float]?, std: [Float]?) {
        let perImage = elementsPerImage
        let plane = height * width
        let itemCount = count
        if let mean, mean.count != channels {
            fatalError("fillBatch: mean has \(mean.count) entries for \(channels) channels")
        }
        if let std, std.count != channels {
            fatalError("fillBatch: std has \(std.count) entries for \(channels) channels")
        }
        if self.images.count != itemCount * perImage {
            fatalError("fillBatch: \(self.images.count) pixel bytes for \(itemCount) images of \(channels)x\(height)x\(width)")
        }
        // A per-channel table of the 256 possible values keeps the result exact and the loop simple.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: channels * 256) { table in
            for c in 0..<channels {
                let m = mean?[c] ?? 0
                let s = std?[c] ?? 1
                for v in 0..<256 {
                    let scaled = Float(v) / 255
                    table[c * 256 + v] = (mean == nil && std == nil) ? scaled : (scaled - m) / s
                }
            }
            self.images.withUnsafeBufferPointer { source in
                self.labels.withUnsafeBufferPointer { sourceLabels in
                    var slot = 0
                    for index in indices {
                        if index < 0 || index >= itemCount {
                            fatalError("fillBatch: index \(index) out of range 0..<\(itemCount)")
                        }
                        labels[slot] = sourceLabels[index]
                        let src = source.baseAddress! + index * perImage
                        let dst = images + slot * perImage
                        for c in 0..<channels {
                            let lut = table.baseAddress! + c * 256
                            let offset = c * plane
                            for p in 0..<plane {
                                dst[offset + p] = lut[Int(src[offset + p])]
                            }
                        }
                        slot += 1
                    }
                }
            }
        }
    }
}
