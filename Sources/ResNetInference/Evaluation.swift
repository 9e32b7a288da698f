import Foundation
import ResNetData
import ResNetLayers
import ResNetTensors

/// What `resnet evaluate` reports. Accuracies are fractions in 0...1.
public struct EvaluationResult: Codable, Sendable, Equatable {
    public var count: Int
    public var loss: Double
    public var top1: Double
    public var top5: Double
    /// Accuracy of each class (NaN-free: a class with no images reports 0).
    public var perClass: [Double]
    /// `confusionMatrix[true][predicted]`.
    public var confusionMatrix: [[Int]]
    public var classNames: [String]

    enum CodingKeys: String, CodingKey {
        case count, loss, top1, top5, perClass = "per_class", confusionMatrix = "confusion_matrix", classNames = "classes"
    }
}

/// Runs a model in evaluation mode over a data set, batch by batch, with planned graphs reused
/// across calls (one per batch size met).
public final class Evaluator {
    public let model: any Layer
    public let imageShape: [Int]
    public let classCount: Int
    public let batchSize: Int
    /// Running statistics (default) or each batch's own (the PyTorch note's evaluation mode).
    public let statistics: BatchNormStatistics
    /// The fitted whitening when the run's normalization is ZCA.
    public let whitening: ZCAWhitening?
    /// Whether the model's parameters are taken to never change (see ``init(model:imageShape:classCount:batchSize:statistics:whitening:parametersAreConstant:)``).
    public let parametersAreConstant: Bool
    /// The number format the network runs in: fp32, or bf16 (bfloat16 activations and
    /// convolutions: ~2x faster where the CPU has native bf16, slightly less exact).
    public let precision: Precision

    /// With constant parameters, after ``quantize(calibratingOn:count:normalization:)``: the
    /// ranges the network's 8-bit graphs are scaled by. `nil`: the network runs in ``precision``.
    public private(set) var quantization: ActivationRanges?

    private struct Planned { let graph: Graph; let images: Tensor; let labels: LabelInput; let logits: Tensor; let loss: Tensor }
    private var graphs: [Int: Planned] = [:]
    /// With constant parameters: the convolution algorithms chosen for each batch size planned so far.
    public private(set) var convolutionChoices: [Int: InferencePlanner.Choice] = [:]
    /// With constant parameters, the graphs of every batch size share one copy of the weights.
    private let derivedWeights: DerivedWeightStore?
    /// The graphs of every batch size run one at a time: one buffer holds their activations.
    private let activations = ActivationArena()

    /// - Parameter parametersAreConstant: the model's parameters never change while this
    ///   evaluator exists (a deployed model): weights are folded and reordered once, not
    ///   compared before every batch. Training's validation leaves it false.
    public init(model: any Layer, imageShape: [Int], classCount: Int, batchSize: Int = 500, statistics: BatchNormStatistics = .running,
                whitening: ZCAWhitening? = nil, parametersAreConstant: Bool = false, precision: Precision = .fp32) {
        self.parametersAreConstant = parametersAreConstant
        self.precision = precision
        derivedWeights = parametersAreConstant ? DerivedWeightStore() : nil
        self.whitening = whitening
        self.model = model
        self.imageShape = imageShape
        self.classCount = classCount
        self.batchSize = batchSize
        self.statistics = statistics
    }

    private func planned(_ size: Int) throws -> Planned {
        if let p = graphs[size] { return p }
        let wasTraining = model.isTraining
        model.eval()
        forEachBatchNorm(model) { $0.evaluationStatistics = statistics }
        defer { if wasTraining { model.train() } }
        func trace(_ algorithms: ConvolutionAlgorithms) throws -> (Graph, Planned) {
            let planned = try self.trace(Graph(computesGradients: false, precision: precision, parametersAreConstant: parametersAreConstant,
                                               derivedWeights: derivedWeights, activations: activations, convolutionAlgorithms: algorithms,
                                               quantization: quantization), batch: size)
            return (planned.graph, planned)
        }
        // A deployed model measures which convolutions run it fastest; training's validation,
        // whose weights change between calls, keeps the rule.
        let p: Planned
        if quantization != nil {
            p = try trace(.direct).1   // 8-bit convolutions are direct
        } else if parametersAreConstant {
            let planned = try InferencePlanner.plan(timer: passTimer, trace)
            convolutionChoices[size] = planned.choice
            p = planned.traced
        } else {
            p = try trace(.rule).1
        }
        graphs[size] = p
        return p
    }

