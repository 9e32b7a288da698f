import Foundation
import ResNetData
import ResNetInference

// Plots of a run, drawn on a ``Canvas`` and written as PNG (atomically, through ResNetData's
// `writePNG`): training curves, the confusion matrix, a gallery of predictions and a grid of
// images (the augmentation preview).

// MARK: - Training curves

/// Writes the training curves of `history` as a PNG: loss (train and validation) and accuracy
/// in % (train and validation) against the epoch, side by side, and the learning rate on a
/// log scale in a third, narrower panel; a shared legend under the title.
///
/// Epochs without validation values are skipped by the validation curves; non-finite values
/// and (on the log axis) non-positive learning rates are skipped. An empty history draws
/// empty axes.
public func writeTrainingCurves(_ history: [EpochRecord], to path: String) throws {
    var canvas = Canvas(width: 1720, height: 620)
    let s = 2
    let lastEpoch = max(1, history.map(\.epoch).max() ?? 1)
    let xTicks = linearTicks(0, Double(lastEpoch), maximum: 8, integral: true)
    let xDomain = (0.0, xTicks.values.last!)
    let epochs = history.map { Double($0.epoch) }
    let hasValidation = history.contains { $0.validationLoss != nil || $0.validationAccuracy != nil }
    let markers = history.count <= 60

    var title = "Training: \(history.count) epoch\(history.count == 1 ? "" : "s")"
    if let best = history.filter({ $0.validationAccuracy?.isFinite == true }).max(by: { $0.validationAccuracy! < $1.validationAccuracy! }) {
        title += String(format: ", best validation accuracy %.2f%% (epoch %d)", 100 * best.validationAccuracy!, best.epoch)
    } else if let last = history.last {
        title += String(format: ", last training accuracy %.2f%%", 100 * last.trainAccuracy)
    }
    canvas.drawText(title, x: canvas.width / 2, y: 16, PlotStyle.text, scale: 3, alignment: .center)
    var legend: [(String, Color)] = [("train", PlotStyle.train)]
    if hasValidation { legend.append(("validation", PlotStyle.validation)) }
    legend.append(("learning rate", PlotStyle.learningRate))
    drawLegend(&canvas, legend, centerX: canvas.width / 2, y: 58, scale: s)

    let top = 130, bottom = canvas.height - 80

    // Loss.
    let train = history.map { Optional($0.trainLoss) }
    let validation = history.map(\.validationLoss)
    let losses = (train + validation).compactMap { $0 }.filter(\.isFinite)
    let lossTicks = linearTicks(min(0, losses.min() ?? 0), max(losses.max() ?? 1, 1e-6), maximum: 7)
    let lossFrame = PlotFrame(x: 110, y: top, width: 500, height: bottom - top, x: xDomain,
                              y: (lossTicks.values.first!, lossTicks.values.last!))
    var lossTitle = "loss"
    if let last = history.last {
        lossTitle += String(format: " (last: train %.4f", last.trainLoss)
        if let v = last.validationLoss { lossTitle += String(format: ", val %.4f", v) }
        lossTitle += ")"
    }
    drawAxes(&canvas, lossFrame, title: lossTitle, xTicks: xTicks, yTicks: lossTicks, xLabel: "epoch", scale: s)
    drawSeries(&canvas, lossFrame, zip(epochs, train).map { ($0, $1) }, PlotStyle.train, marker: markers ? .circle : nil)
    drawSeries(&canvas, lossFrame, zip(epochs, validation).map { ($0, $1) }, PlotStyle.validation, marker: markers ? .square : nil)

    // Accuracy in %.
    let trainAccuracy = history.map { Optional(100 * $0.trainAccuracy) }
    let validationAccuracy = history.map { $0.validationAccuracy.map { 100 * $0 } }
    let accuracies = (trainAccuracy + validationAccuracy).compactMap { $0 }.filter(\.isFinite)
    let low = accuracies.min() ?? 0, high = accuracies.max() ?? 100
    let pad = max(2, (high - low) * 0.08)
    var accuracyTicks = linearTicks(max(0, low - pad), min(100, high + pad), maximum: 7)
    accuracyTicks.values = accuracyTicks.values.filter { $0 >= 0 && $0 <= 100 }
    if accuracyTicks.values.count < 2 { accuracyTicks = linearTicks(0, 100, maximum: 7) }
    let accuracyFrame = PlotFrame(x: 740, y: top, width: 500, height: bottom - top, x: xDomain,
                                  y: (accuracyTicks.values.first!, accuracyTicks.values.last!))
    var accuracyTitle = "accuracy %"
    if let last = history.last {
        accuracyTitle += String(format: " (last: train %.2f", 100 * last.trainAccuracy)
        if let v = last.validationAccuracy { accuracyTitle += String(format: ", val %.2f", 100 * v) }
        accuracyTitle += ")"
    }
    drawAxes(&canvas, accuracyFrame, title: accuracyTitle, xTicks: xTicks, yTicks: accuracyTicks, xLabel: "epoch", scale: s)
    drawSeries(&canvas, accuracyFrame, zip(epochs, trainAccuracy).map { ($0, $1) }, PlotStyle.train, marker: markers ? .circle : nil)
    drawSeries(&canvas, accuracyFrame, zip(epochs, validationAccuracy).map { ($0, $1) }, PlotStyle.validation, marker: markers ? .square : nil)

    // Learning rate, log scale.
    let rates = history.map { Double($0.learningRate) }
    let positive = rates.filter { $0 > 0 && $0.isFinite }
    let rateTicks = logTicks(positive.min() ?? 0.01, positive.max() ?? 0.1)
    let rateFrame = PlotFrame(x: 1370, y: top, width: 330, height: bottom - top, x: xDomain,
                              y: (rateTicks.values.first!, rateTicks.values.last!), logY: true)
    drawAxes(&canvas, rateFrame, title: "learning rate (log)", xTicks: xTicks, yTicks: rateTicks, xLabel: "epoch", scale: s)
    drawSeries(&canvas, rateFrame, zip(epochs, rates).map { ($0, $1 > 0 ? $1 : nil) }, PlotStyle.learningRate,
               marker: markers ? .circle : nil)
    if positive.isEmpty && !history.isEmpty {
        canvas.drawText("no positive rate", x: rateFrame.x + rateFrame.width / 2, y: rateFrame.y + rateFrame.height / 2,
                        PlotStyle.muted, scale: s, alignment: .center)
    }
    try canvas.writePNG(path: path)
}

