import Foundation
import ResNetData
import ResNetInference
import ResNetLayers
import ResNetModels
import ResNetOptimizers
import ResNetTensors

/// A linear probe, what users of pretrained weights often try first: the network's pooled
/// features computed once (evaluation mode, no augmentation), then only a new classifier
/// trained on them, in seconds where fine-tuning takes minutes.
public enum LinearProbe {
    /// The pooled features of every image of `data`, row-major `count x featureCount`.
    public static func features(of model: ResNet, imageShape: [Int], data: ImageDataset, normalization: Normalization,
                                whitening: ZCAWhitening?, batchSize: Int = 256) throws -> [Float] {
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let width = model.configuration.featureCount
        var result = [Float](repeating: 0, count: data.count * width)
        var graphs: [Int: (Graph, Tensor, Tensor)] = [:]
        let loader = try BatchLoader(dataset: data, batchSize: batchSize, shuffle: false, dropLast: false,
                                     normalization: normalization, whitening: whitening)
        let epoch = loader.epoch(0)
        defer { epoch.cancel() }
        while let batch = epoch.next() {
            if graphs[batch.count] == nil {
                let graph = Graph(computesGradients: false)
                let images = graph.input([batch.count] + imageShape)
                let pooled = try model.features(images)
                try graph.plan(keep: [pooled])
                graphs[batch.count] = (graph, images, pooled)
            }
            let (graph, images, pooled) = graphs[batch.count]!
            graph.withInputBuffer(images) { $0.update(from: UnsafeMutableBufferPointer(mutating: batch.images)) }
            graph.forward()
            try graph.withValue(pooled) { values in
                for i in 0..<batch.count {
                    let row = batch.indices[i] * width
                    for k in 0..<width { result[row + k] = values[i * width + k] }
                }
            }
        }
        return result
    }

    /// Trains `Dense(featureCount, classes)` on `features` (rows) and `labels` with SGD
    /// (Nesterov momentum 0.9, cosine decay from `learningRate`), in batches of `batchSize`
    /// drawn in a seeded order.
    public static func trainClassifier(features: [Float], labels: [Int32], featureCount: Int, classes: Int, epochs: Int,
                                       batchSize: Int, learningRate: Float, weightDecay: Float, seed: UInt64) throws -> Dense {
        let count = labels.count
        guard count >= 1, features.count == count * featureCount, (1...100_000).contains(epochs), learningRate > 0 else {
            throw TrainingError.invalidOption("a linear probe needs features for every label, 1...100000 epochs and a positive rate")
        }
        let batch = min(batchSize, count)
        DefaultGenerator.seed(seed)
        let head = Dense(featureCount, classes)
        head.initializeParameters(seed: seed)
        let optimizer = try SGD(learningRate: learningRate, momentum: 0.9, nesterov: true, weightDecay: weightDecay)
        let step = try TrainingStep(model: head, optimizer: optimizer, imageShape: [featureCount], classCount: classes,
                                    batchSize: batch, seed: seed)
        let steps = count / batch
        let total = epochs * steps
        let schedule = LearningRateSchedule.cosine(base: learningRate, minimum: 0, iterations: total)
        var order = Array(0..<count)
        var random = DataRandom(seed: seed)
        var inputs = [Float](repeating: 0, count: batch * featureCount)
        var targets = [Int32](repeating: 0, count: batch)
        var done = 0
        for _ in 0..<epochs {
            order.shuffle(using: &random)
            for s in 0..<steps {
                for i in 0..<batch {
                    let row = order[s * batch + i]
                    for k in 0..<featureCount { inputs[i * featureCount + k] = features[row * featureCount + k] }
                    targets[i] = labels[row]
                }
                let rate = schedule.learningRate(step: done, stepsPerEpoch: steps)
                _ = try inputs.withUnsafeBufferPointer { x in try targets.withUnsafeBufferPointer { t in try step(images: x, labels: t, learningRate: rate) } }
                done += 1
            }
        }
        return head
    }

    /// The share of rows whose largest logit (`features x weight^T + bias`) is their label.
    public static func accuracy(of head: Dense, features: [Float], labels: [Int32], featureCount: Int) -> Double {
        guard !labels.isEmpty else { return 0 }
        let w = head.weight.values, b = head.bias?.values ?? []
        let classes = head.weight.shape[0]
        var correct = 0
        for (row, label) in labels.enumerated() {
            var best = 0, bestValue = -Float.infinity
            for c in 0..<classes {
                var z = b.isEmpty ? 0 : b[c]
                for k in 0..<featureCount { z += w[c * featureCount + k] * features[row * featureCount + k] }
                if z > bestValue { bestValue = z; best = c }
            }
            if best == Int(label) { correct += 1 }
        }
        return Double(correct) / Double(labels.count)
    }
}

