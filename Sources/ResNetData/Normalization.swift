import Foundation

/// How pixel bytes become network inputs, fitted on the training split only.
///
/// Every mode first scales a byte `v` to `v / 255`.
public enum Normalization: Codable, Sendable, Equatable {
    /// `v / 255`.
    case none
    /// `(v / 255 - mean[c]) / std[c]` per channel (torchvision, the Keras tutorial's `featurewise`).
    case perChannel(mean: [Float], std: [Float])
    /// `v / 255 - mean[c, y, x]`: the paper's "per-pixel mean subtracted" (He et al. 2016, 4.2).
    case perPixelMean([Float])
    /// ZCA whitening with this epsilon (the Keras tutorial). The D x D matrix is not stored with
    /// the run: it is fitted again from the training split (``ZCAWhitening/fit(_:epsilon:)``,
    /// a few seconds) and given to ``BatchLoader`` separately.
    case zca(epsilon: Float)

    /// Throws unless this normalization fits images of `channels` and `elementsPerImage` values
    /// (with a fitted `whitening` of that size for `.zca`).
    public func check(channels: Int, elementsPerImage: Int, whitening: ZCAWhitening?) throws {
        switch self {
        case .perChannel(let mean, let std) where mean.count != channels || std.count != channels:
            throw DataOptionError("normalization has \(mean.count) channels, the images \(channels)")
        case .perPixelMean(let mean) where mean.count != elementsPerImage:
            throw DataOptionError("per-pixel mean has \(mean.count) values, an image \(elementsPerImage)")
        case .zca where whitening?.dimension != elementsPerImage:
            throw DataOptionError("ZCA whitening needs a matrix fitted on images of this size (fit it with ZCAWhitening.fit)")
        default: break
        }
    }

    /// One planar image's bytes as network input: scaled to 0...1 and normalized (for `.zca`
    /// only scaled: ``ZCAWhitening/apply(_:count:scratch:)`` whitens whole batches after).
    /// ``BatchLoader`` and a deployed ``Classifier`` share it, so both give the same floats.
    public func normalize(_ source: UnsafePointer<UInt8>, channels: Int, plane: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .none, .zca:
            for i in 0..<(channels * plane) { out[i] = Float(source[i]) * (1 / 255) }
        case .perChannel(let mean, let std):
            for c in 0..<channels {
                let m = mean[c], s = 1 / std[c]
                let o = c * plane
                for p in 0..<plane { out[o + p] = (Float(source[o + p]) * (1 / 255) - m) * s }
            }
        case .perPixelMean(let mean):
            mean.withUnsafeBufferPointer { m in
                for i in 0..<(channels * plane) { out[i] = Float(source[i]) * (1 / 255) - m[i] }
            }
        }
    }

    /// The epsilon of ZCA whitening by default (on pixels scaled to 0...1).
    public static let defaultZCAEpsilon: Float = 0.1

    /// Which normalization to fit, as the command line names it.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case none, channel = "channel", pixel = "pixel", zca
    }

    /// Fits `kind` on `dataset` (the training split).
    public static func fit(_ kind: Kind, on dataset: ImageDataset) -> Normalization {
        switch kind {
        case .none: return .none
        case .channel:
            let (mean, std) = dataset.channelStatistics()
            return .perChannel(mean: mean, std: std)
        case .pixel:
            return .perPixelMean(dataset.pixelMean())
        case .zca:
            return .zca(epsilon: defaultZCAEpsilon)
        }
    }
}

extension ImageDataset {
    /// Per-channel mean and (population) standard deviation of the pixels scaled to 0...1.
    public func channelStatistics() -> (mean: [Float], std: [Float]) {
        let plane = height * width
        var sums = [Double](repeating: 0, count: channels), squares = [Double](repeating: 0, count: channels)
        images.withUnsafeBufferPointer { pixels in
            for c in 0..<channels {
                // Histogram per channel: exact and fast.
                var histogram = [Int](repeating: 0, count: 256)
                for i in 0..<count {
                    let base = pixels.baseAddress! + i * elementsPerImage + c * plane
                    for p in 0..<plane { histogram[Int(base[p])] += 1 }
                }
                for v in 0..<256 {
                    let x = Double(v) / 255
                    sums[c] += Double(histogram[v]) * x
                    squares[c] += Double(histogram[v]) * x * x
                }
            }
        }
        let n = Double(max(1, count * plane))
        let mean = sums.map { $0 / n }
        let std = zip(squares, mean).map { (($0 / n) - $1 * $1).squareRoot() }
        return (mean.map(Float.init), std.map { Float(max($0, 1e-8)) })
    }

    /// The mean image (CHW), pixels scaled to 0...1.
    public func pixelMean() -> [Float] {
        var sums = [Double](repeating: 0, count: elementsPerImage)
        images.withUnsafeBufferPointer { pixels in
            for i in 0..<count {
                let base = pixels.baseAddress! + i * elementsPerImage
                for p in 0..<elementsPerImage { sums[p] += Double(base[p]) }
            }
        }
        return sums.map { Float($0 / Double(max(1, count)) / 255) }
    }

    /// The items at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ImageDataset {
        var pixels = [UInt8](repeating: 0, count: indices.count * elementsPerImage)
        pixels.withUnsafeMutableBufferPointer { out in
            images.withUnsafeBufferPointer { source in
                for (slot, i) in indices.enumerated() {
                    (out.baseAddress! + slot * elementsPerImage)
                        .update(from: source.baseAddress! + i * elementsPerImage, count: elementsPerImage)
                }
            }
        }
        return ImageDataset(images: pixels, labels: indices.map { labels[$0] }, channels: channels,
                            height: height, width: width, classNames: classNames)
    }

    /// A seeded split into training and validation parts: the validation part takes
    /// `validationCount` images, the same share of every class (stratified), chosen at random.
    /// Returns the two index lists, each sorted.
    public func stratifiedSplit(validationCount: Int, seed: UInt64) throws -> (train: [Int], validation: [Int]) {
        guard validationCount >= 0, validationCount < count else {
            throw DataOptionError("validation split of \(validationCount) images is impossible with \(count) training images")
        }
        var byClass: [Int32: [Int]] = [:]
        for (i, label) in labels.enumerated() { byClass[label, default: []].append(i) }
        var random = DataRandom(seed: seed ^ 0x5EED_5917)
        var validation: [Int] = []
        // Largest-remainder allocation keeps the total exact when classes are unequal.
        let classes = byClass.keys.sorted()
        let quotas = classes.map { Double(byClass[$0]!.count) * Double(validationCount) / Double(count) }
        var take = quotas.map { Int($0) }
        let remainder = validationCount - take.reduce(0, +)
        for i in quotas.indices.sorted(by: { quotas[$0] - Double(take[$0]) > quotas[$1] - Double(take[$1]) }).prefix(remainder) {
            take[i] += 1
        }
        for (k, label) in classes.enumerated() {
            var members = byClass[label]!
            members.shuffle(using: &random)
            validation += members.prefix(take[k])
        }
        let chosen = Set(validation)
        return ((0..<count).filter { !chosen.contains($0) }, validation.sorted())
    }
}
