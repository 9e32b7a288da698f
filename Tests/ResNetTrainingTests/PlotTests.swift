import Foundation
import ResNetData
import Testing
@testable import ResNetInference
@testable import ResNetTraining

/// A fresh directory under the system's temporary folder, removed by the caller.
private func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("plot-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The color at (x, y) of a decoded RGB image.
private func color(_ image: PlanarImage, _ x: Int, _ y: Int) -> Color {
    let plane = image.width * image.height, p = y * image.width + x
    return Color(image.pixels[p], image.pixels[plane + p], image.pixels[2 * plane + p])
}

/// Whether any pixel of the rectangle has `target`'s color.
private func contains(_ image: PlanarImage, _ target: Color, x: Int, y: Int, width: Int, height: Int) -> Bool {
    for yy in max(0, y)..<min(image.height, y + height) {
        for xx in max(0, x)..<min(image.width, x + width) where color(image, xx, yy) == target { return true }
    }
    return false
}

/// Writes a PNG with `body`, checks that the file is not empty, and decodes it. With
/// `PLOT_TEST_OUTPUT=DIR` in the environment, a copy of each PNG is kept in DIR to look at.
private func written(_ name: String, _ body: (String) throws -> Void) throws -> PlanarImage {
    let directory = try scratchDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent(name).path
    try body(path)
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    #expect(size > 60)
    if let keep = ProcessInfo.processInfo.environment["PLOT_TEST_OUTPUT"] {
        let copy = URL(fileURLWithPath: keep).appendingPathComponent(name)
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(atPath: path, toPath: copy.path)
    }
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0 != name }
    #expect(leftovers.isEmpty, "the atomic write left \(leftovers)")
    return try readImage(path: path, channels: 3)
}

