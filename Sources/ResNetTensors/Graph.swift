import CDNNL
import Foundation
import ResNetEngine

/// The number format a graph computes in.
///
/// `bf16` is mixed precision as the bf16 literature defines it: activations, their gradients
/// and the weights the convolutions read are bfloat16 (half the memory traffic, and this
/// CPU's `vdpbf16ps` doubles the multiply-accumulate rate); the parameters the optimizer
/// updates, their gradients, batch-norm statistics, the classifier and the loss stay float32.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16

    /// The element type of activations and the weights convolutions read.
    public var activationType: ElementType { self == .bf16 ? .bfloat16 : .float32 }

    /// What `--precision auto` picks: bf16 where oneDNN has native bf16 kernels (1.35x fp32
    /// end to end on a Zen 5 VM, as accurate: README *Speed*), fp32 elsewhere.
    public static var automatic: Precision { ComputeEngine.hasNativeBFloat16 ? .bf16 : .fp32 }

    /// One line for a user who asked for `self` on this CPU, or `nil` when nothing is wrong.
    public var warning: String? {
        guard self == .bf16, !ComputeEngine.hasNativeBFloat16 else { return nil }
        return "this CPU has no native bf16 (oneDNN uses \(ComputeEngine.instructionSet)): bf16 is emulated, about 3.7x slower than fp32 (ResNet-20 training measured 243 against 890 img/s on such a CPU); --precision fp32 or auto avoids it"
    }
}

/// A precision as the command line asks for it: `auto` resolves to ``Precision/automatic``.
public enum PrecisionChoice: String, Sendable, CaseIterable, Codable {
    case auto, fp32, bf16

    public var resolved: Precision {
        switch self {
        case .auto: .automatic
        case .fp32: .fp32
        case .bf16: .bf16
        }
    }
}

/// Which algorithms an inference graph's convolutions may use (training graphs always follow
/// ``rule``). Neither wins everywhere: on the 2-core AMD EPYC VM of 2026-12-01, Winograd made
/// ResNet-18 at batch 1 1.25x faster and ResNet-56 at batch 8 1.2x slower (README *Speed*), so
/// a deployed model measures both at plan time (`InferencePlanner`).
public enum ConvolutionAlgorithms: String, Sendable, CaseIterable, Codable {
    /// Winograd for 3x3 stride-1 fp32 convolutions of at least 32 channels where the batch
    /// has enough output pixels (``conv2d(_:weight:bias:stride:padding:label:)`` gives the rule),
    /// direct elsewhere.
    case rule
    /// Direct convolutions only.
    case direct
}

/// A value in a ``Graph``: what layers take and return.
///
/// Layers are written as eager code over tensors (`relu(bn(conv(x)))`); running that code
/// once *traces* it into the graph. The graph is then planned — layouts fixed, primitives
/// created, every buffer allocated — and replayed step after step without allocating.
public struct Tensor: CustomStringConvertible {
    public let graph: Graph
    public let id: Int

    /// Logical shape, NCHW for images, `[N, K]` for matrices.
    public var shape: [Int] { graph.values[id].shape }
    /// The physical layout the engine chose for it.
    public var descriptor: MemoryDescriptor { graph.values[id].descriptor }

    public var description: String { "Tensor#\(id)\(shape)" }
}

/// Integer class labels fed to a loss.
public struct LabelInput {
    public let graph: Graph
    let id: Int
    /// Batch size.
    public var count: Int { graph.labelInputs[id].count }
}

/// A traced computation with its planned buffers: forward, backward, and the edges to plain arrays.
///
/// Typical use:
/// ```swift
/// let graph = Graph()
/// let x = graph.input([128, 3, 32, 32])
/// let labels = graph.labels(count: 128)
/// let loss = try softmaxCrossEntropy(model(x), labels: labels)
/// try graph.plan(loss: loss)
/// // each step:
/// try graph.setInput(x, images); try graph.setLabels(labels, batchLabels)
/// graph.forward(); graph.backward()   // parameter gradients are now set
/// ```
/// A graph is used from one thread (the thread that runs oneDNN).
public final class Graph {
    final class Value {
        let shape: [Int]
        var descriptor: MemoryDescriptor
        let requiresGradient: Bool
        var producer: Node?
        var consumerCount = 0
        var memory: Memory?
        var gradient: Memory?
        /// Reorder to plain NCHW for ``Graph/read(_:)``, made on first use.
        var reader: (BoundPrimitive, Memory)?
        var gradientReader: (BoundPrimitive, Memory)?
        /// Staging memory and reorder for channels-last inputs, made on first use.
        var channelsLastWriter: (BoundPrimitive, Memory)?
        var channelsLastReader: (BoundPrimitive, Memory)?
        /// Quantized graphs: what one step of an 8-bit value is worth (`real = integer * scale`).
        var scale: Float = 1
        /// Its shape in plain fp32 layout, made once (``Graph/withValue(_:_:)`` compares with it
        /// on every call, and making a descriptor allocates).
        lazy var plainDescriptor = MemoryDescriptor(shape, .plain)

        init(shape: [Int], descriptor: MemoryDescriptor, requiresGradient: Bool) {
            self.shape = shape
            self.descriptor = descriptor
            self.requiresGradient = requiresGradient
        }
    }

    final class Labels {
        let count: Int
        var classCount = Int.max
        let storage: UnsafeMutablePointer<Int32>
        init(count: Int) {
            self.count = count
            storage = .allocate(capacity: count)
            storage.initialize(repeating: 0, count: count)
        }
        deinit { storage.deallocate() }
    }