// MARK: - Confusion matrix

/// Writes `result`'s confusion matrix as a PNG heatmap: rows are true classes, columns
/// predicted ones, each cell colored by its share of the row (so every class reads on the same
/// scale whatever its size), with the count printed when it fits. Rows are labelled
/// `index name` and columns by index; per-class accuracy is drawn as bars at the right, with
/// a color bar; the title gives top-1 and top-5.
///
/// Up to 40 classes, cells are large enough for counts and row names. Beyond, cells shrink
/// (8 pixels for 100 classes), every tenth index is labelled, and the class names are listed
/// in a legend at the right.
public func writeConfusionMatrix(_ result: EvaluationResult, to path: String) throws {
    let matrix = result.confusionMatrix.isEmpty ? [[0]] : result.confusionMatrix
    let k = matrix.count
    let names = result.classNames.count == matrix.count ? result.classNames : (0..<k).map { "class \($0)" }
    let small = k <= 40
    let cell = small ? min(64, max(14, 640 / k)) : max(3, min(12, 800 / k))
    let side = k * cell
    let labelScale = small && cell >= 18 ? 2 : 1
    let every = small ? labelEvery(k: k, cell: cell, scale: labelScale) : (k <= 200 ? 10 : 50)
    let indexScale = small ? labelScale : 2

    // Horizontal layout.
    let margin = 24
    let rowLabels = small ? (0..<k).map { "\($0) " + abbreviate(names[$0], to: 16) } : []
    let rowLabelWidth = small ? (rowLabels.map { Canvas.textWidth($0, scale: labelScale) }.max() ?? 0)
        : Canvas.textWidth(String(k - 1), scale: indexScale)
    let left = margin + max(rowLabelWidth, Canvas.textWidth("true", scale: 2)) + 12
    let barWidth = 100
    let accuracyTextWidth = small ? Canvas.textWidth("100.0%", scale: labelScale) + 8 : 0
    let accuracyLeft = left + side + 20
    let colorBarLeft = accuracyLeft + barWidth + accuracyTextWidth + 28
    var legendLeft = colorBarLeft + 32 + Canvas.textWidth("100%", scale: 2) + 32
    let legendEntries = small ? [] : (0..<k).map { "\($0) " + abbreviate(names[$0], to: 20) }
    // Balanced columns of at most side / 11 lines, spaced out to the matrix height.
    let legendColumns = legendEntries.isEmpty ? 0 : (legendEntries.count + side / 11 - 1) / max(1, side / 11)
    let legendRows = max(1, (legendEntries.count + max(1, legendColumns) - 1) / max(1, legendColumns))
    let legendLineHeight = min(16, max(11, side / legendRows))
    let legendColumnWidth = (legendEntries.map { Canvas.textWidth($0) }.max() ?? 0) + 16
    if legendEntries.isEmpty { legendLeft -= 32 }

    // Vertical layout.
    let titleY = 18, subtitleY = 58
    let headerY = 96
    let indexY = headerY + 28
    let top = indexY + Canvas.glyphHeight * indexScale + 8
    let title = String(format: "Confusion matrix: %d images, top-1 %.2f%%, top-5 %.2f%%", result.count, 100 * result.top1, 100 * result.top5)
    let subtitle = "rows: true class, columns: predicted class; color: share of the row"
    let width = max(legendLeft + legendColumns * legendColumnWidth + margin, Canvas.textWidth(title, scale: 3) + 2 * margin,
                    Canvas.textWidth(subtitle, scale: 2) + 2 * margin)
    var canvas = Canvas(width: width, height: top + side + 40)
    canvas.drawText(title, x: margin, y: titleY, PlotStyle.text, scale: 3)
    canvas.drawText(subtitle, x: margin, y: subtitleY, PlotStyle.muted, scale: 2)
    canvas.drawText("predicted", x: left + side / 2, y: headerY, PlotStyle.text, scale: 2, alignment: .center)
    canvas.drawText("true", x: margin, y: headerY, PlotStyle.text, scale: 2)

    // Cells.
    let largest = matrix.flatMap { $0 }.max() ?? 0
    let countScale: Int? = {
        guard small else { return nil }
        for scale in [2, 1] where Canvas.textWidth(String(largest), scale: scale) <= cell - 4
            && Canvas.capHeight * scale <= cell - 4 { return scale }
        return nil
    }()
    for (row, counts) in matrix.enumerated() {
        let rowTotal = counts.reduce(0, +)
        for (column, count) in counts.enumerated() {
            let share = rowTotal == 0 ? 0 : Double(count) / Double(rowTotal)
            let x = left + column * cell, y = top + row * cell
            canvas.fillRect(x: x, y: y, width: cell, height: cell, PlotStyle.heat(share))
            if let countScale, count > 0 {
                canvas.drawText(String(count), x: x + cell / 2, y: y + (cell - Canvas.capHeight * countScale) / 2,
                                share > 0.5 ? .white : PlotStyle.text, scale: countScale, alignment: .center)
            }
        }
    }
    if small && cell >= 10 {
        for i in 1..<max(1, k) {
            canvas.fillRect(x: left + i * cell, y: top, width: 1, height: side, PlotStyle.cellSeparator)
            canvas.fillRect(x: left, y: top + i * cell, width: side, height: 1, PlotStyle.cellSeparator)
        }
    }
    canvas.strokeRect(x: left - 1, y: top - 1, width: side + 2, height: side + 2, PlotStyle.axis)

    // Axis labels: indices on columns; on rows, every name (up to 40 classes) or every tenth index.
    for i in stride(from: 0, to: k, by: every) {
        let cx = left + i * cell + cell / 2
        canvas.drawText(String(i), x: cx, y: indexY, PlotStyle.text, scale: indexScale, alignment: .center)
        if !small { canvas.fillRect(x: cx, y: top - 5, width: 1, height: 4, PlotStyle.axis) }
    }
    for i in stride(from: 0, to: k, by: small ? 1 : every) {
        let cy = top + i * cell + cell / 2
        canvas.drawText(small ? rowLabels[i] : String(i), x: left - 8, y: cy - Canvas.capHeight * indexScale / 2, PlotStyle.text,
                        scale: indexScale, alignment: .right)
        if !small { canvas.fillRect(x: left - 5, y: cy, width: 4, height: 1, PlotStyle.axis) }
    }

    // Per-class accuracy.
    canvas.drawText("accuracy", x: accuracyLeft, y: headerY, PlotStyle.text, scale: 2)
    if !small {
        canvas.drawText("0", x: accuracyLeft, y: indexY, PlotStyle.muted, scale: 2)
        canvas.drawText("100%", x: accuracyLeft + barWidth, y: indexY, PlotStyle.muted, scale: 2, alignment: .right)
    }
    canvas.fillRect(x: accuracyLeft, y: top, width: 1, height: side, PlotStyle.axis)
    for (i, accuracy) in result.perClass.prefix(k).enumerated() {
        let a = accuracy.isFinite ? min(1, max(0, accuracy)) : 0
        let inset = cell >= 8 ? max(1, cell / 6) : 0
        canvas.fillRect(x: accuracyLeft + 1, y: top + i * cell + inset, width: barWidth, height: cell - 2 * inset, PlotStyle.track)
        canvas.fillRect(x: accuracyLeft + 1, y: top + i * cell + inset, width: Int((Double(barWidth) * a).rounded()),
                        height: cell - 2 * inset, PlotStyle.heat(0.35 + 0.65 * a))
        if small {
            canvas.drawText(String(format: "%.1f%%", 100 * a), x: accuracyLeft + barWidth + accuracyTextWidth,
                            y: top + i * cell + (cell - Canvas.capHeight * labelScale) / 2, PlotStyle.text,
                            scale: labelScale, alignment: .right)
        }
    }

    // Color bar: share of the row, 0 at the bottom.
    canvas.drawText("share", x: colorBarLeft, y: headerY, PlotStyle.text, scale: 2)
    for y in 0..<side {
        canvas.fillRect(x: colorBarLeft, y: top + y, width: 20, height: 1, PlotStyle.heat(1 - Double(y) / Double(max(1, side - 1))))
    }
    canvas.strokeRect(x: colorBarLeft - 1, y: top - 1, width: 22, height: side + 2, PlotStyle.axis)
    for (fraction, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
        let y = top + Int(Double(side - 1) * (1 - fraction))
        canvas.fillRect(x: colorBarLeft + 21, y: y, width: 5, height: 1, PlotStyle.axis)
        canvas.drawText(label, x: colorBarLeft + 32, y: min(max(top, y - Canvas.capHeight), top + side - Canvas.capHeight * 2),
                        PlotStyle.text, scale: 2)
    }

    // Class legend for large matrices.
    if !legendEntries.isEmpty {
        canvas.drawText("classes", x: legendLeft, y: headerY, PlotStyle.text, scale: 2)
        for (i, entry) in legendEntries.enumerated() {
            canvas.drawText(entry, x: legendLeft + (i / legendRows) * legendColumnWidth, y: top + (i % legendRows) * legendLineHeight,
                            PlotStyle.text)
        }
    }
    try canvas.writePNG(path: path)
}

