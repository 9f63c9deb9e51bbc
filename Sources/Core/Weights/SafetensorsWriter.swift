import Foundation
import SystemCalls

/// Writes `.safetensors` files: tests build fixtures with it, the inversion cache stores latents.
public enum SafetensorsWriter {
    /// The element type tensors are stored as (converted from Float32, rounding to nearest even).
    public enum StorageType: String, Sendable { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    /// Serialises named tensors, in the given order, with a header whose keys are sorted (the
    /// same inputs give the same bytes). The header is padded with spaces to a multiple of 8 so
    /// the data section is aligned.
    public static func serialize(
        _ tensors: [(name: String, tensor: Tensor)], as type: StorageType = .f32, metadata: [String: String] = [:]
    ) -> Data {
        let elementSize = type == .f32 ? 4 : 2
        var offset = 0
        var fields: [(String, String)] = []
        for (name, tensor) in tensors {
            let size = tensor.count * elementSize
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append((name, "{\"dtype\":\"\(type.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + size)]}"))
            offset += size
        }
        if !metadata.isEmpty {
            let map = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }
            fields.append(("__metadata__", "{" + map.joined(separator: ",") + "}"))
        }
        var header = "{" + fields.sorted { $0.0 < $1.0 }.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}"
        while (header.utf8.count + 8) % 8 != 0 { header += " " }

        var data = Data()
        data.reserveCapacity(8 + header.utf8.count + offset)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        for (_, tensor) in tensors {
            tensor.withUnsafePointer { p in
                switch type {
                case .f32:
                    // Float32 is stored little-endian, as the host keeps it: one copy.
                    data.append(UnsafeBufferPointer(start: p, count: tensor.count))
                case .f16:
                    for i in 0..<tensor.count { withUnsafeBytes(of: Float16(p[i]).bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                case .bf16:
                    for i in 0..<tensor.count { withUnsafeBytes(of: bfloat16Bits(p[i]).littleEndian) { data.append(contentsOf: $0) } }
                }
            }
        }
        return data
    }

    /// Writes atomically: a temporary file beside the target, then rename, so a reader never sees
    /// half a file.
    public static func write(
        _ tensors: [(name: String, tensor: Tensor)], to path: String, as type: StorageType = .f32,
        metadata: [String: String] = [:]
    ) throws {
        let data = serialize(tensors, as: type, metadata: metadata)
        do {
            try POSIX.writeAtomically(data, to: path)
        } catch {
            throw SafetensorsError.writeFailed(file: path, reason: "\(error)")
        }
    }

    /// Float32 → bfloat16 with round-to-nearest-even (NaN kept quiet).
    static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x0040 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }

    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}