    /// Softmax probabilities of `count` images already prepared (planar bytes of
    /// ``imageShape`` each, one after another), written row by row into `probabilities`
    /// (`count` x ``classCount``): the numbers ``evaluate(_:normalization:onPrediction:)``
    /// reports, bit for bit, without a loader or its thread. Runs in batches of at most
    /// ``batchSize``; after the first call for each batch size it allocates nothing.
    public func probabilities(ofPrepared pixels: UnsafeBufferPointer<UInt8>, count: Int, normalization: Normalization,
                              into probabilities: UnsafeMutableBufferPointer<Float>) throws {
        let perImage = imageShape.reduce(1, *)
        guard count >= 0, pixels.count == count * perImage, probabilities.count == count * classCount else {
            throw ModelFileError.invalidCard("\(pixels.count) bytes and room for \(probabilities.count) probabilities for \(count) images of \(perImage) values and \(classCount) classes")
        }
        guard count > 0 else { return }
        try normalization.check(channels: imageShape[0], elementsPerImage: perImage, whitening: whitening)
        try calibrateIfPending()
        let plane = imageShape.dropFirst().reduce(1, *)
        // Batches of at most `batchSize`, each run whole or in the chunks measured faster (no array
        // of chunk sizes: a classifier call allocates nothing once its graphs are planned).
        var start = 0
        var batchEnd = 0, run = 0
        while start < count {
            if start == batchEnd {
                let batch = min(batchSize, count - start)
                (batchEnd, run) = (start + batch, try runSize(batch))
            }
            let n = min(run, batchEnd - start)
            defer { start += n }
            let p = try planned(n)
            setInput(p.graph, p.images, from: pixels.baseAddress! + start * perImage, count: n, normalization: normalization)
            p.graph.forward()
            try p.graph.withValue(p.logits) { logits in
                for i in 0..<n {
                    let row = UnsafeBufferPointer(rebasing: logits[(i * classCount)..<((i + 1) * classCount)])
                    softmax(row, into: UnsafeMutableBufferPointer(rebasing: probabilities[((start + i) * classCount)..<((start + i + 1) * classCount)]))
                }
            }
        }
    }

    /// The model traced into `graph` for `size` images (in evaluation mode), planned.
    private func trace(_ graph: Graph, batch size: Int) throws -> Planned {
        let images = graph.input([size] + imageShape)
        let labels = graph.labels(count: size)
        let logits = try model(images)
        let loss = try softmaxCrossEntropy(logits, labels: labels)
        try graph.plan(keep: [logits, loss])
        return Planned(graph: graph, images: images, labels: labels, logits: logits, loss: loss)
    }

    /// Normalizes (and whitens) `count` prepared images into a graph's input.
    private func setInput(_ graph: Graph, _ images: Tensor, from pixels: UnsafePointer<UInt8>, count n: Int, normalization: Normalization) {
        let perImage = imageShape.reduce(1, *), plane = imageShape.dropFirst().reduce(1, *)
        graph.withInputBuffer(images) { input in
            for k in 0..<n {
                normalization.normalize(pixels + k * perImage, channels: imageShape[0], plane: plane, into: input.baseAddress! + k * perImage)
            }
            if case .zca = normalization, let whitening {
                whitening.apply(input.baseAddress!, count: n, scratch: whiteningScratch(n * perImage))
            }
        }
    }

    /// Runs the network in 8-bit integers from now on (see `Quantization.swift` in ResNetTensors),
    /// with scales measured on `count` prepared images (planar bytes of ``imageShape`` each): a
    /// few hundred images like those the model will classify, never a test set it is scored on.
    /// For an fp32 evaluator with constant parameters.
    ///
    /// The images are checked and copied here; they are measured at the next call, on the thread
    /// that runs the network. oneDNN driven from a second thread leaves GNU OpenMP with two thread
    /// teams on the machine's cores, and it then stops spinning between parallel regions: a
    /// server that calibrated on its main thread answered ResNet-20 requests from one client at
    /// 460 instead of 1,640 per second, its inference thread waiting on futexes (2-core AMD EPYC,
    /// 2026-12-01, `perf record`).
    public func quantize(calibratingOn pixels: UnsafeBufferPointer<UInt8>, count: Int, normalization: Normalization) throws {
        let perImage = imageShape.reduce(1, *)
        guard parametersAreConstant, precision == .fp32 else {
            throw ModelFileError.invalidCard("only an fp32 network with constant parameters is quantized")
        }
        guard count > 0, pixels.count == count * perImage else {
            throw ModelFileError.invalidCard("calibration needs at least one image: got \(pixels.count) bytes for \(count) images of \(perImage) values")
        }
        try normalization.check(channels: imageShape[0], elementsPerImage: perImage, whitening: whitening)
        pendingCalibration = (Array(pixels), count, normalization)
        quantization = nil
        dropGraphs()
    }