// MARK: - Prediction gallery

/// Writes a grid of test images with their predictions as a PNG: each image upscaled
/// (nearest neighbour, to about 96 pixels; images over 128 pixels are resized down first),
/// framed and captioned `predicted (true)` and the confidence, green when right and red when
/// wrong. Gray data sets are drawn gray.
///
/// - Parameters:
///   - images: the data set the indices refer to (its labels are the truth).
///   - predictions: what to show, in order (e.g. 16 right then 16 wrong; see ``PredictionSampler``).
///     Every index must be in `images` (a programmer error otherwise).
///   - columns: images per row.
public func writePredictionGallery(images: ImageDataset, predictions: [(index: Int, predicted: Int, confidence: Float)],
                                   to path: String, columns: Int = 8) throws {
    let columns = max(1, min(columns, max(1, predictions.count)))
    let rows = max(1, (predictions.count + columns - 1) / columns)
    let (tileScale, tileWidth, tileHeight) = tileGeometry(height: images.height, width: images.width)
    let s = 2
    let lineHeight = Canvas.glyphHeight * s + 4
    let cellWidth = max(tileWidth + 6, 12 * Canvas.glyphAdvance * s)
    let cellHeight = tileHeight + 6 + 8 + 3 * lineHeight
    let gap = 16, margin = 24
    for p in predictions {
        precondition(p.index >= 0 && p.index < images.count, "writePredictionGallery: index \(p.index) is not in the \(images.count) images")
    }
    let right = predictions.filter { Int(images.labels[$0.index]) == $0.predicted }.count
    let width = max(2 * margin + columns * cellWidth + (columns - 1) * gap, 480)
    let heading = TitleBlock("Predictions: \(right) right (green), \(predictions.count - right) wrong (red)",
                             subtitle: "caption: predicted (true), confidence", width: width - 2 * margin)
    let top = 18 + heading.height + 16
    var canvas = Canvas(width: width, height: top + rows * cellHeight + (rows - 1) * gap + margin)
    func name(_ k: Int) -> String { images.classNames.indices.contains(k) ? images.classNames[k] : "class \(k)" }
    heading.draw(on: &canvas, x: margin, y: 18)
    let maxChars = charactersFitting(cellWidth, scale: s)
    for (n, p) in predictions.enumerated() {
        let truth = Int(images.labels[p.index])
        let color = truth == p.predicted ? PlotStyle.right : PlotStyle.wrong
        let x = margin + (n % columns) * (cellWidth + gap), y = top + (n / columns) * (cellHeight + gap)
        let tileX = x + (cellWidth - tileWidth) / 2
        canvas.fillRect(x: tileX - 3, y: y, width: tileWidth + 6, height: tileHeight + 6, color)
        canvas.drawImage(planarImage(images, p.index, maximumSide: 128), x: tileX, y: y + 3, scale: tileScale)
        var lines: [(String, Color)]
        let caption = "\(name(p.predicted)) (\(name(truth)))"
        if caption.count <= maxChars {
            lines = [(caption, color)]
        } else {
            lines = [(abbreviate(name(p.predicted), to: maxChars), color), (abbreviate("(\(name(truth))", to: maxChars - 1) + ")", color)]
        }
        lines.append((String(format: "%.1f%%", 100 * Double(p.confidence)), PlotStyle.muted))
        for (i, line) in lines.enumerated() {
            canvas.drawText(line.0, x: x + cellWidth / 2, y: y + tileHeight + 6 + 8 + i * lineHeight, line.1, scale: s, alignment: .center)
        }
    }
    try canvas.writePNG(path: path)
}

