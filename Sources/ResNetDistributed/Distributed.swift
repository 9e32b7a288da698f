// ResNetDistributed: data-parallel training over Open MPI (issue 17).
//
// Open MPI is loaded at run time (dlopen of libmpi.so.40) and only when the process was started
// by mpirun, so `resnet` builds, starts and trains without Open MPI installed. Every collective
// is non-blocking and waited for with a deadline, and MPI's error handler returns errors instead
// of aborting, so a rank that dies or hangs ends the job with one line instead of a hang.
import CMPI
import Foundation
import ResNetTensors
import ResNetTraining

/// What went wrong in a data-parallel run, in one line.
public struct DistributedError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Open MPI's `MPI_COMM_WORLD` as a ``DataParallelGroup``.
///
/// Gradients are reduced in buckets of at most ``bucketBytes``, in reverse layer order (the
/// classifier's first, as PyTorch DDP does): every bucket is packed and its `MPI_Iallreduce`
/// started before the next is packed, so packing overlaps the transfers; then all are waited
/// for. (Overlapping with backward itself would need a hook inside the graph's backward pass,
/// which runs as one call; see docs/distributed.md.)
public final class MPICommunicator: DataParallelGroup, BatchNormSynchronizer {
    public let rank: Int
    public let size: Int
    /// Longest wait for one collective before the run ends with an error.
    public var timeout: Double
    /// Largest bucket of one gradient all-reduce, in bytes.
    public var bucketBytes = 4 << 20
    /// Seconds spent in ``reduceGradients(_:scale:averaging:)`` (packing, transfers, unpacking)
    /// and calls of it, for the share of step time the all-reduce takes.
    public private(set) var reductionSeconds = 0.0
    public private(set) var reductions = 0
    /// Floats one gradient reduction sends per rank (the model's trainable values and running statistics).
    public private(set) var reducedFloats = 0

    private let api: API
    private var buckets: [UnsafeMutableBufferPointer<Float>] = []

    /// Whether this process was started by Open MPI's `mpirun` (or another launcher that sets
    /// Open MPI's or PMIx's rank variables).
    public static var isLaunchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// The library opened: `RESNET_LIBMPI` when set, else Open MPI 4's `libmpi.so.40`.
    public static var libraryName: String { ProcessInfo.processInfo.environment["RESNET_LIBMPI"] ?? "libmpi.so.40" }