    /// Whether this graph will run backward passes. Inference graphs use oneDNN's
    /// inference primitives and keep nothing for a backward pass.
    public let computesGradients: Bool
    /// The number format of activations, their gradients and the convolutions' weights.
    public let precision: Precision
    /// Whether buffers are shared where lifetimes allow (the default): activation gradients,
    /// and activations that no backward step reads (in inference graphs, all of them).
    /// Without it every value and gradient keeps a buffer, and ``read(_:)`` and
    /// ``gradient(of:)`` can read any of them that fusion did not remove.
    public let sharesMemory: Bool
    /// The generator of dropout masks; reseed it for reproducible runs.
    public var generator: SeededGenerator
    /// Inference graphs only: the parameters never change while this graph runs (a deployed
    /// model), so what is derived from them (weights in a primitive's layout, batch norms folded
    /// into them) is made once, at the first forward pass. Otherwise every forward pass first
    /// compares the parameters with a copy kept of them (exact whatever wrote them, but a
    /// second copy of the weights and a pass over both: ~100 MB for ResNet-50).
    public let parametersAreConstant: Bool
    /// Where graphs with constant parameters share their derived weights, if given.
    public let derivedWeights: DerivedWeightStore?
    /// Where inference graphs that never run at the same time share their activations, if given.
    public let activations: ActivationArena?
    /// Inference graphs only: which convolution algorithms the graph may use.
    public let convolutionAlgorithms: ConvolutionAlgorithms
    /// Quantized inference graphs: the value ranges measured on calibration images. The graph
    /// is traced in fp32 and, when planned, runs its convolutions (and the pooling, shortcuts
    /// and additions between them) on 8-bit integers (see `Quantization.swift`).
    public let quantization: ActivationRanges?

    var values: [Value] = []
    var nodes: [Node] = []
    var labelInputs: [Labels] = []
    var inputIDs: [Int] = []

    private(set) var isPlanned = false
    private(set) var forwardNodes: [Node] = []
    private var backwardNodes: [Node] = []
    private var root: Int?
    private var neededGradients: Set<Int> = []
    private var gradientWritten: Set<Int> = []
    private var parameterGradientWritten: Set<ObjectIdentifier> = []
    let scratchpad = Arena()
    let accumulationScratch = Arena()
    private var ownedBytes = 0
    /// Gradient memories share one buffer where their lifetimes do not overlap: the backward
    /// step (index in `backwardNodes`, -1 for the seed) that first and last binds each one.
    private var backwardStep = -1
    private var gradientLifetimes: [Int: ClosedRange<Int>] = [:]
    /// Values whose gradient keeps a buffer of its own: inputs and kept values (readable
    /// after `backward`) and gradients other memories view.
    private var pinnedGradients: Set<Int> = []
    private var gradientPool: Buffer?
    /// Staging buffer and reorder that write a seed into a root gradient that is not plain float32.
    private var seedWriter: (BoundPrimitive, Memory)?
    /// Values share memory the same way: a value lives from the forward step that writes it
    /// to the last step that reads it, and to the end of the backward pass if a backward step
    /// reads it. An inference pass (ResNet-50 at batch 32) then holds a few activations at a
    /// time instead of all of them; a training step frees what only the forward pass reads,
    /// such as a block's last batch-norm output, which only its residual addition uses.
    private var poolsValues: Bool { sharesMemory }
    private var forwardStep = -1
    /// Set while backward steps are planned: a value they bind lives to the end.
    private var planningBackward = false
    private var valueLifetimes: [Int: ClosedRange<Int>] = [:]
    private var pinnedValues: Set<Int> = []
    /// Values stored in another value's memory: a residual addition fused into a convolution
    /// (its `sum` post-op) writes the block's output over the shortcut operand, which nothing
    /// reads afterwards. Maps a value to the one whose memory it uses.
    var memoryAliases: [Int: Int] = [:]
    /// Every primitive bound for this graph that still exists, in the order bound (tests count
    /// their executions). Held weakly: a weight reorder dropped once its weights are derived
    /// must free what it binds (ResNet-18's plain folded weights: 44 MiB of peak RSS).
    var boundPrimitives: [BoundPrimitive] { bound.compactMap(\.primitive) }
    private struct WeakBound { weak var primitive: BoundPrimitive? }
    private var bound: [WeakBound] = []
    /// Memories over the same bytes as another (keyed by it) in another element type.
    private var followers: [ObjectIdentifier: [Memory]] = [:]
    private var valuePool: Buffer?
    /// Bytes of this graph's pooled activations in a shared ``ActivationArena``.
    private var pooledValueBytes = 0

    /// - Parameters:
    ///   - derivedWeights: with `parametersAreConstant`, a store shared with other graphs of the
    ///     same model (one per batch size) so that they keep one copy of the weights derived
    ///     from the parameters.
    ///   - activations: for an inference graph that shares memory, an arena shared with other
    ///     graphs that never run at the same time as this one: one buffer for all their
    ///     activations.
    ///   - convolutionAlgorithms: for an inference graph, the convolution algorithms it may use.
    ///   - quantization: for an fp32 inference graph with constant parameters, ranges measured
    ///     with ``measureRanges(into:)`` on a graph of the same model: the graph then runs in 8-bit
    ///     integers (its convolutions direct).
    public init(computesGradients: Bool = true, seed: UInt64 = 0, precision: Precision = .fp32, sharesMemory: Bool = true,
                parametersAreConstant: Bool = false, derivedWeights: DerivedWeightStore? = nil, activations: ActivationArena? = nil,
                convolutionAlgorithms: ConvolutionAlgorithms = .rule, quantization: ActivationRanges? = nil) {
        precondition(!(computesGradients && parametersAreConstant), "a training graph changes its parameters")
        precondition(quantization == nil || (parametersAreConstant && precision == .fp32), "only fp32 graphs with constant parameters are quantized")
        self.quantization = quantization
        precondition(!computesGradients || convolutionAlgorithms == .rule, "training graphs choose their convolutions by the rule")
        self.convolutionAlgorithms = convolutionAlgorithms
        precondition(derivedWeights == nil || parametersAreConstant, "only graphs with constant parameters share derived weights")
        precondition(activations == nil || (!computesGradients && sharesMemory), "only inference graphs that pool their activations share them")
        self.activations = activations
        self.parametersAreConstant = parametersAreConstant
        self.derivedWeights = derivedWeights
        self.computesGradients = computesGradients
        self.precision = precision
        self.sharesMemory = sharesMemory
        generator = SeededGenerator(seed: seed)
    }