    /// Whether the network runs in 8-bit integers (after ``quantize(calibratingOn:count:normalization:)``,
    /// measured or not yet).
    public var isQuantized: Bool { quantization != nil || pendingCalibration != nil }

    /// Calibration images given to ``quantize(calibratingOn:count:normalization:)`` and not yet measured.
    private var pendingCalibration: (pixels: [UInt8], count: Int, normalization: Normalization)?

    /// Measures the pending calibration images, if any, on fp32 graphs of their own (dropped when
    /// measured: at most two batch sizes), and makes the network's graphs 8-bit from then on.
    private func calibrateIfPending() throws {
        guard let pending = pendingCalibration else { return }
        pendingCalibration = nil
        let perImage = imageShape.reduce(1, *)
        let wasTraining = model.isTraining
        model.eval()
        forEachBatchNorm(model) { $0.evaluationStatistics = statistics }
        defer { if wasTraining { model.train() } }
        var ranges: ActivationRanges?
        var start = 0
        try pending.pixels.withUnsafeBufferPointer { pixels in
            while start < pending.count {
                let n = min(batchSize, pending.count - start)
                let p = try trace(Graph(computesGradients: false, parametersAreConstant: true, convolutionAlgorithms: .direct), batch: n)
                var measured = ranges ?? ActivationRanges(for: p.graph)
                setInput(p.graph, p.images, from: pixels.baseAddress! + start * perImage, count: n, normalization: pending.normalization)
                try p.graph.measureRanges(into: &measured)
                ranges = measured
                start += n
            }
        }
        quantization = ranges
        dropGraphs()
    }

    /// Forgets every planned graph and the choices made for them.
    private func dropGraphs() {
        graphs = [:]
        runSizes = [:]
        convolutionChoices = [:]
        derivedWeights?.removeUnused()
        activations.removeUnused()
    }

    /// The graphs planned so far (for tests).
    var plannedGraphs: [Graph] { graphs.values.map(\.graph) }

    /// How many Winograd convolutions the graph planned for `batch` images uses (0 if none is planned).
    public func winogradConvolutionCount(batch: Int) -> Int { graphs[batch]?.graph.winogradConvolutionCount ?? 0 }

    /// Replace the clocks that time planning candidates, for tests: seconds of one forward pass
    /// of a graph (convolution algorithms), and of a graph of a given batch size (chunking).
    var passTimer: ((Graph) -> Double)?
    var chunkTimer: ((Int) -> Double)?

    /// With constant parameters: the batch size each call of a given size runs in (see ``runSize(_:)``).
    public private(set) var runSizes: [Int: Int] = [:]

    /// The batch size a deployed model runs `n` images in: `n`, or chunks of a quarter of it if
    /// that was measured faster. A large batch can lose to several smaller ones when its
    /// activations outgrow the caches: ResNet-20 at 2 threads ran 4,816 images/s at batch 256
    /// against 5,490-5,600 at 16-64 (2-core AMD EPYC VM, 2026-12-01). Chunks give the same
    /// probabilities, image for image, up to the rounding of a batch-size dependent kernel choice.
    private func runSize(_ n: Int) throws -> Int {
        guard parametersAreConstant, n >= 32 else { return n }
        if let known = runSizes[n] { return known }
        let chunk = n / 4
        let whole = try planned(n).graph, part = try planned(chunk).graph
        let seconds = InferencePlanner.bestPassSeconds(of: [whole, part], timer: chunkTimer.map { clock in { clock($0 === whole ? n : chunk) } })
        let run = seconds[1] / Double(chunk) < seconds[0] / Double(n) * (1 - InferencePlanner.margin) ? chunk : n
        runSizes[n] = run
        if run != n {
            // The whole batch's graph goes, with its share of the activations and weights.
            graphs[n] = nil
            convolutionChoices[n] = nil
            derivedWeights?.removeUnused()
            activations.removeUnused()
        }
        return run
    }

