import CDNNL
import Foundation

/// An error reported by oneDNN, with the call that failed.
public struct DNNLError: Error, CustomStringConvertible {
    /// The oneDNN status code.
    public let status: dnnl_status_t
    /// What was being done when oneDNN failed.
    public let context: String

    public var description: String {
        let name: String
        switch status {
        case dnnl_out_of_memory: name = "out of memory"
        case dnnl_invalid_arguments: name = "invalid arguments"
        case dnnl_unimplemented: name = "no implementation for these shapes and layouts"
        case dnnl_runtime_error: name = "runtime error"
        default: name = "status \(status.rawValue)"
        }
        return "oneDNN: \(context): \(name)"
    }
}

/// Throws a ``DNNLError`` unless `status` is success.
@inline(__always)
public func check(_ status: dnnl_status_t, _ context: @autoclosure () -> String) throws {
    if status != dnnl_success { throw DNNLError(status: status, context: context()) }
}

/// The oneDNN CPU engine and the one stream every primitive runs on.
///
/// oneDNN is called from one thread only: each calling thread would start its own
/// OpenMP team, so several callers oversubscribe the cores and gain nothing.
/// Set the thread count with ``setThreadCount(_:)`` from that thread.
public final class ComputeEngine: @unchecked Sendable {
    /// The process-wide engine.
    public static let shared = ComputeEngine()

    public let engine: dnnl_engine_t
    public let stream: dnnl_stream_t

    private init() {
        var engine: dnnl_engine_t?
        var stream: dnnl_stream_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
              dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream
        else { fatalError("oneDNN could not create its CPU engine (is libdnnl installed? apt-get install libdnnl-dev)") }
        self.engine = engine
        self.stream = stream
        let requested = ProcessInfo.processInfo.environment["RESNET_THREADS"].flatMap(Int.init)
        setThreadCount(requested ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The number of threads oneDNN primitives use (default: the number of cores,
    /// or `RESNET_THREADS`).
    public private(set) var threadCount: Int = 1

    /// The cores this process may run on: the most threads that can help. More only make OpenMP
    /// teams wait for each other (1,000 threads on 2 cores hung a training step).
    public static var coreCount: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Sets the OpenMP thread count of the calling thread, which must be the thread that runs
    /// oneDNN; `count` is clamped to `1...coreCount`.
    public func setThreadCount(_ count: Int) {
        threadCount = min(max(1, count), Self.coreCount)
        omp_set_num_threads(Int32(threadCount))
    }

    /// Waits for all submitted primitives to finish (the CPU stream runs them synchronously).
    public func wait() { _ = dnnl_stream_wait(stream) }

    /// The instruction set oneDNN's kernels use on this CPU (what the CPU offers, as far as the
    /// hypervisor shows it), e.g. `avx512_core_bf16`.
    public static var instructionSet: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        case let other: return "isa 0x\(String(other.rawValue, radix: 16))"
        }
    }

    /// Whether oneDNN has native bfloat16 kernels here (AVX512-BF16 or AMX). Without them it
    /// emulates bf16, which ran ResNet-20 training 3.7x slower than fp32 (243 against 890 img/s,
    /// Intel Xeon with AVX-512 whose hypervisor hides avx512_bf16, 2026-12-01).
    public static var hasNativeBFloat16: Bool {
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return dnnl_get_effective_cpu_isa().rawValue & bf16 == bf16
    }

    /// The oneDNN version string, e.g. "2.6.3".
    public static var version: String {
        guard let v = dnnl_version()?.pointee else { return "unknown" }
        return "\(v.major).\(v.minor).\(v.patch)"
    }
}
