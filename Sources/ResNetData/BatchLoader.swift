import Foundation

/// One batch, ready for the network: float NCHW images and labels.
///
/// The storage belongs to the loader and is reused: a batch is valid until the next call to
/// ``BatchLoader/Epoch/next()``.
public struct Batch {
    /// `count * channels * height * width` floats, plain NCHW.
    public let images: UnsafeBufferPointer<Float>
    public let labels: UnsafeBufferPointer<Int32>
    /// Dataset indices of the images, in batch order.
    public let indices: UnsafeBufferPointer<Int>
    /// Images in this batch (the last batch of an epoch may be smaller unless dropped).
    public let count: Int
    /// Position of the batch in its epoch.
    public let number: Int
}

/// Shuffles, augments and normalizes batches on a background thread, a few batches ahead of
/// the consumer, so that data preparation overlaps the training step.
///
/// Images stay uint8 in memory. The order of an epoch depends only on (seed, epoch) and each
/// image's augmentation only on (seed, epoch, index), so a resumed run sees the same data.
public final class BatchLoader: @unchecked Sendable {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    /// Whether an epoch ends with a smaller batch (`false`) or drops those images (`true`).
    public let dropLast: Bool
    public let augmenter: Augmenter
    public let normalization: Normalization
    /// The fitted whitening when `normalization` is `.zca`.
    public let whitening: ZCAWhitening?
    public let seed: UInt64
    /// Batches prepared ahead of the consumer.
    public let prefetch: Int
    /// Data-parallel training: this process's part of every batch. Batch `b` of an epoch is the
    /// same `batchSize` images as without sharding, and part `index` of `count` is its
    /// contiguous images `index * batchSize / count ..< (index + 1) * batchSize / count`, each
    /// augmented exactly as in one process (the generator is seeded by the image, not the slot).
    public let shard: (index: Int, count: Int)
    /// Images in every batch this loader hands out: `batchSize / shard.count`.
    public var imagesPerBatch: Int { batchSize / shard.count }

    public init(dataset: ImageDataset, batchSize: Int, shuffle: Bool, dropLast: Bool,
                augmentations: [Augmentation] = [], normalization: Normalization = .none,
                whitening: ZCAWhitening? = nil, seed: UInt64 = 0, prefetch: Int = 3,
                shard: (index: Int, count: Int) = (0, 1)) throws {
        guard batchSize > 0 else { throw DataOptionError("batch size must be positive, got \(batchSize)") }
        guard shard.count >= 1, (0..<shard.count).contains(shard.index) else {
            throw DataOptionError("shard \(shard.index) of \(shard.count) does not exist")
        }
        guard shard.count == 1 || (dropLast && batchSize % shard.count == 0) else {
            throw DataOptionError("a batch of \(batchSize) images cannot be split into \(shard.count) equal parts")
        }
        guard dataset.count >= (dropLast ? batchSize : 1) else {
            throw DataOptionError("\(dataset.count) images cannot fill a batch of \(batchSize)")
        }
        try normalization.check(channels: dataset.channels, elementsPerImage: dataset.elementsPerImage, whitening: whitening)
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        augmenter = Augmenter(augmentations, channels: dataset.channels, height: dataset.height, width: dataset.width)
        self.normalization = normalization
        self.whitening = whitening
        self.seed = seed
        self.prefetch = max(1, prefetch)
        self.shard = shard
    }

