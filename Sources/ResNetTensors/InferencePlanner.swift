import Foundation
import ResNetEngine

/// Plans a deployed model's inference graph with the convolution algorithms that run it fastest
/// on this CPU, measured at plan time.
///
/// oneDNN's Winograd convolutions take about half the time of direct ones for a layer timed
/// alone, but inside a whole network they can lose: on the 2-core AMD EPYC VM of 2026-12-01,
/// ResNet-56 at batch 8 ran 1.2x faster with direct convolutions only, while ResNet-18 at
/// batch 1 ran 1.25x faster with Winograd (docs/performance.md). No rule on shapes alone
/// predicted both, and the CPU changes between machines, so the planner traces the graph once
/// per ``ConvolutionAlgorithms`` case, times forward passes of each in turn, and keeps the
/// faster. A graph with no Winograd convolution under ``ConvolutionAlgorithms/rule`` has
/// nothing to choose and is not timed.
///
/// Decisions are remembered for the life of the process, per graph structure (layers, layouts,
/// batch size), precision and thread count: a server's graphs of each batch size measure once,
/// and a second model of the same architecture not at all.
public enum InferencePlanner {
    /// What the planner chose for one graph.
    public struct Choice: Sendable, Equatable {
        /// The algorithms the graph was planned with.
        public var algorithms: ConvolutionAlgorithms
        /// The fastest forward pass of each candidate timed, in seconds; empty when the choice was
        /// remembered or there was nothing to choose.
        public var seconds: [ConvolutionAlgorithms: Double]
        /// Whether this call timed the candidates.
        public var measured: Bool { !seconds.isEmpty }

        public init(algorithms: ConvolutionAlgorithms, seconds: [ConvolutionAlgorithms: Double]) {
            self.algorithms = algorithms
            self.seconds = seconds
        }
    }

    /// The part of a candidate's time by which ``ConvolutionAlgorithms/direct`` must win to be
    /// chosen over the rule, so that timing noise between near-equal candidates does not make a
    /// model change its algorithms from one process to the next.
    public static let margin = 0.03

    /// Traces `trace` once per candidate (or once, when there is nothing to choose or the
    /// choice is remembered), keeps the fastest graph and drops the others.
    ///
    /// - Parameters:
    ///   - budget: seconds of timed passes to spend, beyond one warm-up pass per candidate;
    ///     at least two timed passes each are always run.
    ///   - timer: replaces the clock (seconds of one forward pass of a graph); for tests.
    ///   - trace: builds and plans an inference graph with the algorithms given, returning it and
    ///     whatever the caller needs from its tracing (inputs, outputs).
    /// - Returns: the graph kept, what `trace` returned with it, and the choice made.
    public static func plan<Traced>(budget: Double = 0.3, timer: ((Graph) -> Double)? = nil,
                                    _ trace: (ConvolutionAlgorithms) throws -> (Graph, Traced)) throws -> (graph: Graph, traced: Traced, choice: Choice) {
        var ruled: (graph: Graph, traced: Traced)? = try trace(.rule)
        let (store, arena) = (ruled!.graph.derivedWeights, ruled!.graph.activations)
        guard !ruled!.graph.computesGradients, ruled!.graph.precision == .fp32, ruled!.graph.winogradConvolutionCount > 0 else {
            return (ruled!.graph, ruled!.traced, Choice(algorithms: .rule, seconds: [:]))
        }
        let key = signature(ruled!.graph)
        var choice = Choice(algorithms: .rule, seconds: [:])
        var direct: (graph: Graph, traced: Traced)?
        if let remembered = memory.decision(key) {
            choice.algorithms = remembered
            if remembered == .direct { direct = try trace(.direct) }
        } else {
            direct = try trace(.direct)
            let seconds = bestPassSeconds(of: [ruled!.graph, direct!.graph], budget: budget, timer: timer)
            choice = Choice(algorithms: seconds[1] < seconds[0] * (1 - margin) ? .direct : .rule,
                            seconds: [.rule: seconds[0], .direct: seconds[1]])
            memory.remember(choice.algorithms, for: key)
        }
        let kept = choice.algorithms == .direct ? direct! : ruled!
        // The other graph goes, and with it what only it held in the shared store and arena.
        (ruled, direct) = (nil, nil)
        store?.removeUnused()
        arena?.removeUnused()
        return (kept.graph, kept.traced, choice)
    }

    /// Forgets every remembered decision (tests).
    public static func forgetDecisions() { memory.clear() }

    /// Seconds of the fastest of several forward passes of each graph (inputs filled with a
    /// pattern, one untimed pass first), passes interleaved so that a change in the machine's load
    /// affects every candidate alike; about `budget` seconds of timed passes, at least two each.
    /// `timer` replaces the clock (seconds of one forward pass of a graph), for tests.
    public static func bestPassSeconds(of graphs: [Graph], budget: Double = 0.3, timer: ((Graph) -> Double)? = nil) -> [Double] {
        let clock = timer ?? { graph in
            let start = DispatchTime.now().uptimeNanoseconds
            graph.forward()
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        for graph in graphs {
            graph.fillInputsWithPattern()
            graph.forward()   // derives the weights
        }
        var best = graphs.map(clock)
        let rounds = min(7, max(1, Int(budget / max(best.reduce(0, +), 1e-6))))
        for _ in 0..<rounds {
            for (i, graph) in graphs.enumerated() { best[i] = min(best[i], clock(graph)) }
        }
        return best
    }

    /// What identifies a planned graph's speed: its nodes and layouts (the batch size included),
    /// precision and threads.
    private static func signature(_ graph: Graph) -> String {
        "\(graph.precision.rawValue) \(ComputeEngine.shared.threadCount) threads\n" + graph.nodeSummary.joined(separator: "\n")
    }

    private static let memory = Decisions()

    private final class Decisions: @unchecked Sendable {
        private let lock = NSLock()
        private var decisions: [String: ConvolutionAlgorithms] = [:]
        func decision(_ key: String) -> ConvolutionAlgorithms? { lock.withLock { decisions[key] } }
        func remember(_ algorithms: ConvolutionAlgorithms, for key: String) { lock.withLock { decisions[key] = algorithms } }
        func clear() { lock.withLock { decisions.removeAll() } }
    }
}