/// Collects predictions for ``writePredictionGallery(images:predictions:to:columns:)`` from
/// ``Evaluator/evaluate(_:normalization:onPrediction:)``: `right` correct and `wrong` incorrect
/// ones, sampled across the true classes (round robin over the classes, a seeded random choice
/// within each), so that a gallery shows every class rather than the first images of the data
/// set (which, for CIFAR-10's test set in folder order, are all airplanes).
///
/// ```swift
/// let sampler = PredictionSampler(labels: test.labels)
/// let result = try evaluator.evaluate(test, normalization: n, onPrediction: sampler.record)
/// try writePredictionGallery(images: test, predictions: sampler.predictions, to: "predictions.png")
/// ```
public final class PredictionSampler {
    public typealias Entry = (index: Int, predicted: Int, confidence: Float)
    public let labels: [Int32]
    public let rightLimit: Int, wrongLimit: Int
    public let seed: UInt64
    /// Per true class, the kept candidates with their random priority (lowest kept).
    private var right: [Int32: [(priority: UInt64, entry: Entry)]] = [:]
    private var wrong: [Int32: [(priority: UInt64, entry: Entry)]] = [:]

    public init(labels: [Int32], right: Int = 16, wrong: Int = 16, seed: UInt64 = 0) {
        self.labels = labels
        rightLimit = right
        wrongLimit = wrong
        self.seed = seed
    }

    /// The chosen right predictions, then the wrong ones, each by true class, then data set order.
    public var predictions: [Entry] { Self.choose(right, rightLimit) + Self.choose(wrong, wrongLimit) }

    /// Round robin over the classes, each class's candidates in priority order.
    private static func choose(_ pools: [Int32: [(priority: UInt64, entry: Entry)]], _ limit: Int) -> [Entry] {
        let classes = pools.keys.sorted()
        var chosen: [(label: Int32, entry: Entry)] = []
        var round = 0
        while chosen.count < limit {
            var added = false
            for label in classes where round < pools[label]!.count && chosen.count < limit {
                chosen.append((label, pools[label]![round].entry))
                added = true
            }
            if !added { break }
            round += 1
        }
        return chosen.sorted { ($0.label, $0.entry.index) < ($1.label, $1.entry.index) }.map(\.entry)
    }

