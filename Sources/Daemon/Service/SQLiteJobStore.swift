import Core
import Foundation
import GRDB
import Wire

/// The persistent queue: SQLite in WAL mode with synchronous=FULL, so an acknowledged submit
/// survives a crash; migrations; a database newer than this binary is refused.
package final class SQLiteJobStore: JobStore, @unchecked Sendable {
    let pool: DatabasePool
    let path: String
    /// Bytes of images the store may hold (`store_max_bytes`; live).
    package var maximumImageBytes: Int {
        get { lock.lock(); defer { lock.unlock() }; return imageLimit }
        set { lock.lock(); imageLimit = newValue; lock.unlock() }
    }
    private let lock = NSLock()
    private var imageLimit = 4 << 30
    /// The time stamps jobs get (submitted, started, finished) and retention measures against.
    private let clock: @Sendable () -> Date

    package init(path: String, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        (self.path, self.clock) = (path, clock)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        // Deleted images must give their space back: incremental auto-vacuum (set once; a store
        // made by an earlier version is converted by one VACUUM).
        try pool.barrierWriteWithoutTransaction { db in
            if try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") != 2 {
                try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
                try db.execute(sql: "VACUUM")
            }
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "job") { t in
                t.primaryKey("id", .text)
                t.column("idempotencyKey", .text).unique()
                t.column("owner", .integer).notNull()
                t.column("source", .text).notNull()
                t.column("folder", .text)
                t.column("state", .text).notNull().indexed()
                t.column("priority", .integer).notNull()
                t.column("attempts", .integer).notNull()
                t.column("parameters", .text).notNull()
                t.column("inputHash", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("startedAt", .datetime)
                t.column("finishedAt", .datetime)
                t.column("error", .text)
                t.column("resultPath", .text)
            }
            try db.create(table: "job_input") { t in
                t.primaryKey("jobId", .text).references("job", onDelete: .cascade)
                t.column("structure", .blob).notNull()
                t.column("appearance", .blob).notNull()
            }
            try db.create(table: "setting") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
        }
        migrator.registerMigration("v2-folder-items") { db in
            // A hot-folder drop and the job it became; several drops of the same pair share a job.
            try db.create(table: "folder_item") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("folder", .text).notNull().indexed()
                t.column("name", .text).notNull()
                t.column("files", .text).notNull()
                t.column("jobId", .text).notNull().indexed().references("job", onDelete: .cascade)
                t.column("delivered", .boolean).notNull().defaults(to: false)
                t.column("createdAt", .datetime).notNull()
            }
        }
        migrator.registerMigration("v3-abnormal-stops") { db in
            try db.alter(table: "job") { t in t.add(column: "abnormalStops", .integer).notNull().defaults(to: 0) }
        }
        migrator.registerMigration("v4-folder-reports") { db in
            try db.create(table: "folder_report") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("folder", .text).notNull().indexed()
                t.column("name", .text).notNull()
                t.column("fields", .text).notNull()
                t.column("written", .boolean).notNull().defaults(to: false)
                t.column("createdAt", .datetime).notNull()
            }
        }
        migrator.registerMigration("v5-object-masks") { db in
            // Masks the user drew (PNG or JPEG), kept and pruned with the job's images.
            try db.alter(table: "job_input") { t in
                t.add(column: "structureMask", .blob)
                t.add(column: "appearanceMask", .blob)
            }
        }
        migrator.registerMigration("v6-owner-node") { db in
            // The record's field for shared stores (PostgresJobStore); always NULL on one machine.
            try db.alter(table: "job") { t in t.add(column: "ownerNode", .text) }
        }
        if try pool.read({ try migrator.hasBeenSuperseded($0) }) {
            throw DatabaseError(message: "the job store at \(path) was written by a newer xattnd; refusing to use it")
        }
        try migrator.migrate(pool)
    }

    /// Inserts a queued job, or returns the job an earlier submit with the same idempotency key
    /// created. Refuses when `limit` jobs are already queued.
    package func submit(_ new: NewJob, limit: Int) throws -> (JobRecord, existing: Bool) {
        try pool.write { db in
            if let key = new.idempotencyKey, let earlier = try JobRecord.filter(Column("idempotencyKey") == key).fetchOne(db) {
                return (earlier, true)
            }
            return (try insert(new, limit: limit, db), false)
        }
    }

    /// A hot-folder drop: its job (an earlier one with the same content, requeued if it had failed
    /// or been cancelled, or a new one) and its item, in one transaction.
    package func submit(_ new: NewJob, limit: Int, item: FolderItem,
                rerun: (JobRecord) -> Bool) throws -> (JobRecord, existing: Bool, requeued: Bool) {
        try pool.write { db in
            var job: JobRecord, existing = false, requeued = false
            if let key = new.idempotencyKey, let earlier = try JobRecord.filter(Column("idempotencyKey") == key).fetchOne(db) {
                (job, existing) = (earlier, true)
                // Failed or cancelled, or succeeded with its result pruned: run it again, with the
                // images of this drop (the job's own may have been deleted by retention).
                if earlier.jobState == .failed || earlier.jobState == .cancelled || (earlier.jobState == .succeeded && rerun(earlier)) {
                    job.requeue()
                    job.attempts = 0
                    try job.update(db)
                    try storeImages(new, of: job.id, db)
                    requeued = true
                }
            } else {
                job = try insert(new, limit: limit, db)
            }
            var item = item
            item.jobId = job.id
            try item.insert(db)
            return (job, existing, requeued)
        }
    }

    /// Drops of `folder` whose results or failures have not been delivered yet, with their jobs.
    package func undelivered(folder: String) throws -> [(item: FolderItem, job: JobRecord)] {
        try pool.read { db in
            try FolderItem.filter(Column("folder") == folder && Column("delivered") == false).order(Column("id")).fetchAll(db).compactMap { item in
                try JobRecord.fetchOne(db, key: item.jobId).map { (item, $0) }
            }
        }
    }

    package func addReport(_ report: FolderReport) throws -> FolderReport {
        try pool.write { db in
            var report = report
            try report.insert(db)
            return report
        }
    }

    package func unwrittenReports(folder: String) throws -> [FolderReport] {
        try pool.read { try FolderReport.filter(Column("folder") == folder && Column("written") == false).order(Column("id")).fetchAll($0) }
    }

    package func markReportWritten(_ id: Int64) throws {
        try pool.write { db in try db.execute(sql: "UPDATE folder_report SET written = 1 WHERE id = ?", arguments: [id]) }
    }

    package func markDelivered(_ itemID: Int64) throws {
        try pool.write { db in try db.execute(sql: "UPDATE folder_item SET delivered = 1 WHERE id = ?", arguments: [itemID]) }
    }

    private func insert(_ new: NewJob, limit: Int, _ db: Database) throws -> JobRecord {
        let queued = try JobRecord.filter(Column("state") == JobState.queued.rawValue).fetchCount(db)
        guard queued < limit else { throw StoreError.queueFull(limit: limit) }
        let record = new.queuedRecord(createdAt: clock())
        try record.insert(db)
        try storeImages(new, of: record.id, db)  // a store full of waiting images rolls the insert back
        return record
    }

    /// The job's images (replacing any it had), within the store's bound.
    private func storeImages(_ new: NewJob, of id: String, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM job_input WHERE jobId = ?", arguments: [id])
        try makeRoom(new.inputs.bytes, db)
        try db.execute(sql: "INSERT INTO job_input (jobId, structure, appearance, structureMask, appearanceMask) VALUES (?, ?, ?, ?, ?)",
                       arguments: [id, new.inputs.structure, new.inputs.appearance, new.inputs.structureMask, new.inputs.appearanceMask])
    }

    /// Marks the highest-priority, oldest queued job running (attempts + 1) and returns it; nil
    /// when none is queued or the queue is paused.
    package func claimNext() throws -> JobRecord? {
        try pool.write { db in
            guard try !Self.paused(db) else { return nil }
            guard let id = try String.fetchOne(db, sql: """
                UPDATE job SET state = 'running', attempts = attempts + 1, startedAt = ?
                WHERE id = (SELECT id FROM job WHERE state = 'queued' ORDER BY priority DESC, createdAt ASC, rowid ASC LIMIT 1)
                RETURNING id
                """, arguments: [clock()]) else { return nil }
            return try JobRecord.fetchOne(db, key: id)
        }
    }

    /// The bytes of one job_input row's files, in SQL.
    static let inputBytes = "length(structure) + length(appearance) + COALESCE(length(structureMask), 0) + COALESCE(length(appearanceMask), 0)"

    /// Bytes of images held (the images and masks of every job whose inputs are kept).
    static func imageBytes(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(\(inputBytes)), 0) FROM job_input") ?? 0
    }

    /// Makes room for `bytes` more of images under the bound: the kept images of ended jobs go
    /// first, oldest first; a store full of waiting jobs' images refuses the new one.
    private func makeRoom(_ bytes: Int, _ db: Database) throws {
        let limit = maximumImageBytes
        var held = try Self.imageBytes(db)
        guard held + bytes > limit else { return }
        let ended = try Row.fetchAll(db, sql: """
            SELECT job.id AS id, \(Self.inputBytes) AS size FROM job JOIN job_input ON job_input.jobId = job.id
            WHERE job.state IN ('succeeded', 'failed', 'cancelled') ORDER BY job.finishedAt ASC, job.rowid ASC
            """)
        for row in ended where held + bytes > limit {
            guard let id: String = row["id"], let size: Int = row["size"] else { continue }
            try db.execute(sql: "DELETE FROM job_input WHERE jobId = ?", arguments: [id])
            held -= size
        }
        guard held + bytes <= limit else { throw StoreError.storeFull(limit: limit) }
    }

    /// Deletes the images of ended jobs that no longer need them: a succeeded job's at once (its
    /// result exists; a hot folder's re-drop brings the images again), a failed or cancelled one's
    /// (kept so that `job.retry` can run it) beyond `days` or the newest `count` (0: no limit).
    /// Returns how many jobs' images were deleted.
    @discardableResult
    package func pruneImages(days: Int, count: Int) throws -> Int {
        let removed = try pool.write { db -> Int in
            try db.execute(sql: "DELETE FROM job_input WHERE jobId IN (SELECT id FROM job WHERE state = 'succeeded')")
            var total = db.changesCount
            let retryable = try Row.fetchAll(db, sql: """
                SELECT job.id AS id, job.finishedAt AS finishedAt FROM job JOIN job_input ON job_input.jobId = job.id
                WHERE job.state IN ('failed', 'cancelled') ORDER BY job.finishedAt DESC, job.rowid DESC
                """)
            let cutoff = clock().addingTimeInterval(-Double(days) * 86400)
            for (index, row) in retryable.enumerated() {
                let finished: Date? = row["finishedAt"]
                guard let id: String = row["id"] else { continue }
                if (count > 0 && index >= count) || (days > 0 && (finished ?? .distantPast) < cutoff) {
                    try db.execute(sql: "DELETE FROM job_input WHERE jobId = ?", arguments: [id])
                    total += 1
                }
            }
            return total
        }
        if removed > 0 { try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA incremental_vacuum") } }
        return removed
    }

    /// What the store holds, for `daemon.status`.
    package func usage() throws -> (imageBytes: Int, fileBytes: Int) {
        let images = try pool.read { try Self.imageBytes($0) }
        let files = ["", "-wal", "-shm"].reduce(0) { total, suffix in
            total + (((try? FileManager.default.attributesOfItem(atPath: path + suffix))?[.size] as? NSNumber)?.intValue ?? 0)
        }
        return (images, files)
    }

    package func inputs(of id: String) throws -> JobInputs {
        try pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT structure, appearance, structureMask, appearanceMask FROM job_input WHERE jobId = ?",
                                             arguments: [id]) else {
                throw StoreError.notFound(id)
            }
            return JobInputs(structure: row["structure"], appearance: row["appearance"],
                             structureMask: row["structureMask"], appearanceMask: row["appearanceMask"])
        }
    }

    /// Records the end of a running job.
    @discardableResult
    package func finish(_ id: String, state: JobState, error: RPCErrorObject?, resultPath: String?) throws -> JobRecord {
        try pool.write { db in
            guard var record = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound(id) }
            record.state = state.rawValue
            record.finishedAt = state.isFinal ? clock() : nil
            record.error = try error.map { String(decoding: try JSONEncoder.sorted.encode($0), as: UTF8.self) }
            record.resultPath = resultPath
            if state == .queued { record.startedAt = nil }
            try record.update(db)
            return record
        }
    }

    /// At start: jobs left running. A clean stop (SIGTERM) puts its running job back in the queue,
    /// so a job still marked running means the process died abnormally while it ran: a crash, a
    /// SIGKILL, a power loss. Such a job is run once more (the cause may have been anything), and
    /// failed the second time, so one job that kills the service cannot take the queue down with
    /// it restart after restart. A job started `maxAttempts` times is failed too.
    package func recoverInterrupted(maxAttempts: Int) throws -> (requeued: [String], failed: [String]) {
        try pool.write { db in
            var requeued: [String] = [], failed: [String] = []
            for var record in try JobRecord.filter(Column("state") == JobState.running.rawValue).fetchAll(db) {
                if try record.recoverFromAbnormalStop(maxAttempts: maxAttempts, at: clock()) { failed.append(record.id) } else { requeued.append(record.id) }
                try record.update(db)
            }
            return (requeued, failed)
        }
    }

    /// Cancels a queued job (a running one is stopped by the worker, which then calls `finish`).
    package func cancelQueued(_ id: String) throws -> JobRecord {
        try pool.write { db in
            guard var record = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound(id) }
            guard record.jobState == .queued else { throw StoreError.invalidState("job \(id) is \(record.state)") }
            record.state = JobState.cancelled.rawValue
            record.finishedAt = clock()
            try record.update(db)
            return record
        }
    }

    package func retry(_ id: String) throws -> JobRecord {
        try pool.write { db in
            guard var record = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound(id) }
            guard record.jobState == .failed || record.jobState == .cancelled else {
                throw StoreError.invalidState("job \(id) is \(record.state); only failed or cancelled jobs are retried")
            }
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM job_input WHERE jobId = ?)", arguments: [id]) == true else {
                throw StoreError.invalidState("the images of job \(id) are no longer kept (retention); submit them again")
            }
            record.requeue()
            try record.update(db)
            return record
        }
    }

    package func setPriority(_ id: String, _ priority: Int) throws -> JobRecord {
        try pool.write { db in
            guard var record = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound(id) }
            record.priority = priority
            try record.update(db)
            return record
        }
    }

    package var kind: String { "sqlite" }

    package func get(_ id: String) throws -> JobRecord? { try pool.read { try JobRecord.fetchOne($0, key: id) } }

    /// Newest first; only `owner`'s jobs when given, with the number of others' jobs left out.
    package func list(states: [JobState]?, limit: Int, owner: UInt32?) throws -> (jobs: [JobRecord], others: Int) {
        try pool.read { db in
            var request = JobRecord.order(Column("createdAt").desc, Column("rowid").desc)
            if let states { request = request.filter(states.map(\.rawValue).contains(Column("state"))) }
            guard let owner else { return (try request.limit(limit).fetchAll(db), 0) }
            let others = try request.filter(Column("owner") != Int64(owner)).fetchCount(db)
            return (try request.filter(Column("owner") == Int64(owner)).limit(limit).fetchAll(db), others)
        }
    }

    package func queuedCount() throws -> Int {
        try pool.read { try JobRecord.filter(Column("state") == JobState.queued.rawValue).fetchCount($0) }
    }

    package var isPaused: Bool { (try? pool.read { try Self.paused($0) }) ?? false }

    package func setPaused(_ paused: Bool) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO setting (key, value) VALUES ('paused', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [paused ? "1" : "0"])
        }
    }

    private static func paused(_ db: Database) throws -> Bool {
        try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = 'paused'") == "1"
    }
}

// The records as GRDB rows (table names and the row ids SQLite assigns).
extension JobRecord: FetchableRecord, PersistableRecord {
    package static let databaseTableName = "job"
}

extension FolderItem: FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "folder_item"
    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

extension FolderReport: FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "folder_report"
    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}
