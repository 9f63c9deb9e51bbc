import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// Raw bytes at the daemon's socket: bad frames get errors or a closed connection, never a
/// stopped daemon.
@Suite(.serialized) struct MalformedFrameTests {
    /// A raw connection.
    final class Raw {
        let fd: Int32
        init(_ path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let ok = DaemonHarness.withSocketAddress(path) { connect(fd, $0, $1) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard ok == 0 else { throw POSIXError(.ECONNREFUSED) }
        }
        deinit { close(fd) }
        /// MSG_NOSIGNAL: a write to a connection the daemon closed fails instead of raising SIGPIPE.
        func send(_ bytes: Data) { bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        /// The next message, or nil when the daemon closed the connection.
        func receive() -> RPCMessage? {
            var decoder = FrameDecoder()
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buffer, buffer.count)
                guard n > 0 else { return nil }
                if let frame = try? decoder.feed(Data(buffer[0..<n])).first { return try? RPCMessage.decode(frame) }
            }
        }
    }

    static func request(_ id: Int, _ method: RPCMethod, _ params: JSONValue = .object([:])) -> Data {
        FrameEncoder.frame((try? RPCMessage.request(id: .number(id), method: method.rawValue, params: params).encoded()) ?? Data())
    }

    static let hello = request(1, .hello, .object(["protocolVersions": .array([.integer(1)])]))

    func reason(_ message: RPCMessage?) -> String? {
        if case let .error(_, error)? = message { return error.reason }
        return nil
    }

    @Test func badFramesLeaveTheDaemonServing() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--max-frame-size", "4096"])

        // A valid hello dripped one byte at a time, then in every chunk size.
        for chunk in [1, 2, 3, 5, 7, 64] {
            let raw = try Raw(daemon.socket)
            var offset = 0
            while offset < Self.hello.count {
                raw.send(Self.hello.subdata(in: offset..<min(offset + chunk, Self.hello.count)))
                offset += chunk
            }
            guard case .response? = raw.receive() else { Issue.record("no hello reply at chunk size \(chunk)"); continue }
        }
        // Oversize: refused from the prefix, then closed.
        let big = try Raw(daemon.socket)
        big.send(Data([0, 0, 0x20, 0]))
        #expect(reason(big.receive()) == "frame_too_large")
        #expect(big.receive() == nil)
        // Zero-length frame.
        let empty = try Raw(daemon.socket)
        empty.send(Data([0, 0, 0, 0]))
        #expect(reason(empty.receive()) == "invalid_request")
        // Garbage JSON: errors, and after eight the connection is closed.
        let garbage = try Raw(daemon.socket)
        var replies = 0
        for _ in 0..<12 {
            garbage.send(FrameEncoder.frame(Data("{nope".utf8)))
            guard let message = garbage.receive() else { break }
            #expect(reason(message) == "parse_error")
            replies += 1
        }
        #expect(replies == 8)
        // Truncated: a peer that sends half a frame and leaves.
        do {
            let truncated = try Raw(daemon.socket)
            truncated.send(Self.hello.prefix(10))
        }
        // The daemon still serves everyone else.
        let good = try Raw(daemon.socket)
        good.send(Self.hello)
        guard case .response? = good.receive() else { Issue.record("hello failed after the bad peers"); return }
        good.send(Self.request(2, .status))
        guard case .response? = good.receive() else { Issue.record("status failed after the bad peers"); return }
    }
}