    /// SplitMix64 of the seed and the index: the same choice in any order of recording.
    private func priority(_ index: Int) -> UInt64 {
        var z = seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Notes one image's softmax probabilities.
    public func record(_ index: Int, _ probabilities: UnsafeBufferPointer<Float>) {
        guard !probabilities.isEmpty, labels.indices.contains(index) else { return }
        var best = 0
        for k in probabilities.indices where probabilities[k] > probabilities[best] { best = k }
        let label = labels[index]
        let candidate = (priority: priority(index), entry: (index: index, predicted: best, confidence: probabilities[best]))
        // Each class keeps at most `limit` candidates: the most any round robin can take from it.
        func keep(_ pools: inout [Int32: [(priority: UInt64, entry: Entry)]], _ limit: Int) {
            guard limit > 0 else { return }
            var pool = pools[label, default: []]
            let at = pool.firstIndex { $0.priority > candidate.priority } ?? pool.count
            guard at < limit else { return }
            pool.insert(candidate, at: at)
            if pool.count > limit { pool.removeLast() }
            pools[label] = pool
        }
        if Int(label) == best { keep(&right, rightLimit) } else { keep(&wrong, wrongLimit) }
    }
}

// MARK: - Curves of several runs

/// One line of a ``CurvePanel``.
public struct CurveSeries {
    public var label: String
    public var color: Color
    /// Pixels: the paper's figures draw training error thin and test error bold.
    public var thickness: Int
    /// `(x, y)`; a `nil` y is skipped.
    public var points: [(Double, Double?)]
    /// A dot on every point, and no line across a missing value: for values by category (one
    /// per depth) rather than a curve.
    public var markers: Bool
    public init(label: String, color: Color, thickness: Int, points: [(Double, Double?)], markers: Bool = false) {
        self.label = label
        self.color = color
        self.thickness = thickness
        self.points = points
        self.markers = markers
    }
}

/// A plot of several series with its own title and legend.
public struct CurvePanel {
    public var title: String
    public var series: [CurveSeries]
    public var legend: [(String, Color)]
    /// Labelled x positions, for a panel over categories (depths, shortcut options) instead of
    /// iterations; the axis then reaches half a step beyond the first and the last.
    public var xCategories: [(Double, String)]?
    /// This panel's x label, if not the figure's.
    public var xLabel: String?
    /// A y range of its own, from its data, instead of the one the panels share: for values
    /// that would sit in one band of a shared axis (final test errors beside whole curves).
    public var ownYRange: Bool
    public init(title: String, series: [CurveSeries], legend: [(String, Color)], xCategories: [(Double, String)]? = nil,
                xLabel: String? = nil, ownYRange: Bool = false) {
        self.title = title
        self.series = series
        self.legend = legend
        self.xCategories = xCategories
        self.xLabel = xLabel
        self.ownYRange = ownYRange
    }
}

/// Writes panels side by side sharing one y range (`yRange`, or the data's; a panel with
/// ``CurvePanel/ownYRange`` has its own), as the paper's Fig. 6 puts plain networks beside
/// ResNets.
public func writeCurvePanels(_ panels: [CurvePanel], title: String, xLabel: String, yLabel: String,
                             yRange: (Double, Double)?, to path: String) throws {
    let panelWidth = 760, s = 2
    var canvas = Canvas(width: 120 + panels.count * (panelWidth + 110), height: 760)
    canvas.drawText(title, x: canvas.width / 2, y: 16, PlotStyle.text, scale: 3, alignment: .center)
    // One y range for the panels that compare, an x range per panel (they may span different
    // lengths, as pretraining and fine-tuning do).
    func values(_ panels: [CurvePanel]) -> [Double] { panels.flatMap(\.series).flatMap(\.points).compactMap(\.1).filter(\.isFinite) }
    let ys = values(panels.filter { !$0.ownYRange })
    let sharedYTicks = yRange.map(curvePanelYTicks) ?? linearTicks(max(0, (ys.min() ?? 0) - 2), min(100, (ys.max() ?? 100) + 2), maximum: 7)
    let top = 190, bottom = canvas.height - 90
    for (k, panel) in panels.enumerated() {
        let xTicks = curvePanelXTicks(panel)
        let own = values([panel])
        let yTicks = panel.ownYRange ? linearTicks(max(0, (own.min() ?? 0) - 0.5), min(100, (own.max() ?? 20) + 0.5), maximum: 7) : sharedYTicks
        var xDomain = (xTicks.values.first!, xTicks.values.last!)
        if let categories = panel.xCategories, !categories.isEmpty {
            let positions = categories.map(\.0).sorted()
            let half = zip(positions, positions.dropFirst()).map { ($1 - $0) / 2 }.filter { $0 > 0 }.min() ?? 0.5
            xDomain = (positions[0] - half, positions[positions.count - 1] + half)
        }
        let x = 120 + k * (panelWidth + 110)
        let frame = PlotFrame(x: x, y: top, width: panelWidth, height: bottom - top, x: xDomain,
                              y: (yTicks.values.first!, yTicks.values.last!))
        drawLegend(&canvas, panel.legend, centerX: x + panelWidth / 2, y: 70 + 0, scale: s)
        drawAxes(&canvas, frame, title: "\(panel.title) (\(yLabel))", xTicks: xTicks, yTicks: yTicks, xLabel: panel.xLabel ?? xLabel, scale: s)
        for series in panel.series {
            drawSeries(&canvas, frame, series.points, series.color, marker: series.markers ? .circle : nil, thickness: series.thickness,
                       acrossGaps: !series.markers)
        }
    }
    try canvas.writePNG(path: path)
}

/// A panel's x ticks: its categories, or (without any) iterations from 0 to its last point.
func curvePanelXTicks(_ panel: CurvePanel) -> Ticks {
    if let categories = panel.xCategories, !categories.isEmpty {
        return Ticks(values: categories.map(\.0), labels: categories.map(\.1))
    }
    return iterationTicks(upTo: panel.series.flatMap(\.points).map(\.0).filter(\.isFinite).max() ?? 1)
}

/// Integral ticks from 0 to at least `last` (an iteration or epoch count). Up to 9 of them, so
/// that the paper's iteration counts end on a tick: 16,000 (the degradation campaign at a
/// quarter schedule) got 0-20,000 in steps of 5,000 with at most 7, which drew every curve
/// ending at four fifths of the axis.
func iterationTicks(upTo last: Double) -> Ticks {
    linearTicks(0, max(last, 1), maximum: 9, integral: true)
}

// MARK: - Image grid

/// Writes rows of images as a PNG grid with a header row of `columnLabels` and a label at the
/// left of each row (the augmentation preview: an original, then augmented copies).
///
/// Every image must have the geometry of the first (1 or 3 channels); each is upscaled by
/// `scale` (nearest neighbour; default: to about 96 pixels).
public func writeImageGrid(_ rows: [[PlanarImage]], rowLabels: [String], columnLabels: [String], title: String,
                           to path: String, scale: Int? = nil) throws {
    guard let first = rows.first?.first else {
        var canvas = Canvas(width: 400, height: 80)
        canvas.drawText(title.isEmpty ? "no images" : title, x: 16, y: 16, PlotStyle.text, scale: 2)
        try canvas.writePNG(path: path)
        return
    }
    let (autoScale, _, _) = tileGeometry(height: first.height, width: first.width)
    let tileScale = max(1, scale ?? autoScale)
    let tileWidth = first.width * tileScale, tileHeight = first.height * tileScale
    let columns = max(columnLabels.count, rows.map(\.count).max() ?? 0)
    let gap = 8, margin = 24
    // Columns wide enough for their labels at scale 2 (up to 14 characters).
    let widestLabel = columnLabels.map { Canvas.textWidth(abbreviate($0, to: 14), scale: 2) }.max() ?? 0
    let pitch = max(tileWidth + gap, widestLabel + 12)
    let rowLabelWidth = min(200, rowLabels.map { Canvas.textWidth($0, scale: 2) }.max() ?? 0)
    let left = margin + rowLabelWidth + (rowLabelWidth > 0 ? 16 : 0)
    let width = max(left + columns * pitch - gap + margin, 480)
    let heading = title.isEmpty ? nil : TitleBlock(title, width: width - 2 * margin)
    let headerY = heading.map { 18 + $0.height + 12 } ?? margin
    let top = headerY + Canvas.glyphHeight * 2 + 12
    var canvas = Canvas(width: width, height: top + rows.count * (tileHeight + gap) - gap + margin)
    heading?.draw(on: &canvas, x: margin, y: 18)
    let tileOffset = (pitch - gap - tileWidth) / 2
    for (c, label) in columnLabels.enumerated() {
        canvas.drawText(abbreviate(label, to: charactersFitting(pitch - 4, scale: 2)), x: left + c * pitch + tileOffset + tileWidth / 2,
                        y: headerY, PlotStyle.text, scale: 2, alignment: .center)
    }
    for (r, images) in rows.enumerated() {
        let y = top + r * (tileHeight + gap)
        if r < rowLabels.count {
            canvas.drawText(abbreviate(rowLabels[r], to: charactersFitting(rowLabelWidth, scale: 2)), x: left - 16,
                            y: y + (tileHeight - Canvas.capHeight * 2) / 2, PlotStyle.text, scale: 2, alignment: .right)
        }
        for (c, image) in images.enumerated() {
            precondition(image.height == first.height && image.width == first.width, "writeImageGrid: images of different sizes")
            canvas.drawImage(image, x: left + c * pitch + tileOffset, y: y, scale: tileScale)
        }
    }
    try canvas.writePNG(path: path)
}

// MARK: - Drawing helpers

/// Colors shared by the plots (matplotlib's tab10 for series, a Blues ramp for heatmaps).
enum PlotStyle {
    static let text = Color(hex: 0x222222)
    static let muted = Color(hex: 0x707070)
    static let axis = Color(hex: 0x505050)
    static let grid = Color(hex: 0xE6E6E6)
    static let track = Color(hex: 0xEEEEEE)
    static let cellSeparator = Color(hex: 0xFFFFFF)
    static let train = Color(hex: 0x1F77B4)
    static let validation = Color(hex: 0xFF7F0E)
    static let learningRate = Color(hex: 0x2CA02C)
    static let right = Color(hex: 0x1A9641)
    static let wrong = Color(hex: 0xD7191C)

