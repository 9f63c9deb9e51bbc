import Foundation

/// Opt-in accounting of where compute time goes: wall time per top-level kernel and the FLOPs of
/// every sgemm call (2·m·n·k, from the actual shapes). Off by default, when it costs one branch
/// per kernel call; the benchmark turns it on.
public enum OpProfile {
    public struct Entry: Sendable {
        public let name: String
        public let seconds: Double
        public let calls: Int

        public init(name: String, seconds: Double, calls: Int) {
            (self.name, self.seconds, self.calls) = (name, seconds, calls)
        }
    }

    nonisolated(unsafe) public static var isEnabled = false
    private static let lock = NSLock()
    nonisolated(unsafe) private static var totals: [String: (seconds: Double, calls: Int)] = [:]
    nonisolated(unsafe) private static var flops: Double = 0
    nonisolated(unsafe) private static var depth = 0

    /// Runs `body`, charging its wall time to `name` unless a measured kernel is already running
    /// on this call chain (so that a convolution's own sgemm is not counted twice).
    @inline(__always)
    static func measure<T>(_ name: StaticString, _ body: () -> T) -> T {
        guard isEnabled else { return body() }
        return timed(name, body)
    }

    private static func timed<T>(_ name: StaticString, _ body: () -> T) -> T {
        lock.lock(); depth += 1; let outermost = depth == 1; lock.unlock()
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        lock.lock()
        depth -= 1
        if outermost {
            let key = "\(name)"
            let old = totals[key] ?? (0, 0)
            totals[key] = (old.seconds + elapsed, old.calls + 1)
        }
        lock.unlock()
        return result
    }

    @inline(__always)
    static func addFlops(_ m: Int, _ n: Int, _ k: Int) {
        guard isEnabled else { return }
        lock.lock()
        flops += 2 * Double(m) * Double(n) * Double(k)
        lock.unlock()
    }

    public static func reset() {
        lock.lock(); totals = [:]; flops = 0; lock.unlock()
    }

    /// FLOPs of all matrix products since the last reset.
    public static var matrixFlops: Double {
        lock.lock(); defer { lock.unlock() }
        return flops
    }

    /// Per-kernel totals since the last reset, largest first.
    public static var entries: [Entry] {
        lock.lock(); defer { lock.unlock() }
        return totals.map { Entry(name: $0.key, seconds: $0.value.seconds, calls: $0.value.calls) }.sorted { $0.seconds > $1.seconds }
    }
}
