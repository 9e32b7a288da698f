import CDNNL
import Foundation

/// Zero-initialised, 64-byte aligned memory that a tensor's data lives in.
///
/// A reference type: a buffer is planned once and reused by every training step.
public final class Buffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int

    /// Whether the pages come from `mmap` (and go back with `munmap`) rather than `malloc`.
    private let isMapped: Bool

    /// Buffers of at least this size are mapped pages of their own. Through `malloc`, glibc raises
    /// its mmap threshold each time such a block is freed and then serves later ones from its heap,
    /// which it keeps: a server that planned and dropped candidate graphs (`InferencePlanner`)
    /// stayed 107 MiB larger (`resnet serve` resnet18 `--max-batch 32`: 928 against 769 MiB with
    /// `MALLOC_MMAP_THRESHOLD_=131072`, 2026-12-01).
    public static let mappedByteCount = 1 << 20

    public init(byteCount: Int) {
        self.byteCount = max(byteCount, 64)
        if self.byteCount >= Self.mappedByteCount,
           let pages = mmap(nil, self.byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), pages != MAP_FAILED {
            // Anonymous pages read as zeros (and take no memory until written).
            pointer = pages
            isMapped = true
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: self.byteCount, alignment: 64)
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: self.byteCount)
            isMapped = false
        }
    }

    deinit {
        if isMapped { munmap(pointer, byteCount) } else { pointer.deallocate() }
    }

    /// The buffer seen as `Float` elements.
    public var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
    /// How many `Float` fit.
    public var floatCount: Int { byteCount / 4 }

    /// Sets every byte to zero.
    public func zero() { memset(pointer, 0, byteCount) }
}

/// A oneDNN memory object: a descriptor bound to a ``Buffer``.
public final class Memory: @unchecked Sendable {
    public let handle: dnnl_memory_t
    public let descriptor: MemoryDescriptor
    /// Where the data is; `nil` until an ``Arena`` binds it.
    public private(set) var pointer: UnsafeMutableRawPointer?
    /// Keeps the storage alive as long as oneDNN may touch it.
    private var storage: Buffer?

    public init(_ descriptor: MemoryDescriptor, buffer: Buffer) throws {
        precondition(descriptor.byteCount <= buffer.byteCount, "buffer too small for \(descriptor)")
        var md = descriptor.raw
        var handle: dnnl_memory_t?
        try check(dnnl_memory_create(&handle, &md, ComputeEngine.shared.engine, buffer.pointer), "memory for \(descriptor)")
        self.handle = handle!
        self.descriptor = descriptor
        self.pointer = buffer.pointer
        self.storage = buffer
    }

    /// A memory with a buffer of its own.
    public convenience init(_ descriptor: MemoryDescriptor) throws {
        try self.init(descriptor, buffer: Buffer(byteCount: descriptor.byteCount))
    }

    /// A memory whose storage is bound later (see ``Arena`` and ``bind(to:offset:)``).
    public init(unbound descriptor: MemoryDescriptor) throws {
        var md = descriptor.raw
        var handle: dnnl_memory_t?
        try check(dnnl_memory_create(&handle, &md, ComputeEngine.shared.engine, cdnnl_memory_none()), "memory for \(descriptor)")
        self.handle = handle!
        self.descriptor = descriptor
    }

    /// Points this memory at `buffer`, `offset` bytes in (64-byte aligned).
    public func bind(to buffer: Buffer, offset: Int = 0) {
        precondition(offset % 64 == 0 && offset + descriptor.byteCount <= buffer.byteCount)
        dnnl_memory_set_data_handle(handle, buffer.pointer + offset)
        pointer = buffer.pointer + offset
        storage = buffer
    }

    /// Points this memory at the bytes `other` uses (another element type over the same bytes).
    public func bind(sameAs other: Memory) {
        guard let pointer = other.pointer else { preconditionFailure("an unbound memory has no storage to share") }
        dnnl_memory_set_data_handle(handle, pointer)
        self.pointer = pointer
        storage = other.storage
    }

    deinit { dnnl_memory_destroy(handle) }

    /// Another view of the same storage (e.g. a flattened `[N, CHW]` view of plain `[N, C, H, W]`).
    public func view(as other: MemoryDescriptor) throws -> Memory {
        guard let storage, let pointer else { preconditionFailure("an unbound memory has no storage to view") }
        let view = try Memory(other, buffer: storage)
        let offset = pointer - storage.pointer
        if offset != 0 { view.bind(to: storage, offset: offset) }
        return view
    }

    /// The data as `Float` elements.
    public var floats: UnsafeMutablePointer<Float> { pointer!.assumingMemoryBound(to: Float.self) }
}

/// One buffer shared by memories that are never live at the same time (the scratchpad of
/// primitives that run one after another, the scratch of gradient accumulation).
/// Memories are handed out first; ``allocate()`` then sizes the buffer to the largest.
public final class Arena: @unchecked Sendable {
    private var memories: [Memory] = []
    public private(set) var buffer: Buffer?

    public init() {}

    /// A memory that will live in this arena.
    public func memory(_ descriptor: MemoryDescriptor) throws -> Memory {
        let m = try Memory(unbound: descriptor)
        memories.append(m)
        if let buffer { m.bind(to: buffer) }
        return m
    }

    /// Allocates the shared buffer and binds every memory handed out so far.
    public func allocate() {
        let bytes = memories.map(\.descriptor.byteCount).max() ?? 0
        let buffer = Buffer(byteCount: bytes)
        self.buffer = buffer
        for m in memories { m.bind(to: buffer) }
    }

    /// Bytes the arena holds.
    public var byteCount: Int { buffer?.byteCount ?? 0 }

    /// The memories handed out so far, for an owner that binds them in a buffer it shares
    /// with others instead of calling ``allocate()``.
    public var memoriesHandedOut: [Memory] { memories }
}