    /// White (0) to dark blue (1).
    static func heat(_ value: Double) -> Color {
        let stops: [Color] = [Color(hex: 0xF7FBFF), Color(hex: 0xC6DBEF), Color(hex: 0x6BAED6), Color(hex: 0x2171B5), Color(hex: 0x08306B)]
        let v = value.isFinite ? min(1, max(0, value)) : 0
        let position = v * Double(stops.count - 1)
        let i = min(stops.count - 2, Int(position))
        return stops[i].mixed(with: stops[i + 1], position - Double(i))
    }
}

/// A plot area in pixels and the data ranges it shows.
struct PlotFrame {
    let x: Int, y: Int, width: Int, height: Int
    let xDomain: (Double, Double), yDomain: (Double, Double)
    let logY: Bool
    /// Pixels kept free inside the frame so that markers at the ends stay whole.
    let inset = 10

    init(x: Int, y: Int, width: Int, height: Int, x xDomain: (Double, Double), y yDomain: (Double, Double), logY: Bool = false) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.xDomain = xDomain
        self.yDomain = yDomain
        self.logY = logY
    }

    func px(_ v: Double) -> Double {
        let span = xDomain.1 - xDomain.0
        let f = span == 0 ? 0.5 : (v - xDomain.0) / span
        return Double(x + inset) + f * Double(width - 1 - 2 * inset)
    }

    func py(_ v: Double) -> Double {
        let (a, b, value) = logY ? (log10(yDomain.0), log10(yDomain.1), log10(v)) : (yDomain.0, yDomain.1, v)
        let f = b == a ? 0.5 : (value - a) / (b - a)
        return Double(y + inset) + (1 - f) * Double(height - 1 - 2 * inset)
    }
}

/// Tick positions and their labels.
struct Ticks {
    var values: [Double]
    var labels: [String]
}

/// The y ticks of ``writeCurvePanels(_:title:xLabel:yLabel:yRange:to:)`` for a requested
/// range: the axis is drawn to the last tick, which can lie above the range's top (45 -> 50).
func curvePanelYTicks(_ range: (Double, Double)) -> Ticks {
    linearTicks(range.0, range.1, maximum: 6)
}

