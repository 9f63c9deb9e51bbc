import Foundation
import Testing
@testable import Service
import TestSupport
import Wire

/// Several nodes on one PostgreSQL database (the store level of README's "Several machines"):
/// claims never overlap, an expired lease hands the job to another node under the rules of a
/// local restart, and a node's start recovers only its own jobs.
@Suite struct SharedStoreTests {
    static func nodes(_ names: [String], lease: Double = 60, clock: ManualClock? = nil) throws -> [PostgresJobStore] {
        let url = try TestPostgres.shared.get().database()
        return try names.map { name in
            if let clock { return try PostgresJobStore(url: url, node: name, leaseSeconds: lease, clock: clock.read) }
            return try PostgresJobStore(url: url, node: name, leaseSeconds: lease)
        }
    }

    /// 60 jobs submitted through three nodes, claimed and finished by the three at once: each runs
    /// exactly once.
    @Test func concurrentClaimsRunEachJobOnce() throws {
        let stores = try Self.nodes(["a", "b", "c"])
        for i in 0..<60 { _ = try stores[i % 3].submit(Fixtures.job(seed: UInt64(i)), limit: 1000) }
        final class Claims: @unchecked Sendable {
            let lock = NSLock()
            var byJob: [String: [String]] = [:]
            func add(_ job: String, _ node: String) { lock.lock(); byJob[job, default: []].append(node); lock.unlock() }
        }
        let claims = Claims()
        DispatchQueue.concurrentPerform(iterations: 3) { n in
            while let job = try? stores[n].claimNext() {
                claims.add(job.id, stores[n].node)
                _ = try? stores[n].finish(job.id, state: .succeeded)
            }
        }
        let claimed = claims.byJob
        #expect(claimed.count == 60)
        #expect(claimed.values.allSatisfy { $0.count == 1 }, "a job claimed twice: \(claimed.filter { $0.value.count > 1 })")
        #expect(try stores[0].list(states: [.succeeded], limit: 1000).jobs.count == 60)
    }

    /// A node that stops renewing (killed, frozen): once its lease has expired, the next claim by
    /// another node requeues the job (attempts + 1, one abnormal stop) and takes it; the first
    /// node's renewal then fails, so it knows to stop. A second expiry fails the job, as a second
    /// crash does on one machine.
    @Test func anExpiredLeaseMovesTheJob() throws {
        let clock = ManualClock()
        let stores = try Self.nodes(["a", "b"], lease: 30, clock: clock)
        let job = try stores[0].submit(Fixtures.job(), limit: 10).0
        #expect(try stores[0].claimNext()?.id == job.id)
        clock.advance(20)
        #expect(try stores[0].renewLease(job.id))
        clock.advance(20)
        #expect(try stores[1].claimNext() == nil, "renewed: still a's")
        clock.advance(31)
        let moved = try #require(try stores[1].claimNext())
        #expect(moved.id == job.id && moved.attempts == 2 && moved.abnormalStops == 1)
        #expect(try !stores[0].renewLease(job.id), "a's claim is gone")
        #expect(try stores[1].renewLease(job.id))
        clock.advance(31)
        #expect(try stores[0].claimNext() == nil)
        let failed = try #require(try stores[0].get(job.id))
        #expect(failed.jobState == .failed && failed.error?.contains("stopped abnormally") == true)
    }

    /// A node restarting requeues the jobs it was running, not the ones other nodes run.
    @Test func aRestartRecoversOnlyItsOwnJobs() throws {
        let stores = try Self.nodes(["a", "b"])
        let first = try stores[0].submit(Fixtures.job(seed: 1), limit: 10).0, second = try stores[0].submit(Fixtures.job(seed: 2), limit: 10).0
        #expect(try stores[0].claimNext()?.id == first.id)
        #expect(try stores[1].claimNext()?.id == second.id)
        let recovered = try stores[0].recoverInterrupted(maxAttempts: 3)
        #expect(recovered.requeued == [first.id] && recovered.failed.isEmpty)
        #expect(try stores[1].get(second.id)?.jobState == .running)
    }

    /// A submit on one node reaches another node's listener at once (LISTEN/NOTIFY), and only at
    /// commit: a refused submit (queue full) notifies nobody.
    @Test func aSubmitWakesListeners() throws {
        let url = try TestPostgres.shared.get().database()
        let store = try PostgresJobStore(url: url, node: "a")
        let woken = DispatchSemaphore(value: 0)
        let listener = NotificationListener(url: url, password: nil) { if $0 == nil || $0?.channel == PostgresJobStore.channel { woken.signal() } }
        listener.start()
        defer { listener.stop() }
        #expect(woken.wait(timeout: .now() + 10) == .success, "the first wake, at connection")
        _ = try store.submit(Fixtures.job(), limit: 10)
        #expect(woken.wait(timeout: .now() + 5) == .success, "woken by the submit")
        #expect(throws: StoreError.queueFull(limit: 1)) { try store.submit(Fixtures.job(seed: 9), limit: 1) }
        #expect(woken.wait(timeout: .now() + 1.5) == .timedOut, "a rolled-back submit wakes nobody")
    }

    /// The schema is versioned: a database written by a newer xattnd is refused, with the reason.
    @Test func refusesANewerSchema() throws {
        let url = try TestPostgres.shared.get().database()
        _ = try PostgresJobStore(url: url, node: "a")
        try PGConnection(url: url).execute("INSERT INTO xattn_schema (version) VALUES (99)")
        do {
            _ = try PostgresJobStore(url: url, node: "a")
            Issue.record("a newer schema was used")
        } catch let error as PGError {
            #expect(error.message.contains("newer"), "\(error)")
        }
    }
}
