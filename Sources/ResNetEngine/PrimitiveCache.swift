/// Identifies a primitive: its kind, the descriptors it was built from, and its settings.
public struct PrimitiveKey: Hashable, Sendable {
    public var kind: String
    public var descriptors: [MemoryDescriptor]
    public var settings: [Int]
    public var attributes: Attributes

    public init(_ kind: String, _ descriptors: [MemoryDescriptor], _ settings: [Int] = [], attributes: Attributes = .init()) {
        self.kind = kind
        self.descriptors = descriptors
        self.settings = settings
        self.attributes = attributes
    }
}

import Foundation

/// Primitives created once per shape and reused by every graph (oneDNN creation costs
/// milliseconds; execution must not pay it).
public final class PrimitiveCache: @unchecked Sendable {
    public static let shared = PrimitiveCache()
    private var entries: [PrimitiveKey: Primitive] = [:]
    private let lock = NSLock()

    /// Returns the cached primitive for `key`, creating it with `make` the first time.
    /// Used when graphs are planned, never in a training step; safe from any thread.
    public func primitive(_ key: PrimitiveKey, _ make: () throws -> Primitive) rethrows -> Primitive {
        lock.lock()
        defer { lock.unlock() }
        if let p = entries[key] { return p }
        let p = try make()
        entries[key] = p
        return p
    }

    /// A reorder, cached: layout and element type conversion, with `scale` multiplying the values
    /// (quantizing or dequantizing them; oneDNN rounds to nearest and saturates integers).
    public func reorder(from source: MemoryDescriptor, to destination: MemoryDescriptor, accumulate: Bool = false, scale: Float? = nil) throws -> Primitive {
        let attributes = Attributes(sumScale: accumulate ? 1 : nil, outputScales: scale.map { [$0] })
        return try primitive(PrimitiveKey("reorder", [source, destination], attributes: attributes)) {
            try Primitive(reorderFrom: source, to: destination, attributes: attributes)
        }
    }

    /// How many primitives exist.
    public var count: Int { lock.withLock { entries.count } }
}