/// Ticks at a 1-2-2.5-5 step covering `low...high`, at most about `maximum` of them; the first
/// is at or below `low` and the last at or above `high`.
func linearTicks(_ low: Double, _ high: Double, maximum: Int, integral: Bool = false) -> Ticks {
    var lo = low.isFinite ? low : 0, hi = high.isFinite ? high : 1
    if hi < lo { swap(&lo, &hi) }
    if hi - lo < 1e-12 { lo -= 0.5; hi += 0.5 }
    let raw = (hi - lo) / Double(max(1, maximum - 1))
    let magnitude = pow(10, (log10(raw)).rounded(.down))
    var step = magnitude * 10
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] where magnitude * m >= raw * 0.999 {
        step = magnitude * m
        break
    }
    if integral { step = max(1, step.rounded(.up)) }
    let first = (lo / step).rounded(.down), last = (hi / step).rounded(.up)
    let values = stride(from: first, through: last, by: 1).map { $0 * step }
    // Decimals enough to tell neighbouring ticks apart.
    var decimals = 0
    while decimals < 8 {
        let scaled = step * pow(10, Double(decimals))
        if abs(scaled - scaled.rounded()) < 1e-6 * max(1, scaled) { break }
        decimals += 1
    }
    return Ticks(values: values, labels: values.map { String(format: "%.\(decimals)f", abs($0) < step / 1e6 ? 0 : $0) })
}

/// Ticks of a log axis over `low...high` (both positive): the decades, with 2 and 5 between
/// them when the range spans two decades or less. The range covers at least one decade.
func logTicks(_ low: Double, _ high: Double) -> Ticks {
    var a = log10(low > 0 && low.isFinite ? low : 1e-3), b = log10(high > 0 && high.isFinite ? high : 1)
    if b < a { swap(&a, &b) }
    // The tolerance keeps Float rates such as 0.1 (0.100000001) from opening another decade.
    var lo = (a + 1e-6).rounded(.down), hi = (b - 1e-6).rounded(.up)
    if hi - lo < 1 { lo = (a - 0.5).rounded(.down); hi = (b + 0.5).rounded(.up) }
    var values: [Double] = []
    for e in Int(lo)...Int(hi) {
        let decade = pow(10, Double(e))
        values.append(decade)
        if hi - lo <= 2 && Double(e) < hi { values += [2 * decade, 5 * decade] }
    }
    return Ticks(values: values, labels: values.map(formatRate))
}

/// `0.1`, `0.005`, `1e-4`, `2e-5`.
func formatRate(_ v: Double) -> String {
    if v >= 0.999_999e-3 && v < 1e5 { return String(format: "%g", v) }
    var e = Int(log10(v).rounded(.down))
    var m = (v / pow(10, Double(e)) * 100).rounded() / 100
    if m >= 10 { m /= 10; e += 1 }
    return "\(m == m.rounded() ? String(Int(m)) : String(m))e\(e)"
}

/// Frame, grid lines, tick labels, a panel title above and an x label below.
func drawAxes(_ canvas: inout Canvas, _ frame: PlotFrame, title: String, xTicks: Ticks, yTicks: Ticks, xLabel: String, scale s: Int) {
    let capHeight = Canvas.capHeight * s
    for (v, label) in zip(yTicks.values, yTicks.labels) {
        let y = Int(frame.py(v).rounded())
        guard y >= frame.y, y < frame.y + frame.height else { continue }
        canvas.fillRect(x: frame.x + 1, y: y, width: frame.width - 2, height: 1, PlotStyle.grid)
        canvas.fillRect(x: frame.x - 5, y: y, width: 5, height: 1, PlotStyle.axis)
        canvas.drawText(label, x: frame.x - 10, y: y - capHeight / 2, PlotStyle.text, scale: s, alignment: .right)
    }
    // Thin out x labels that would collide.
    let widest = xTicks.labels.map { Canvas.textWidth($0, scale: s) }.max() ?? 0
    let spacing = xTicks.values.count > 1 ? frame.px(xTicks.values[1]) - frame.px(xTicks.values[0]) : Double(frame.width)
    let every = max(1, Int((Double(widest + 12) / max(1, spacing)).rounded(.up)))
    for (i, (v, label)) in zip(xTicks.values, xTicks.labels).enumerated() {
        let x = Int(frame.px(v).rounded())
        guard x >= frame.x, x < frame.x + frame.width else { continue }
        canvas.fillRect(x: x, y: frame.y + 1, width: 1, height: frame.height - 2, PlotStyle.grid)
        canvas.fillRect(x: x, y: frame.y + frame.height, width: 1, height: 5, PlotStyle.axis)
        if i % every == 0 {
            canvas.drawText(label, x: x, y: frame.y + frame.height + 10, PlotStyle.text, scale: s, alignment: .center)
        }
    }
    canvas.strokeRect(x: frame.x, y: frame.y, width: frame.width, height: frame.height, PlotStyle.axis)
    canvas.drawText(abbreviate(title, to: charactersFitting(frame.width + 80, scale: s)), x: frame.x + frame.width / 2,
                    y: frame.y - capHeight - 14, PlotStyle.text, scale: s, alignment: .center)
    canvas.drawText(xLabel, x: frame.x + frame.width / 2, y: frame.y + frame.height + 10 + capHeight + 12, PlotStyle.muted,
                    scale: s, alignment: .center)
}

enum Marker { case circle, square }