extension LinearProbe {
    /// What ``probe(_:on:datasetName:validationCount:epochs:batchSize:learningRate:weightDecay:seed:)`` made.
    public struct Outcome {
        /// The starting network with the new classifier, and its card (the data's classes and
        /// input size, the normalization used, provenance with the accuracies).
        public var model: LoadedModel
        public var validationAccuracy: Double?
        public var testAccuracy: Double?
        public var trainingImages: Int
        public var seconds: Double
    }

    /// Probes `start` on `data`: features of its training part (less `validationCount` images,
    /// the stratified split runs use), a classifier trained on them for `epochs`, accuracies on
    /// the validation part and the test split. The normalization is the starting model's when it
    /// is per-channel (or none), else per-channel statistics of the training part.
    public static func probe(_ start: LoadedModel, on data: LoadedDataset, datasetName: String, validationCount: Int, epochs: Int,
                             batchSize: Int = 64, learningRate: Float = 0.1, weightDecay: Float = 5e-4, seed: UInt64 = 0) throws -> Outcome {
        let begin = Date()
        guard let network = start.model as? ResNet else {
            throw TrainingError.invalidOption("a linear probe needs a residual or plain network (its pooled features)")
        }
        guard let all = data.split("train") else { throw TrainingError.invalidOption("\(data.name) has no training split") }
        guard all.channels == start.card.input.channels else {
            throw TrainingError.invalidOption("the data has \(all.channels)-channel images; the model takes \(start.card.input.channels)")
        }
        let (t, v) = try trainingSplit(all, validationCount: validationCount)
        let train = all.subset(t), validation = all.subset(v)
        let normalization: Normalization
        switch start.card.preprocessing.normalization {
        case .perChannel, .none: normalization = start.card.preprocessing.normalization
        case .perPixelMean, .zca: normalization = Normalization.fit(.channel, on: train)
        }
        let shape = [all.channels, all.height, all.width]
        let width = network.configuration.featureCount
        func features(_ d: ImageDataset) throws -> [Float] {
            try Self.features(of: network, imageShape: shape, data: d, normalization: normalization, whitening: nil)
        }
        let head = try trainClassifier(features: try features(train), labels: train.labels, featureCount: width,
                                       classes: data.classNames.count, epochs: epochs, batchSize: batchSize,
                                       learningRate: learningRate, weightDecay: weightDecay, seed: seed)
        let validationAccuracy = validation.count > 0
            ? accuracy(of: head, features: try features(validation), labels: validation.labels, featureCount: width) : nil
        let testAccuracy = try data.split("test").map { accuracy(of: head, features: try features($0), labels: $0.labels, featureCount: width) }

        var metrics: [String: Double] = [:]
        if let validationAccuracy { metrics["validation_top1"] = validationAccuracy }
        if let testAccuracy { metrics["test_top1"] = testAccuracy }
        let card = ModelCard(architecture: start.card.architecture,
                             input: .init(channels: all.channels, height: all.height, width: all.width,
                                          channelOrder: all.channels == 1 ? .gray : .rgb),
                             preprocessing: .init(resize: .stretch, normalization: normalization), classNames: data.classNames,
                             provenance: .init(origin: .trained, dataset: datasetName, recipe: "linear probe of \(start.url.path)",
                                               seed: seed, metrics: metrics, software: "SwiftResNet \(SwiftResNetVersion.current)",
                                               created: ISO8601DateFormatter().string(from: Date())))
        let model = try card.validated().buildModel(seed: seed)
        var tensors = ModelFile.tensors(of: start.model)
        tensors["fc.weight"] = SafeTensors.Tensor(shape: head.weight.shape, values: head.weight.values)
        tensors["fc.bias"] = head.bias.map { SafeTensors.Tensor(shape: $0.shape, values: $0.values) }
        try loadWeights(tensors, into: model, path: start.url.path)
        model.eval()
        return Outcome(model: LoadedModel(url: start.url, card: card, model: model, whitening: nil, metadata: [:]),
                       validationAccuracy: validationAccuracy, testAccuracy: testAccuracy, trainingImages: train.count,
                       seconds: -begin.timeIntervalSinceNow)
    }
}
