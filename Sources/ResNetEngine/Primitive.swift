import CDNNL

/// oneDNN execution argument indices (the C macros, named).
public enum Arg {
    public static let src: Int32 = 1, src1: Int32 = 2, dst: Int32 = 17
    public static let weights: Int32 = 33, bias: Int32 = 41
    public static let mean: Int32 = 49, variance: Int32 = 50, scale: Int32 = 51, shift: Int32 = 52
    public static let workspace: Int32 = 64, scratchpad: Int32 = 80
    public static let diffSrc: Int32 = 129, diffDst: Int32 = 145
    public static let diffWeights: Int32 = 161, diffBias: Int32 = 169
    public static let diffScale: Int32 = 255, diffShift: Int32 = 256
    public static let from: Int32 = 1, to: Int32 = 17
}

/// Primitive attributes: user-managed scratchpad always, plus optional post-ops.
public struct Attributes: Hashable, Sendable {
    /// `dst = op(src) + sumScale * dst` (used to accumulate gradients in reorders).
    public var sumScale: Float?
    /// A ReLU applied to the result.
    public var relu = false
    /// Quantized graphs: the element type the `sum` post-op reads the destination as, when it
    /// differs from the destination's (an int8 shortcut under a uint8 block output).
    public var sumType: ElementType?
    /// Quantized graphs: `dst = scales * result` before the post-ops, one scale for the whole
    /// tensor or one per output channel (a convolution's, a reorder's). For int8 convolutions
    /// oneDNN 2.6 adds the bias before scaling: `dst = scales * (accumulator + bias)`.
    public var outputScales: [Float]?
    /// Quantized graphs: a scale for each input of a binary primitive (`src0`, `src1`).
    public var inputScales: [Float]?

    public init(sumScale: Float? = nil, relu: Bool = false, sumType: ElementType? = nil,
                outputScales: [Float]? = nil, inputScales: [Float]? = nil) {
        self.sumScale = sumScale
        self.relu = relu
        self.sumType = sumType
        self.outputScales = outputScales
        self.inputScales = inputScales
    }

    /// Creates the oneDNN attribute object; the caller destroys it.
    func make() throws -> dnnl_primitive_attr_t {
        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "attribute")
        try check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode")
        if let outputScales {
            // One scale (mask 0), or one per index of dimension 1: output channels (mask 2).
            try check(dnnl_primitive_attr_set_output_scales(attr, Int64(outputScales.count), outputScales.count == 1 ? 0 : 2, outputScales),
                      "output scales")
        }
        if let inputScales {
            for (i, scale) in inputScales.enumerated() {
                try check(dnnl_primitive_attr_set_scales(attr, i == 0 ? Arg.src : Arg.src1, 1, 0, [scale]), "input scales")
            }
        }
        if sumScale != nil || relu {
            var ops: dnnl_post_ops_t?
            try check(dnnl_post_ops_create(&ops), "post-ops")
            defer { dnnl_post_ops_destroy(ops) }
            if let s = sumScale {
                if let sumType {
                    try check(dnnl_post_ops_append_sum_v2(ops, s, sumType.dnnl), "sum post-op")
                } else {
                    try check(dnnl_post_ops_append_sum(ops, s), "sum post-op")
                }
            }
            if relu { try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "relu post-op") }
            try check(dnnl_primitive_attr_set_post_ops(attr, ops), "set post-ops")
        }
        return attr!
    }
}

/// A primitive descriptor and the primitive created from it.
///
/// Created once per shape through ``PrimitiveCache`` and shared by every graph
/// that needs the same operation on the same shapes.
public final class Primitive: @unchecked Sendable {
    public let descriptor: dnnl_primitive_desc_t
    public let handle: dnnl_primitive_t
    public let name: String

    /// Creates a primitive from an operation descriptor (`dnnl_*_desc_t`).
    public init(name: String, operation: UnsafeRawPointer, attributes: Attributes = .init(), hint: Primitive? = nil) throws {
        let attr = try attributes.make()
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&pd, operation, attr, ComputeEngine.shared.engine, hint?.descriptor), name)
        var prim: dnnl_primitive_t?
        let status = dnnl_primitive_create(&prim, pd)
        if status != dnnl_success { dnnl_primitive_desc_destroy(pd) }
        try check(status, "\(name) (create)")
        self.descriptor = pd!
        self.handle = prim!
        self.name = name
    }

    /// A reorder (layout conversion, optionally accumulating into the destination).
    public init(reorderFrom source: MemoryDescriptor, to destination: MemoryDescriptor, attributes: Attributes = .init()) throws {
        let attr = try attributes.make()
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        var s = source.raw, d = destination.raw
        let engine = ComputeEngine.shared.engine
        try check(dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, attr), "reorder \(source) -> \(destination)")
        var prim: dnnl_primitive_t?
        try check(dnnl_primitive_create(&prim, pd), "reorder (create)")
        self.descriptor = pd!
        self.handle = prim!
        self.name = "reorder"
    }

    deinit {
        dnnl_primitive_destroy(handle)
        dnnl_primitive_desc_destroy(descriptor)
    }

    /// The memory descriptor of an execution argument (for example ``Arg/dst``), if it has one.
    public func descriptor(for argument: Int32) -> MemoryDescriptor? {
        MemoryDescriptor(dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, argument))
    }

    /// Bytes of user scratchpad this primitive needs.
    public var scratchpadBytes: Int {
        descriptor(for: Arg.scratchpad)?.byteCount ?? 0
    }

    /// The implementation oneDNN chose (e.g. "jit:avx512_core"), for diagnostics.
    public var implementation: String {
        var info: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info
        else { return "?" }
        return String(cString: info)
    }
}

/// A primitive with its arguments bound once, so that executing it allocates nothing on our
/// side (oneDNN 2.6's `dnnl_primitive_execute` itself allocates its argument map: 4 allocations
/// for a ReLU, 8 for a convolution, measured by `AllocationTests`).
public final class BoundPrimitive: @unchecked Sendable {
    public let primitive: Primitive
    private let arguments: UnsafeMutablePointer<dnnl_exec_arg_t>
    private let count: Int32
    /// The bound memories (kept alive here).
    public let bindings: [(Int32, Memory)]
    /// How many times it has run (tests relate a step's allocations to its executions).
    public private(set) var executions = 0

    public init(_ primitive: Primitive, _ bindings: [(Int32, Memory)]) {
        self.primitive = primitive
        count = Int32(bindings.count)
        arguments = .allocate(capacity: max(bindings.count, 1))
        for (i, (arg, memory)) in bindings.enumerated() {
            arguments[i] = dnnl_exec_arg_t(arg: Int32(arg), memory: memory.handle)
        }
        self.bindings = bindings
    }

    deinit { arguments.deallocate() }

    /// The memory bound to `argument`, if any.
    public func memory(for argument: Int32) -> Memory? {
        bindings.first { $0.0 == argument }?.1
    }

    /// Runs the primitive on the shared stream.
    @inline(__always)
    public func execute() {
        executions &+= 1
        let status = dnnl_primitive_execute(primitive.handle, ComputeEngine.shared.stream, count, arguments)
        precondition(status == dnnl_success, "oneDNN failed to execute \(primitive.name): status \(status.rawValue)")
    }
}
