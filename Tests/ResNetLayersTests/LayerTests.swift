import Foundation
import ResNetData
import ResNetEngine
import ResNetLayers
import ResNetOptimizers
import ResNetTensors
import Testing

/// A basic residual block written the way models will be: forward only.
final class TinyBlock: Module, Layer {
    let conv1: Conv2D, bn1: BatchNorm2D, conv2: Conv2D, bn2: BatchNorm2D
    init(_ channels: Int) {
        conv1 = Conv2D(channels, channels, kernelSize: 3)
        bn1 = BatchNorm2D(channels)
        conv2 = Conv2D(channels, channels, kernelSize: 3)
        bn2 = BatchNorm2D(channels)
    }
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = relu(try bn1(conv1(x)), label: label + ".relu1")
        return relu(try add(bn2(conv2(h)), x, label: label + ".add"), label: label + ".relu2")
    }
}

@Suite("Layers and modules", .serialized)
struct LayerTests {
    func tinyNet() -> Sequential {
        Sequential(named: [
            ("stem", Conv2D(3, 16, kernelSize: 3)),
            ("stage1", Sequential(named: [("block0", TinyBlock(16)), ("block1", TinyBlock(16))])),
            ("pool", GlobalAvgPool2D()),
            ("fc", Dense(16, 10)),
        ])
    }

    @Test("parameters get stable dotted names, running statistics are state not trainable")
    func dottedNames() {
        let names = tinyNet().namedParameters().map(\.0)
        #expect(names.contains("stage1.block0.conv1.weight"))
        #expect(names.contains("stage1.block1.bn2.runningVariance"))
        #expect(names.contains("fc.bias"))
        #expect(names.count == Set(names).count, "names are unique")
        #expect(tinyNet().namedParameters().map(\.0) == names, "order is stable")
        let net = tinyNet()
        #expect(net.trainableParameters.allSatisfy { !$0.name.contains("running") })
        // stem 16*3*9, two blocks of 2 convs (16*16*9) + 2 BN (2*16), fc 16*10+10
        #expect(net.trainableParameterCount == 432 + 2 * (2 * 2304 + 2 * 32) + 170)
    }

    @Test("train and eval switch the whole tree; dropout is the identity in eval mode")
    func modes() throws {
        let dense = Dense(4, 4)
        let net = Sequential([dense, Dropout(rate: 0.5)])
        net.eval()
        #expect(net.namedChildren.allSatisfy { !$0.1.isTraining })
        /// Two forward passes of `layer` on one 2x4 input, in an inference graph.
        func twoPasses(_ layer: (Tensor) throws -> Tensor) throws -> [[Float]] {
            let graph = Graph(computesGradients: false)
            let x = graph.input([2, 4])
            let y = try layer(x)
            try graph.plan(keep: [y])
            try graph.setInput(x, [1, 2, 3, 4, 5, 6, 7, 8])
            return try (0..<2).map { _ in graph.forward(); return try graph.read(y) }
        }
        let passes = try twoPasses { try net($0) }
        #expect(passes[1] == passes[0], "no random mask in eval mode")
        // The identity: neither a mask nor the 1/(1-p) scale of training.
        #expect(try twoPasses { try dense($0) }[0] == passes[0])
        net.train()
        #expect(net.namedChildren.allSatisfy { $0.1.isTraining })
    }

    @Test("He normal (fan-in and fan-out) and Glorot uniform have the right spread; seeds reproduce")
    func initializers() {
        var generator = SeededGenerator(seed: 3)
        let p = Parameter(shape: [64, 32, 3, 3])
        for (initializer, fan) in [(Initializer.heNormal(.fanIn), 32 * 9), (.heNormal(.fanOut), 64 * 9)] {
            initializer.fill(p, using: &generator)
            let v = p.values
            let std = (v.map { Double($0 * $0) }.reduce(0, +) / Double(v.count)).squareRoot()
            #expect(abs(std - (2 / Double(fan)).squareRoot()) / (2 / Double(fan)).squareRoot() < 0.03)
        }
        Initializer.glorotUniform.fill(p, using: &generator)
        let limit = Float((6.0 / Double(32 * 9 + 64 * 9)).squareRoot())
        #expect(p.values.allSatisfy { abs($0) <= limit } && p.values.contains { abs($0) > 0.9 * limit })
        let a = tinyNet(), b = tinyNet()
        a.initializeParameters(seed: 42)
        b.initializeParameters(seed: 42)
        #expect(a.trainableParameters.map(\.values) == b.trainableParameters.map(\.values))
    }

