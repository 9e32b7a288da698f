import ResNetEngine
import ResNetReference
import Testing
@testable import ResNetTensors

/// Another process's shard of the batch, seen from this one: its per-channel sums in forward,
/// and in backward the reductions of an output gradient of zero (this process's loss only), so
/// that finite differences of this process's output check the gradient exactly.
final class OtherShard: BatchNormSynchronizer {
    let data: RefTensor
    var calls = 0
    init(_ data: RefTensor) { self.data = data }

    func sumStatistics(_ values: UnsafeMutableBufferPointer<Double>) {
        calls += 1
        let (n, c, h, w) = (data.shape[0], data.shape[1], data.shape[2], data.shape[3])
        precondition(values.count == 2 * c + 1)
        guard values[2 * c] > 0 else { return }   // backward: the other shard's gradient is zero
        let count = Double(n * h * w)
        for ch in 0..<c {
            var sum = 0.0, squares = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w { let v = Double(data[b, ch, i, j]); sum += v; squares += v * v } } }
            values[ch] += sum
            values[c + ch] += squares
        }
        values[2 * c] += count
    }
}

@Suite("Synchronized batch norm")
struct SyncBatchNormTests {
    @Test("one shard of a batch normalized with the whole batch's statistics, and its gradients", arguments: TestLayout.allCases)
    func shardOfTheWholeBatch(_ layout: TestLayout) throws {
        var random = TestRandom(11)
        for (mine, theirs) in [([3, 16, 4, 5], [5, 16, 4, 5]), ([2, 5, 3, 4], [2, 5, 3, 4])] {
            let c = mine[1]
            let scale = parameter([c], random.uniform(c, 0.5...1.5)), shift = parameter([c], random.uniform(c))
            let mean = parameter([c], [Float](repeating: 0, count: c), trainable: false)
            let variance = parameter([c], [Float](repeating: 1, count: c), trainable: false)
            let x = random.uniform(mine.reduce(1, *), -2...3)
            // The other shard is shifted so that its statistics differ from this one's.
            let other = RefTensor(shape: theirs, data: random.uniform(theirs.reduce(1, *), -1...5))
            let whole = [mine[0] + theirs[0]] + Array(mine.dropFirst())
            let (g, b) = (scale.values, shift.values)
            let synchronizer = OtherShard(other)
            func joined(_ x: [Float]) -> RefTensor { RefTensor(shape: whole, data: x + other.data) }
            try OpCheck(
                inputShape: mine, layout: layout, input: x, parameters: [scale, shift],
                build: {
                    let y = try batchNorm($0, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                                          statistics: .batch, updateRunningStatistics: false)
                    #expect(synchronizeBatchNorms(in: $0.graph, with: synchronizer) == 1)
                    return y
                },
                reference: { x in
                    let y = Reference.batchNormTraining(joined(x), scale: g, shift: b, epsilon: 1e-5).output
                    return RefTensor(shape: mine, data: Array(y.data.prefix(x.count)))
                },
                referenceBackward: { x, dy in
                    let zeros = [Float](repeating: 0, count: other.data.count)
                    let r = Reference.batchNormTrainingBackward(joined(x), scale: g, epsilon: 1e-5,
                                                                outputGradient: RefTensor(shape: whole, data: dy.data + zeros))
                    return (Array(r.input.data.prefix(x.count)), [r.scale, r.shift])
                }
            ).run()
            #expect(synchronizer.calls > 2)
        }
    }

    @Test("synchronized running statistics use the whole batch (unbiased over all its values)")
    func runningStatisticsOfTheWholeBatch() throws {
        var random = TestRandom(12)
        let mine = [4, 3, 2, 5], theirs = [2, 3, 2, 5], c = 3
        let scale = Parameter(shape: [c], initialValue: 1), shift = Parameter(shape: [c])
        let mean = parameter([c], [0.5, -0.5, 0], trainable: false)
        let variance = parameter([c], [1, 2, 3], trainable: false)
        let graph = Graph()
        let x = graph.input(mine)
        let y = try batchNorm(x, scale: scale, shift: shift, runningMean: mean, runningVariance: variance,
                              statistics: .batch, updateRunningStatistics: true, momentum: 0.1)
        let other = RefTensor(shape: theirs, data: random.uniform(theirs.reduce(1, *), 2...6))
        synchronizeBatchNorms(in: graph, with: OtherShard(other))
        try graph.plan(loss: y, keep: [y])
        let data = random.uniform(mine.reduce(1, *), 0...4)
        try graph.setInput(x, data)
        graph.forward()
        let whole = RefTensor(shape: [6, 3, 2, 5], data: data + other.data)
        let batch = Reference.batchNormTraining(whole, scale: [1, 1, 1], shift: [0, 0, 0], epsilon: 1e-5)
        let m = Float(6 * 2 * 5)
        var expectedMean: [Float] = [0.5, -0.5, 0], expectedVariance: [Float] = [1, 2, 3]
        Reference.updateRunningStatistics(running: &expectedMean, batch: batch.mean, momentum: 0.1)
        Reference.updateRunningStatistics(running: &expectedVariance, batch: batch.variance.map { $0 * m / (m - 1) }, momentum: 0.1)
        #expect(relativeError(mean.values, expectedMean) < 1e-5)
        #expect(relativeError(variance.values, expectedVariance) < 1e-5)
    }
}
