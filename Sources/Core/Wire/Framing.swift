import Foundation

/// The wire's framing: a 4-byte big-endian unsigned length, then that many bytes of UTF-8 JSON
/// (one JSON-RPC 2.0 message). See protocol/README.md.
public enum WireProtocol {
    /// Version of the message set. A client states the versions it speaks in `daemon.hello`.
    public static let version = 1
    /// Default cap on one frame's payload, in bytes (configurable on the daemon, advertised in hello).
    public static let defaultMaximumFrameSize = 32 << 20
}

/// Why a byte stream is not a valid sequence of frames.
public enum FramingError: Error, Equatable, CustomStringConvertible {
    /// A frame of length zero (never valid: there is no empty JSON message).
    case emptyFrame
    /// A frame longer than the maximum; refused from its length prefix, before any buffering.
    case frameTooLarge(length: Int, maximum: Int)

    public var description: String {
        switch self {
        case .emptyFrame: return "zero-length frame"
        case let .frameTooLarge(length, maximum): return "frame of \(length) bytes exceeds the maximum of \(maximum)"
        }
    }
}

/// Prefixes payloads with their length.
public enum FrameEncoder {
    public static func frame(_ payload: Data) -> Data {
        var out = Data(capacity: payload.count + 4)
        let n = UInt32(payload.count)
        out.append(contentsOf: [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)])
        out.append(payload)
        return out
    }
}

/// Cuts a byte stream, arriving in chunks of any size, into frame payloads. Pure logic: the socket
/// layer feeds it and acts on its answers. After an error the stream is unusable (the length of
/// what follows is unknown) and the connection should be closed after replying.
public struct FrameDecoder {
    public let maximumFrameSize: Int
    private var buffer = Data()
    private var failed: FramingError?

    public init(maximumFrameSize: Int = WireProtocol.defaultMaximumFrameSize) {
        self.maximumFrameSize = maximumFrameSize
    }

    /// Bytes held for an incomplete frame.
    public var bufferedByteCount: Int { buffer.count }

    /// Adds bytes and returns every frame now complete, in order.
    public mutating func feed(_ bytes: Data) throws -> [Data] {
        if let failed { throw failed }
        buffer.append(bytes)
        var frames: [Data] = []
        while buffer.count >= 4 {
            let start = buffer.startIndex
            let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
            if length == 0 { failed = .emptyFrame; throw FramingError.emptyFrame }
            if length > maximumFrameSize {
                let error = FramingError.frameTooLarge(length: length, maximum: maximumFrameSize)
                failed = error
                buffer = Data()
                throw error
            }
            guard buffer.count >= 4 + length else { break }
            frames.append(Data(buffer[(start + 4)..<(start + 4 + length)]))
            buffer = Data(buffer[(start + 4 + length)...])
        }
        return frames
    }
}
