import Foundation
import GRDB
import Testing
@testable import Service
import Wire

/// The persistent queue, in-process on a scratch database: claim order, idempotency, bounds,
/// recovery after an abnormal stop, retention — for every implementation — and SQLite's migrations.
@Suite struct JobStoreTests {
    @Test(arguments: StoreKind.allCases) func claimsHighestPriorityThenOldest(kind: StoreKind) throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(kind, clock: clock.read)
        var ids: [String] = []
        for priority in [0, 5, 0, 5, -1] {
            ids.append(try store.submit(Fixtures.job(priority: priority, seed: UInt64(ids.count)), limit: 10).0.id)
            clock.advance(1)
        }
        var order: [String] = []
        while let job = try store.claimNext() { order.append(job.id) }
        #expect(order == [ids[1], ids[3], ids[0], ids[2], ids[4]])
        #expect(try store.get(ids[1])?.attempts == 1)
        #expect(try store.get(ids[1])?.startedAt == clock.now)
    }

    /// Two jobs submitted within one clock tick run in submission order (rowid breaks the tie).
    @Test(arguments: StoreKind.allCases) func equalTimesKeepSubmissionOrder(kind: StoreKind) throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(kind, clock: clock.read)
        let first = try store.submit(Fixtures.job(seed: 1), limit: 10).0.id
        let second = try store.submit(Fixtures.job(seed: 2), limit: 10).0.id
        #expect(try store.claimNext()?.id == first)
        #expect(try store.claimNext()?.id == second)
    }

    @Test(arguments: StoreKind.allCases) func pausedQueueClaimsNothing(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        _ = try store.submit(Fixtures.job(), limit: 10)
        try store.setPaused(true)
        #expect(try store.claimNext() == nil)
        #expect(store.isPaused)
        try store.setPaused(false)
        #expect(try store.claimNext() != nil)
    }

    @Test(arguments: StoreKind.allCases) func idempotencyKeyReturnsTheFirstJob(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        let (first, existing) = try store.submit(Fixtures.job(key: "k1"), limit: 10)
        #expect(!existing)
        // Different options under the same key: still the first job (the key names the request).
        let (again, repeated) = try store.submit(Fixtures.job(key: "k1", seed: 7), limit: 10)
        #expect(repeated && again.id == first.id)
        #expect(try store.queuedCount() == 1)
    }

    @Test(arguments: StoreKind.allCases) func queueLimitCountsQueuedJobsOnly(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        _ = try store.submit(Fixtures.job(seed: 1), limit: 2)
        _ = try store.submit(Fixtures.job(seed: 2), limit: 2)
        #expect(throws: StoreError.queueFull(limit: 2)) { try store.submit(Fixtures.job(seed: 3), limit: 2) }
        _ = try store.claimNext()
        _ = try store.submit(Fixtures.job(seed: 3), limit: 2)
        #expect(try store.queuedCount() == 2)
    }

    /// A job found running at start was interrupted: it is queued again; the second abnormal stop
    /// during the same job fails it, so one poisonous job cannot crash the service forever.
    @Test(arguments: StoreKind.allCases) func recoveryRequeuesOnceThenFails(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        let id = try store.submit(Fixtures.job(), limit: 10).0.id
        _ = try store.claimNext()
        #expect(try store.recoverInterrupted(maxAttempts: 5) == ([id], []))
        let requeued = try #require(try store.get(id))
        #expect(requeued.jobState == .queued && requeued.startedAt == nil && requeued.abnormalStops == 1)
        _ = try store.claimNext()
        #expect(try store.recoverInterrupted(maxAttempts: 5) == ([], [id]))
        let failed = try #require(try store.get(id))
        #expect(failed.jobState == .failed && failed.error?.contains("stopped abnormally") == true)
        // Nothing running: nothing to recover.
        #expect(try store.recoverInterrupted(maxAttempts: 5) == ([], []))
    }

    @Test(arguments: StoreKind.allCases) func recoveryRespectsMaxAttempts(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        let id = try store.submit(Fixtures.job(), limit: 10).0.id
        _ = try store.claimNext()
        #expect(try store.recoverInterrupted(maxAttempts: 1) == ([], [id]))
    }

    @Test(arguments: StoreKind.allCases) func retryNeedsKeptImages(kind: StoreKind) throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(kind, clock: clock.read)
        let id = try store.submit(Fixtures.job(), limit: 10).0.id
        #expect(throws: StoreError.self) { try store.retry(id) }  // queued: nothing to retry
        _ = try store.cancelQueued(id)
        #expect(try store.retry(id).jobState == .queued)
        _ = try store.cancelQueued(id)
        clock.advance(2 * 86400)
        #expect(try store.pruneImages(days: 1, count: 0) == 1)
        #expect(throws: StoreError.invalidState("the images of job \(id) are no longer kept (retention); submit them again")) {
            try store.retry(id)
        }
    }

    /// The image bound: ended jobs' images make room, oldest first; waiting jobs' never do.
    @Test(arguments: StoreKind.allCases) func imageBoundEvictsEndedJobsOnly(kind: StoreKind) throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(kind, clock: clock.read)
        store.maximumImageBytes = 100
        let big = Data(repeating: 7, count: 20)
        let old = try store.submit(Fixtures.job(seed: 1, structure: big, appearance: big), limit: 10).0.id
        _ = try store.cancelQueued(old)
        clock.advance(1)
        _ = try store.submit(Fixtures.job(seed: 2, structure: big, appearance: big), limit: 10)
        // 40 + 40 held; 40 more need the cancelled job's images to go.
        _ = try store.submit(Fixtures.job(seed: 3, structure: big, appearance: big), limit: 10)
        #expect(throws: StoreError.notFound(old)) { try store.inputs(of: old) }
        #expect(throws: StoreError.storeFull(limit: 100)) {
            try store.submit(Fixtures.job(seed: 4, structure: big, appearance: big), limit: 10)
        }
        #expect(try store.usage().imageBytes == 80)
    }

    /// Others' jobs are counted, not listed.
    @Test(arguments: StoreKind.allCases) func listShowsTheOwnersJobs(kind: StoreKind) throws {
        let scratch = try Scratch()
        let store = try scratch.store(kind)
        let mine = try store.submit(Fixtures.job(owner: 1, seed: 1), limit: 10).0.id
        _ = try store.submit(Fixtures.job(owner: 2, seed: 2), limit: 10)
        let (jobs, others) = try store.list(states: nil, limit: 10, owner: 1)
        #expect(jobs.map(\.id) == [mine] && others == 1)
        #expect(try store.list(states: [.running], limit: 10).jobs.isEmpty)
    }

    /// A store written by the first release (schema v1 only) opens with its jobs intact and the
    /// later columns at their defaults.
    @Test func migratesAVersionOneStore() throws {
        let scratch = try Scratch()
        let path = scratch.path + "/jobs.sqlite"
        let queue = try DatabaseQueue(path: path)
        var v1 = DatabaseMigrator()
        v1.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE job (id TEXT PRIMARY KEY, idempotencyKey TEXT UNIQUE, owner INTEGER NOT NULL, source TEXT NOT NULL,
                  folder TEXT, state TEXT NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL, parameters TEXT NOT NULL,
                  inputHash TEXT NOT NULL, createdAt DATETIME NOT NULL, startedAt DATETIME, finishedAt DATETIME, error TEXT, resultPath TEXT);
                CREATE INDEX job_on_state ON job(state);
                CREATE TABLE job_input (jobId TEXT PRIMARY KEY REFERENCES job(id) ON DELETE CASCADE, structure BLOB NOT NULL, appearance BLOB NOT NULL);
                CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                INSERT INTO job VALUES ('j-old', NULL, 1000, 'rpc', NULL, 'queued', 0, 0, '{}', 'h', '2026-01-01 00:00:00.000', NULL, NULL, NULL, NULL);
                INSERT INTO job_input VALUES ('j-old', x'01', x'02');
                """)
        }
        try v1.migrate(queue)
        try queue.close()

        let store = try SQLiteJobStore(path: path)
        let job = try #require(try store.get("j-old"))
        #expect(job.abnormalStops == 0 && job.jobState == .queued)
        #expect(try store.unwrittenReports(folder: "any").isEmpty)  // v4's table exists
        #expect(try store.claimNext()?.id == "j-old")
    }

    /// A store a newer xattnd migrated further is refused rather than misread.
    @Test func refusesAStoreFromANewerVersion() throws {
        let scratch = try Scratch()
        _ = try scratch.store()
        let queue = try DatabaseQueue(path: scratch.path + "/jobs.sqlite")
        try queue.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-future')") }
        try queue.close()
        #expect(throws: DatabaseError.self) { try scratch.store() }
    }
}