    /// Scratch floats for whitening, grown on demand.
    private var whiteningFloats: UnsafeMutableBufferPointer<Float>?
    private func whiteningScratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        if (whiteningFloats?.count ?? 0) < count {
            whiteningFloats?.deallocate()
            whiteningFloats = .allocate(capacity: count)
        }
        return whiteningFloats!.baseAddress!
    }

    deinit { whiteningFloats?.deallocate() }

    /// Evaluates on `dataset` after `normalization`.
    public func evaluate(_ dataset: ImageDataset, normalization: Normalization) throws -> EvaluationResult {
        try evaluate(dataset, normalization: normalization, onPrediction: nil)
    }

    /// Evaluates and reports each image's dataset index and softmax probabilities to `onPrediction`.
    public func evaluate(_ dataset: ImageDataset, normalization: Normalization,
                         onPrediction: ((Int, UnsafeBufferPointer<Float>) -> Void)?) throws -> EvaluationResult {
        try calibrateIfPending()
        let loader = try BatchLoader(dataset: dataset, batchSize: batchSize, shuffle: false, dropLast: false,
                                     normalization: normalization, whitening: whitening)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classCount), count: classCount)
        var lossSum = 0.0, top5 = 0
        let epoch = loader.epoch(0)
        defer { epoch.cancel() }
        var probabilities = [Float](repeating: 0, count: classCount)
        let perImage = imageShape.reduce(1, *)
        while let batch = epoch.next() {
            // A deployed model runs the batch whole or in the chunks measured faster (runSize).
            let run = try runSize(batch.count)
            for start in stride(from: 0, to: batch.count, by: run) {
                let n = min(run, batch.count - start)
                let p = try planned(n)
                p.graph.withInputBuffer(p.images) { $0.baseAddress!.update(from: batch.images.baseAddress! + start * perImage, count: n * perImage) }
                try p.graph.setLabels(p.labels, Array(batch.labels[start..<(start + n)]))
                p.graph.forward()
                lossSum += Double(try p.graph.scalar(p.loss)) * Double(n)
                try p.graph.withValue(p.logits) { logits in
                    for i in 0..<n {
                        let row = UnsafeBufferPointer(rebasing: logits[(i * classCount)..<((i + 1) * classCount)])
                        let truth = Int(batch.labels[start + i])
                        var best = 0
                        for k in 1..<classCount where row[k] > row[best] { best = k }
                        confusion[truth][best] += 1
                        let above = row.reduce(0) { $0 + ($1 > row[truth] ? 1 : 0) }
                        if above < 5 { top5 += 1 }
                        if let onPrediction {
                            probabilities.withUnsafeMutableBufferPointer { softmax(row, into: $0) }
                            probabilities.withUnsafeBufferPointer { onPrediction(batch.indices[start + i], $0) }
                        }
                    }
                }
            }
        }
        let n = dataset.count
        let correct = (0..<classCount).reduce(0) { $0 + confusion[$1][$1] }
        let perClass = confusion.enumerated().map { k, row in
            let total = row.reduce(0, +)
            return total == 0 ? 0 : Double(row[k]) / Double(total)
        }
        return EvaluationResult(count: n, loss: lossSum / Double(max(1, n)), top1: Double(correct) / Double(max(1, n)),
                                top5: Double(top5) / Double(max(1, n)), perClass: perClass, confusionMatrix: confusion,
                                classNames: dataset.classNames)
    }
}

/// `exp(x - max) / sum`: one row of logits as probabilities.
private func softmax(_ row: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>) {
    let m = row.max()!
    var sum: Float = 0
    for k in row.indices { out[k] = exp(row[k] - m); sum += out[k] }
    for k in row.indices { out[k] /= sum }
}

/// Calls `body` on every batch-norm layer under `module`.
func forEachBatchNorm(_ module: Module, _ body: (BatchNorm2D) -> Void) {
    if let bn = module as? BatchNorm2D { body(bn) }
    for (_, child) in module.namedChildren { forEachBatchNorm(child, body) }
}

