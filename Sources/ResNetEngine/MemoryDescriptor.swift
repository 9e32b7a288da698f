import CDNNL
import Foundation

/// Element type of a tensor: `float32`, `bfloat16` for mixed-precision graphs, or the 8-bit
/// integers of quantized inference graphs (`uint8` after a ReLU, `int8` otherwise).
public enum ElementType: Sendable, Hashable {
    case float32
    case bfloat16
    case uint8
    case int8

    var dnnl: dnnl_data_type_t {
        switch self {
        case .float32: dnnl_f32
        case .bfloat16: dnnl_bf16
        case .uint8: dnnl_u8
        case .int8: dnnl_s8
        }
    }
    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: 4
        case .bfloat16: 2
        case .uint8, .int8: 1
        }
    }
    /// Whether values are integers with a scale (a quantized graph's activations).
    public var isQuantized: Bool { self == .uint8 || self == .int8 }
}

/// Physical layouts this project names. oneDNN may choose others (`.any` lets it).
public enum Layout: Sendable, Hashable, CaseIterable {
    /// Plain row-major, outermost dimension first (nchw, nc, x, oihw, oi).
    case plain
    /// Channels last (nhwc), 4-D only.
    case channelsLast
    /// Channel blocks of 16 (nChw16c), the layout oneDNN picks for AVX-512 convolutions.
    case blocked16
    /// Channel blocks of 8 (nChw8c).
    case blocked8

    func tag(rank: Int) -> dnnl_format_tag_t? {
        switch (self, rank) {
        case (.plain, 1): return dnnl_a
        case (.plain, 2): return dnnl_ab
        case (.plain, 3): return dnnl_abc
        case (.plain, 4): return dnnl_abcd
        case (.channelsLast, 4): return dnnl_acdb
        case (.blocked16, 4): return dnnl_aBcd16b
        case (.blocked8, 4): return dnnl_aBcd8b
        default: return nil
        }
    }
}

/// A oneDNN memory descriptor: logical dimensions, element type and physical layout.
///
/// A value type: oneDNN 2.x descriptors are plain C structs. Equality and hashing
/// compare the bytes, which is what the primitive cache needs.
public struct MemoryDescriptor: Hashable, @unchecked Sendable, CustomStringConvertible {
    public var raw: dnnl_memory_desc_t

    public init(raw: dnnl_memory_desc_t) { self.raw = raw }

    /// A descriptor with a named layout.
    public init(_ dims: [Int], _ layout: Layout, _ type: ElementType = .float32) {
        guard let tag = layout.tag(rank: dims.count) else {
            preconditionFailure("layout \(layout) does not exist for rank \(dims.count)")
        }
        self.init(dims, tag: tag, type)
    }