    /// Loads Open MPI, initializes it, and sets `MPI_ERRORS_RETURN` on the world communicator.
    public init(timeout: Double = 300) throws {
        api = try API(library: Self.libraryName)
        self.timeout = timeout
        var initialized: Int32 = 0
        _ = api.initialized(&initialized)
        if initialized == 0 { try api.check(api.initialize(nil, nil), "MPI_Init") }
        try api.check(api.setErrhandler(api.world, api.errorsReturn), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try api.check(api.commRank(api.world, &r), "MPI_Comm_rank")
        try api.check(api.commSize(api.world, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    deinit { for b in buckets { b.deallocate() } }

    /// Ends MPI in an orderly way (after the last collective).
    public func finalize() { _ = api.finalize() }

    /// Ends every rank of the job at once (after an error on this one).
    public func abort(code: Int32 = 1) -> Never {
        _ = api.abort(api.world, code)
        exit(code)
    }

    // MARK: - DataParallelGroup

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        guard values.count > 0 else { return }
        var request: CMPI_Request?
        try api.check(api.iallreduce(cmpi_in_place(), values.baseAddress, Int32(values.count), api.double, api.sum, api.world, &request),
                      "MPI_Iallreduce")
        try wait(&request, "an all-reduce of \(values.count) sums: step losses, batch-norm statistics or evaluation counts")
    }

    public func broadcast(_ bytes: [UInt8]) throws -> [UInt8] {
        var count = [Double(bytes.count)]
        try bcast(&count, what: "a broadcast's length")
        guard let length = Int(exactly: count[0]), length >= 0, length < Int(Int32.max) else {
            throw DistributedError("rank \(rank): received a broadcast of \(count[0]) bytes")
        }
        var buffer = rank == 0 ? bytes : [UInt8](repeating: 0, count: length)
        try bcast(&buffer, what: "a broadcast of \(length) bytes")
        return buffer
    }

    public func reduceGradients(_ parameters: [Parameter], scale: Float, averaging statistics: [Parameter]) throws {
        let start = Date()
        // Reverse layer order: the last layers' gradients are the first backward finishes.
        let items: [(UnsafeMutablePointer<Float>, Int, Float)] = parameters.reversed().map { ($0.gradient.floats, $0.count, scale) }
            + statistics.map { ($0.value.floats, $0.count, 1 / Float(size)) }
        let capacity = max(1, bucketBytes / 4)
        // Items packed into buckets: consecutive items until a bucket is full (an item larger
        // than a bucket is split).
        var plan: [[(item: Int, from: Int, count: Int)]] = [[]]
        var used = 0
        for (i, item) in items.enumerated() {
            var from = 0
            while from < item.1 {
                if used == capacity { plan.append([]); used = 0 }
                let n = min(item.1 - from, capacity - used)
                plan[plan.count - 1].append((i, from, n))
                from += n
                used += n
            }
        }
        while buckets.count < plan.count { buckets.append(.allocate(capacity: capacity)) }
        var requests = [CMPI_Request?](repeating: nil, count: plan.count)
        var total = 0
        for (b, pieces) in plan.enumerated() {
            var offset = 0
            for piece in pieces {
                (buckets[b].baseAddress! + offset).update(from: items[piece.item].0 + piece.from, count: piece.count)
                offset += piece.count
            }
            total += offset
            try api.check(api.iallreduce(cmpi_in_place(), buckets[b].baseAddress, Int32(offset), api.float, api.sum, api.world, &requests[b]),
                          "MPI_Iallreduce")
        }
        for (b, pieces) in plan.enumerated() {
            try wait(&requests[b], "the gradient all-reduce (bucket \(b + 1) of \(plan.count))")
            var offset = 0
            for piece in pieces {
                let target = items[piece.item].0 + piece.from, s = items[piece.item].2
                let source = buckets[b].baseAddress! + offset
                for i in 0..<piece.count { target[i] = source[i] * s }
                offset += piece.count
            }
        }
        reducedFloats = total
        reductions += 1
        reductionSeconds -= start.timeIntervalSinceNow
    }

    // MARK: - BatchNormSynchronizer

    /// Synchronized batch norm's sums, from inside a graph's forward or backward pass (which
    /// cannot throw): a failure ends this process with one line, and mpirun the others.
    public func sumStatistics(_ values: UnsafeMutableBufferPointer<Double>) {
        do { try allReduceSum(values) } catch {
            FileHandle.standardError.write(Data("Error: \(error) (in synchronized batch norm)\n".utf8))
            exit(1)
        }
    }

    // MARK: - Waiting with a deadline

    private func bcast<T>(_ buffer: inout [T], what: String) throws {
        let bytes = buffer.count * MemoryLayout<T>.stride
        guard bytes > 0 else { return }
        var request: CMPI_Request?
        try buffer.withUnsafeMutableBytes { raw in
            try api.check(api.ibcast(raw.baseAddress, Int32(bytes), api.byte, 0, api.world, &request), "MPI_Ibcast")
            try wait(&request, what)
        }
    }

    /// Polls `request` until it completes; after ``timeout`` seconds throws, naming `what`.
    private func wait(_ request: inout CMPI_Request?, _ what: String) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        var done: Int32 = 0, polls = 0
        while true {
            try api.check(api.test(&request, &done, nil), "MPI_Test (\(what))")
            if done != 0 { return }
            polls += 1
            if polls % 1024 == 0 {
                guard Date() < deadline else {
                    throw DistributedError("rank \(rank): waited \(Int(timeout)) s for the other ranks at a collective (\(what)): a rank died or hangs (--mpi-timeout sets the wait); continue from the last checkpoint with --resume")
                }
                if polls > 65_536 { usleep(100) } else { sched_yield() }
            }
        }
    }
}

/// Open MPI's functions and predefined handles, resolved with dlsym.
private struct API {
    let initialize: CMPI_Init_fn
    let initialized: CMPI_Initialized_fn
    let finalize: CMPI_Finalize_fn
    let abort: CMPI_Abort_fn
    let commRank: CMPI_Comm_rank_fn
    let commSize: CMPI_Comm_size_fn
    let setErrhandler: CMPI_Comm_set_errhandler_fn
    let iallreduce: CMPI_Iallreduce_fn
    let ibcast: CMPI_Ibcast_fn
    let test: CMPI_Test_fn
    let errorString: CMPI_Error_string_fn
    let world: CMPI_Comm
    let float, double, byte: CMPI_Datatype
    let sum: CMPI_Op
    let errorsReturn: CMPI_Errhandler

    init(library: String) throws {
        // RTLD_GLOBAL: Open MPI's own plugins, which it dlopens, resolve libmpi's symbols.
        guard let handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            throw DistributedError("started by mpirun, but Open MPI's library \(library) cannot be loaded (\(why)): install Open MPI 4 (Debian: apt-get install openmpi-bin libopenmpi-dev), or run without mpirun")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let s = dlsym(handle, name) else { throw DistributedError("\(library) has no \(name): Open MPI 4 (libmpi.so.40) is needed") }
            return s
        }
        func function<F>(_ name: String, _ type: F.Type) throws -> F { unsafeBitCast(try symbol(name), to: type) }
        initialize = try function("MPI_Init", CMPI_Init_fn.self)
        initialized = try function("MPI_Initialized", CMPI_Initialized_fn.self)
        finalize = try function("MPI_Finalize", CMPI_Finalize_fn.self)
        abort = try function("MPI_Abort", CMPI_Abort_fn.self)
        commRank = try function("MPI_Comm_rank", CMPI_Comm_rank_fn.self)
        commSize = try function("MPI_Comm_size", CMPI_Comm_size_fn.self)
        setErrhandler = try function("MPI_Comm_set_errhandler", CMPI_Comm_set_errhandler_fn.self)
        iallreduce = try function("MPI_Iallreduce", CMPI_Iallreduce_fn.self)
        ibcast = try function("MPI_Ibcast", CMPI_Ibcast_fn.self)
        test = try function("MPI_Test", CMPI_Test_fn.self)
        errorString = try function("MPI_Error_string", CMPI_Error_string_fn.self)
        // The handles are the addresses of Open MPI's predefined objects (mpi.h's
        // OMPI_PREDEFINED_GLOBAL).
        world = CMPI_Comm(try symbol("ompi_mpi_comm_world"))
        float = CMPI_Datatype(try symbol("ompi_mpi_float"))
        double = CMPI_Datatype(try symbol("ompi_mpi_double"))
        byte = CMPI_Datatype(try symbol("ompi_mpi_byte"))
        sum = CMPI_Op(try symbol("ompi_mpi_op_sum"))
        errorsReturn = CMPI_Errhandler(try symbol("ompi_mpi_errors_return"))
    }

    /// Throws MPI's own text for a failed call.
    func check(_ code: Int32, _ call: String) throws {
        guard code != CMPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(CMPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        _ = errorString(code, &text, &length)
        let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw DistributedError("\(call) failed: \(message) (a rank died or the network failed)")
    }
}