    // MARK: - Building

    /// A graph input in plain layout (NCHW for rank 4, row-major otherwise).
    public func input(_ shape: [Int], requiresGradient: Bool = false) -> Tensor {
        let t = addValue(shape: shape, descriptor: MemoryDescriptor(shape, .plain), requiresGradient: requiresGradient)
        inputIDs.append(t.id)
        return t
    }

    /// An input of `count` integer class labels for a loss.
    public func labels(count: Int) -> LabelInput {
        labelInputs.append(Labels(count: count))
        return LabelInput(graph: self, id: labelInputs.count - 1)
    }

    func addValue(shape: [Int], descriptor: MemoryDescriptor, requiresGradient: Bool) -> Tensor {
        precondition(!isPlanned, "a planned graph cannot grow: trace a new graph")
        values.append(Value(shape: shape, descriptor: descriptor, requiresGradient: requiresGradient))
        return Tensor(graph: self, id: values.count - 1)
    }

    /// Records `node` and creates its outputs.
    func add(_ node: Node, outputs: [(shape: [Int], descriptor: MemoryDescriptor)]) -> [Tensor] {
        let requires = computesGradients
            && (node.inputs.contains { values[$0].requiresGradient } || node.parameters.contains { $0.isTrainable })
        for i in node.inputs { values[i].consumerCount += 1 }
        let made = outputs.map { addValue(shape: $0.shape, descriptor: $0.descriptor, requiresGradient: requires) }
        node.outputs = made.map(\.id)
        for t in made { values[t.id].producer = node }
        nodes.append(node)
        return made
    }

    /// `tensor` in layout `descriptor`, through a reorder node when it is not already so.
    func converted(_ tensor: Tensor, to descriptor: MemoryDescriptor, label: String) -> Tensor {
        if values[tensor.id].descriptor == descriptor { return tensor }
        let node = ReorderNode(label: label + ".reorder", input: tensor.id)
        return add(node, outputs: [(tensor.shape, descriptor)])[0]
    }

    // MARK: - Planning

    /// Fixes layouts, fuses, creates every primitive and allocates every buffer.
    ///
    /// - Parameters:
    ///   - loss: the value whose gradient ``backward(seed:)`` propagates (a scalar loss,
    ///     or any value when a seed is given). `nil` for a forward-only graph.
    ///   - keep: values that must stay readable after ``forward()``; fusion never removes them.
    public func plan(loss: Tensor? = nil, keep: [Tensor] = []) throws {
        precondition(!isPlanned, "graph already planned")
        root = loss?.id
        let kept = Set(keep.map(\.id) + (loss.map { [$0.id] } ?? []))
        fuse(keeping: kept)
        forwardNodes = nodes.filter(\.isActive)
        if let quantization { forwardNodes = try quantize(forwardNodes, ranges: quantization) }
        for id in inputIDs { _ = try memory(id) }
        for (step, node) in forwardNodes.enumerated() {
            forwardStep = step
            try node.planForward(self)
        }
        if let root, computesGradients {
            guard values[root].requiresGradient else {
                throw TensorError.notPlanned("the loss does not depend on any parameter or input that requires a gradient")
            }
            neededGradients = [root]
            gradientWritten = [root]
            for node in forwardNodes.reversed() where node.outputs.contains(where: neededGradients.contains) {
                backwardNodes.append(node)
                for i in node.inputs where values[i].requiresGradient { neededGradients.insert(i) }
            }
            _ = try gradientMemory(root)
            planningBackward = true
            for (step, node) in backwardNodes.enumerated() {
                backwardStep = step
                try node.planBackward(self)
            }
            pinnedGradients.formUnion(inputIDs)
            pinnedGradients.formUnion(kept)
            gradientPool = pool(gradientLifetimes, memory: { self.values[$0].gradient },
                                pinned: sharesMemory ? pinnedGradients : Set(gradientLifetimes.keys))
        }
        if poolsValues {
            pinnedValues.formUnion(inputIDs)
            pinnedValues.formUnion(kept.map(storage))
            valuePool = pool(valueLifetimes, memory: { self.values[$0].memory }, pinned: pinnedValues, arena: activations)
        }
        if let activations, poolsValues {
            // The scratchpad goes after this graph's activations in the shared buffer: both are
            // used during a pass, and other graphs' passes never overlap it.
            let scratch = scratchpad.memoriesHandedOut
            activations.place(scratch.map { ($0, pooledValueBytes) },
                              byteCount: pooledValueBytes + (scratch.map(\.descriptor.byteCount).max() ?? 0))
        } else {
            scratchpad.allocate()
        }
        accumulationScratch.allocate()
        isPlanned = true
    }

    /// A ReLU whose input nothing else reads goes into the op before it: batch norm + ReLU
    /// becomes one oneDNN primitive (`fuse_norm_relu`), and a residual addition takes the ReLU
    /// as a post-op (its backward pass then reads the ReLU's output instead of the sum, which
    /// is not stored). Inference graphs go further: a batch norm after a convolution is folded
    /// into its weights, with its ReLU as a post-op.
    private func fuse(keeping kept: Set<Int>) {
        fuseReLUs(keeping: kept) { producer in
            if let norm = producer as? BatchNormNode, !norm.fusesReLU {
                norm.fusesReLU = true
                return true
            }
            if let sum = producer as? AddNode, sum.isActive, !sum.fusesReLU {
                sum.fusesReLU = true
                return true
            }
            return false
        }
        guard !computesGradients else { return }
        for node in nodes {
            guard let norm = node as? BatchNormNode, norm.isActive,
                  let convolution = values[norm.inputs[0]].producer as? ConvolutionNode, convolution.isActive,
                  values[norm.inputs[0]].consumerCount == 1, !kept.contains(norm.inputs[0]),
                  convolution.fold(norm)
            else { continue }
            absorb(norm, into: convolution)
        }
        fuseResidualAdditions(keeping: kept)
    }

