import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetEngine
import ResNetLayers
import ResNetOptimizers
import ResNetTensors
import ResNetTraining

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
        print("model: \(model.trainableParameters.count) parameter tensors, \(model.trainableParameterCount) trainable weights")
        let optimizer = try SGD(learningRate: learningRate, momentum: 0.9, nesterov: true, weightDecay: 5e-4)
        // The library's training step (forward, finite loss, backward, update) and evaluator:
        // the same code `resnet train` runs, on a network that is not in the zoo.
        let step = try TrainingStep(model: model, optimizer: optimizer, imageShape: [1, 28, 28], classCount: 10,
                                    batchSize: batchSize, seed: seed)
        let mean: [Float] = [0.286], std: [Float] = [0.353]
        let evaluator = Evaluator(model: model, imageShape: [1, 28, 28], classCount: 10)

        var generator = SeededGenerator(seed: seed &+ 1)
        var images = [Float](repeating: 0, count: batchSize * 28 * 28)
        var labels = [Int32](repeating: 0, count: batchSize)
        let steps = trainSet.count / batchSize
        for epoch in 1...epochs {
            model.train()
            let order = Array(0..<trainSet.count).shuffled(using: &generator)
            let start = Date()
            var lossSum = 0.0
            for index in 0..<steps {
                let indices = order[(index * batchSize)..<((index + 1) * batchSize)]
                images.withUnsafeMutableBufferPointer { x in
                    labels.withUnsafeMutableBufferPointer { l in
                        trainSet.fillBatch(indices: indices, images: x.baseAddress!, labels: l.baseAddress!, mean: mean, std: std)
                    }
                }
                let result: TrainingStep.Result
                do {
                    result = try images.withUnsafeBufferPointer { x in
                        try labels.withUnsafeBufferPointer { l in try step(images: x, labels: l, learningRate: learningRate) }
                    }
                } catch let error as TrainingStep.NonFiniteLoss {
                    throw UserError("the loss became \(error.value) at step \(index): lower --learning-rate")
                }
                lossSum += Double(result.loss)
                if (index + 1) % 100 == 0 || index + 1 == steps {
                    print(String(format: "epoch %d  step %4d/%d  loss %.4f  %.0f img/s", epoch, index + 1, steps,
                                 lossSum / Double(index + 1), Double((index + 1) * batchSize) / -start.timeIntervalSinceNow))
                }
            }
            loadStart = Date()
            let accuracy = try evaluator.evaluate(testSet, normalization: .perChannel(mean: mean, std: std)).top1
            print(String(format: "epoch %d: train loss %.4f, test accuracy %.2f%% (chance 10%%), epoch %.1f s, evaluation %.1f s",
                         epoch, lossSum / Double(steps), 100 * accuracy, -start.timeIntervalSinceNow + loadStart.timeIntervalSinceNow,
                         -loadStart.timeIntervalSinceNow))
        }
    }
}
