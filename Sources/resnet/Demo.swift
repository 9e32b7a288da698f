import ArgumentParser
import Foundation
import ResNetData
import ResNetEngine
import ResNetLayers
import ResNetOptimizers
import ResNetTensors

/// The core's demonstration: a small CNN trained on real Fashion-MNIST for one epoch.
/// (`resnet train` with ResNet-20 on CIFAR-10 replaces it as the main job.)
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small CNN on Fashion-MNIST for one epoch and print the test accuracy.")

    @Option(help: "Folder with the Fashion-MNIST IDX files (Debian: apt-get install dataset-fashion-mnist).")
    var data = FashionMNIST.defaultDirectory
    @Option(help: "Training images to use (default: all 60,000).")
    var trainLimit: Int?
    @Option(help: "Epochs.") var epochs = 1
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "SGD learning rate.") var learningRate: Float = 0.05
    @Option(help: "Random seed (weights, shuffling).") var seed: UInt64 = 0
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        do {
            try train()
        } catch let error as DataError {
            throw UserError("\(error)\nInstall the data set with: apt-get install dataset-fashion-mnist (or pass --data DIR)")
        } catch let error as TensorError {
            throw UserError(error.description)
        }
    }

    private func train() throws {
        guard batchSize > 0, epochs > 0 else { throw UserError("--batch-size and --epochs must be positive") }
        var loadStart = Date()
        var trainSet = try FashionMNIST.load(directory: data, split: .train)
        if let trainLimit { trainSet = trainSet.prefix(trainLimit) }
        let testSet = try FashionMNIST.load(directory: data, split: .test)
        print("Fashion-MNIST: \(trainSet.count) training, \(testSet.count) test images (loaded in \(String(format: "%.2f", -loadStart.timeIntervalSinceNow)) s); \(ComputeEngine.shared.threadCount) threads")
        guard trainSet.count >= batchSize else { throw UserError("need at least one batch of \(batchSize) training images") }

        DefaultGenerator.seed(seed)
        let model = Sequential(named: [
            ("conv1", Conv2D(1, 32, kernelSize: 3)), ("bn1", BatchNorm2D(32)), ("relu1", ReLU()),
            ("pool1", MaxPool2D(kernelSize: 2)),
            ("conv2", Conv2D(32, 64, kernelSize: 3)), ("bn2", BatchNorm2D(64)), ("relu2", ReLU()),
            ("pool2", MaxPool2D(kernelSize: 2)),
            ("flatten", Flatten()), ("dropout", Dropout(rate: 0.25)), ("fc", Dense(64 * 7 * 7, 10)),
        ])
        let parameters = model.trainableParameters
        print("model: \(parameters.count) parameter tensors, \(model.trainableParameterCount) trainable weights")
        let optimizer = try SGD(learningRate: learningRate, momentum: 0.9, nesterov: true, weightDecay: 5e-4)

        let shape = [batchSize, 1, 28, 28]
        let graph = Graph(seed: seed)
        let images = graph.input(shape)
        let labels = graph.labels(count: batchSize)
        let loss = try softmaxCrossEntropy(model(images), labels: labels)
        try graph.plan(loss: loss)
        let mean: [Float] = [0.286], std: [Float] = [0.353]

        var generator = SeededGenerator(seed: seed &+ 1)
        var labelBuffer = [Int32](repeating: 0, count: batchSize)
        let steps = trainSet.count / batchSize
        for epoch in 1...epochs {
            model.train()
            let order = Array(0..<trainSet.count).shuffled(using: &generator)
            let start = Date()
            var lossSum = 0.0
            for step in 0..<steps {
                let indices = order[(step * batchSize)..<((step + 1) * batchSize)]
                graph.withInputBuffer(images) { buffer in
                    labelBuffer.withUnsafeMutableBufferPointer { l in
                        trainSet.fillBatch(indices: indices, images: buffer.baseAddress!, labels: l.baseAddress!, mean: mean, std: std)
                    }
                }
                try graph.setLabels(labels, labelBuffer)
                graph.forward()
                graph.backward()
                optimizer.update(parameters)
                let value = try graph.scalar(loss)
                guard value.isFinite else { throw UserError("the loss became \(value) at step \(step): lower --learning-rate") }
                lossSum += Double(value)
                if (step + 1) % 100 == 0 || step + 1 == steps {
                    print(String(format: "epoch %d  step %4d/%d  loss %.4f  %.0f img/s", epoch, step + 1, steps,
                                 lossSum / Double(step + 1), Double((step + 1) * batchSize) / -start.timeIntervalSinceNow))
                }
            }
            loadStart = Date()
            let accuracy = try evaluate(model, on: testSet, mean: mean, std: std)
            print(String(format: "epoch %d: train loss %.4f, test accuracy %.2f%% (chance 10%%), epoch %.1f s, evaluation %.1f s",
                         epoch, lossSum / Double(steps), 100 * accuracy, -start.timeIntervalSinceNow + loadStart.timeIntervalSinceNow,
                         -loadStart.timeIntervalSinceNow))
        }
    }
}

/// Top-1 accuracy with batch norm in evaluation mode (running statistics), on the whole set.
func evaluate(_ model: some Layer, on dataset: ImageDataset, mean: [Float], std: [Float], batchSize: Int = 500) throws -> Double {
    model.eval()
    defer { model.train() }
    var graphs: [Int: (Graph, Tensor, Tensor)] = [:]
    var correct = 0
    var labels = [Int32](repeating: 0, count: batchSize)
    for start in stride(from: 0, to: dataset.count, by: batchSize) {
        let n = min(batchSize, dataset.count - start)
        if graphs[n] == nil {
            let graph = Graph(computesGradients: false)
            let x = graph.input([n, dataset.channels, dataset.height, dataset.width])
            let logits = try model(x)
            try graph.plan(keep: [logits])
            graphs[n] = (graph, x, logits)
        }
        let (graph, x, logits) = graphs[n]!
        graph.withInputBuffer(x) { buffer in
            labels.withUnsafeMutableBufferPointer { l in
                dataset.fillBatch(indices: start..<(start + n), images: buffer.baseAddress!, labels: l.baseAddress!, mean: mean, std: std)
            }
        }
        graph.forward()
        let scores = try graph.read(logits)
        let classes = scores.count / n
        for i in 0..<n {
            let row = scores[(i * classes)..<((i + 1) * classes)]
            if row.indices.max(by: { row[$0] < row[$1] })! - i * classes == Int(labels[i]) { correct += 1 }
        }
    }
    return Double(correct) / Double(dataset.count)
}
