import Foundation
import Glibc

/// Wakes an idle node when any node changes the shared queue: a connection of its own that
/// LISTENs on the channel PostgresJobStore NOTIFYs at every submit, requeue and resume, so a job
/// submitted on one machine starts on an idle other at once instead of at its next look (5 s).
/// Runs on a thread of its own; when the database goes away it reconnects with backoff (up to
/// 30 s), calling `onNotify` once it is back (changes may have been missed).
package final class QueueListener: @unchecked Sendable {
    private let url: String
    private let password: String?
    private let onNotify: () -> Void
    private let lock = NSLock()
    private var stopping = false
    private var thread: Thread?

    package init(url: String, password: String?, onNotify: @escaping () -> Void) {
        (self.url, self.password, self.onNotify) = (url, password, onNotify)
    }

    package func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "xattn-queue-listener"
        self.thread = thread
        thread.start()
    }

    /// Ends the loop within a second.
    package func stop() { lock.lock(); stopping = true; lock.unlock() }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func loop() {
        var backoff = 0.5
        while !isStopping {
            do {
                let connection = try PGConnection(url: url, password: password)
                try connection.execute("LISTEN \(PostgresJobStore.channel)")
                backoff = 0.5
                onNotify()
                while !isStopping {
                    var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
                    let ready = poll(&descriptor, 1, 1000)
                    if ready < 0 && errno != EINTR { break }
                    if ready > 0, !(try connection.notifications()).isEmpty { onNotify() }
                }
            } catch {
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 30)
            }
        }
    }
}
