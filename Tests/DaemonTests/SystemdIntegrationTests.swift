import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// The systemd side of the daemon, without systemd: a datagram socket stands in for NOTIFY_SOCKET,
/// and a listening socket passed as fd 3 with LISTEN_FDS/LISTEN_PID stands in for socket activation.
@Suite(.serialized) struct SystemdIntegrationTests {
    /// A bound Unix datagram socket collecting sd_notify messages on a thread of its own, as
    /// systemd does (a full queue would block the sender).
    /// Its received datagrams are guarded by `lock`; the reading thread ends before deinit closes it.
    final class NotifySocket: @unchecked Sendable {
        let fd: Int32
        let path: String
        private let lock = NSLock()
        private var received: [String] = []
        private var open = true
        init(path: String) {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            _ = DaemonHarness.withSocketAddress(path) { bind(fd, $0, $1) }
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
        let cache = daemon.directory.appendingPathComponent("cache").path
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path, "CACHE_DIRECTORY": cache])
        _ = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--wait"] + DaemonHarness.quick)
        daemon.stop()
        // CacheDirectory= is where the inversions went.
        #expect(!((try? FileManager.default.contentsOfDirectory(atPath: cache + "/inversions")) ?? []).isEmpty)
        let lines = notify.drain().flatMap { $0.split(separator: "\n").map(String.init) }
        #expect(lines.contains("READY=1"))
        #expect(lines.contains { $0.hasPrefix("STATUS=job j-") })
        #expect(lines.contains { $0.hasPrefix("STATUS=idle") })
        #expect(lines.contains("STOPPING=1"))
        let ready = lines.firstIndex(of: "READY=1") ?? 0, loading = lines.firstIndex(of: "STATUS=loading the model") ?? Int.max
        #expect(loading < ready)
    }

    /// A listening socket made here and passed as fd 3, as systemd passes xattnd.socket's: the
    /// daemon serves on it and binds nothing of its own.
    @Test func servesThePassedListeningSocket() throws {
        let daemon = try DaemonHarness()
        let passed = daemon.directory.appendingPathComponent("activated.sock").path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = DaemonHarness.withSocketAddress(passed) { bind(listener, $0, $1) }
        #expect(bound == 0 && listen(listener, 16) == 0)
        // Out of the way of fd 3 first, so that dup2 onto 3 always happens (and clears close-on-exec).
        let high = fcntl(listener, F_DUPFD, 50)
        close(listener)
        defer { close(high) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, high, 3)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // The shell learns its pid ($$) and execs the daemon in its place, as systemd sets LISTEN_PID.
        let arguments = ["/bin/sh", "-c", #"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@""#,
                         DaemonHarness.binaries.appendingPathComponent("xattnd").path, "run",
                         "--model", DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path,
                         "--state-dir", daemon.stateDirectory, "--socket", daemon.socket]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        #expect(posix_spawn(&pid, "/bin/sh", &actions, nil, &argv, environ) == 0)
        defer { kill(pid, SIGTERM); var status: Int32 = 0; waitpid(pid, &status, 0) }

        var answered = false
        for _ in 0..<100 where !answered {
            answered = daemon.ctl(["--socket", passed, "status"]).code == 0
            if !answered { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(answered)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
        let run = daemon.ctl(["--socket", passed, "submit", DaemonHarness.structure, DaemonHarness.appearance, "--wait"] + DaemonHarness.quick)
        #expect(run.code == 0, "\(run.output)")
    }
}
