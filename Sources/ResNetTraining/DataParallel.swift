import ResNetTensors
import Foundation
import ResNetData
import ResNetInference

/// The processes of a data-parallel run, as training needs them: who this process is, sums over
/// all of them, and rank 0's bytes everywhere. `ResNetDistributed` implements it over Open MPI;
/// training never imports MPI.
///
/// With a group, a ``Trainer`` splits every global batch into `size` contiguous shards (rank
/// `r` takes images `r * B/size ..< (r + 1) * B/size` of the batch a single process would
/// take, augmented identically), each rank computes the gradient of its shard's mean loss, and
/// ``reduceGradients(_:scale:averaging:during:)`` turns them into the global batch's mean gradient
/// before the identical update on every rank. Every call is collective: all ranks make the same
/// calls in the same order.
public protocol DataParallelGroup: AnyObject {
    /// This process, `0..<size`; rank 0 alone writes files and logs.
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` by their sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Rank 0's `bytes` (the argument is ignored on other ranks).
    func broadcast(_ bytes: [UInt8]) throws -> [UInt8]
    /// Replaces every parameter's gradient by `scale` times its sum over ranks, and the values
    /// of `statistics` (batch-norm running statistics) by their mean over ranks, overlapped with
    /// the backward pass that produces the gradients.
    ///
    /// Calls `backward` once, with a function `backward` calls with the index in `parameters`
    /// of each parameter as soon as its gradient is final (``Graph/backward(seed:onParameterGradientFinal:)``),
    /// so that the reduction of the gradients that are done can travel while the rest are
    /// computed; the `statistics` must be final before the call. Indices never reported are
    /// taken as final when `backward` returns. The result is bit for bit that of `backward`
    /// followed by ``reduceGradients(_:scale:averaging:)``; every rank must report in the same
    /// order (the same planned graph does).
    func reduceGradients(_ parameters: [Parameter], scale: Float, averaging statistics: [Parameter],
                         during backward: (_ gradientIsFinal: (Int) -> Void) -> Void) throws
}

extension DataParallelGroup {
    /// Replaces every parameter's gradient by `scale` times its sum over ranks, and the values
    /// of `statistics` (batch-norm running statistics) by their mean over ranks: the gradients
    /// are final already.
    public func reduceGradients(_ parameters: [Parameter], scale: Float, averaging statistics: [Parameter]) throws {
        try reduceGradients(parameters, scale: scale, averaging: statistics) { _ in }
    }

    /// The sum over ranks of one number per rank.
    public func sum(_ values: [Double]) throws -> [Double] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return v
    }
}

/// Another rank of a data-parallel run failed and says why itself: this one ends quietly, so
/// that the job prints one line.
public struct PeerFailure: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "another rank failed" }
}

/// This rank's own failure in a data-parallel run, which the others know of and end for with
/// ``PeerFailure``: this one says why, at once.
public struct RankFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Trainer {
    /// Checks that every rank has rank 0's configuration; the ranks that differ end with one
    /// line naming the settings (``RankFailure``), the others with ``PeerFailure``.
    static func checkSameConfiguration(_ configuration: RunConfiguration, group: any DataParallelGroup) throws {
        // Hosts may differ in cores: the thread count is each rank's own.
        var compared = configuration
        compared.threads = 1
        let mine = [UInt8](try encoder.encode(compared))
        let theirs = try group.broadcast(mine)
        let differs = theirs != mine
        let disagreeing = try group.sum([differs ? 1 : 0])[0]
        guard disagreeing > 0 else { return }
        guard differs else { throw PeerFailure() }
        var fields = "unreadable"
        if let root = try? decoder.decode(RunConfiguration.self, from: Data(theirs)) {
            let a = Mirror(reflecting: compared).children, b = Mirror(reflecting: root).children
            fields = zip(a, b).filter { String(describing: $0.value) != String(describing: $1.value) }.compactMap(\.0.label).joined(separator: ", ")
        }
        throw RankFailure("rank \(group.rank): its run configuration differs from rank 0's (\(fields)): every rank must run the same command on the same data")
    }

    /// Evaluates `dataset` with `evaluator`; in a data-parallel run each rank evaluates its
    /// contiguous part and the sums (loss, top-5 hits, the confusion matrix) are reduced, so
    /// every rank gets the whole set's result.
    public func evaluate(_ evaluator: Evaluator, _ dataset: ImageDataset) throws -> EvaluationResult {
        // Fewer images than ranks: each evaluates them all (the same result everywhere).
        guard let group, dataset.count >= group.size else { return try evaluator.evaluate(dataset, normalization: configuration.normalization) }
        let n = dataset.count, k = configuration.classNames.count
        var result = try evaluator.evaluate(dataset.subset(Array((n * group.rank / group.size)..<(n * (group.rank + 1) / group.size))),
                                            normalization: configuration.normalization)
        var sums = [Double](repeating: 0, count: 2 + k * k)
        sums[0] = result.loss * Double(result.count)
        sums[1] = (result.top5 * Double(result.count)).rounded()
        for t in 0..<k { for p in 0..<k { sums[2 + t * k + p] = Double(result.confusionMatrix[t][p]) } }
        sums = try group.sum(sums)
        let confusion = (0..<k).map { t in (0..<k).map { p in Int(sums[2 + t * k + p]) } }
        let correct = (0..<k).reduce(0) { $0 + confusion[$1][$1] }
        result.perClass = confusion.enumerated().map { c, row in
            let total = row.reduce(0, +)
            return total == 0 ? 0 : Double(row[c]) / Double(total)
        }
        result.count = n
        result.loss = sums[0] / Double(n)
        result.top1 = Double(correct) / Double(n)
        result.top5 = sums[1] / Double(n)
        result.confusionMatrix = confusion
        return result
    }
}
