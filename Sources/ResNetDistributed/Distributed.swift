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
/// classifier's first, as PyTorch DDP does), during backward: a bucket's `MPI_Iallreduce`
/// starts as soon as the graph reports all its gradients final (and the buckets before it have
/// started, so every rank starts them in the same order), in-flight ones are polled as backward
/// reports more, and all are waited for when backward ends. The buckets and the order of
/// summation are those of a reduction after backward, so the result is the same bit for bit.
public final class MPICommunicator: DataParallelGroup, BatchNormSynchronizer {
    public let rank: Int
    public let size: Int
    /// Longest wait for one collective before the run ends with an error.
    public var timeout: Double
    /// Largest bucket of one gradient all-reduce, in bytes.
    public var bucketBytes = 4 << 20
    /// Seconds a gradient reduction adds to the step (packing and starting buckets inside
    /// backward, waiting for the last ones after it, unpacking; not backward's own compute), and
    /// calls of it, for the share of step time the all-reduce takes.
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

    /// Seconds spent in ``allReduceSum(_:)`` (the step's loss sums, which make the faster rank
    /// wait for the slower one before backward, batch-norm sums, evaluation counts).
    public private(set) var sumSeconds = 0.0

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        guard values.count > 0 else { return }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { sumSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
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

    public func reduceGradients(_ parameters: [Parameter], scale: Float, averaging statistics: [Parameter],
                                during backward: (_ gradientIsFinal: (Int) -> Void) -> Void) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        let plan = bucketPlan(parameters, statistics)
        for b in plan.buckets.indices { pending[b] = plan.buckets[b].count; requests[b] = nil; finished[b] = false }
        for i in plan.items.indices { packed[i] = false }
        started = 0
        failure = nil
        // The running statistics are final since forward.
        for i in parameters.count..<plan.items.count { pack(i, plan) }
        var inBackward: UInt64 = 0, inCallbacks: UInt64 = 0
        let backwardStart = DispatchTime.now().uptimeNanoseconds
        backward { index in
            let t = DispatchTime.now().uptimeNanoseconds
            // Item order is reverse layer order.
            if parameters.indices.contains(index) { pack(parameters.count - 1 - index, plan) }
            inCallbacks += DispatchTime.now().uptimeNanoseconds - t
        }
        inBackward = DispatchTime.now().uptimeNanoseconds - backwardStart
        for i in plan.items.indices where !packed[i] { pack(i, plan) }
        if let failure { throw failure }
        for b in plan.buckets.indices {
            if !finished[b] { try wait(&requests[b], "the gradient all-reduce (bucket \(b + 1) of \(plan.buckets.count))") }
            var offset = 0
            for piece in plan.buckets[b] {
                let item = plan.items[piece.item]
                // Gradients take the caller's scale, running statistics their mean.
                let target = item.floats + piece.from, s = piece.item < parameters.count ? scale : 1 / Float(size)
                let source = buckets[b].baseAddress! + offset
                for i in 0..<piece.count { target[i] = source[i] * s }
                offset += piece.count
            }
        }
        reducedFloats = plan.floats
        reductions += 1
        // What the step spends on the reduction besides computing gradients: packing and starting
        // buckets inside backward, then the wait for the last ones and the unpacking.
        let total = DispatchTime.now().uptimeNanoseconds - start
        reductionSeconds += Double(total - inBackward + inCallbacks) / 1e9
    }

    /// One gradient reduction's layout: the items (gradients in reverse layer order, then the
    /// running statistics) and the buckets of at most ``bucketBytes`` they are packed into.
    private struct BucketPlan {
        var parameters: [Parameter] = []
        var statistics: [Parameter] = []
        var bucketBytes = 0
        var items: [(floats: UnsafeMutablePointer<Float>, count: Int, pieces: [(bucket: Int, from: Int, count: Int, offset: Int)])] = []
        var buckets: [[(item: Int, from: Int, count: Int)]] = []
        var floats = 0
    }
    private var plan = BucketPlan()
    private var pending: [Int] = [], requests: [CMPI_Request?] = [], finished: [Bool] = [], packed: [Bool] = []
    /// Buckets whose all-reduce has started (always a prefix: every rank starts them in order).
    private var started = 0
    /// The first error met inside backward, thrown after it.
    private var failure: (any Error)?

