import Foundation
import ResNetEngine

/// A tensor that lives across training steps: a weight, a bias, or (not trainable)
/// a batch-norm running statistic.
///
/// Stored in plain row-major layout (OIHW for convolution weights), which is what
/// checkpoints and optimizers see. Graphs reorder it to whatever layout a primitive
/// wants. A reference type: an optimizer updates it in place.
public final class Parameter: @unchecked Sendable {
    /// Logical shape, e.g. `[out, in, kh, kw]`.
    public let shape: [Int]
    /// Whether optimizers update it: false for running statistics and for frozen weights.
    public var isTrainable: Bool { learnable && !isFrozen }
    /// A weight that could learn, running statistics aside.
    private let learnable: Bool
    /// Kept as it is while training (transfer learning's frozen layers, ``Module/freeze()``):
    /// no optimizer updates it and graphs compute no gradient for it.
    public var isFrozen = false
    /// A factor on the optimizer's learning rate for this parameter alone (PyTorch's parameter
    /// groups, reduced to what fine-tuning needs: `--backbone-lr-scale` gives the pretrained
    /// layers a smaller step than the new classifier). Weight decay scales with it, as in a
    /// PyTorch group whose `lr` is scaled. Finite and `>= 0`; 1 unless set.
    public var learningRateScale: Float = 1 {
        didSet { precondition(learningRateScale.isFinite && learningRateScale >= 0, "learningRateScale must be finite and >= 0") }
    }
    /// The dotted name a module tree gives it (`stage1.block0.conv1.weight`).
    public var name: String = ""

    /// The values, plain layout.
    public let value: Memory
    /// The gradient that the last backward pass wrote, plain layout.
    public let gradient: Memory

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    public init(shape: [Int], isTrainable: Bool = true, initialValue: Float = 0) {
        self.shape = shape
        learnable = isTrainable
        let descriptor = MemoryDescriptor(shape, .plain)
        // Allocation failures here are programmer errors (absurd shapes), not user input.
        value = try! Memory(descriptor)
        gradient = try! Memory(descriptor)
        if initialValue != 0 { value.floats.update(repeating: initialValue, count: shape.reduce(1, *)) }
    }

    /// A copy of the values.
    public var values: [Float] {
        get { Array(UnsafeBufferPointer(start: value.floats, count: count)) }
        set {
            precondition(newValue.count == count, "\(name): expected \(count) values, got \(newValue.count)")
            newValue.withUnsafeBufferPointer { value.floats.update(from: $0.baseAddress!, count: count) }
        }
    }

    /// Sets the values, throwing on a wrong element count (for loading checkpoints).
    public func setValues(_ newValues: [Float]) throws {
        guard newValues.count == count else {
            throw TensorError.wrongElementCount(what: name.isEmpty ? "parameter" : name, expected: count, actual: newValues.count)
        }
        values = newValues
    }

    /// A copy of the gradient.
    public var gradients: [Float] { Array(UnsafeBufferPointer(start: gradient.floats, count: count)) }

    /// Fan-in and fan-out as initialisers use them (`in * kh * kw`, `out * kh * kw`).
    public var fans: (fanIn: Int, fanOut: Int) {
        let receptive = shape.count > 2 ? shape[2...].reduce(1, *) : 1
        let fanIn = shape.count > 1 ? shape[1] * receptive : shape[0]
        return (fanIn, shape[0] * receptive)
    }
}

/// The values of some parameters as last seen, to tell whether any changed since.
///
/// Inference graphs derive buffers from parameters (weights in a primitive's layout,
/// batch norms folded into them). Comparing bytes is exact whatever wrote the parameters
/// (an optimizer, a checkpoint, a test), and far cheaper than redoing the derivation: about
/// 1 MB for ResNet-20, against Winograd weight transforms that cost ~8 ms per batch.
final class ParameterSnapshot {
    private let parameters: [Parameter]
    private let copy: UnsafeMutableRawPointer
    /// Bytes of the copy.
    let byteCount: Int
    private var isValid = false

    init(_ parameters: [Parameter]) {
        self.parameters = parameters
        byteCount = parameters.reduce(0) { $0 + $1.count * 4 }
        copy = .allocate(byteCount: max(byteCount, 1), alignment: 64)
    }

    deinit { copy.deallocate() }

    /// Whether any value differs from the last call (true the first time); remembers the values.
    func changed() -> Bool {
        var offset = 0, changed = !isValid
        for p in parameters {
            let bytes = p.count * 4
            if changed || memcmp(copy + offset, p.value.pointer!, bytes) != 0 {
                changed = true
                (copy + offset).copyMemory(from: p.value.pointer!, byteCount: bytes)
            }
            offset += bytes
        }
        isValid = true
        return changed
    }
}
