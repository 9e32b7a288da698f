import Foundation
import ResNetInference

/// Writes TensorBoard event files (scalars), so that `tensorboard --logdir RUN_DIR` shows the
/// curves: TFRecord framing (length, masked CRC-32C, payload, masked CRC-32C) around `Event`
/// protocol buffers, encoded by hand (``Protobuf`` of ResNetInference; no protobuf dependency).
public final class TensorBoardWriter {
    public let url: URL
    private let handle: FileHandle

    /// Opens a new event file in `directory` (a new file per process, as TensorBoard expects).
    public init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.isEmpty ? "localhost" : ProcessInfo.processInfo.hostName
        url = directory.appendingPathComponent("events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid())")
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let h = FileHandle(forWritingAtPath: url.path) else {
            throw TrainingError.checkpoint("\(url.path): cannot create the TensorBoard event file")
        }
        handle = h
        var event = Protobuf()
        event.double(1, Date().timeIntervalSince1970)
        event.bytes(3, Array("brain.Event:2".utf8))
        write(event.data)
    }

    deinit { try? handle.close() }

    /// Appends one scalar per tag at `step`.
    public func scalars(_ values: [(tag: String, value: Float)], step: Int) {
        var summary = Protobuf()
        for (tag, value) in values {
            var v = Protobuf()
            v.bytes(1, Array(tag.utf8))
            v.float(2, value)
            summary.bytes(1, v.data)
        }
        var event = Protobuf()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(step))
        event.bytes(5, summary.data)
        write(event.data)
    }

    private func write(_ payload: [UInt8]) {
        var record: [UInt8] = []
        let length = withUnsafeBytes(of: UInt64(payload.count).littleEndian, Array.init)
        record += length
        record += withUnsafeBytes(of: maskedCRC32C(length).littleEndian, Array.init)
        record += payload
        record += withUnsafeBytes(of: maskedCRC32C(payload).littleEndian, Array.init)
        handle.write(Data(record))
    }
}

/// CRC-32C (Castagnoli), masked as TFRecord does.
func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}

private let crc32cTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
}

/// CRC-32C of `bytes` (check value of "123456789" is 0xE3069283).
func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crc32cTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

/// The checksums, for tests.
public enum TensorBoardTesting {
    public static func crc(_ bytes: [UInt8]) -> UInt32 { crc32c(bytes) }
    public static func maskedCRC(_ bytes: [UInt8]) -> UInt32 { maskedCRC32C(bytes) }
}
