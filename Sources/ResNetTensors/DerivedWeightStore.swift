import ResNetEngine

/// Weights that inference graphs derive from constant parameters — batch norms folded in,
/// reordered into a primitive's layout — shared by every graph given the same store.
///
/// A deployed model plans one graph per batch size (`resnet serve` plans 1, 2, 4, ... up to
/// `--max-batch`); without a store each graph keeps its own derived copy of every weight
/// (ResNet-18: ~90 MB per graph). Graphs share an op's weights when the same parameters are
/// wanted in the same layout (a layout can depend on the batch size, e.g. Winograd's).
/// For graphs made with `parametersAreConstant` only; the derived weights are made at the
/// first forward pass of any graph that uses them. Used from the one thread that runs the
/// graphs.
public final class DerivedWeightStore {
    struct Key: Hashable {
        let parameters: [ObjectIdentifier]
        let layout: MemoryDescriptor
        init(parameters: [Parameter], layout: MemoryDescriptor) {
            self.parameters = parameters.map(ObjectIdentifier.init)
            self.layout = layout
        }
    }

    final class Entry {
        /// Keeps the parameters alive, so that their identifiers in the key stay theirs.
        let parameters: [Parameter]
        let weights: Memory
        let bias: Memory?
        private var derive: (() -> Void)?

        init(parameters: [Parameter], weights: Memory, bias: Memory?, derive: @escaping () -> Void) {
            self.parameters = parameters
            self.weights = weights
            self.bias = bias
            self.derive = derive
        }

        /// Makes the weights at the first call (from the parameters as they are then).
        @inline(__always) func deriveOnce() {
            guard let derive else { return }
            derive()
            self.derive = nil
        }
    }

    var entries: [Key: Entry] = [:]

    public init() {}

    /// Drops the weights no graph uses any more (those of graphs released since they were made).
    public func removeUnused() {
        for key in Array(entries.keys) where isKnownUniquelyReferenced(&entries[key]!) {
            entries[key] = nil
        }
    }

    /// Bytes of the shared weights (and folded biases) in their primitives' layouts.
    public var byteCount: Int {
        entries.values.reduce(0) { $0 + $1.weights.descriptor.byteCount + ($1.bias?.descriptor.byteCount ?? 0) }
    }
}

/// One buffer for the pooled activations of several inference graphs that never run at the
/// same time — an `Evaluator`'s graphs of every batch size — sized to the largest, so that N
/// graphs hold one graph's worth of activations instead of N.
///
/// Give the same arena to each graph (`Graph(computesGradients: false, activations:)`); a
/// graph planned later that needs more grows the buffer and moves every graph's activations
/// into it. Inputs and kept values have buffers of their own, so what a caller reads is never
/// shared; values that are not kept may be overwritten by another graph's pass. Used from the
/// one thread that runs the graphs.
public final class ActivationArena {
    private var placements: [(memory: Memory, offset: Int)] = []
    private var buffer: Buffer?

    public init() {}

    /// Bytes of the shared buffer.
    public var byteCount: Int { buffer?.byteCount ?? 0 }

    /// Forgets the memories of graphs released since they were placed, and shrinks the buffer
    /// to what the others need.
    public func removeUnused() {
        for i in placements.indices.reversed() where isKnownUniquelyReferenced(&placements[i].memory) {
            placements.remove(at: i)
        }
        let needed = placements.map { $0.offset + $0.memory.descriptor.byteCount }.max() ?? 0
        guard needed < byteCount else { return }
        let shrunk = needed > 0 ? Buffer(byteCount: needed) : nil
        buffer = shrunk
        if let shrunk { for p in placements { p.memory.bind(to: shrunk, offset: p.offset) } }
    }

    /// Binds `memories` at their offsets, growing the buffer (and rebinding everything placed
    /// before) when they need more than it has.
    func place(_ memories: [(Memory, Int)], byteCount needed: Int) {
        placements += memories.map { (memory: $0.0, offset: $0.1) }
        if needed > byteCount {
            let grown = Buffer(byteCount: needed)
            buffer = grown
            for p in placements { p.memory.bind(to: grown, offset: p.offset) }
        } else if let buffer {
            for (memory, offset) in memories { memory.bind(to: buffer, offset: offset) }
        }
    }
}
