import Foundation
import ResNetData
import ResNetLayers
import ResNetModels
import ResNetTensors
import Testing
@testable import ResNetInference

@Suite("An evaluator runs a deployed model in 8-bit integers after calibration")
struct QuantizedEvaluatorTests {
    @Test("ResNet-20 (option A shortcuts) in int8 gives nearly fp32's probabilities, without measuring kernels")
    func resnet20AgreesWithFloat() throws {
        let model = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(input: nil, classes: nil)
        model.initializeParameters(seed: 4)
        let count = 48
        var generator = SeededGenerator(seed: 8)
        let pixels = (0..<(2 * count * 3 * 32 * 32)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let normalization = Normalization.perChannel(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        let calibration = pixels[..<(count * 3 * 32 * 32)], scored = pixels[(count * 3 * 32 * 32)...]
        func probabilities(_ evaluator: Evaluator) throws -> [Float] {
            var out = [Float](repeating: 0, count: count * 10)
            try scored.withUnsafeBufferPointer { p in
                try out.withUnsafeMutableBufferPointer { try evaluator.probabilities(ofPrepared: p, count: count, normalization: normalization, into: $0) }
            }
            return out
        }
        let reference = try probabilities(Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: 16, parametersAreConstant: true))
        let evaluator = Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, batchSize: 16, parametersAreConstant: true)
        // Calibrated on other images than those scored, in batches of 16.
        try calibration.withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: count, normalization: normalization) }
        #expect(evaluator.isQuantized && evaluator.quantization == nil, "measured at the next call")
        let quantized = try probabilities(evaluator)
        #expect(evaluator.quantization?.imageCount == count)
        #expect(evaluator.convolutionChoices.isEmpty, "8-bit graphs are direct: nothing to measure")
        #expect(evaluator.winogradConvolutionCount(batch: 16) == 0)
        #expect(quantized != reference)
        let worst = zip(quantized, reference).map { abs($0 - $1) }.max()!
        #expect(worst < 0.05, "probabilities differ by up to \(worst)")
        func top(_ p: [Float], _ i: Int) -> Int { (0..<10).max { p[i * 10 + $0] < p[i * 10 + $1] }! }
        let agree = (0..<count).count { top(quantized, $0) == top(reference, $0) }
        #expect(agree >= count * 9 / 10, "top-1 agrees on \(agree) of \(count) images")
        #expect(try probabilities(evaluator) == quantized, "a second call gives the same numbers")
    }

    @Test("ResNet-50 (7x7 stem on signed input, max pooling, bottlenecks, projection shortcuts) in int8 stays close to fp32")
    func resnet50AgreesWithFloat() throws {
        let model = try ModelDefinition(name: "resnet50").build(input: ImageShape(height: 64, width: 64, channels: 3), classes: 10)
        model.initializeParameters(seed: 6)
        let count = 8, perImage = 3 * 64 * 64
        var generator = SeededGenerator(seed: 12)
        let pixels = (0..<(2 * count * perImage)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let normalization = Normalization.perChannel(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
        func probabilities(_ evaluator: Evaluator) throws -> [Float] {
            var out = [Float](repeating: 0, count: count * 10)
            try pixels[(count * perImage)...].withUnsafeBufferPointer { p in
                try out.withUnsafeMutableBufferPointer { try evaluator.probabilities(ofPrepared: p, count: count, normalization: normalization, into: $0) }
            }
            return out
        }
        let reference = try probabilities(Evaluator(model: model, imageShape: [3, 64, 64], classCount: 10, batchSize: count, parametersAreConstant: true))
        let evaluator = Evaluator(model: model, imageShape: [3, 64, 64], classCount: 10, batchSize: count, parametersAreConstant: true)
        try pixels[..<(count * perImage)].withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: count, normalization: normalization) }
        let quantized = try probabilities(evaluator)
        let worst = zip(quantized, reference).map { abs($0 - $1) }.max()!
        let spread = reference.max()! - reference.min()!
        #expect(worst < 0.02 * spread, "probabilities differ by up to \(worst); fp32's range over \(spread)")
    }

    @Test("only an fp32 evaluator with constant parameters is quantized, on at least one image")
    func quantizationIsChecked() throws {
        let model = try ModelDefinition(name: "resnet20", options: ModelOptions(shortcut: .a)).build(input: nil, classes: nil)
        let pixels = [UInt8](repeating: 128, count: 3 * 32 * 32)
        for evaluator in [Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10),
                          Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, parametersAreConstant: true, precision: .bf16)] {
            #expect(throws: ModelFileError.self) {
                try pixels.withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: 1, normalization: .none) }
            }
        }
        let evaluator = Evaluator(model: model, imageShape: [3, 32, 32], classCount: 10, parametersAreConstant: true)
        #expect(throws: ModelFileError.self) {
            try pixels.withUnsafeBufferPointer { try evaluator.quantize(calibratingOn: $0, count: 2, normalization: .none) }
        }
        #expect(evaluator.quantization == nil && !evaluator.isQuantized)
    }
}
