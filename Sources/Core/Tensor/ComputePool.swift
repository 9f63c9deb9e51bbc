#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The engine's only threads. Every kernel that runs in parallel (sgemm included: OpenBLAS is kept
/// single-threaded, see `BLAS`) splits its work through `ComputePool.shared`, so there is exactly
/// one set of compute threads and no oversubscription.
///
/// Work items are handed out dynamically; the calling thread takes part. A call that arrives while
/// the pool is busy (another thread is already inside `parallelFor`, as tests running side by side
/// do) runs its items on its own thread instead of waiting.
public final class ComputePool: @unchecked Sendable {
    /// Sized from the CPUs this process may run on, overridable with `XATTN_THREADS`.
    public static let shared = ComputePool(threadCount: ComputePool.defaultThreadCount())

    public let threadCount: Int

    private let condition = NSCondition()
    private let finished = NSCondition()
    private var generation = 0
    private var job: ((Int, WorkerScratch) -> Void)?
    private var nextItem = 0
    private var itemCount = 0
    private var running = 0
    private var busy = false
    private let scratches: [WorkerScratch]

    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        scratches = (0..<self.threadCount).map { _ in WorkerScratch() }
        for worker in 1..<max(self.threadCount, 1) {
            let thread = Thread { [unowned self] in self.workerLoop(scratch: self.scratches[worker]) }
            thread.name = "xattn-compute-\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(i)` for every i in 0..<count, spread over the pool; returns when all are done.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        parallelFor(count) { i, _ in body(i) }
    }

    /// Like `parallelFor(_:_:)`, and gives each item its thread's reusable scratch memory.
    /// Items that run at the same time never share a scratch.
    public func parallelFor(_ count: Int, _ body: (Int, WorkerScratch) -> Void) {
        guard count > 0 else { return }
        guard claim() else {
            // Nested call from inside an item, or another thread owns the pool: run here.
            let scratch = WorkerScratch()
            for i in 0..<count { body(i, scratch) }
            return
        }
        defer { release() }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i, scratches[0]) }
            return
        }
        withoutActuallyEscaping(body) { body in
            condition.lock()
            job = body
            nextItem = 0
            itemCount = count
            running = threadCount - 1
            generation += 1
            condition.broadcast()
            condition.unlock()

            drainItems(scratch: scratches[0])

            finished.lock()
            while running > 0 { finished.wait() }
            finished.unlock()
            condition.lock()
            job = nil
            condition.unlock()
        }
    }

    /// Number of pieces to cut a job into so that every thread gets a share.
    public var preferredSplit: Int { threadCount }

    // MARK: - Internals

    private func claim() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if busy { return false }
        busy = true
        return true
    }

    private func release() {
        condition.lock()
        busy = false
        condition.unlock()
    }

    private func drainItems(scratch: WorkerScratch) {
        while true {
            condition.lock()
            guard nextItem < itemCount, let body = job else {
                condition.unlock()
                return
            }
            let item = nextItem
            nextItem += 1
            condition.unlock()
            body(item, scratch)
        }
    }

    private func workerLoop(scratch: WorkerScratch) {
        var seen = 0
        while true {
            condition.lock()
            while generation == seen { condition.wait() }
            seen = generation
            condition.unlock()

            drainItems(scratch: scratch)

            finished.lock()
            running -= 1
            if running == 0 { finished.signal() }
            finished.unlock()
        }
    }

    static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["XATTN_THREADS"], let n = Int(text), n > 0 {
            return n
        }
        // Foundation's count follows the CPU affinity mask on Linux.
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }
}

/// Per-thread scratch memory that grows to the largest request and is reused between items.
public final class WorkerScratch {
    private var floatBuffer = GrowingBuffer<Float>()
    private var wordBuffer = GrowingBuffer<UInt32>()

    /// A buffer of at least `count` floats, valid until the next call on this scratch. Contents are
    /// unspecified.
    public func floats(_ count: Int) -> UnsafeMutablePointer<Float> { floatBuffer.pointer(count) }

    /// A second buffer, of at least `count` 32-bit words (packed bf16 pairs), independent of
    /// `floats`; same validity rules.
    public func words(_ count: Int) -> UnsafeMutablePointer<UInt32> { wordBuffer.pointer(count) }

    deinit {
        floatBuffer.release()
        wordBuffer.release()
    }
}

/// Memory that grows by half again when too small; contents are not kept across growth.
private struct GrowingBuffer<Element> {
    private var storage: UnsafeMutablePointer<Element>?
    private var capacity = 0

    mutating func pointer(_ count: Int) -> UnsafeMutablePointer<Element> {
        if let storage, capacity >= count { return storage }
        storage?.deallocate()
        capacity = max(count, capacity * 3 / 2)
        let fresh = UnsafeMutablePointer<Element>.allocate(capacity: max(capacity, 1))
        storage = fresh
        return fresh
    }

    mutating func release() {
        storage?.deallocate()
        storage = nil
    }
}