extension PlotTests {
    @Suite("Canvas")
    struct CanvasTests {
        @Test("a glyph sets exactly its pixels: 'A' at scale 1 and 2")
        func glyph() {
            var canvas = Canvas(width: 40, height: 30)
            canvas.drawText("A", x: 10, y: 5, .black)
            // Rows of 'A': .###. / #...# / #...# / ##### / #...# / #...# / #...#
            #expect(canvas.pixel(x: 10, y: 5) == .white)
            #expect(canvas.pixel(x: 11, y: 5) == .black && canvas.pixel(x: 13, y: 5) == .black)
            #expect(canvas.pixel(x: 14, y: 5) == .white)
            #expect(canvas.pixel(x: 10, y: 6) == .black && canvas.pixel(x: 12, y: 6) == .white)
            #expect((10..<15).allSatisfy { canvas.pixel(x: $0, y: 8) == .black })
            #expect(canvas.pixel(x: 12, y: 12) == .white)
            var inked = 0
            for y in 0..<30 { for x in 0..<40 where canvas.pixel(x: x, y: y) != .white { inked += 1; #expect((10..<15).contains(x) && (5..<12).contains(y)) } }
            #expect(inked == 3 + 2 * 5 + 5)

            var big = Canvas(width: 40, height: 30)
            big.drawText("A", x: 0, y: 0, .black, scale: 2)
            #expect(big.pixel(x: 2, y: 0) == .black && big.pixel(x: 3, y: 1) == .black)
            #expect(big.pixel(x: 0, y: 0) == .white && big.pixel(x: 1, y: 1) == .white)
            #expect(Canvas.textWidth("AB", scale: 2) == 22)
        }

        @Test("text alignment: right-aligned text ends at x, centered text straddles it")
        func alignment() {
            var canvas = Canvas(width: 60, height: 10)
            canvas.drawText("I", x: 30, y: 1, .black, alignment: .right)     // .###. : columns 1-3 of 25..29
            #expect(canvas.pixel(x: 28, y: 1) == .black && canvas.pixel(x: 29, y: 1) == .white && canvas.pixel(x: 26, y: 1) == .black)
            var centered = Canvas(width: 60, height: 10)
            centered.drawText("I", x: 30, y: 1, .black, alignment: .center) // starts at 28: stem at 30
            #expect(centered.pixel(x: 30, y: 3) == .black && centered.pixel(x: 29, y: 3) == .white)
        }

        @Test("lines land on their pixels, with thickness and dashes; rectangles and clipping")
        func lines() {
            let red = Color(255, 0, 0)
            var canvas = Canvas(width: 50, height: 50)
            canvas.drawLine(from: 5, 20, to: 30, 20, red)
            #expect(canvas.pixel(x: 5, y: 20) == red && canvas.pixel(x: 17, y: 20) == red && canvas.pixel(x: 30, y: 20) == red)
            #expect(canvas.pixel(x: 17, y: 19) == .white && canvas.pixel(x: 17, y: 21) == .white && canvas.pixel(x: 31, y: 20) == .white)
            canvas.drawLine(from: 0, 0, to: 10, 10, red)
            #expect((0...10).allSatisfy { canvas.pixel(x: $0, y: $0) == red })
            #expect(canvas.pixel(x: 1, y: 0) == .white)
            canvas.drawLine(from: 40, 5, to: 40, 45, red, thickness: 3)
            #expect(canvas.pixel(x: 39, y: 25) == red && canvas.pixel(x: 41, y: 25) == red)
            #expect(canvas.pixel(x: 38, y: 25) == .white && canvas.pixel(x: 42, y: 25) == .white)
            var dashed = Canvas(width: 30, height: 3)
            dashed.drawLine(from: 0, 1, to: 29, 1, red, dash: (on: 4, off: 4))
            #expect(dashed.pixel(x: 3, y: 1) == red && dashed.pixel(x: 5, y: 1) == .white && dashed.pixel(x: 9, y: 1) == red)
            var boxes = Canvas(width: 20, height: 20)
            boxes.strokeRect(x: 2, y: 2, width: 10, height: 8, red, thickness: 2)
            #expect(boxes.pixel(x: 2, y: 2) == red && boxes.pixel(x: 11, y: 9) == red && boxes.pixel(x: 3, y: 3) == red)
            #expect(boxes.pixel(x: 4, y: 4) == .white && boxes.pixel(x: 12, y: 2) == .white)
            boxes.fillRect(x: -5, y: 15, width: 100, height: 100, red)       // clipped, no crash
            #expect(boxes.pixel(x: 0, y: 19) == red && boxes.pixel(x: 19, y: 15) == red)
            boxes.drawLine(from: -100, -100, to: 100, 100, red, thickness: 4)
        }

        @Test("images are upscaled nearest-neighbour; gray is replicated")
        func images() {
            var canvas = Canvas(width: 10, height: 10)
            canvas.drawImage(PlanarImage(pixels: [10, 20, 30, 40, 1, 2, 3, 4, 5, 6, 7, 8], channels: 3, height: 2, width: 2), x: 1, y: 1, scale: 2)
            #expect(canvas.pixel(x: 1, y: 1) == Color(10, 1, 5) && canvas.pixel(x: 2, y: 2) == Color(10, 1, 5))
            #expect(canvas.pixel(x: 3, y: 1) == Color(20, 2, 6) && canvas.pixel(x: 4, y: 4) == Color(40, 4, 8))
            #expect(canvas.pixel(x: 5, y: 5) == .white)
            canvas.drawImage(PlanarImage(pixels: [99], channels: 1, height: 1, width: 1), x: 8, y: 8)
            #expect(canvas.pixel(x: 8, y: 8) == Color(gray: 99))
        }

        @Test("PNG output decodes to the same pixels")
        func png() throws {
            var canvas = Canvas(width: 7, height: 5, background: Color(1, 2, 3))
            canvas.setPixel(x: 6, y: 4, Color(200, 100, 50))
            let image = try written("tiny.png") { try canvas.writePNG(path: $0) }
            #expect(image.width == 7 && image.height == 5)
            #expect(color(image, 0, 0) == Color(1, 2, 3) && color(image, 6, 4) == Color(200, 100, 50))
        }
    }
}

@Suite("Plots")
struct PlotTests {
    @Test("values by category stop their line at a missing value; curves join across it")
    func gaps() {
        let frame = PlotFrame(x: 0, y: 0, width: 220, height: 100, x: (0, 2), y: (0, 10))
        let points: [(Double, Double?)] = [(0, 5), (1, nil), (2, 5)]
        for acrossGaps in [true, false] {
            var canvas = Canvas(width: 220, height: 100)
            drawSeries(&canvas, frame, points, .black, marker: .circle, thickness: 1, acrossGaps: acrossGaps)
            let middle = (Int(frame.px(1)), Int(frame.py(5).rounded()))
            #expect((canvas.pixel(x: middle.0, y: middle.1) == .black) == acrossGaps)
            #expect(canvas.pixel(x: Int(frame.px(0).rounded()), y: middle.1) == .black, "the markers are drawn either way")
        }
    }