    /// Inference graphs: a residual addition `relu(f(x) + s)` whose branch `f` ends in a
    /// convolution (its batch norm folded) becomes that convolution's `sum` post-op, writing
    /// over `s` in place: one pass over the block's output instead of a convolution writing it,
    /// then an addition reading it and `s` and writing a third tensor (16 additions per
    /// ResNet-50 pass). The convolution fused is the operand computed last, so the other one is
    /// ready when it runs; nothing may read `s` after it, and both must be in the same layout.
    private func fuseResidualAdditions(keeping kept: Set<Int>) {
        let position = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { (ObjectIdentifier($1), $0) })
        func index(_ id: Int) -> Int { values[id].producer.map { position[ObjectIdentifier($0)]! } ?? -1 }
        for node in nodes {
            guard let sum = node as? AddNode, sum.isActive, sum.inputs[0] != sum.inputs[1],
                  !kept.contains(sum.inputs[0]), !kept.contains(sum.inputs[1])
            else { continue }
            let (branch, shortcut) = index(sum.inputs[0]) > index(sum.inputs[1])
                ? (sum.inputs[0], sum.inputs[1]) : (sum.inputs[1], sum.inputs[0])
            guard let convolution = values[branch].producer as? ConvolutionNode, convolution.isActive,
                  values[branch].consumerCount == 1, !inputIDs.contains(storage(shortcut)),
                  !(values[storage(shortcut)].producer?.keepsOutputBetweenPasses ?? false),
                  values[shortcut].descriptor == values[branch].descriptor,
                  values[sum.outputs[0]].descriptor == values[branch].descriptor
            else { continue }
            // Every other reader of the shortcut runs before the convolution overwrites it.
            let start = position[ObjectIdentifier(convolution)]!
            let readLater = nodes[start...].contains { $0.isActive && $0 !== sum && $0.inputs.contains(shortcut) }
            guard !readLater, convolution.fuseSum(relu: sum.fusesReLU) else { continue }
            memoryAliases[sum.outputs[0]] = shortcut
            absorb(sum, into: convolution)
        }
    }

    /// The value whose memory `id` uses (itself unless a fused addition writes over another).
    func storage(_ id: Int) -> Int {
        var id = id
        while let next = memoryAliases[id] { id = next }
        return id
    }

    /// Every active ReLU whose input nothing else reads and nobody keeps goes into the op that
    /// produces that input, if `takesReLU` (which sets up the fusion) accepts it.
    private func fuseReLUs(keeping kept: Set<Int>, into takesReLU: (Node) -> Bool) {
        for node in nodes {
            guard let relu = node as? ReLUNode, relu.isActive, let producer = values[relu.inputs[0]].producer,
                  values[relu.inputs[0]].consumerCount == 1, !kept.contains(relu.inputs[0]), takesReLU(producer)
            else { continue }
            absorb(relu, into: producer)
        }
    }

    /// `producer` writes `absorbed`'s output itself, and `absorbed` no longer runs.
    private func absorb(_ absorbed: Node, into producer: Node) {
        producer.outputs = absorbed.outputs
        values[absorbed.outputs[0]].producer = producer
        absorbed.isActive = false
    }

    /// Widens a memory's lifetime to include `step`.
    private func use(_ id: Int, at step: Int, in lifetimes: inout [Int: ClosedRange<Int>]) {
        lifetimes[id] = lifetimes[id].map { min($0.lowerBound, step)...max($0.upperBound, step) } ?? step...step
    }

    /// The memory of a value, made on first request. When memory is shared its storage is
    /// assigned when planning ends, and every request during planning is a use at run time.
    func memory(_ value: Int) throws -> Memory {
        let id = storage(value)
        if id != value {
            let shared = try memory(id)
            if let own = values[value].memory { return own }
            guard values[value].descriptor != shared.descriptor else {
                values[value].memory = shared
                return shared
            }
            // Quantized graphs: a uint8 block output written over its int8 shortcut, the same
            // bytes read as another type. It is bound wherever its storage is.
            let follower = try Memory(unbound: values[value].descriptor)
            followers[ObjectIdentifier(shared), default: []].append(follower)
            if shared.pointer != nil { follower.bind(sameAs: shared) }
            values[value].memory = follower
            return follower
        }
        let pooled = poolsValues && !isPlanned
        if pooled {
            // Lifetimes start at a forward step; `checkReadable` relies on it.
            precondition(!planningBackward || valueLifetimes[id] != nil, "a backward step reads a value no forward step wrote")
            use(id, at: planningBackward ? forwardNodes.count : forwardStep, in: &valueLifetimes)
        }
        if let m = values[id].memory { return m }
        let m: Memory
        if pooled {
            m = try Memory(unbound: values[id].descriptor)
        } else {
            m = try Memory(values[id].descriptor)
            ownedBytes += m.descriptor.byteCount
        }
        values[id].memory = m
        return m
    }

    /// The memory of a value that keeps a buffer of its own, never shared (for an op that
    /// relies on what it left there, such as zeros it never rewrites).
    func ownMemory(_ id: Int) throws -> Memory {
        let memory = try memory(id)
        pinnedValues.insert(storage(id))
        if memory.pointer == nil { bindOwn(memory) }
        return memory
    }

    /// A view of a value's memory in another descriptor; the value then keeps its own buffer.
    func memoryView(_ id: Int, as descriptor: MemoryDescriptor) throws -> Memory {
        try ownMemory(id).view(as: descriptor)
    }

    /// The gradient memory of a value, made on first request; its storage is assigned when
    /// planning ends (``pool(_:memory:pinned:)``). Every request during planning is a use at run time.
    func gradientMemory(_ id: Int) throws -> Memory {
        use(id, at: backwardStep, in: &gradientLifetimes)
        if let m = values[id].gradient { return m }
        let m = try Memory(unbound: values[id].descriptor)
        values[id].gradient = m
        return m
    }

    /// A view of a gradient in another descriptor; the gradient then keeps its own buffer.
    func gradientView(_ id: Int, as descriptor: MemoryDescriptor) throws -> Memory {
        let gradient = try gradientMemory(id)
        pinnedGradients.insert(id)
        if gradient.pointer == nil { bindOwn(gradient) }
        return try gradient.view(as: descriptor)
    }

    private func bindOwn(_ memory: Memory) {
        memory.bind(to: Buffer(byteCount: memory.descriptor.byteCount))
        ownedBytes += memory.descriptor.byteCount
    }

    /// Places memories in one buffer, first fit by lifetime: two share bytes only if no step
    /// uses both. A training step keeps every activation for the backward pass but needs only a
    /// few activation gradients at a time (ResNet-20, batch 128: the gradients take ~30 MB
    /// instead of ~280 MB); an inference pass needs only a few activations at a time.
    /// Pinned ones, and any left unbound, get buffers of their own.
    private func pool(_ lifetimes: [Int: ClosedRange<Int>], memory: (Int) -> Memory?, pinned: Set<Int>,
                      arena: ActivationArena? = nil) -> Buffer? {
        var placed: [(offset: Int, size: Int, lifetime: ClosedRange<Int>)] = []
        var placements: [(Memory, Int)] = []
        var total = 0
        let pooled = lifetimes.keys.filter { !pinned.contains($0) }
            .sorted { (lifetimes[$0]!.lowerBound, $0) < (lifetimes[$1]!.lowerBound, $1) }
        for id in pooled {
            guard let memory = memory(id), memory.pointer == nil else { continue }
            let lifetime = lifetimes[id]!
            let size = (memory.descriptor.byteCount + 63) / 64 * 64
            let busy = placed.filter { $0.lifetime.overlaps(lifetime) }.sorted { $0.offset < $1.offset }
            var offset = 0
            for block in busy where block.offset < offset + size {
                offset = max(offset, block.offset + block.size)
            }
            placed.append((offset, size, lifetime))
            placements.append((memory, offset))
            total = max(total, offset + size)
        }
        placements += placements.flatMap { memory, offset in (followers[ObjectIdentifier(memory)] ?? []).map { ($0, offset) } }
        var buffer: Buffer?
        if let arena {
            arena.place(placements, byteCount: total)
            pooledValueBytes = total
        } else {
            let own = Buffer(byteCount: total)
            for (memory, offset) in placements { memory.bind(to: own, offset: offset) }
            ownedBytes += total
            buffer = own
        }
        for id in lifetimes.keys {
            guard let m = memory(id) else { continue }
            if m.pointer == nil { bindOwn(m) }
            for follower in followers[ObjectIdentifier(m)] ?? [] where follower.pointer == nil { follower.bind(sameAs: m) }
        }
        return buffer
    }

    /// Counts memory a node holds outside the graph's buffers (in ``allocatedBytes``).
    func account(bytes: Int) { ownedBytes += bytes }

    /// A buffer a node owns (weights in a primitive's layout, workspaces, statistics).
    func temporary(_ descriptor: MemoryDescriptor) throws -> Memory {
        ownedBytes += descriptor.byteCount
        return try Memory(descriptor)
    }

    /// Whether the backward pass must produce the gradient of value `id`.
    func needsGradient(_ id: Int) -> Bool { neededGradients.contains(id) }

    /// Binds a primitive's arguments, adding its share of the common scratchpad.
    func bind(_ primitive: Primitive, _ bindings: [(Int32, Memory)]) throws -> BoundPrimitive {
        var all = bindings
        if let pad = primitive.descriptor(for: Arg.scratchpad) {
            all.append((Arg.scratchpad, try scratchpad.memory(pad)))
        }
        let made = BoundPrimitive(primitive, all)
        bound.append(WeakBound(primitive: made))
        return made
    }

    /// Where a backward primitive should write the gradient of value `id`.
    ///
    /// The first contribution (in backward order) writes the gradient directly; later ones
    /// write to shared scratch and are added by a reorder with a sum post-op. This is decided
    /// once here, so backward passes need not zero anything.
    func gradientSink(_ id: Int, writtenAs descriptor: MemoryDescriptor) throws -> GradientSink {
        let target = try gradientMemory(id)
        let first = gradientWritten.insert(id).inserted
        if first && descriptor == target.descriptor { return GradientSink(target: target, finish: nil) }
        let scratch = first ? try temporary(descriptor) : try accumulationScratch.memory(descriptor)
        let reorder = try PrimitiveCache.shared.reorder(from: descriptor, to: target.descriptor, accumulate: !first)
        return GradientSink(target: scratch, finish: try bind(reorder, [(Arg.from, scratch), (Arg.to, target)]))
    }

    /// A reorder that copies (or, after the first contribution, adds) `source` into the gradient of `id`.
    func gradientCopy(_ id: Int, from source: Memory) throws -> BoundPrimitive {
        let target = try gradientMemory(id)
        let first = gradientWritten.insert(id).inserted
        let reorder = try PrimitiveCache.shared.reorder(from: source.descriptor, to: target.descriptor, accumulate: !first)
        return try bind(reorder, [(Arg.from, source), (Arg.to, target)])
    }

    /// Where a backward primitive should write a parameter's gradient given in `descriptor`.
    func parameterGradientSink(_ parameter: Parameter, writtenAs descriptor: MemoryDescriptor) throws -> GradientSink {
        let target = parameter.gradient
        let first = parameterGradientWritten.insert(ObjectIdentifier(parameter)).inserted
        if first && descriptor == target.descriptor { return GradientSink(target: target, finish: nil) }
        let scratch = try temporary(descriptor)
        let reorder = try PrimitiveCache.shared.reorder(from: descriptor, to: target.descriptor, accumulate: !first)
        return GradientSink(target: scratch, finish: try bind(reorder, [(Arg.from, scratch), (Arg.to, target)]))
    }

    // MARK: - Running

    /// Runs every node forward.
    public func forward() {
        precondition(isPlanned, "plan the graph before running it")
        for node in forwardNodes { node.forward(self) }
    }

    /// Propagates gradients from the loss to every input that requires one and sets the
    /// gradient of every trainable parameter the loss depends on (overwriting, not adding).
    ///
    /// - Parameter seed: the gradient of the loss value, plain layout; `nil` means 1 for
    ///   every element (the usual scalar loss).
    public func backward(seed: [Float]? = nil) {
        seedLossGradient(seed)
        for node in backwardNodes { node.backward(self) }
    }

    /// ``backward(seed:)`` that calls `final` with each parameter as soon as its gradient is
    /// final: right after the last backward step that contributes to it (a parameter read by
    /// several nodes is final after the last of them in backward order), so that a caller can
    /// start moving it (a data-parallel all-reduce) while the rest of backward runs. Each
    /// parameter whose gradient the pass sets is reported exactly once, in the same order at
    /// every call; the gradients are those of ``backward(seed:)``, bit for bit.
    ///
    /// The order is computed from the planned steps at the first call; later calls allocate
    /// nothing.
    public func backward(seed: [Float]? = nil, onParameterGradientFinal final: (Parameter) -> Void) {
        seedLossGradient(seed)
        let finals = parametersFinalAfterStep
        for (step, node) in backwardNodes.enumerated() {
            node.backward(self)
            for parameter in finals[step] { final(parameter) }
        }
    }

    /// For each backward step, the parameters whose gradients are final once it has run: the
    /// ones it reads whose gradient the plan writes (`parameterGradientSink`) and that no later
    /// step reads.
    private lazy var parametersFinalAfterStep: [[Parameter]] = {
        var reported = Set<ObjectIdentifier>()
        var finals = [[Parameter]](repeating: [], count: backwardNodes.count)
        for step in backwardNodes.indices.reversed() {
            for parameter in backwardNodes[step].parameters
            where parameterGradientWritten.contains(ObjectIdentifier(parameter)) && reported.insert(ObjectIdentifier(parameter)).inserted {
                finals[step].append(parameter)
            }
        }
        return finals
    }()

    /// Sets the loss's gradient to `seed` (`nil`: ones) before a backward pass.
    private func seedLossGradient(_ seed: [Float]?) {
        precondition(isPlanned && root != nil && computesGradients, "plan the graph with a loss to run backward")
        let root = root!
        let g = values[root].gradient!
        let count = values[root].shape.reduce(1, *)
        if let seed {
            precondition(seed.count == count, "seed has the wrong element count")
            // Tests seed values of any layout and precision; a failure here is a bug, not input.
            try! writePlain(seed, into: g, shape: values[root].shape)
        } else if g.descriptor.elementType == .float32 {
            g.floats.update(repeating: 1, count: g.descriptor.byteCount / 4)
        } else {
            try! writePlain([Float](repeating: 1, count: count), into: g, shape: values[root].shape)
        }
    }

    // MARK: - Edges: plain arrays in and out

    /// Copies plain NCHW (or row-major) data into an input.
    public func setInput(_ tensor: Tensor, _ data: [Float]) throws {
        let count = tensor.shape.reduce(1, *)
        guard data.count == count else { throw TensorError.wrongElementCount(what: "input \(tensor.shape)", expected: count, actual: data.count) }
        try data.withUnsafeBufferPointer { try setInput(tensor, $0) }
    }

    /// Copies data into an input, without allocating after the first call.
    ///
    /// - Parameter layout: `.plain` for NCHW (or row-major) data, `.channelsLast` for NHWC
    ///   images (converted by a cached oneDNN reorder).
    public func setInput(_ tensor: Tensor, _ data: UnsafeBufferPointer<Float>, layout: Layout = .plain) throws {
        let count = tensor.shape.reduce(1, *)
        guard data.count == count else { throw TensorError.wrongElementCount(what: "input \(tensor.shape)", expected: count, actual: data.count) }
        guard isPlanned else { throw TensorError.notPlanned("plan the graph before setting inputs") }
        precondition(inputIDs.contains(tensor.id), "\(tensor) is not an input of this graph")
        let memory = values[tensor.id].memory!
        switch layout {
        case .plain:
            memory.floats.update(from: data.baseAddress!, count: count)
        case .channelsLast where tensor.shape.count == 4:
            if values[tensor.id].channelsLastWriter == nil {
                let staging = try Memory(MemoryDescriptor(tensor.shape, .channelsLast))
                let reorder = try PrimitiveCache.shared.reorder(from: staging.descriptor, to: memory.descriptor)
                values[tensor.id].channelsLastWriter = (try bindAtEdge(reorder, [(Arg.from, staging), (Arg.to, memory)]), staging)
            }
            let (reorder, staging) = values[tensor.id].channelsLastWriter!
            staging.floats.update(from: data.baseAddress!, count: count)
            reorder.execute()
        default:
            throw TensorError.invalidArgument(layer: "input", message: "inputs take plain (NCHW) or channels-last (NHWC, rank 4) data, not \(layout)")
        }
    }

    /// Copies data into an input (plain NCHW or channels-last NHWC).
    public func setInput(_ tensor: Tensor, _ data: [Float], layout: Layout) throws {
        try data.withUnsafeBufferPointer { try setInput(tensor, $0, layout: layout) }
    }

    /// Lets a data pipeline write an input's plain NCHW buffer in place.
    /// Runs `body` on a computed value in place, without copying: for plain-layout values
    /// such as logits and losses, read every step without allocating.
    public func withValue<R>(_ tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        guard isPlanned, let memory = values[tensor.id].memory else {
            throw TensorError.notPlanned("\(tensor) was not computed (fused away or not planned): pass it in plan(keep:)")
        }
        try checkReadable(tensor)
        guard memory.descriptor == values[tensor.id].plainDescriptor else {
            throw TensorError.invalidArgument(layer: "withValue", message: "\(tensor) is not in plain layout: use read(_:)")
        }
        return try body(UnsafeBufferPointer(start: memory.floats, count: tensor.shape.reduce(1, *)))
    }

    public func withInputBuffer<R>(_ tensor: Tensor, _ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(isPlanned && inputIDs.contains(tensor.id), "\(tensor) is not an input of this planned graph")
        return try body(UnsafeMutableBufferPointer(start: values[tensor.id].memory!.floats, count: tensor.shape.reduce(1, *)))
    }

    /// Sets the class labels of a batch. Throws if a label is outside the loss's classes.
    public func setLabels(_ input: LabelInput, _ labels: [Int32]) throws {
        let l = labelInputs[input.id]
        guard labels.count == l.count else { throw TensorError.wrongElementCount(what: "labels", expected: l.count, actual: labels.count) }
        for (i, label) in labels.enumerated() where label < 0 || Int(label) >= l.classCount {
            throw TensorError.labelOutOfRange(layer: "softmaxCrossEntropy", index: i, label: Int(label), classCount: l.classCount)
        }
        labels.withUnsafeBufferPointer { l.storage.update(from: $0.baseAddress!, count: l.count) }
    }

    /// The value of `tensor` after ``forward()``, as plain NCHW (or row-major) floats, or
    /// NHWC with `layout: .channelsLast`.
    public func read(_ tensor: Tensor, layout: Layout = .plain) throws -> [Float] {
        guard isPlanned, let memory = values[tensor.id].memory else {
            throw TensorError.notPlanned("\(tensor) was not computed (fused away or not planned): pass it in plan(keep:)")
        }
        try checkReadable(tensor)
        guard !memory.descriptor.elementType.isQuantized else {
            throw TensorError.invalidArgument(layer: "read", message: "\(tensor) holds 8-bit integers in a quantized graph")
        }
        switch layout {
        case .plain:
            return try readPlain(memory, shape: tensor.shape, cache: &values[tensor.id].reader)
        case .channelsLast where tensor.shape.count == 4:
            return try readPlain(memory, shape: tensor.shape, as: .channelsLast, cache: &values[tensor.id].channelsLastReader)
        default:
            throw TensorError.invalidArgument(layer: "read", message: "values read as plain (NCHW) or channels-last (NHWC, rank 4), not \(layout)")
        }
    }

    /// With shared memory, a value survives a forward pass if it is an input, kept, or lives
    /// to the last forward step (nothing written later can share its bytes).
    private func checkReadable(_ tensor: Tensor) throws {
        guard !memoryAliases.values.contains(tensor.id) else {
            throw TensorError.notPlanned("\(tensor) is overwritten by a residual addition fused into a convolution: pass it in plan(keep:)")
        }
        let id = storage(tensor.id)
        guard !poolsValues || pinnedValues.contains(id)
                || (valueLifetimes[id]?.upperBound ?? -1) >= forwardNodes.count - 1 else {
            throw TensorError.notPlanned("\(tensor) shares memory with later values and is not kept: pass it in plan(keep:)")
        }
    }

    /// The gradient of `tensor` after ``backward(seed:)``, plain layout: for inputs and for
    /// values passed in `plan(loss:keep:)` (other gradients share memory and are overwritten),
    /// or any value of a graph made with `sharesMemory: false`.
    public func gradient(of tensor: Tensor) throws -> [Float] {
        guard isPlanned, let memory = values[tensor.id].gradient else {
            throw TensorError.notPlanned("\(tensor) has no gradient in this graph")
        }
        guard pinnedGradients.contains(tensor.id) || !sharesMemory else {
            throw TensorError.notPlanned("the gradient of \(tensor) is not kept: pass it in plan(keep:)")
        }
        return try readPlain(memory, shape: tensor.shape, cache: &values[tensor.id].gradientReader)
    }

    /// The first element of `tensor` (for a scalar loss).
    public func scalar(_ tensor: Tensor) throws -> Float { try read(tensor)[0] }

    private func readPlain(_ memory: Memory, shape: [Int], as layout: Layout = .plain, cache: inout (BoundPrimitive, Memory)?) throws -> [Float] {
        let wanted = MemoryDescriptor(shape, layout)
        let count = shape.reduce(1, *)
        if memory.descriptor == wanted { return Array(UnsafeBufferPointer(start: memory.floats, count: count)) }
        if cache == nil {
            let out = try Memory(wanted)
            let reorder = try PrimitiveCache.shared.reorder(from: memory.descriptor, to: wanted)
            cache = (try bindAtEdge(reorder, [(Arg.from, memory), (Arg.to, out)]), out)
        }
        cache!.0.execute()
        return Array(UnsafeBufferPointer(start: cache!.1.floats, count: count))
    }

    /// Binds a reorder made after planning, growing the scratchpad arena if it needs more.
    private func bindAtEdge(_ reorder: Primitive, _ bindings: [(Int32, Memory)]) throws -> BoundPrimitive {
        let bound = try bind(reorder, bindings)
        if scratchpad.buffer == nil || scratchpad.byteCount < reorder.scratchpadBytes { scratchpad.allocate() }
        return bound
    }

    /// Writes plain float32 data into the root's gradient in whatever layout and element type
    /// it has, through a staging buffer and reorder made on first use.
    private func writePlain(_ data: [Float], into memory: Memory, shape: [Int]) throws {
        let plain = MemoryDescriptor(shape, .plain)
        if memory.descriptor == plain {
            data.withUnsafeBufferPointer { memory.floats.update(from: $0.baseAddress!, count: data.count) }
            return
        }
        if seedWriter == nil {
            let staging = try Memory(plain)
            seedWriter = (try bindAtEdge(try PrimitiveCache.shared.reorder(from: plain, to: memory.descriptor),
                                         [(Arg.from, staging), (Arg.to, memory)]), staging)
        }
        let (reorder, staging) = seedWriter!
        data.withUnsafeBufferPointer { staging.floats.update(from: $0.baseAddress!, count: data.count) }
        reorder.execute()
    }

    // MARK: - Diagnostics

    /// The operations traced so far, in order, without the layout conversions the engine
    /// inserted: what a model summary lists. Available before ``plan(loss:keep:)``.
    public var tracedOperations: [TracedOperation] {
        nodes.filter { !($0 is ReorderNode) }.map { node in
            TracedOperation(kind: node.operationName, label: node.label,
                            outputShape: node.outputs.first.map { values[$0].shape } ?? [],
                            parameterCount: node.parameters.filter(\.isTrainable).reduce(0) { $0 + $1.count },
                            stateCount: node.parameters.filter { !$0.isTrainable }.reduce(0) { $0 + $1.count },
                            multiplyAccumulates: node.multiplyAccumulates(in: self))
        }
    }

    /// Bytes of buffers this graph allocated (values, gradients, workspaces, scratch), not
    /// counting what it shares through a ``DerivedWeightStore`` or an ``ActivationArena``.
    public var allocatedBytes: Int { ownedBytes + scratchpad.byteCount + accumulationScratch.byteCount }

    /// How many of the planned convolutions use Winograd's algorithm.
    public var winogradConvolutionCount: Int {
        forwardNodes.count { ($0 as? ConvolutionNode)?.algorithm == dnnl_convolution_winograd }
    }

    /// Fills every input with a fixed pattern of values in -1...1 (for timing a graph).
    public func fillInputsWithPattern() {
        for id in inputIDs {
            guard let memory = values[id].memory, memory.descriptor.elementType == .float32 else { continue }
            let count = memory.descriptor.byteCount / 4
            for i in 0..<count { memory.floats[i] = Float((i &* 7919) % 2001) / 1000 - 1 }
        }
    }

    /// One line per active node: kind, label and output layout, for debugging and docs.
    public var nodeSummary: [String] {
        forwardNodes.map { n in "\(type(of: n)) \(n.label) -> \(n.outputs.map { values[$0].descriptor.description })" }
    }
}