    /// Batches per epoch.
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// The order in which epoch `epoch` visits the dataset.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var random = DataRandom(seed: seed, epoch: epoch, index: -1)
        return Array(0..<dataset.count).shuffled(using: &random)
    }

    /// Starts preparing epoch `epoch` from batch `first` (to resume mid-epoch).
    public func epoch(_ epoch: Int, startingAt first: Int = 0) -> Epoch {
        Epoch(loader: self, epoch: epoch, order: order(epoch: epoch), first: first)
    }

    /// Prepares every batch of `epoch` on the calling thread and returns the image count: the
    /// pipeline's single-core throughput, for benchmarks.
    public func timeEpochOnThisThread(_ epoch: Int) -> Int {
        let slot = Slot(batchSize: batchSize, elementsPerImage: dataset.elementsPerImage)
        let order = order(epoch: epoch)
        var images = 0
        for number in 0..<batchesPerEpoch {
            fill(slot, number: number, order: order, epoch: epoch)
            images += slot.count
        }
        return images
    }

    /// Prepares batch `number` of an epoch into `slot`. Used by the background thread and by tests.
    func fill(_ slot: Slot, number: Int, order: [Int], epoch: Int) {
        var start = number * batchSize
        var count = min(batchSize, dataset.count - start)
        if shard.count > 1 {   // full batches only (dropLast): every part has the same size
            count = batchSize / shard.count
            start += shard.index * count
        }
        let perImage = dataset.elementsPerImage
        slot.count = count
        slot.number = number
        dataset.images.withUnsafeBufferPointer { pixels in
            for k in 0..<count {
                let index = order[start + k]
                slot.indices[k] = index
                slot.labels[k] = dataset.labels[index]
                var source = pixels.baseAddress! + index * perImage
                if !augmenter.isIdentity {
                    var random = DataRandom(seed: seed, epoch: epoch, index: index)
                    augmenter.apply(source, to: slot.scratch, using: &random)
                    source = UnsafePointer(slot.scratch)
                }
                convert(source, to: slot.images + k * perImage)
            }
        }
        if case .zca = normalization, let whitening {
            whitening.apply(slot.images, count: count, scratch: slot.scratchFloats(count * perImage))
        }
    }

    private func convert(_ source: UnsafePointer<UInt8>, to out: UnsafeMutablePointer<Float>) {
        normalization.normalize(source, channels: dataset.channels, plane: dataset.height * dataset.width, into: out)
    }

    /// Storage for one batch.
    final class Slot {
        let images: UnsafeMutablePointer<Float>
        let labels: UnsafeMutablePointer<Int32>
        let indices: UnsafeMutablePointer<Int>
        let scratch: UnsafeMutablePointer<UInt8>
        var count = 0
        var number = 0
        private var floatScratch: UnsafeMutablePointer<Float>?
        private var floatScratchCount = 0

        /// Scratch floats for whitening, allocated on first use.
        func scratchFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
            if floatScratchCount < count {
                floatScratch?.deallocate()
                floatScratch = .allocate(capacity: count)
                floatScratchCount = count
            }
            return floatScratch!
        }

        init(batchSize: Int, elementsPerImage: Int) {
            images = .allocate(capacity: batchSize * elementsPerImage)
            labels = .allocate(capacity: batchSize)
            indices = .allocate(capacity: batchSize)
            scratch = .allocate(capacity: elementsPerImage)
        }

        deinit {
            images.deallocate(); labels.deallocate(); indices.deallocate(); scratch.deallocate(); floatScratch?.deallocate()
        }

        func batch(elementsPerImage: Int) -> Batch {
            Batch(images: UnsafeBufferPointer(start: images, count: count * elementsPerImage),
                  labels: UnsafeBufferPointer(start: labels, count: count),
                  indices: UnsafeBufferPointer(start: indices, count: count), count: count, number: number)
        }
    }

    /// One pass over the data, produced by a background thread into a ring of slots.
    public final class Epoch: @unchecked Sendable {
        private let loader: BatchLoader
        private let slots: [Slot]
        private let condition = NSCondition()
        private var produced: Int        // batches written so far (absolute batch numbers)
        private var consumed: Int        // batches handed out and released
        private var cancelled = false
        private var handedOut = false
        private let end: Int

        init(loader: BatchLoader, epoch: Int, order: [Int], first: Int) {
            self.loader = loader
            end = loader.batchesPerEpoch
            produced = min(first, end)
            consumed = produced
            slots = (0...loader.prefetch).map { _ in Slot(batchSize: loader.batchSize, elementsPerImage: loader.dataset.elementsPerImage) }
            // The thread keeps the epoch alive while it runs; the epoch must not keep the thread
            // (a cycle that leaked every epoch, ~20 KB per `Classifier.probabilities` call).
            let thread = Thread { [self] in produce(epoch: epoch, order: order) }
            thread.name = "resnet.data"
            thread.qualityOfService = .userInitiated
            thread.start()
        }

        deinit { cancel() }

        private func produce(epoch: Int, order: [Int]) {
            while true {
                condition.lock()
                while !cancelled, produced < end, produced - consumed >= slots.count { condition.wait() }
                if cancelled || produced >= end { condition.unlock(); return }
                let number = produced
                condition.unlock()
                loader.fill(slots[number % slots.count], number: number, order: order, epoch: epoch)
                condition.lock()
                produced += 1
                condition.broadcast()
                condition.unlock()
            }
        }

        /// The next batch, or `nil` at the end of the epoch. Releases the previous batch.
        public func next() -> Batch? {
            condition.lock()
            defer { condition.unlock() }
            if handedOut { consumed += 1; handedOut = false; condition.broadcast() }
            guard consumed < end else { return nil }
            while produced <= consumed { condition.wait() }
            handedOut = true
            return slots[consumed % slots.count].batch(elementsPerImage: loader.dataset.elementsPerImage)
        }

        /// Stops the background thread (the epoch ends early).
        public func cancel() {
            condition.lock()
            cancelled = true
            condition.broadcast()
            condition.unlock()
        }
    }
}
