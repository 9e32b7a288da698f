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

    /// Bytes of the shared weights (and folded biases) in their primitives' layouts.
    public var byteCount: Int {
        entries.values.reduce(0) { $0 + $1.weights.descriptor.byteCount + ($1.bias?.descriptor.byteCount ?? 0) }
    }
}