/// Where a backward step writes a gradient, and how it reaches its final place.
struct GradientSink {
    /// The memory the primitive writes.
    let target: Memory
    /// Moves (or adds) `target` into the real gradient when they differ.
    let finish: BoundPrimitive?

    @inline(__always) func complete() { finish?.execute() }
}

/// One recorded operation. Subclasses plan their primitives and run them.
class Node {
    let label: String
    var inputs: [Int]
    var outputs: [Int] = []
    var isActive = true

    init(label: String, inputs: [Int]) {
        self.label = label
        self.inputs = inputs
    }

    /// Parameters this node reads.
    var parameters: [Parameter] { [] }

    /// Whether the op relies on its output memory keeping what it wrote in earlier passes
    /// (zeros written once): nothing else may write over that memory.
    var keepsOutputBetweenPasses: Bool { false }

    /// The op's name in summaries: the class name without "Node".
    var operationName: String {
        let name = String(describing: type(of: self))
        return name.hasSuffix("Node") ? String(name.dropLast(4)) : name
    }

    /// Multiply-accumulates of one forward pass over the whole batch (weighted ops only).
    func multiplyAccumulates(in graph: Graph) -> Int { 0 }

    func planForward(_ graph: Graph) throws {}
    func planBackward(_ graph: Graph) throws {}
    func forward(_ graph: Graph) {}
    func backward(_ graph: Graph) {}
}