/// A polyline through the non-nil, finite points, with a marker on each point. Missing points
/// are skipped, so a validation every few epochs still draws a curve; with `acrossGaps` false
/// the line stops at them instead (values by category, where a line across one would invent it).
func drawSeries(_ canvas: inout Canvas, _ frame: PlotFrame, _ points: [(Double, Double?)], _ color: Color, marker: Marker?,
                thickness: Int = 3, acrossGaps: Bool = true) {
    var previous: (Double, Double)?
    for (x, value) in points {
        guard let value, value.isFinite, !(frame.logY && value <= 0) else {
            if !acrossGaps { previous = nil }
            continue
        }
        // Values beyond a fixed range are drawn at its edge.
        let p = (frame.px(x), frame.py(min(max(value, frame.yDomain.0), frame.yDomain.1)))
        if let previous { canvas.drawLine(from: previous.0, previous.1, to: p.0, p.1, color, thickness: thickness) }
        previous = p
    }
    guard let marker else { return }
    for (x, value) in points {
        guard let value, value.isFinite, !(frame.logY && value <= 0) else { continue }
        let p = (frame.px(x), frame.py(value))
        switch marker {
        case .circle: canvas.fillCircle(x: p.0, y: p.1, radius: 4.5, color)
        case .square: canvas.fillRect(x: Int(p.0.rounded()) - 4, y: Int(p.1.rounded()) - 4, width: 9, height: 9, color)
        }
    }
}

/// A row of legend entries (a line swatch and a label) centered on `centerX`.
func drawLegend(_ canvas: inout Canvas, _ entries: [(String, Color)], centerX: Int, y: Int, scale s: Int) {
    let swatch = 36, spacing = 40
    let widths = entries.map { swatch + 10 + Canvas.textWidth($0.0, scale: s) }
    var x = centerX - (widths.reduce(0, +) + spacing * (entries.count - 1)) / 2
    for ((label, color), w) in zip(entries, widths) {
        let mid = Double(y + Canvas.capHeight * s / 2)
        canvas.drawLine(from: Double(x), mid, to: Double(x + swatch), mid, color, thickness: 3)
        canvas.fillCircle(x: Double(x + swatch / 2), y: mid, radius: 4.5, color)
        canvas.drawText(label, x: x + swatch + 10, y: y, PlotStyle.text, scale: s)
        x += w + spacing
    }
}

/// `text`, cut to `count` characters with a trailing `.` when longer.
func abbreviate(_ text: String, to count: Int) -> String {
    guard count > 0 else { return "" }
    guard text.count > count else { return text }
    return count == 1 ? "." : String(text.prefix(count - 1)) + "."
}

/// A title, on one line at scale 3 when it fits `width` pixels, else wrapped at scale 2 (after
/// spaces and commas), and an optional one-line subtitle at scale 2.
struct TitleBlock {
    let lines: [String]
    let scale: Int
    let subtitle: String?

    init(_ title: String, subtitle: String? = nil, width: Int) {
        self.subtitle = subtitle
        if Canvas.textWidth(title, scale: 3) <= width {
            lines = [title]
            scale = 3
            return
        }
        scale = 2
        let limit = max(1, charactersFitting(width, scale: 2))
        var words: [String] = [], word = ""
        for character in title {
            word.append(character)
            if character == " " || character == "," { words.append(word); word = "" }
        }
        if !word.isEmpty { words.append(word) }
        var lines: [String] = [], line = ""
        for var w in words {
            while w.count > limit {       // a word longer than a line is cut
                if !line.isEmpty { lines.append(line); line = "" }
                lines.append(String(w.prefix(limit)))
                w = String(w.dropFirst(limit))
            }
            if (line + w).trimmingCharacters(in: .whitespaces).count > limit {
                lines.append(line.trimmingCharacters(in: .whitespaces))
                line = ""
            }
            line += w
        }
        if !line.trimmingCharacters(in: .whitespaces).isEmpty { lines.append(line.trimmingCharacters(in: .whitespaces)) }
        self.lines = lines.filter { !$0.isEmpty }
    }

    var lineHeight: Int { Canvas.capHeight * scale + 10 }
    var height: Int { lines.count * lineHeight + (subtitle == nil ? 0 : 6 + Canvas.glyphHeight * 2) }

    func draw(on canvas: inout Canvas, x: Int, y: Int) {
        for (i, line) in lines.enumerated() { canvas.drawText(line, x: x, y: y + i * lineHeight, PlotStyle.text, scale: scale) }
        if let subtitle { canvas.drawText(subtitle, x: x, y: y + lines.count * lineHeight + 6, PlotStyle.muted, scale: 2) }
    }
}

/// How many characters of text at `scale` fit in `width` pixels.
func charactersFitting(_ width: Int, scale: Int) -> Int {
    max(0, (width + scale) / (Canvas.glyphAdvance * scale))
}

/// Index labels every how many classes, so that neighbouring labels do not touch.
func labelEvery(k: Int, cell: Int, scale: Int) -> Int {
    let widest = Canvas.textWidth(String(k - 1), scale: scale) + 4
    for step in [1, 2, 5, 10, 20, 50] where step * cell >= widest { return step }
    return 100
}

/// Nearest-neighbour scale, tile width and height for images of `height` x `width` (after
/// ``planarImage(_:_:maximumSide:)`` brought larger ones down to 128 pixels).
func tileGeometry(height: Int, width: Int) -> (scale: Int, width: Int, height: Int) {
    let side = max(1, height, width)
    let (h, w) = side > 128 ? (max(1, height * 128 / side), max(1, width * 128 / side)) : (height, width)
    let scale = side > 128 ? 1 : max(1, Int((96.0 / Double(side)).rounded()))
    return (scale, w * scale, h * scale)
}

/// Image `index` of `dataset`, resized (Pillow bilinear) to fit `maximumSide` when larger.
func planarImage(_ dataset: ImageDataset, _ index: Int, maximumSide: Int) -> PlanarImage {
    let start = index * dataset.elementsPerImage
    let image = PlanarImage(pixels: Array(dataset.images[start..<(start + dataset.elementsPerImage)]),
                            channels: dataset.channels, height: dataset.height, width: dataset.width)
    let side = max(dataset.height, dataset.width)
    guard side > maximumSide else { return image }
    return resizeImage(image, height: max(1, dataset.height * maximumSide / side), width: max(1, dataset.width * maximumSide / side))
}
