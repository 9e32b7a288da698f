import Foundation
import ResNetEngine

/// Times the convolution primitives exactly as a planned training graph binds them
/// (blocked activations, weights in the layouts oneDNN chose), without the reorders
/// at the model's edges.
public enum KernelBenchmark {
    /// Median seconds per call of one 3x3, stride-1, padding-1 convolution's three primitives.
    public struct ConvolutionTiming: Sendable {
        public var batch: Int, channels: Int, size: Int
        public var forward: Double, backwardData: Double, backwardWeights: Double
        /// Floating-point operations of one call (2 per multiply-accumulate).
        public var flops: Double { 2 * Double(batch * channels * channels * 9 * size * size) }
        /// Implementations oneDNN chose, forward / backward data / backward weights.
        public var implementations: [String]
    }

    public static func convolution(batch: Int, channels: Int, size: Int, precision: Precision = .fp32, repeats: Int = 25) throws -> ConvolutionTiming {
        let graph = Graph(precision: precision)
        let x = graph.input([batch, channels, size, size], requiresGradient: true)
        let blocked = graph.converted(x, to: MemoryDescriptor([batch, channels, size, size], .blocked16), label: "input")
        var generator = SeededGenerator(seed: 1)
        let weight = Parameter(shape: [channels, channels, 3, 3])
        weight.values = (0..<weight.count).map { _ in 0.1 * generator.nextNormal() }
        let y = try conv2d(blocked, weight: weight, stride: (1, 1), padding: (1, 1), label: "bench")
        try graph.plan(loss: y)
        try graph.setInput(x, (0..<(batch * channels * size * size)).map { _ in generator.nextNormal() })
        graph.forward()
        graph.backward()
        let node = graph.nodes.compactMap { $0 as? ConvolutionNode }.first!
        func median(_ primitive: BoundPrimitive) -> Double {
            for _ in 0..<3 { primitive.execute() }
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                primitive.execute()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            }
            return times.sorted()[times.count / 2]
        }
        let primitives = [node.runForward!, node.runBackwardData!, node.runBackwardWeights!]
        return ConvolutionTiming(batch: batch, channels: channels, size: size,
                                 forward: median(primitives[0]), backwardData: median(primitives[1]),
                                 backwardWeights: median(primitives[2]),
                                 implementations: primitives.map(\.primitive.implementation))
    }
}