/// The logical index of element `flat` of a row-major array of `shape`.
func unravel(_ flat: Int, _ shape: [Int]) -> [Int] {
    var index = [Int](repeating: 0, count: shape.count)
    var rest = flat
    for d in stride(from: shape.count - 1, through: 0, by: -1) {
        index[d] = rest % shape[d]
        rest /= shape[d]
    }
    return index
}

extension Memory {
    func buffer_zero() { pointer!.initializeMemory(as: UInt8.self, repeating: 0, count: descriptor.byteCount) }
}

/// A layout change (inserted where a primitive wants another layout than it is given).
final class ReorderNode: Node {
    private var run: BoundPrimitive!
    private var back: BoundPrimitive?

    init(label: String, input: Int) { super.init(label: label, inputs: [input]) }

    override func planForward(_ graph: Graph) throws {
        let source = try graph.memory(inputs[0]), destination = try graph.memory(outputs[0])
        // Into or out of a quantized graph's integers: `integer = real / scale`, `real = integer * scale`.
        let scale = graph.values[inputs[0]].scale / graph.values[outputs[0]].scale
        run = try graph.bind(try PrimitiveCache.shared.reorder(from: source.descriptor, to: destination.descriptor, scale: scale == 1 ? nil : scale),
                             [(Arg.from, source), (Arg.to, destination)])
    }

    override func planBackward(_ graph: Graph) throws {
        guard graph.needsGradient(inputs[0]) else { return }
        back = try graph.gradientCopy(inputs[0], from: try graph.gradientMemory(outputs[0]))
    }

    override func forward(_ graph: Graph) { run.execute() }
    override func backward(_ graph: Graph) { back?.execute() }
}

/// One operation of a traced graph, as a model summary shows it.
public struct TracedOperation: Sendable, Equatable {
    /// The op: `Convolution`, `BatchNorm`, `ReLU`, `Add`, `Pool`, `InnerProduct`, ...
    public let kind: String
    /// The label the layer gave it, normally the layer's dotted path.
    public let label: String
    /// Logical shape of its (first) output, batch included.
    public let outputShape: [Int]
    /// Trainable scalars it reads.
    public let parameterCount: Int
    /// Non-trainable state it reads (batch-norm running statistics).
    public let stateCount: Int
    /// Multiply-accumulates of its forward pass over the batch (convolutions and linear layers).
    public let multiplyAccumulates: Int
}
