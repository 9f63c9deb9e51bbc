import Core
import Foundation
import Wire

/// The job store on a PostgreSQL database that several xattnd nodes share (README, "Several
/// machines"): the same behaviour as SQLiteJobStore on one set of tests (ServiceTests'
/// JobStoreTests), plus what sharing needs. Claims take the queue's head with
/// `FOR UPDATE SKIP LOCKED`, so nodes claiming at once never take the same job nor wait for each
/// other; a running job carries its node's name and a lease the node renews, and a job whose lease
/// has expired (its node killed, unplugged, frozen) is requeued by whichever node claims next, under
/// the rules of a local restart. Submits are serialised by a transaction-scoped advisory lock (the
/// queue limit holds across nodes) and NOTIFY `xattn_queue` at commit wakes idle nodes.
package final class PostgresJobStore: JobStore, @unchecked Sendable {
    private let connection: PGConnection
    private let lock = NSLock()
    let clock: @Sendable () -> Date
    /// This node's name, stamped on the jobs it runs and the jobs and drops submitted here.
    package let node: String
    package var nodeName: String? { node }
    package var kind: String { "postgresql" }
    /// The identity of the model this node has loaded (nil while it loads): jobs submitted here are
    /// for it, and this node claims only jobs for it (or for no model in particular).
    package var modelIdentity: String? {
        get { limitLock.lock(); defer { limitLock.unlock() }; return identity }
        set { limitLock.lock(); identity = newValue; limitLock.unlock() }
    }
    private var identity: String?
    /// Bytes the shared inversion cache may hold (`cache_size_mb`).
    package var inversionLimit: Int {
        get { limitLock.lock(); defer { limitLock.unlock() }; return inversionBytes }
        set { limitLock.lock(); inversionBytes = newValue; limitLock.unlock() }
    }
    private var inversionBytes = 2 << 30
    /// Seconds a claim stays valid without renewal.
    package let leaseSeconds: Double
    private var imageLimit = 4 << 30
    /// Its own lock: it is read inside transactions, which hold `lock`.
    private let limitLock = NSLock()
    package var maximumImageBytes: Int {
        get { limitLock.lock(); defer { limitLock.unlock() }; return imageLimit }
        set { limitLock.lock(); imageLimit = newValue; limitLock.unlock() }
    }

    /// The schema this binary writes; a database at a newer one is refused.
    static let schemaVersion = 2
    /// Queue changes (submits, requeues, resumes): idle nodes look for work.
    static let channel = "xattn_queue"
    /// Job events between nodes (ClusterMessage as JSON): state, progress, previews, cancels.
    static let eventChannel = "xattn_events"

    package init(url: String, password: String? = nil, node: String, leaseSeconds: Double = 60,
                 clock: @escaping @Sendable () -> Date = { Date() }) throws {
        (self.node, self.leaseSeconds, self.clock) = (node, leaseSeconds, clock)
        connection = try PGConnection(url: url, password: password)
        try migrate()
    }

    /// Runs `body` in one transaction, under the lock; once more after a lost connection or a
    /// serialisation failure.
    @discardableResult
    func write<T>(_ body: (PGConnection) throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        do {
            return try connection.transaction { try body(connection) }
        } catch let error as PGError where error.isTransient || error.isConnectionLoss {
            return try connection.transaction { try body(connection) }
        }
    }

    private func migrate() throws {
        try write { db in
            // One node migrates at a time; the others wait here, then see the new version.
            try db.execute("SELECT pg_advisory_xact_lock(7319)")
            try db.execute("CREATE TABLE IF NOT EXISTS xattn_schema (version integer NOT NULL)")
            let version = try db.execute("SELECT max(version) AS v FROM xattn_schema").int(0, "v") ?? 0
            guard version <= Self.schemaVersion else {
                throw PGError(message: "the job database is at schema version \(version), newer than this xattnd's \(Self.schemaVersion); refusing to use it", sqlState: nil)
            }
            for (number, statements) in [(1, Self.schemaV1), (2, Self.schemaV2)] where version < number {
                for statement in statements { try db.execute(statement) }
                try db.execute("INSERT INTO xattn_schema (version) VALUES ($1)", [PGValue(number)])
            }
        }
    }

    static let schemaV1 = [
        """
        CREATE TABLE job (
            id text PRIMARY KEY, seq bigserial, idempotency_key text UNIQUE, owner bigint NOT NULL, source text NOT NULL,
            folder text, state text NOT NULL, priority integer NOT NULL, attempts integer NOT NULL, parameters text NOT NULL,
            input_hash text NOT NULL, created_at double precision NOT NULL, started_at double precision,
            finished_at double precision, error text, result_path text, abnormal_stops integer NOT NULL DEFAULT 0,
            node text, lease_expires double precision)
        """,
        "CREATE INDEX job_queue ON job (state, priority DESC, created_at, seq)",
        """
        CREATE TABLE job_input (
            job_id text PRIMARY KEY REFERENCES job(id) ON DELETE CASCADE, structure bytea NOT NULL, appearance bytea NOT NULL,
            structure_mask bytea, appearance_mask bytea)
        """,
        "CREATE TABLE setting (key text PRIMARY KEY, value text NOT NULL)",
        """
        CREATE TABLE folder_item (
            id bigserial PRIMARY KEY, folder text NOT NULL, name text NOT NULL, files text NOT NULL,
            job_id text NOT NULL REFERENCES job(id) ON DELETE CASCADE, delivered boolean NOT NULL DEFAULT false,
            created_at double precision NOT NULL)
        """,
        "CREATE INDEX folder_item_folder ON folder_item (folder, delivered)",
        """
        CREATE TABLE folder_report (
            id bigserial PRIMARY KEY, folder text NOT NULL, name text NOT NULL, fields text NOT NULL,
            written boolean NOT NULL DEFAULT false, created_at double precision NOT NULL)
        """,
    ]

    /// What several nodes share beyond the queue: who submitted a job and for which model, a cancel
    /// asked on another node, hot-folder drops per node, results, previews, the nodes themselves and
    /// the inversion cache.
    static let schemaV2 = [
        "ALTER TABLE job ADD COLUMN owner_node text, ADD COLUMN model text, ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false",
        "ALTER TABLE folder_item ADD COLUMN node text",
        "ALTER TABLE folder_report ADD COLUMN node text",
        """
        CREATE TABLE job_result (
            job_id text PRIMARY KEY REFERENCES job(id) ON DELETE CASCADE, png bytea NOT NULL, sidecar bytea NOT NULL,
            created_at double precision NOT NULL)
        """,
        """
        CREATE TABLE job_preview (
            job_id text PRIMARY KEY REFERENCES job(id) ON DELETE CASCADE, step integer NOT NULL, total integer NOT NULL, png bytea NOT NULL)
        """,
        """
        CREATE TABLE node (
            name text PRIMARY KEY, model text, precision text, state text NOT NULL, running text,
            started_at double precision NOT NULL, last_seen double precision NOT NULL)
        """,
        "CREATE TABLE inversion (key text PRIMARY KEY, data bytea NOT NULL, used_at double precision NOT NULL)",
    ]

    // MARK: rows

    static let jobColumns = "id, idempotency_key, owner, source, folder, state, priority, attempts, parameters, input_hash, created_at, started_at, finished_at, error, result_path, abnormal_stops, owner_node"

    private static func date(_ seconds: Double?) -> Date? { seconds.map { Date(timeIntervalSince1970: $0) } }

    private static func jobs(_ rows: PGRows) -> [JobRecord] {
        (0..<rows.count).map { r in
            JobRecord(id: rows.string(r, "id") ?? "", idempotencyKey: rows.string(r, "idempotency_key"), owner: Int64(rows.int(r, "owner") ?? 0),
                      source: rows.string(r, "source") ?? "", folder: rows.string(r, "folder"), state: rows.string(r, "state") ?? "failed",
                      priority: rows.int(r, "priority") ?? 0, attempts: rows.int(r, "attempts") ?? 0, parameters: rows.string(r, "parameters") ?? "{}",
                      inputHash: rows.string(r, "input_hash") ?? "", createdAt: date(rows.double(r, "created_at")) ?? .distantPast,
                      startedAt: date(rows.double(r, "started_at")), finishedAt: date(rows.double(r, "finished_at")),
                      error: rows.string(r, "error"), resultPath: rows.string(r, "result_path"), abnormalStops: rows.int(r, "abnormal_stops") ?? 0,
                      ownerNode: rows.string(r, "owner_node"))
        }
    }

    private func job(_ id: String, _ db: PGConnection, forUpdate: Bool = false) throws -> JobRecord? {
        Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE id = $1\(forUpdate ? " FOR UPDATE" : "")", [.text(id)])).first
    }

    /// Writes every mutable field of `r`. The job is not running after it (a claim is its own
    /// statement), so its lease and any cancel asked of the run are cleared; the node that ran it
    /// stays recorded.
    private func update(_ r: JobRecord, _ db: PGConnection) throws {
        try db.execute("""
            UPDATE job SET state = $2, priority = $3, attempts = $4, started_at = $5, finished_at = $6, error = $7,
                result_path = $8, abnormal_stops = $9, lease_expires = NULL, cancel_requested = false
            WHERE id = $1
            """, [.text(r.id), .text(r.state), PGValue(r.priority), PGValue(r.attempts), PGValue(r.startedAt?.timeIntervalSince1970),
                  PGValue(r.finishedAt?.timeIntervalSince1970), PGValue(r.error), PGValue(r.resultPath), PGValue(r.abnormalStops)])
    }

    var now: Double { clock().timeIntervalSince1970 }

    // MARK: submitting

    package func submit(_ new: NewJob, limit: Int) throws -> (JobRecord, existing: Bool) {
        try write { db in
            try db.execute("SELECT pg_advisory_xact_lock(7320)")
            if let key = new.idempotencyKey,
               let earlier = Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE idempotency_key = $1", [.text(key)])).first {
                return (earlier, true)
            }
            return (try insert(new, limit: limit, db), false)
        }
    }

    package func submit(_ new: NewJob, limit: Int, item: FolderItem, rerun: (JobRecord) -> Bool) throws -> (JobRecord, existing: Bool, requeued: Bool) {
        try write { db in
            try db.execute("SELECT pg_advisory_xact_lock(7320)")
            var job: JobRecord, existing = false, requeued = false
            if let key = new.idempotencyKey,
               let earlier = Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE idempotency_key = $1 FOR UPDATE", [.text(key)])).first {
                (job, existing) = (earlier, true)
                // `rerun` looks for a result file on this machine; here results are kept in the
                // database, so a succeeded job runs again when its kept result has been pruned.
                let kept = try db.execute("SELECT 1 FROM job_result WHERE job_id = $1", [.text(earlier.id)]).count == 1
                if earlier.jobState == .failed || earlier.jobState == .cancelled || (earlier.jobState == .succeeded && !kept) {
                    job.requeue()
                    job.attempts = 0
                    try update(job, db)
                    try storeImages(new, of: job.id, db)
                    try db.execute("NOTIFY \(Self.channel)")
                    requeued = true
                }
            } else {
                job = try insert(new, limit: limit, db)
            }
            try db.execute("INSERT INTO folder_item (folder, name, files, job_id, delivered, created_at, node) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                           [.text(item.folder), .text(item.name), .text(item.files), .text(job.id), .text(item.delivered ? "t" : "f"),
                            PGValue(item.createdAt.timeIntervalSince1970), .text(node)])
            return (job, existing, requeued)
        }
    }

    private func insert(_ new: NewJob, limit: Int, _ db: PGConnection) throws -> JobRecord {
        let queued = try db.execute("SELECT count(*) AS n FROM job WHERE state = 'queued'").int(0, "n") ?? 0
        guard queued < limit else { throw StoreError.queueFull(limit: limit) }
        var record = new.queuedRecord(createdAt: clock())
        record.ownerNode = node
        try db.execute("""
            INSERT INTO job (id, idempotency_key, owner, source, folder, state, priority, attempts, parameters, input_hash, created_at, owner_node, model)
            VALUES ($1, $2, $3, $4, $5, 'queued', $6, 0, $7, $8, $9, $10, $11)
            """, [.text(record.id), PGValue(record.idempotencyKey), PGValue(Int(record.owner)), .text(record.source), PGValue(record.folder),
                  PGValue(record.priority), .text(record.parameters), .text(record.inputHash), PGValue(record.createdAt.timeIntervalSince1970),
                  .text(node), PGValue(modelIdentity)])
        try storeImages(new, of: record.id, db)
        try db.execute("NOTIFY \(Self.channel)")
        return record
    }

    private static let inputBytes = "length(structure) + length(appearance) + COALESCE(length(structure_mask), 0) + COALESCE(length(appearance_mask), 0)"

    private func storeImages(_ new: NewJob, of id: String, _ db: PGConnection) throws {
        try db.execute("DELETE FROM job_input WHERE job_id = $1", [.text(id)])
        try makeRoom(new.inputs.bytes, db)
        try db.execute("INSERT INTO job_input (job_id, structure, appearance, structure_mask, appearance_mask) VALUES ($1, $2, $3, $4, $5)",
                       [.text(id), .bytes(new.inputs.structure), .bytes(new.inputs.appearance),
                        new.inputs.structureMask.map { .bytes($0) } ?? .null, new.inputs.appearanceMask.map { .bytes($0) } ?? .null])
    }

    private static func imageBytes(_ db: PGConnection) throws -> Int {
        try db.execute("SELECT COALESCE(sum(\(inputBytes)), 0) AS n FROM job_input").int(0, "n") ?? 0
    }

    private func makeRoom(_ bytes: Int, _ db: PGConnection) throws {
        let limit = maximumImageBytes
        var held = try Self.imageBytes(db)
        guard held + bytes > limit else { return }
        let ended = try db.execute("""
            SELECT job.id AS id, \(Self.inputBytes) AS size FROM job JOIN job_input ON job_input.job_id = job.id
            WHERE job.state IN ('succeeded', 'failed', 'cancelled') ORDER BY job.finished_at ASC, job.seq ASC
            """)
        for r in 0..<ended.count where held + bytes > limit {
            guard let id = ended.string(r, "id"), let size = ended.int(r, "size") else { continue }
            try db.execute("DELETE FROM job_input WHERE job_id = $1", [.text(id)])
            held -= size
        }
        guard held + bytes <= limit else { throw StoreError.storeFull(limit: limit) }
    }

    // MARK: running

    /// Requeues (or fails) the jobs whose lease has expired, then claims the queue's head among the
    /// jobs for this node's model (or for none in particular) with a fresh lease.
    package func claimNext() throws -> JobRecord? {
        try write { db in
            _ = try recover(db, condition: "lease_expires < $1", [PGValue(now)], maxAttempts: Int.max)
            guard try !Self.paused(db) else { return nil }
            let rows = try db.execute("""
                UPDATE job SET state = 'running', attempts = attempts + 1, started_at = $1, node = $2, lease_expires = $3, cancel_requested = false
                WHERE id = (SELECT id FROM job WHERE state = 'queued' AND (model IS NULL OR $4::text IS NULL OR model = $4)
                            ORDER BY priority DESC, created_at ASC, seq ASC LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING \(Self.jobColumns)
                """, [PGValue(now), .text(node), PGValue(now + leaseSeconds), PGValue(modelIdentity)])
            guard let claimed = Self.jobs(rows).first else { return nil }
            // A run starts without the previews of an earlier one.
            try db.execute("DELETE FROM job_preview WHERE job_id = $1", [.text(claimed.id)])
            return claimed
        }
    }

    /// Extends the lease of a job this node runs; false when it is no longer this node's (its
    /// lease expired and another node requeued it).
    @discardableResult
    package func renewLease(_ id: String) throws -> Bool {
        try write { db in
            try db.execute("UPDATE job SET lease_expires = $3 WHERE id = $1 AND node = $2 AND state = 'running' AND NOT cancel_requested RETURNING id",
                           [.text(id), .text(node), PGValue(now + leaseSeconds)]).count == 1
        }
    }

    @discardableResult
    package func finish(_ id: String, state: JobState, error: RPCErrorObject?, resultPath: String?) throws -> JobRecord {
        try write { db in
            guard var record = try job(id, db, forUpdate: true) else { throw StoreError.notFound(id) }
            // A job whose lease expired while this node was away belongs to whoever claimed it since.
            let owner = try db.execute("SELECT node FROM job WHERE id = $1", [.text(id)]).string(0, "node")
            guard record.jobState != .running || owner == node else {
                throw StoreError.invalidState("job \(id) is now run by node \(owner ?? "?") (this node's lease expired)")
            }
            record.state = state.rawValue
            record.finishedAt = state.isFinal ? clock() : nil
            record.error = try error.map { String(decoding: try JSONEncoder.sorted.encode($0), as: UTF8.self) }
            record.resultPath = resultPath
            if state == .queued { record.startedAt = nil }
            try update(record, db)
            if state == .queued { try db.execute("NOTIFY \(Self.channel)") }
            return record
        }
    }

    /// At this node's start: its own jobs left running (the other nodes' run on), and any whose
    /// lease expired, under SQLiteJobStore.recoverInterrupted's rules.
    package func recoverInterrupted(maxAttempts: Int) throws -> (requeued: [String], failed: [String]) {
        try write { db in try recover(db, condition: "(node = $1 OR lease_expires < $2)", [.text(node), PGValue(now)], maxAttempts: maxAttempts) }
    }

    private func recover(_ db: PGConnection, condition: String, _ parameters: [PGValue], maxAttempts: Int) throws -> (requeued: [String], failed: [String]) {
        var requeued: [String] = [], failed: [String] = []
        let running = Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE state = 'running' AND \(condition) FOR UPDATE SKIP LOCKED", parameters))
        for var record in running {
            if try record.recoverFromAbnormalStop(maxAttempts: maxAttempts, at: clock()) { failed.append(record.id) } else { requeued.append(record.id) }
            try update(record, db)
            // Every node's watchers hear of it (no node is the sender: the store changed it).
            try announce(ClusterMessage(node: "", job: record.id, kind: .state), db)
        }
        if !requeued.isEmpty { try db.execute("NOTIFY \(Self.channel)") }
        return (requeued, failed)
    }

    package func cancelQueued(_ id: String) throws -> JobRecord {
        try write { db in
            guard var record = try job(id, db, forUpdate: true) else { throw StoreError.notFound(id) }
            guard record.jobState == .queued else { throw StoreError.invalidState("job \(id) is \(record.state)") }
            record.state = JobState.cancelled.rawValue
            record.finishedAt = clock()
            try update(record, db)
            return record
        }
    }

    package func retry(_ id: String) throws -> JobRecord {
        try write { db in
            guard var record = try job(id, db, forUpdate: true) else { throw StoreError.notFound(id) }
            guard record.jobState == .failed || record.jobState == .cancelled else {
                throw StoreError.invalidState("job \(id) is \(record.state); only failed or cancelled jobs are retried")
            }
            guard try db.execute("SELECT 1 FROM job_input WHERE job_id = $1", [.text(id)]).count == 1 else {
                throw StoreError.invalidState("the images of job \(id) are no longer kept (retention); submit them again")
            }
            record.requeue()
            try update(record, db)
            try db.execute("NOTIFY \(Self.channel)")
            return record
        }
    }

    package func setPriority(_ id: String, _ priority: Int) throws -> JobRecord {
        try write { db in
            guard var record = try job(id, db, forUpdate: true) else { throw StoreError.notFound(id) }
            record.priority = priority
            try db.execute("UPDATE job SET priority = $2 WHERE id = $1", [.text(id), PGValue(priority)])
            return record
        }
    }

    // MARK: reading

    package func get(_ id: String) throws -> JobRecord? { try write { try job(id, $0) } }

    package func list(states: [JobState]?, limit: Int, owner: UInt32?) throws -> (jobs: [JobRecord], others: Int) {
        try write { db in
            var conditions: [String] = [], parameters: [PGValue] = []
            if let states {
                parameters.append(.text("{" + states.map(\.rawValue).joined(separator: ",") + "}"))
                conditions.append("state = ANY($1::text[])")
            }
            let base = conditions.isEmpty ? "TRUE" : conditions.joined(separator: " AND ")
            guard let owner else {
                return (Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE \(base) ORDER BY created_at DESC, seq DESC LIMIT \(limit)", parameters)), 0)
            }
            // A job's owner is (node, uid): the same uid on another machine is someone else.
            let n = parameters.count
            let mine = "\(base) AND owner = $\(n + 1) AND (owner_node IS NULL OR owner_node = $\(n + 2))"
            let ownerParameters = parameters + [PGValue(Int(owner)), .text(node)]
            let jobs = Self.jobs(try db.execute("SELECT \(Self.jobColumns) FROM job WHERE \(mine) ORDER BY created_at DESC, seq DESC LIMIT \(limit)", ownerParameters))
            let all = try db.execute("SELECT count(*) AS n FROM job WHERE \(base)", parameters).int(0, "n") ?? 0
            let own = try db.execute("SELECT count(*) AS n FROM job WHERE \(mine)", ownerParameters).int(0, "n") ?? 0
            return (jobs, all - own)
        }
    }

    package func queuedCount() throws -> Int {
        try write { try $0.execute("SELECT count(*) AS n FROM job WHERE state = 'queued'").int(0, "n") ?? 0 }
    }

    package func inputs(of id: String) throws -> JobInputs {
        try write { db in
            let rows = try db.execute("SELECT structure, appearance, structure_mask, appearance_mask FROM job_input WHERE job_id = $1", [.text(id)])
            guard rows.count == 1, let structure = rows.bytes(0, "structure"), let appearance = rows.bytes(0, "appearance") else {
                throw StoreError.notFound(id)
            }
            return JobInputs(structure: structure, appearance: appearance, structureMask: rows.bytes(0, "structure_mask"),
                             appearanceMask: rows.bytes(0, "appearance_mask"))
        }
    }

    @discardableResult
    package func pruneImages(days: Int, count: Int) throws -> Int {
        try write { db in
            var total = try db.execute("DELETE FROM job_input WHERE job_id IN (SELECT id FROM job WHERE state = 'succeeded') RETURNING job_id").count
            let retryable = try db.execute("""
                SELECT job.id AS id, job.finished_at AS finished FROM job JOIN job_input ON job_input.job_id = job.id
                WHERE job.state IN ('failed', 'cancelled') ORDER BY job.finished_at DESC, job.seq DESC
                """)
            let cutoff = now - Double(days) * 86400
            for r in 0..<retryable.count {
                guard let id = retryable.string(r, "id") else { continue }
                if (count > 0 && r >= count) || (days > 0 && (retryable.double(r, "finished") ?? 0) < cutoff) {
                    try db.execute("DELETE FROM job_input WHERE job_id = $1", [.text(id)])
                    total += 1
                }
            }
            return total
        }
    }

    package func usage() throws -> (imageBytes: Int, fileBytes: Int) {
        try write { db in
            (try Self.imageBytes(db), try db.execute("SELECT pg_database_size(current_database()) AS n").int(0, "n") ?? 0)
        }
    }

    package var isPaused: Bool { (try? write { try Self.paused($0) }) ?? false }

    package func setPaused(_ paused: Bool) throws {
        try write { db in
            try db.execute("INSERT INTO setting (key, value) VALUES ('paused', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           [.text(paused ? "1" : "0")])
            if !paused { try db.execute("NOTIFY \(Self.channel)") }
        }
    }

    private static func paused(_ db: PGConnection) throws -> Bool {
        try db.execute("SELECT value FROM setting WHERE key = 'paused'").string(0, "value") == "1"
    }

    // MARK: hot folders

    package func undelivered(folder: String) throws -> [(item: FolderItem, job: JobRecord)] {
        try write { db in
            let rows = try db.execute("""
                SELECT folder_item.id AS item_id, folder_item.name AS item_name, folder_item.files AS item_files,
                       folder_item.created_at AS item_created, \(Self.jobColumns.split(separator: ",").map { "job." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))
                FROM folder_item JOIN job ON job.id = folder_item.job_id
                WHERE folder_item.folder = $1 AND (folder_item.node = $2 OR folder_item.node IS NULL) AND NOT folder_item.delivered
                ORDER BY folder_item.id
                """, [.text(folder), .text(node)])
            let jobs = Self.jobs(rows)
            return (0..<rows.count).map { r in
                (FolderItem(id: rows.int(r, "item_id").map(Int64.init), folder: folder, name: rows.string(r, "item_name") ?? "",
                            files: rows.string(r, "item_files") ?? "[]", jobId: jobs[r].id, delivered: false,
                            createdAt: Self.date(rows.double(r, "item_created")) ?? .distantPast), jobs[r])
            }
        }
    }

    package func markDelivered(_ itemID: Int64) throws {
        try write { try $0.execute("UPDATE folder_item SET delivered = true WHERE id = $1", [PGValue(Int(itemID))]) }
    }

    package func addReport(_ report: FolderReport) throws -> FolderReport {
        try write { db in
            var report = report
            let rows = try db.execute("INSERT INTO folder_report (folder, name, fields, written, created_at, node) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                                      [.text(report.folder), .text(report.name), .text(report.fields), .text(report.written ? "t" : "f"),
                                       PGValue(report.createdAt.timeIntervalSince1970), .text(node)])
            report.id = rows.int(0, "id").map(Int64.init)
            return report
        }
    }

    package func unwrittenReports(folder: String) throws -> [FolderReport] {
        try write { db in
            let rows = try db.execute("""
                SELECT id, folder, name, fields, written, created_at FROM folder_report
                WHERE folder = $1 AND (node = $2 OR node IS NULL) AND NOT written ORDER BY id
                """, [.text(folder), .text(node)])
            return (0..<rows.count).map { r in
                FolderReport(id: rows.int(r, "id").map(Int64.init), folder: rows.string(r, "folder") ?? folder, name: rows.string(r, "name") ?? "",
                             fields: rows.string(r, "fields") ?? "{}", written: rows.bool(r, "written") ?? false,
                             createdAt: Self.date(rows.double(r, "created_at")) ?? .distantPast)
            }
        }
    }

    package func markReportWritten(_ id: Int64) throws {
        try write { try $0.execute("UPDATE folder_report SET written = true WHERE id = $1", [PGValue(Int(id))]) }
    }
}