    @Test("a wrong channel count names the layer and both shapes")
    func shapeErrors() throws {
        let net = tinyNet()
        net.assignNames()
        let graph = Graph()
        let x = graph.input([2, 1, 8, 8])
        #expect(throws: TensorError.shapeMismatch(layer: "stem", expected: "[N, 3, H, W]", actual: [2, 1, 8, 8])) { try net(x) }
        let message = TensorError.shapeMismatch(layer: "stem", expected: "[N, 3, H, W]", actual: [2, 1, 8, 8]).description
        #expect(message == "stem: expected input of shape [N, 3, H, W], got [2, 1, 8, 8]")
        let a = graph.input([2, 16, 4, 4]), b = graph.input([2, 16, 2, 2])
        #expect(throws: TensorError.incompatibleShapes(layer: "stage1.block0.add", first: [2, 16, 4, 4], second: [2, 16, 2, 2])) {
            try add(a, b, label: "stage1.block0.add")
        }
        let small = graph.input([1, 3, 2, 2])
        #expect(throws: TensorError.self) { try maxPool2d(small, kernel: (3, 3), stride: (1, 1)) }
    }

    @Test("labels outside the classes are rejected with the index")
    func labelErrors() throws {
        let graph = Graph()
        let x = graph.input([3, 4], requiresGradient: true)
        let labels = graph.labels(count: 3)
        let loss = try softmaxCrossEntropy(x, labels: labels)
        try graph.plan(loss: loss)
        #expect(throws: TensorError.labelOutOfRange(layer: "softmaxCrossEntropy", index: 2, label: 4, classCount: 4)) {
            try graph.setLabels(labels, [0, 3, 4])
        }
        #expect(throws: TensorError.wrongElementCount(what: "labels", expected: 3, actual: 2)) { try graph.setLabels(labels, [0, 1]) }
    }

    @Test("primitives are created once per shape: a second graph of the same model creates none")
    func primitivesCached() throws {
        let net = tinyNet()
        func build() throws {
            let graph = Graph()
            let x = graph.input([7, 3, 8, 8])
            let labels = graph.labels(count: 7)
            try graph.plan(loss: softmaxCrossEntropy(net(x), labels: labels))
        }
        // A batch size no other test plans, so that the first build must add primitives.
        let before = PrimitiveCache.shared.count
        try build()
        let count = PrimitiveCache.shared.count
        #expect(count > before, "the first graph of this shape created no primitive")
        try build()
        #expect(PrimitiveCache.shared.count == count)
    }

    @Test("a training step allocates no new buffers and gives the same result when repeated on the same batch")
    func steadyState() throws {
        let net = tinyNet()
        net.initializeParameters(seed: 1)
        let graph = Graph()
        let x = graph.input([4, 3, 8, 8])
        let labels = graph.labels(count: 4)
        let loss = try softmaxCrossEntropy(net(x), labels: labels)
        try graph.plan(loss: loss)
        try graph.setInput(x, (0..<(4 * 3 * 64)).map { Float($0 % 17) / 17 })
        try graph.setLabels(labels, [1, 2, 3, 4])
        let bytes = graph.allocatedBytes
        graph.forward(); graph.backward()
        let firstLoss = try graph.scalar(loss)
        let firstGradient = net.trainableParameters[0].gradients
        for _ in 0..<5 { graph.forward(); graph.backward() }
        #expect(graph.allocatedBytes == bytes)
        #expect(try graph.scalar(loss) == firstLoss)
        #expect(net.trainableParameters[0].gradients == firstGradient, "backward overwrites, never accumulates across steps")
    }

    @Test("a small CNN learns real Fashion-MNIST: one epoch on 6,000 images beats chance by far",
          .enabled(if: FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory),
                   "Fashion-MNIST missing: apt-get install dataset-fashion-mnist"))
    func learnsFashionMNIST() throws {
        DefaultGenerator.seed(0)
        let model = Sequential([
            Conv2D(1, 16, kernelSize: 3), BatchNorm2D(16), ReLU(), MaxPool2D(kernelSize: 2),
            Conv2D(16, 32, kernelSize: 3), BatchNorm2D(32), ReLU(), MaxPool2D(kernelSize: 2),
            Flatten(), Dense(32 * 7 * 7, 10),
        ])
        let train = try FashionMNIST.load(split: .train).prefix(6000)
        let test = try FashionMNIST.load(split: .test).prefix(2000)
        let optimizer = try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 5e-4)
        let batch = 100
        let graph = Graph()
        let x = graph.input([batch, 1, 28, 28])
        let labels = graph.labels(count: batch)
        let loss = try softmaxCrossEntropy(model(x), labels: labels)
        try graph.plan(loss: loss)
        var labelBuffer = [Int32](repeating: 0, count: batch)
        var firstLoss: Float = 0, lastLoss: Float = 0
        for step in 0..<(train.count / batch) {
            graph.withInputBuffer(x) { buffer in
                labelBuffer.withUnsafeMutableBufferPointer {
                    train.fillBatch(indices: (step * batch)..<((step + 1) * batch), images: buffer.baseAddress!, labels: $0.baseAddress!, mean: [0.286], std: [0.353])
                }
            }
            try graph.setLabels(labels, labelBuffer)
            graph.forward(); graph.backward()
            optimizer.update(model.trainableParameters)
            if step == 0 { firstLoss = try graph.scalar(loss) }
            lastLoss = try graph.scalar(loss)
        }
        // Evaluate with running statistics on held-out test images.
        model.eval()
        let evalGraph = Graph(computesGradients: false)
        let ex = evalGraph.input([test.count, 1, 28, 28])
        let logits = try model(ex)
        try evalGraph.plan(keep: [logits])
        var testLabels = [Int32](repeating: 0, count: test.count)
        evalGraph.withInputBuffer(ex) { buffer in
            testLabels.withUnsafeMutableBufferPointer { test.fillBatch(indices: 0..<test.count, images: buffer.baseAddress!, labels: $0.baseAddress!, mean: [0.286], std: [0.353]) }
        }
        evalGraph.forward()
        let scores = try evalGraph.read(logits)
        var correct = 0
        for i in 0..<test.count {
            let row = Array(scores[(i * 10)..<(i * 10 + 10)])
            if row.firstIndex(of: row.max()!)! == Int(testLabels[i]) { correct += 1 }
        }
        let accuracy = Double(correct) / Double(test.count)
        print("Fashion-MNIST, 6,000 training images, 1 epoch: loss \(firstLoss) -> \(lastLoss), test accuracy \(accuracy) on 2,000")
        #expect(lastLoss < firstLoss * 0.5)
        #expect(accuracy > 0.7, "chance is 0.1")
    }
}