    static func history(_ epochs: Int, validationEvery: Int = 1) -> [EpochRecord] {
        (1...epochs).map { e in
            let t = Double(e) / Double(epochs)
            let validated = e % validationEvery == 0
            return EpochRecord(epoch: e, step: e * 390, learningRate: e <= epochs / 2 ? 0.1 : 0.01, trainLoss: 2.0 - 1.5 * t,
                               trainAccuracy: 0.3 + 0.6 * t, validationLoss: validated ? 2.1 - 1.4 * t : nil,
                               validationAccuracy: validated ? 0.28 + 0.58 * t : nil, seconds: 10, imagesPerSecond: 5000)
        }
    }

    @Test("training curves: 1 epoch, gaps in validation, no validation, empty history; train series drawn in its color")
    func curves() throws {
        for (n, history) in [Self.history(1), Self.history(30, validationEvery: 3), Self.history(5).map { r in
            var r = r; r.validationLoss = nil; r.validationAccuracy = nil; return r
        }, []].enumerated() {
            let image = try written("curves\(n).png") { try writeTrainingCurves(history, to: $0) }
            #expect(image.width == 1720 && image.height == 620)
            if !history.isEmpty {
                // The loss panel (x 110..610, y 130..540) holds the train series.
                #expect(contains(image, PlotStyle.train, x: 111, y: 131, width: 498, height: 408))
                #expect(contains(image, PlotStyle.learningRate, x: 1371, y: 131, width: 328, height: 408))
            }
            let hasValidation = history.contains { $0.validationLoss != nil }
            #expect(contains(image, PlotStyle.validation, x: 740, y: 131, width: 500, height: 408) == hasValidation)
        }
    }

    static func evaluation(classes k: Int) -> EvaluationResult {
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        for i in 0..<k {
            matrix[i][i] = 800 + 15 * (i % 10)
            matrix[i][(i + 1) % k] = 100
            matrix[i][(i + 3) % k] = 1000 - matrix[i][i] - 100
        }
        let perClass = matrix.enumerated().map { Double($1[$0]) / 1000 }
        return EvaluationResult(count: 1000 * k, loss: 0.5, top1: perClass.reduce(0, +) / Double(k), top5: 0.99,
                                perClass: perClass, confusionMatrix: matrix,
                                classNames: (0..<k).map { k == 10 ? ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"][$0] : "class_name_\($0)" })
    }

    @Test("confusion matrix: 10 classes with counts, 100 without; the diagonal is the darkest")
    func confusion() throws {
        let ten = try written("cm10.png") { try writeConfusionMatrix(Self.evaluation(classes: 10), to: $0) }
        #expect(ten.width == 1146 && ten.height == 828)
        let hundred = try written("cm100.png") { try writeConfusionMatrix(Self.evaluation(classes: 100), to: $0) }
        #expect(hundred.width == 1386 && hundred.height == 988)
        // 100 classes: cells of 8 pixels from (82, 148); a diagonal cell is dark, an empty one near-white.
        let diagonal = color(hundred, 82 + 50 * 8 + 4, 148 + 50 * 8 + 4), empty = color(hundred, 82 + 60 * 8 + 4, 148 + 50 * 8 + 4)
        #expect(Int(diagonal.r) < 60 && empty.r > 240)
        // 10 classes: cells of 64 pixels from (178, 148); the count of a diagonal cell is printed in white.
        #expect(contains(ten, .white, x: 178 + 64 * 4 + 8, y: 148 + 64 * 4 + 8, width: 48, height: 48))
    }

    static func dataset(channels: Int, size: Int) -> ImageDataset {
        let count = 6
        var pixels = [UInt8](repeating: 0, count: count * channels * size * size)
        for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: i &* 7) }
        return ImageDataset(images: pixels, labels: [0, 1, 2, 0, 1, 2], channels: channels, height: size, width: size,
                            classNames: ["airplane", "automobile", "bird"])
    }