    /// A descriptor from a raw oneDNN format tag.
    public init(_ dims: [Int], tag: dnnl_format_tag_t, _ type: ElementType = .float32) {
        var md = dnnl_memory_desc_t()
        let d = dims.map(Int64.init)
        let status = dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, type.dnnl, tag)
        precondition(status == dnnl_success, "bad memory descriptor \(dims) tag \(tag)")
        raw = md
    }

    /// A descriptor that lets a primitive choose the layout (`format_tag_any`).
    public static func any(_ dims: [Int], _ type: ElementType = .float32) -> MemoryDescriptor {
        MemoryDescriptor(dims, tag: dnnl_format_tag_any, type)
    }

    /// An empty descriptor (oneDNN's "no tensor here", e.g. no bias).
    public static let none = MemoryDescriptor(raw: dnnl_memory_desc_t())

    public var rank: Int { Int(raw.ndims) }
    public var isNone: Bool { raw.ndims == 0 }

    /// Logical dimensions.
    public var dims: [Int] {
        withUnsafeBytes(of: raw.dims) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map(Int.init) }
    }

    /// Bytes needed to hold a tensor with this descriptor (including block padding).
    public var byteCount: Int {
        var md = raw
        return dnnl_memory_desc_get_size(&md)
    }

    /// The named layout this descriptor has, if any.
    public var layout: Layout? {
        Layout.allCases.first { l in
            l.tag(rank: rank).map { MemoryDescriptor(dims, tag: $0, elementType) == self } ?? false
        }
    }

    public var elementType: ElementType {
        switch raw.data_type {
        case dnnl_bf16: .bfloat16
        case dnnl_u8: .uint8
        case dnnl_s8: .int8
        default: .float32
        }
    }

    /// The same dimensions and layout with another element type (strides count elements,
    /// so the layout carries over unchanged).
    public func with(_ type: ElementType) -> MemoryDescriptor {
        var copy = raw
        copy.data_type = type.dnnl
        return MemoryDescriptor(raw: copy)
    }

    /// The same layout family with other dimensions (for example more channels).
    public func withDims(_ newDims: [Int]) -> MemoryDescriptor {
        MemoryDescriptor(newDims, layout ?? .plain, elementType)
    }

    /// Semantic equality as oneDNN defines it.
    public func isEquivalent(to other: MemoryDescriptor) -> Bool {
        var a = raw, b = other.raw
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    public static func == (lhs: MemoryDescriptor, rhs: MemoryDescriptor) -> Bool {
        var a = lhs.raw, b = rhs.raw
        return memcmp(&a, &b, MemoryLayout<dnnl_memory_desc_t>.size) == 0
            || dnnl_memory_desc_equal(&a, &b) != 0
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(dims)
        hasher.combine(raw.data_type.rawValue)
        hasher.combine(raw.format_kind.rawValue)
    }

    /// Offset (in elements) of logical index `index` in a blocked layout.
    ///
    /// Works for every `dnnl_blocked` descriptor (plain, channels-last, nChw16c, ...):
    /// the outer strides come from the descriptor and the inner blocks are row-major.
    public func offset(of index: [Int]) -> Int {
        let blocking = raw.format_desc.blocking
        let strides = withUnsafeBytes(of: blocking.strides) { Array($0.bindMemory(to: Int64.self)) }
        let innerBlocks = withUnsafeBytes(of: blocking.inner_blks) { Array($0.bindMemory(to: Int64.self)) }
        let innerIndices = withUnsafeBytes(of: blocking.inner_idxs) { Array($0.bindMemory(to: Int64.self)) }
        let innerCount = Int(blocking.inner_nblks)
        var blockOfDim = [Int](repeating: 1, count: rank)
        for b in 0..<innerCount { blockOfDim[Int(innerIndices[b])] *= Int(innerBlocks[b]) }
        var outer = 0
        for d in 0..<rank { outer += (index[d] / blockOfDim[d]) * Int(strides[d]) }
        var inner = 0
        var remaining = index.enumerated().map { $0.element % blockOfDim[$0.offset] }
        var step = 1
        for b in stride(from: innerCount - 1, through: 0, by: -1) {
            let d = Int(innerIndices[b]), size = Int(innerBlocks[b])
            inner += (remaining[d] % size) * step
            remaining[d] /= size
            step *= size
        }
        return Int(raw.offset0) + outer + inner
    }

    public var description: String {
        let name = layout.map { "\($0)" } ?? (raw.format_kind == dnnl_format_kind_any ? "any" : "engine-specific")
        let type: String
        switch elementType {
        case .float32: type = ""
        case .bfloat16: type = " bf16"
        case .uint8: type = " u8"
        case .int8: type = " s8"
        }
        return "\(dims) \(name)\(type)"
    }
}

extension MemoryDescriptor {
    /// A descriptor returned by a primitive descriptor query, copied out.
    init?(_ pointer: UnsafePointer<dnnl_memory_desc_t>?) {
        guard let pointer, pointer.pointee.ndims > 0 else { return nil }
        self.init(raw: pointer.pointee)
    }
}
