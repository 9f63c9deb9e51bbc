import Foundation
import Glibc

/// A connection of its own that LISTENs on the shared store's channels (`xattn_queue`: the queue
/// changed; `xattn_events`: job events between nodes) and hands every notification to `onNotify`.
/// Runs on a thread of its own; when the database goes away it reconnects with backoff (up to
/// 30 s) and, once back, calls `onNotify(nil)`: changes may have been missed meanwhile.
package final class NotificationListener: @unchecked Sendable {
    private let url: String
    private let password: String?
    private let onNotify: (_ notification: (channel: String, payload: String)?) -> Void
    private let lock = NSLock()
    private var stopping = false
    private var listening = false

    package init(url: String, password: String?, onNotify: @escaping ((channel: String, payload: String)?) -> Void) {
        (self.url, self.password, self.onNotify) = (url, password, onNotify)
    }

    package func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "xattn-listener"
        thread.start()
    }

    /// Ends the loop within a second.
    package func stop() { lock.lock(); stopping = true; lock.unlock() }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// Whether the connection is up and listening (a test waits for it before notifying).
    package var isListening: Bool { lock.lock(); defer { lock.unlock() }; return listening }

    private func loop() {
        var backoff = 0.5
        while !isStopping {
            do {
                let connection = try PGConnection(url: url, password: password)
                try connection.execute("LISTEN \(PostgresJobStore.channel)")
                try connection.execute("LISTEN \(PostgresJobStore.eventChannel)")
                lock.lock(); listening = true; lock.unlock()
                backoff = 0.5
                onNotify(nil)
                while !isStopping {
                    var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
                    let ready = poll(&descriptor, 1, 1000)
                    if ready < 0 && errno != EINTR { break }
                    if ready > 0 { for notification in try connection.notifications() { onNotify(notification) } }
                }
            } catch {
                lock.lock(); listening = false; lock.unlock()
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 30)
            }
        }
    }
}
