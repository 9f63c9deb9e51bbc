import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// A raw connection that keeps its frame decoder across reads (several messages may arrive in one
/// read) and timestamps what it receives.
/// Used from one thread at a time (a test hands it to a collector thread and waits for it).
final class Peer: @unchecked Sendable {
    let fd: Int32
    private var decoder = FrameDecoder()
    private var frames: [Data] = []

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let ok = DaemonHarness.withSocketAddress(path) { connect(fd, $0, $1) }
        guard ok == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }
    deinit { close(fd) }

    func send(_ bytes: Data) { bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    func send(_ id: Int, _ method: String, _ params: JSONValue = .object([:])) {
        send(FrameEncoder.frame((try? RPCMessage.request(id: .number(id), method: method, params: params).encoded()) ?? Data()))
    }
    func hello() -> RPCMessage? {
        send(1, RPCMethod.hello.rawValue, .object(["protocolVersions": .array([.integer(1)])]))
        return receive()
    }

    /// The next message within `seconds`; nil on timeout or when the daemon closed the connection.
    func receive(within seconds: Double = 5) -> RPCMessage? {
        frame(within: seconds).flatMap { try? RPCMessage.decode($0) }
    }

    /// The next frame's raw JSON (to see which keys are present).
    func frame(within seconds: Double = 5) -> Data? {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while frames.isEmpty {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            var timeout = timeval(tv_sec: Int(left), tv_usec: Int((left - Double(Int(left))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { return nil }
            guard let more = try? decoder.feed(Data(buffer[0..<n])) else { return nil }
            frames += more
        }
        return frames.removeFirst()
    }

    /// Whether the daemon has closed the connection (reads end) within `seconds`.
    func isClosed(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var byte: UInt8 = 0
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let n = read(fd, &byte, 1)
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { return true }
        }
        return false
    }
}

func reason(_ message: RPCMessage?) -> String? {
    if case let .error(_, error)? = message { return error.reason }
    return nil
}

/// protocol/README.md as a client reads it: the handshake rule, absent values, notifications at
/// shutdown, heartbeats, and the bounds on connections and unfinished frames.
@Suite(.serialized) struct ConnectionTests {
    @Test func unknownMethodBeforeHelloIsAnInvalidRequest() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let peer = try Peer(daemon.socket)
        peer.send(2, "job.frobnicate")
        #expect(reason(peer.receive()) == "invalid_request")
        peer.send(3, RPCMethod.status.rawValue)
        #expect(reason(peer.receive()) == "invalid_request")
        _ = peer.hello()
        peer.send(4, "job.frobnicate")
        #expect(reason(peer.receive()) == "method_not_found")
        peer.send(5, RPCMethod.list.rawValue, .object(["limit": .integer(0)]))
        #expect(reason(peer.receive()) == "invalid_params")
    }

    /// Absent values are present as null: `running` when nothing runs, the model's `error`.
    @Test func absentValuesAreNull() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let peer = try Peer(daemon.socket)
        _ = peer.hello()
        peer.send(2, RPCMethod.status.rawValue)
        let status = try #require(try peer.frame().map { try JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? nil)
        let result = try #require(status["result"] as? [String: Any])
        #expect(result["running"] is NSNull, "\(result)")
        #expect(result["folders"] is NSNull, "\(result)")
        let model = try #require(result["model"] as? [String: Any])
        #expect(model["error"] is NSNull, "\(model)")
    }

    /// SIGTERM puts the running job back in the queue; its watcher hears so before the connection
    /// closes (before: the connections were closed first and the watcher heard nothing).
    @Test func watchersHearTheRequeueAtShutdown() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let job = daemon.submit(["--domain", "animal"])
        #expect(daemon.waitUntil(job, isIn: ["running"]) == "running")
        let peer = try Peer(daemon.socket)
        _ = peer.hello()
        peer.send(2, RPCMethod.watch.rawValue, .object(["job": .string(job)]))
        _ = peer.receive()
        daemon.process?.terminate()
        var states: [JobState] = []
        while let message = peer.receive(within: 10) {
            if case let .notification(method, params?) = message, method == RPCNotificationName.state.rawValue,
               let state = try? params.decode(StateNotification.self) {
                states.append(state.job.state)
            }
        }
        #expect(states.last == .queued, "\(states)")
        daemon.process?.waitUntilExit()
        #expect(daemon.process?.terminationStatus == 0)
    }

    /// "daemon.heartbeat every 15 s while nothing else was sent": a watcher of a running job, which
    /// hears progress all the time, gets none; a watcher of a waiting job gets one 15 s after the
    /// last message (before: every 15 s from the connection's start, whatever was sent).
    @Test func heartbeatsOnlyAfterFifteenQuietSeconds() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let running = daemon.submit(["--domain", "animal", "--timesteps", "200", "--skip", "64"])  // progress for ~35 s
        #expect(daemon.waitUntil(running, isIn: ["running"]) == "running")
        #expect(daemon.ctl(["pause"]).code == 0)  // the waiting job cannot start: its watcher hears nothing but heartbeats
        let waiting = daemon.submit()
        let (busy, quiet) = (try Peer(daemon.socket), try Peer(daemon.socket))
        for (peer, job) in [(busy, running), (quiet, waiting)] {
            _ = peer.hello()
            peer.send(2, RPCMethod.watch.rawValue, .object(["job": .string(job)]))
            _ = peer.receive()
        }
        let start = Date()
        final class Times: @unchecked Sendable { let lock = NSLock(); var values: [Double] = [] }
        let heard = Times()
        let collector = Thread {
            while Date().timeIntervalSince(start) < 16.5, let message = quiet.receive(within: 16.5 - Date().timeIntervalSince(start)) {
                if case let .notification(method, _) = message, method == RPCNotificationName.heartbeat.rawValue {
                    heard.lock.lock(); heard.values.append(Date().timeIntervalSince(start)); heard.lock.unlock()
                }
            }
        }
        collector.start()
        var last = start
        var tooSoon: [Double] = []
        while Date().timeIntervalSince(start) < 16, let message = busy.receive(within: 16 - Date().timeIntervalSince(start)) {
            if case let .notification(method, _) = message, method == RPCNotificationName.heartbeat.rawValue, Date().timeIntervalSince(last) < 14.5 {
                tooSoon.append(Date().timeIntervalSince(start))
            }
            last = Date()
        }
        while !collector.isFinished { Thread.sleep(forTimeInterval: 0.1) }
        heard.lock.lock(); let quietHeartbeats = heard.values; heard.lock.unlock()
        #expect(tooSoon.isEmpty, "heartbeats right after other messages at \(tooSoon) s")
        #expect(quietHeartbeats.count == 1 && (quietHeartbeats.first ?? 0) >= 14.9, "\(quietHeartbeats)")
    }

    /// Slow and greedy clients: a connection limit, a cap on bytes held in unfinished frames across
    /// connections, and a frame timeout; each over-limit client gets `overloaded` and is closed, the
    /// others are served.
    @Test func slowAndGreedyClientsAreBounded() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--max-connections", "4", "--max-buffered-bytes", "65536", "--frame-timeout", "2", "--idle-timeout", "3"])

        // Four connections are served; a fifth is refused; closing one makes room.
        var peers = try (0..<4).map { _ in try Peer(daemon.socket) }
        for peer in peers { guard case .response? = peer.hello() else { Issue.record("hello failed"); return } }
        let fifth = try Peer(daemon.socket)
        #expect(reason(fifth.receive()) == "overloaded")
        #expect(fifth.isClosed(within: 2))
        peers.removeLast()
        Thread.sleep(forTimeInterval: 0.3)
        let again = try Peer(daemon.socket)
        guard case .response? = again.hello() else { Issue.record("no room after a connection closed"); return }
        peers.append(again)

        // Bytes of unfinished frames: 40 KiB held by one connection, 40 KiB more refused for another.
        let frameHeader = Data([0, 1, 0, 0])  // a 65536-byte frame, never finished
        peers[0].send(frameHeader + Data(repeating: 0x20, count: 40 << 10))
        Thread.sleep(forTimeInterval: 0.2)
        peers[1].send(frameHeader + Data(repeating: 0x20, count: 40 << 10))
        #expect(reason(peers[1].receive()) == "overloaded")
        #expect(peers[1].isClosed(within: 2))

        // The frame that does not complete within 2 s is timed out, and its bytes released.
        #expect(reason(peers[0].receive(within: 4)) == "overloaded")
        #expect(peers[0].isClosed(within: 2))

        // A client dripping one byte every 0.5 s (each byte used to reset the idle timer) is cut
        // by the frame timeout; a silent one by the idle timeout.
        let dripper = try Peer(daemon.socket)
        let silent = try Peer(daemon.socket)
        let started = Date()
        var cut: Double?
        for byte in FrameEncoder.frame(Data(repeating: 0x20, count: 100)) {
            dripper.send(Data([byte]))
            if dripper.isClosed(within: 0.5) { cut = Date().timeIntervalSince(started); break }
        }
        #expect(cut.map { $0 >= 1.5 && $0 <= 4 } == true, "dripper cut after \(String(describing: cut)) s")
        #expect(silent.isClosed(within: 4))

        // Everyone else is still served.
        let last = try Peer(daemon.socket)
        guard case .response? = last.hello() else { Issue.record("hello failed after the bad peers"); return }
        last.send(2, RPCMethod.status.rawValue)
        guard case .response? = last.receive() else { Issue.record("status failed"); return }
    }

    /// SIGTERM while clients send requests: every reply is written before the event loop shuts
    /// down (before: "Cannot schedule tasks on an EventLoop that has already shut down" in 3 of 15
    /// tries, which SwiftNIO says becomes a crash), and the daemon exits 0.
    @Test func stoppingWithBusyClientsIsClean() throws {
        let daemon = try DaemonHarness()
        let log = daemon.directory.appendingPathComponent("stderr.log").path
        for round in 0..<8 {
            try daemon.start(log: log)
            final class Flag: @unchecked Sendable { let lock = NSLock(); var stop = false }
            let flag = Flag()
            let clients = (0..<3).map { _ in
                Thread {
                    guard let peer = try? Peer(daemon.socket) else { return }
                    _ = peer.hello()
                    var id = 2
                    while true {
                        flag.lock.lock(); let stop = flag.stop; flag.lock.unlock()
                        if stop { return }
                        peer.send(id, RPCMethod.list.rawValue)
                        id += 1
                        if peer.receive(within: 2) == nil { return }
                    }
                }
            }
            clients.forEach { $0.start() }
            Thread.sleep(forTimeInterval: 0.3)
            daemon.process?.terminate()
            daemon.process?.waitUntilExit()
            let status = daemon.process?.terminationStatus
            flag.lock.lock(); flag.stop = true; flag.lock.unlock()
            while clients.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.05) }
            let text = String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self)
            #expect(status == 0, "round \(round)")
            #expect(!text.contains("Cannot schedule"), "round \(round): \(text)")
        }
    }

    /// A client that sends requests and never reads the replies: the daemon stops answering it
    /// once its replies are not being read, instead of holding them all in memory (before: +87 MB
    /// in 30 s for 40,000 job.list requests, growing until all were answered); every reply still
    /// arrives once the client reads.
    @Test func aClientThatDoesNotReadIsNotBuffered() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let job = daemon.submit()
        #expect(daemon.waitUntil(job, isIn: ["succeeded", "failed"]) == "succeeded")  // job.result replies are ~60 KB
        let peer = try Peer(daemon.socket)
        _ = peer.hello()
        func residentMB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(daemon.process?.processIdentifier ?? 0)/status", encoding: .utf8)) ?? ""
            return (Int(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
        }
        let count = 3000
        var requests = Data()
        for id in 0..<count {
            requests.append(FrameEncoder.frame((try? RPCMessage.request(id: .number(id + 2), method: RPCMethod.result.rawValue,
                                                                         params: .object(["job": .string(job)])).encoded()) ?? Data()))
        }
        let before = residentMB()
        let all = requests
        let sender = Thread { peer.send(all) }  // blocks once the daemon stops reading
        sender.start()
        Thread.sleep(forTimeInterval: 5)
        let grown = residentMB() - before
        #expect(grown < 40, "the daemon held \(grown) MB of unread replies")
        var replies = 0
        while replies < count, peer.frame(within: 20) != nil { replies += 1 }
        #expect(replies == count)
    }
}
