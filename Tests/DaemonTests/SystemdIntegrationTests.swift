import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// The systemd side of the daemon, without systemd: a datagram socket stands in for NOTIFY_SOCKET.
/// (Socket activation through LISTEN_FDS works under systemd-socket-activate from a shell; run from
/// Foundation's Process the launcher hung, so that check is not automated yet.)
@Suite(.serialized) struct SystemdIntegrationTests {
    /// A bound Unix datagram socket collecting sd_notify messages on a thread of its own, as
    /// systemd does (a full queue would block the sender).
    final class NotifySocket {
        let fd: Int32
        let path: String
        private let lock = NSLock()
        private var received: [String] = []
        private var open = true
        init(path: String) {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let thread = Thread { [self] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    lock.lock(); let running = open; lock.unlock()
                    guard running else { return }
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n > 0 { lock.lock(); received.append(String(decoding: buffer[0..<n], as: UTF8.self)); lock.unlock() }
                }
            }
            thread.start()
        }
        deinit { lock.lock(); open = false; lock.unlock(); Thread.sleep(forTimeInterval: 0.3); close(fd); unlink(path) }
        /// Messages received so far (each may hold several NAME=value lines).
        func drain() -> [String] {
            Thread.sleep(forTimeInterval: 0.3)
            lock.lock(); defer { lock.unlock() }
            return received
        }
    }

    @Test func notifiesReadyStatusAndStopping() throws {
        let daemon = try DaemonHarness()
        let notify = NotifySocket(path: daemon.directory.appendingPathComponent("notify").path)
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path])
        _ = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--wait"] + DaemonHarness.quick)
        daemon.stop()
        let lines = notify.drain().flatMap { $0.split(separator: "\n").map(String.init) }
        #expect(lines.contains("READY=1"))
        #expect(lines.contains { $0.hasPrefix("STATUS=job j-") })
        #expect(lines.contains { $0.hasPrefix("STATUS=idle") })
        #expect(lines.contains("STOPPING=1"))
        let ready = lines.firstIndex(of: "READY=1") ?? 0, loading = lines.firstIndex(of: "STATUS=loading the model") ?? Int.max
        #expect(loading < ready)
    }
}