    /// The plan for these parameters and statistics: made once, reused while they stay the same
    /// objects (every step of a run), so that a step allocates nothing here.
    private func bucketPlan(_ parameters: [Parameter], _ statistics: [Parameter]) -> BucketPlan {
        if plan.bucketBytes == bucketBytes, plan.parameters.count == parameters.count, plan.statistics.count == statistics.count,
           zip(plan.parameters, parameters).allSatisfy({ $0 === $1 }), zip(plan.statistics, statistics).allSatisfy({ $0 === $1 }) {
            return plan
        }
        var made = BucketPlan(parameters: parameters, statistics: statistics, bucketBytes: bucketBytes)
        made.items = parameters.reversed().map { ($0.gradient.floats, $0.count, []) } + statistics.map { ($0.value.floats, $0.count, []) }
        // Consecutive items fill a bucket until it is full (an item larger than a bucket is split).
        let capacity = max(1, bucketBytes / 4)
        made.buckets = [[]]
        var used = 0
        for i in made.items.indices {
            var from = 0
            while from < made.items[i].count {
                if used == capacity { made.buckets.append([]); used = 0 }
                let n = min(made.items[i].count - from, capacity - used)
                made.items[i].pieces.append((made.buckets.count - 1, from, n, used))
                made.buckets[made.buckets.count - 1].append((i, from, n))
                from += n
                used += n
            }
        }
        made.floats = made.items.reduce(0) { $0 + $1.count }
        if plan.bucketBytes != bucketBytes { for b in buckets { b.deallocate() }; buckets = [] }
        while buckets.count < made.buckets.count { buckets.append(.allocate(capacity: capacity)) }
        pending = [Int](repeating: 0, count: made.buckets.count)
        requests = [CMPI_Request?](repeating: nil, count: made.buckets.count)
        finished = [Bool](repeating: false, count: made.buckets.count)
        packed = [Bool](repeating: false, count: made.items.count)
        plan = made
        return made
    }

    /// Copies item `i` (final now) into its buckets, starts every bucket that is complete and
    /// whose predecessors have started, and lets MPI progress the ones in flight (Open MPI moves
    /// a non-blocking collective only inside MPI calls: no progress thread).
    private func pack(_ i: Int, _ plan: BucketPlan) {
        guard !packed[i] else { return }
        packed[i] = true
        let item = plan.items[i]
        for piece in item.pieces {
            (buckets[piece.bucket].baseAddress! + piece.offset).update(from: item.floats + piece.from, count: piece.count)
            pending[piece.bucket] -= 1
        }
        guard failure == nil else { return }
        do {
            while started < plan.buckets.count, pending[started] == 0 {
                let count = plan.buckets[started].reduce(0) { $0 + $1.count }
                try api.check(api.iallreduce(cmpi_in_place(), buckets[started].baseAddress, Int32(count), api.float, api.sum, api.world, &requests[started]),
                              "MPI_Iallreduce")
                started += 1
            }
            for b in 0..<started where !finished[b] {
                var done: Int32 = 0
                try api.check(api.test(&requests[b], &done, nil), "MPI_Test (the gradient all-reduce)")
                finished[b] = done != 0
                break   // the oldest in flight: the others follow it
            }
        } catch {
            failure = error
        }
    }

    // MARK: - BatchNormSynchronizer

    /// Synchronized batch norm's sums, from inside a graph's forward or backward pass (which
    /// cannot throw): a failure ends this process with one line, and mpirun the others.
    public func sumStatistics(_ values: UnsafeMutableBufferPointer<Double>) {
        do { try allReduceSum(values) } catch {
            Self.exitWithError("\(error) (in synchronized batch norm)")
        }
    }

    // MARK: - One error line per job

    /// This process's rank in an mpirun job, from the launcher's environment (known before
    /// `MPI_Init`, and without Open MPI's library); `nil` outside mpirun.
    public static var launcherRank: Int? {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_RANK"] ?? environment["PMIX_RANK"]).flatMap { Int($0) }
    }

    /// How long a rank other than 0 waits before printing its error: Open MPI's mpirun ends the
    /// other ranks when one exits with a non-zero status, about 1 s after it here (a `kill -9`'d
    /// rank's job ended 1 s later; a 2-rank job failing on a bad flag ends 1.2 s after its start,
    /// `DistributedTests.errorsPrintOnce`), so an error that rank 0 meets too is printed once.
    public static let peerErrorDelay = 3.0

    /// Prints `message` as one `Error:` line on standard error and exits with status 1, once per
    /// job when every rank meets the same error: rank 0 (or a process outside mpirun) prints at
    /// once; another rank first waits ``peerErrorDelay`` seconds, in which mpirun ends it if rank
    /// 0 failed too. A rank that fails alone (its host lacks the data) still prints, that much
    /// later, and mpirun then ends the others. No collective is involved (the ranks may be at
    /// different ones, or before `MPI_Init`), so nothing can hang: the process exits within
    /// ``peerErrorDelay`` seconds.
    ///
    /// `atOnce`: the ranks agreed that this one reports (``RankFailure``; the others end with
    /// ``exitAfterPeerFailure()``), so it prints without waiting.
    public static func exitWithError(_ message: String, atOnce: Bool = false) -> Never {
        if !atOnce, let rank = launcherRank, rank != 0 { usleep(useconds_t(peerErrorDelay * 1_000_000)) }
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
        exit(1)
    }

    /// Ends a rank whose failure another rank reports (``PeerFailure``): with status 1 after
    /// ``peerErrorDelay`` seconds, so that the reporting rank's line is out before mpirun,
    /// seeing this exit, ends it.
    public static func exitAfterPeerFailure() -> Never {
        if launcherRank != nil { usleep(useconds_t(peerErrorDelay * 1_000_000)) }
        exit(1)
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