    @Test("gallery: wrong predictions are captioned in red, right ones in green; gray data sets too")
    func gallery() throws {
        for (channels, size) in [(3, 32), (1, 28)] {
            let images = Self.dataset(channels: channels, size: size)
            let predictions: [(index: Int, predicted: Int, confidence: Float)] = [(0, 0, 0.9), (1, 1, 0.8), (2, 0, 0.7), (3, 1, 0.6)]
            let image = try written("gallery\(channels).png") { try writePredictionGallery(images: images, predictions: predictions, to: $0, columns: 2) }
            // Cells 144 wide with 16-pixel gaps (at least 480 in all); each row a tile, its frame and 3 caption lines.
            let tile = size * 3
            #expect(image.width == max(48 + 2 * 144 + 16, 480))
            let heading = TitleBlock("Predictions: 2 right (green), 2 wrong (red)", subtitle: "", width: image.width - 48)
            let top = 18 + heading.height + 16
            #expect(image.height == top + 2 * (tile + 6 + 8 + 60) + 16 + 24)
            // The right predictions fill the first row, the wrong ones the second: each color appears
            // only in its row, and below the frame's bottom border (a full row of the color), in the caption.
            func rows(of target: Color) -> [Int: Int] {
                var counts: [Int: Int] = [:]
                for y in 0..<image.height { for x in 0..<image.width where color(image, x, y) == target { counts[y, default: 0] += 1 } }
                return counts
            }
            let middle = top + tile + 6 + 8 + 60 + 8
            for (target, inFirstRow) in [(PlotStyle.right, true), (PlotStyle.wrong, false)] {
                let counts = rows(of: target)
                #expect(counts.keys.allSatisfy { ($0 < middle) == inFirstRow })
                let border = counts.filter { $0.value >= 2 * (tile + 6) }.keys.max() ?? Int.max
                #expect(counts.keys.contains { $0 > border + 4 }, "no caption in \(target) under the frames")
            }
            // The image itself: its first pixel, upscaled, inside the frame.
            let first = color(image, 24 + (144 - tile) / 2 + 1, top + 3 + 1)
            #expect(first == (channels == 1 ? Color(gray: 0) : Color(0, images.images[size * size], images.images[2 * size * size])))
        }
    }

    @Test("the prediction sampler takes right and wrong predictions across the classes, seeded, in any recording order")
    func sampler() {
        // 1,000 images sorted by class (as a folder of CIFAR-10 is): 100 per class, every
        // fourth one wrong.
        let labels = (0..<1_000).map { Int32($0 / 100) }
        func run(seed: UInt64, order: [Int]) -> [PredictionSampler.Entry] {
            let sampler = PredictionSampler(labels: labels, right: 16, wrong: 8, seed: seed)
            for i in order {
                var p = [Float](repeating: 0.01, count: 10)
                p[i % 4 == 0 ? (Int(labels[i]) + 1) % 10 : Int(labels[i])] = 0.91
                p.withUnsafeBufferPointer { sampler.record(i, $0) }
            }
            return sampler.predictions
        }
        let chosen = run(seed: 0, order: Array(0..<1_000))
        #expect(chosen.count == 24)
        let right = chosen.prefix(16), wrong = chosen.suffix(8)
        #expect(Set(right.map { labels[$0.index] }).count == 10, "every class among the right ones")
        #expect(Set(wrong.map { labels[$0.index] }).count == 8, "eight classes among the wrong ones")
        #expect(right.allSatisfy { Int(labels[$0.index]) == $0.predicted } && wrong.allSatisfy { Int(labels[$0.index]) != $0.predicted })
        #expect(right.first?.confidence == 0.91)
        #expect(run(seed: 0, order: Array((0..<1_000).reversed())).map(\.index) == chosen.map(\.index), "order does not matter")
        #expect(run(seed: 1, order: Array(0..<1_000)).map(\.index) != chosen.map(\.index), "the seed does")
    }

