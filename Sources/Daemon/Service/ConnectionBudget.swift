import Foundation

/// What keeps clients, one or many, from holding the daemon's memory or its connections.
package struct ConnectionLimits: Equatable {
    /// Connections served at once; one more is answered `overloaded` and closed.
    package var maxConnections = 64
    /// Bytes held for all connections together: unfinished frames, and frames received but not
    /// yet answered. A read that would pass it is answered `overloaded` and its connection closed.
    package var maxBufferedBytes = 256 << 20
    /// Seconds a frame may take from its first byte to its last (a client dripping bytes).
    package var frameTimeout = 30
    /// Seconds without a complete request before a connection that watches nothing is closed
    /// (bytes of an unfinished frame do not count: they are bounded by `frameTimeout`).
    package var idleTimeout = 300
}

/// Counts connections and held bytes against the limits; thread-safe (event loop and request
/// queues both account).
package final class ConnectionBudget: @unchecked Sendable {
    private let lock = NSLock()
    private var current: ConnectionLimits
    private var connections = 0
    private var bytes = 0

    package init(_ limits: ConnectionLimits) { current = limits }

    /// Changed by reloads; applies to what comes next.
    package var limits: ConnectionLimits {
        get { lock.lock(); defer { lock.unlock() }; return current }
        set { lock.lock(); current = newValue; lock.unlock() }
    }

    /// Counts a new connection; false (counting nothing) at the limit.
    package func admitConnection() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard connections < current.maxConnections else { return false }
        connections += 1
        return true
    }

    package func releaseConnection() { lock.lock(); connections -= 1; lock.unlock() }

    /// Takes `count` more bytes; false (taking nothing) when that would pass the limit.
    package func reserve(_ count: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard bytes + count <= current.maxBufferedBytes else { return false }
        bytes += count
        return true
    }

    package func release(_ count: Int) { lock.lock(); bytes -= count; lock.unlock() }

    var usage: (connections: Int, bytes: Int) { lock.lock(); defer { lock.unlock() }; return (connections, bytes) }
}