extension EvaluationResult {
    /// The largest evaluation file read for a network of `classCount` classes: 64 MiB, and
    /// more for a confusion matrix too large for that (16 bytes a count, far above the 2 to 6
    /// an evaluation writes), but at most a sixteenth of ``DataLimits/memoryBudget``: decoding
    /// JSON takes several times its size. ImageNet's 1,000 classes write about 2 MB.
    public static func maximumFileBytes(classCount: Int) -> Int {
        let k = max(0, min(classCount, ModelCard.maximumClassCount))
        return max(64 << 20, min(k * k * 16 + (1 << 20), DataLimits.memoryBudget / 16))
    }

    /// Decodes a result written by ``Evaluator`` (a run's `test.json`, `resnet evaluate
    /// --json`'s fields) and checks it: the accuracies are fractions with top-1 at most top-5,
    /// the loss is finite and not negative, the confusion matrix is square with one row per
    /// class of the network, its counts add up to ``count``, its diagonal gives ``top1`` and
    /// each row that class's accuracy, and there is a name for each class of the data (at most
    /// the network's). A file edited by hand or damaged on disk ends here as a
    /// `DecodingError`, not as a figure in a report or a model card.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func corrupted(_ key: CodingKeys, _ message: String) -> DecodingError {
            DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: message)
        }
        count = try c.decode(Int.self, forKey: .count)
        guard count >= 0 else { throw corrupted(.count, "a count of images must not be negative, got \(count)") }
        loss = try c.decode(Double.self, forKey: .loss)
        guard loss.isFinite, loss >= 0 else { throw corrupted(.loss, "a cross-entropy must be finite and not negative, got \(loss)") }
        top1 = try c.decode(Double.self, forKey: .top1)
        top5 = try c.decode(Double.self, forKey: .top5)
        for (key, value) in [(CodingKeys.top1, top1), (.top5, top5)] where !(0...1).contains(value) {
            throw corrupted(key, "an accuracy must be a fraction in 0...1, got \(value)")
        }
        guard top1 <= top5 else { throw corrupted(.top5, "top-5 accuracy \(top5) is below top-1's \(top1)") }
        // The network's classes: the matrix's rows. The data's may be fewer (`resnet evaluate`
        // of a data set with fewer classes than the model names only the data's).
        confusionMatrix = try c.decode([[Int]].self, forKey: .confusionMatrix)
        let k = confusionMatrix.count
        guard (1...ModelCard.maximumClassCount).contains(k), confusionMatrix.allSatisfy({ $0.count == k }) else {
            throw corrupted(.confusionMatrix, "the matrix must be square, one row and column per class (1...\(ModelCard.maximumClassCount))")
        }
        classNames = try c.decode([String].self, forKey: .classNames)
        guard (1...k).contains(classNames.count) else {
            throw corrupted(.classNames, "\(classNames.count) class names for a matrix of \(k) classes")
        }
        perClass = try c.decode([Double].self, forKey: .perClass)
        guard perClass.count == k else { throw corrupted(.perClass, "\(perClass.count) accuracies for \(k) classes") }
        var total = 0, correct = 0
        for (t, row) in confusionMatrix.enumerated() {
            var inRow = 0
            for n in row {
                guard n >= 0 else { throw corrupted(.confusionMatrix, "a count must not be negative, got \(n)") }
                let (sum, overflow) = inRow.addingReportingOverflow(n)
                guard !overflow else { throw corrupted(.confusionMatrix, "the counts overflow") }
                inRow = sum
            }
            let (sum, overflow) = total.addingReportingOverflow(inRow)
            guard !overflow else { throw corrupted(.confusionMatrix, "the counts overflow") }
            total = sum
            correct += row[t]
            // The evaluator divides the same integers (0 for a class without images), so the
            // two agree to the last bit; the tolerance leaves room for a writer that rounds.
            let accuracy = inRow == 0 ? 0 : Double(row[t]) / Double(inRow)
            guard abs(perClass[t] - accuracy) <= 1e-9 else {
                throw corrupted(.perClass, "class \(t)'s accuracy \(perClass[t]) disagrees with its row of the matrix (\(row[t]) of \(inRow) images)")
            }
        }
        guard total == count else { throw corrupted(.confusionMatrix, "the counts add up to \(total), not to the \(count) images") }
        let diagonal = Double(correct) / Double(max(1, count))
        guard abs(diagonal - top1) <= 1e-9 else {
            throw corrupted(.top1, "top-1 accuracy \(top1) disagrees with the matrix's diagonal (\(correct) of \(count) images)")
        }
    }
}
