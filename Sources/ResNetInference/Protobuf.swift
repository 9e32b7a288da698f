/// A protocol-buffer message encoded by hand: the few wire types that TensorBoard's `Event`
/// and ONNX's `ModelProto` need, without a protobuf dependency.
///
/// Fields are appended in call order; a nested message is encoded first and added with
/// ``message(_:_:)``. Repeated scalar fields are written one key per value (proto2's unpacked
/// form, which every parser accepts).
package struct Protobuf {
    package var data: [UInt8] = []

    package init() {}

    package mutating func key(_ field: Int, _ wire: Int) { varintRaw(UInt64(field << 3 | wire)) }

    package mutating func varintRaw(_ value: UInt64) {
        var v = value
        while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        data.append(UInt8(v))
    }

    /// An unsigned varint (wire type 0).
    package mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); varintRaw(value) }
    /// An `int64`/`int32` field: negative values take ten bytes (two's complement), as protobuf
    /// encodes them.
    package mutating func int64(_ field: Int, _ value: Int64) { varint(field, UInt64(bitPattern: value)) }
    package mutating func double(_ field: Int, _ value: Double) { key(field, 1); data += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
    package mutating func float(_ field: Int, _ value: Float) { key(field, 5); data += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
    package mutating func bytes(_ field: Int, _ value: [UInt8]) { key(field, 2); varintRaw(UInt64(value.count)); data += value }
    package mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }
    package mutating func message(_ field: Int, _ value: Protobuf) { bytes(field, value.data) }

    /// `values` as little-endian float32 bytes (a tensor's `raw_data`).
    package static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        #if _endian(little)
        return values.withUnsafeBytes { Array($0) }
        #else
        var bytes = [UInt8]()
        bytes.reserveCapacity(4 * values.count)
        for v in values { bytes += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
        return bytes
        #endif
    }
}