    @Test("image grid: header, row labels, one tile per image")
    func grid() throws {
        let images = Self.dataset(channels: 3, size: 32)
        let rows = (0..<3).map { i in (0..<4).map { _ in planarImage(images, i, maximumSide: 128) } }
        let image = try written("grid.png") {
            try writeImageGrid(rows, rowLabels: ["airplane", "automobile", "bird"], columnLabels: ["original", "epoch 1", "epoch 2", "epoch 3"],
                               title: "Augmentation: flip,crop:4", to: $0)
        }
        let left = 24 + Canvas.textWidth("automobile", scale: 2) + 16
        let pitch = max(96 + 8, Canvas.textWidth("original", scale: 2) + 12)
        #expect(image.width == left + 4 * pitch - 8 + 24)
        let heading = TitleBlock("Augmentation: flip,crop:4", width: image.width - 48)
        #expect(heading.scale == 3 && heading.lines.count == 1)
        #expect(image.height == 18 + heading.height + 12 + 16 + 12 + 3 * (96 + 8) - 8 + 24)
    }

    @Test("titles wrap at scale 2 when they do not fit at scale 3")
    func titles() {
        let block = TitleBlock("fashion-mnist augmentation: flip,shift:0.1:0.1:nearest,rotate:15.0:constant (seed 3)", width: 400)
        #expect(block.scale == 2 && block.lines.count > 1)
        #expect(block.lines.allSatisfy { Canvas.textWidth($0, scale: 2) <= 400 })
        func letters(_ text: String) -> String { text.replacingOccurrences(of: " ", with: "") }
        #expect(letters(block.lines.joined()) == letters("fashion-mnist augmentation: flip,shift:0.1:0.1:nearest,rotate:15.0:constant (seed 3)"))
        #expect(TitleBlock(String(repeating: "x", count: 100), width: 120).lines.allSatisfy { $0.count <= 10 })
    }

    @Test("tick helpers: nice linear steps, decades on log axes, compact rates")
    func ticks() {
        let t = linearTicks(0, 1.37, maximum: 7)
        #expect(t.values.first == 0 && t.values.last == 1.5 && t.labels.first == "0.00" && t.labels.contains("1.25"))
        #expect(linearTicks(0, 164, maximum: 8, integral: true).values == [0, 25, 50, 75, 100, 125, 150, 175])
        #expect(linearTicks(0, 1, maximum: 8, integral: true).labels == ["0", "1"])
        #expect(linearTicks(0, 1, maximum: 5).labels == ["0.00", "0.25", "0.50", "0.75", "1.00"])
        // The campaigns' iteration counts end on (or just below) the axis's last tick.
        #expect(iterationTicks(upTo: 16_000).values == [0, 2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 14_000, 16_000])
        #expect(iterationTicks(upTo: 10_530).values.last == 12_000 && iterationTicks(upTo: 0).values == [0, 1])
        let log = logTicks(1e-4, 0.1)
        #expect(log.labels == ["1e-4", "0.001", "0.01", "0.1"])
        #expect(logTicks(0.1, 0.1).labels.contains("0.1") && logTicks(0.1, 0.1).values.count > 3)
        #expect(formatRate(5e-5) == "5e-5" && formatRate(0.05) == "0.05")
    }
}
