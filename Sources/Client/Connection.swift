import Foundation
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif
import Wire

/// Why a command failed, with the exit code scripts can branch on.
struct ClientError: Error, CustomStringConvertible {
    enum Kind: Int32 { case failure = 1, usage = 2, notRunning = 3, queueFull = 4, jobFailed = 5 }
    let kind: Kind
    let description: String
}

/// A blocking JSON-RPC connection to xattnd over its Unix socket.
final class Connection {
    private let fd: Int32
    private var decoder = FrameDecoder(maximumFrameSize: WireProtocol.defaultMaximumFrameSize)
    /// Notifications that arrived while waiting for a response.
    private var pending: [RPCMessage] = []
    /// Frames read but not yet handed out, in arrival order.
    private var incoming: [RPCMessage] = []
    private var nextID = 1

    init(path: String) throws {
        do { fd = try POSIX.call("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) } } catch {
            throw ClientError(kind: .failure, description: "\(error)")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ClientError(kind: .usage, description: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        // Not retried on EINTR (a second connect would answer EALREADY): errno is read at once.
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let code = errno
        guard connected == 0 else {
            close(fd)
            throw ClientError(kind: .notRunning, description: "cannot reach xattnd at \(path) (\(String(cString: strerror(code)))); is the service running? (systemctl status xattnd)")
        }
    }

    deinit { close(fd) }

    /// Sends a request and returns its result, keeping notifications that arrive meanwhile.
    func call(_ method: RPCMethod, _ params: JSONValue = .object([:])) throws -> JSONValue {
        let id = RPCID.number(nextID)
        nextID += 1
        try send(.request(id: id, method: method.rawValue, params: params))
        while true {
            let message = try receive()
            switch message {
            case let .response(replyID, result) where replyID == id: return result
            case let .error(replyID, error) where replyID == id || replyID == nil: throw Self.failure(error)
            case .notification: pending.append(message)
            default: continue
            }
        }
    }

    /// The next notification (queued ones first).
    func nextNotification() throws -> (method: String, params: JSONValue) {
        while true {
            let message = pending.isEmpty ? try receive() : pending.removeFirst()
            if case let .notification(method, params) = message { return (method, params ?? .null) }
        }
    }

    static func failure(_ error: RPCErrorObject) -> ClientError {
        // An option the daemon refuses (checked against its model) is the command line's fault: exit 2.
        let later = ["queue_full", "store_unavailable"].contains(error.reason ?? "")
        let kind: ClientError.Kind = later ? .queueFull : error.reason == "invalid_options" ? .usage : .failure
        return ClientError(kind: kind, description: "\(error.message) (\(error.reason ?? "error"))")
    }

    private func send(_ message: RPCMessage) throws {
        let frame = FrameEncoder.frame(try message.encoded())
        do { try frame.withUnsafeBytes { try POSIX.sendAll(fd, $0, peer: "xattnd") } } catch {
            throw ClientError(kind: .notRunning, description: "the connection to xattnd was lost (\(error))")
        }
    }

    private func receive() throws -> RPCMessage {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while incoming.isEmpty {
            let n = (try? buffer.withUnsafeMutableBytes { try POSIX.read(fd, into: $0, from: "xattnd") }) ?? 0
            guard n > 0 else { throw ClientError(kind: .notRunning, description: "xattnd closed the connection") }
            for frame in try decoder.feed(Data(buffer[0..<n])) { incoming.append(try RPCMessage.decode(frame)) }
        }
        return incoming.removeFirst()
    }
}
