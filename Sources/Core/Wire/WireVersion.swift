/// The RPC protocol's version. The message types and framing (protocol/README.md) land here;
/// this module imports Foundation at most, so the client never links the engine.
public enum WireProtocol {
    public static let version = 1
    /// Default cap on one frame's payload, in bytes.
    public static let defaultMaximumFrameSize = 32 << 20
}
