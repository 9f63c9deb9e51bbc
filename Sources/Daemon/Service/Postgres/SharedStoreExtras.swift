import Core
import Foundation
import Wire

/// A message between the nodes of a shared store on `xattn_events`. Small by design (NOTIFY
/// payloads end at 8000 bytes): images travel in tables and the message says which job to read.
package struct ClusterMessage: Codable, Equatable, Sendable {
    package enum Kind: String, Codable, Sendable { case state, progress, preview, cancel }
    /// The sending node; "" when the store itself changed the job (an expired lease), so every
    /// node, the sender included, hears of it.
    var node: String
    var job: String
    var kind: Kind
    var progress: JobProgress?
    /// For `preview`: the step it shows (the receiver reads that one, or skips it for a newer one).
    var step: Int?
    /// For `cancel`: the node running the job.
    var target: String?
}

/// What several nodes share beyond the queue (README, "Several machines"): results, previews,
/// cancels asked on another node, the nodes' heartbeats, and the inversion cache.
extension PostgresJobStore {
    func announce(_ message: ClusterMessage, _ db: PGConnection) throws {
        let payload = String(decoding: try JSONEncoder.sorted.encode(message), as: UTF8.self)
        try db.execute("SELECT pg_notify($1, $2)", [.text(Self.eventChannel), .text(payload)])
    }

    /// Tells every other node (delivered when the transaction commits, in commit order).
    package func announce(_ message: ClusterMessage) throws { try write { try announce(message, $0) } }

    // MARK: results

    /// A succeeded job's image and sidecar, kept where every node can fetch them.
    package func saveResult(_ id: String, png: Data, sidecar: Data) throws {
        try write { db in
            try db.execute("""
                INSERT INTO job_result (job_id, png, sidecar, created_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (job_id) DO UPDATE SET png = excluded.png, sidecar = excluded.sidecar, created_at = excluded.created_at
                """, [.text(id), .bytes(png), .bytes(sidecar), PGValue(now)])
        }
    }

    package func keptResult(of id: String) throws -> (png: Data, sidecar: Data)? {
        try write { db in
            let rows = try db.execute("SELECT png, sidecar FROM job_result WHERE job_id = $1", [.text(id)])
            guard let png = rows.bytes(0, "png"), let sidecar = rows.bytes(0, "sidecar") else { return nil }
            return (png, sidecar)
        }
    }

    /// Results beyond the retention limits (days, count; 0 = unlimited), oldest first, as the
    /// worker prunes its results directory; and the previews of jobs that have ended.
    package func pruneResults(days: Int, count: Int) throws {
        try write { db in
            // Previews of ended jobs are kept a minute, for the nodes still relaying the last ones.
            try db.execute("DELETE FROM job_preview WHERE job_id IN (SELECT id FROM job WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1)",
                           [PGValue(now - 60)])
            if days > 0 { try db.execute("DELETE FROM job_result WHERE created_at < $1", [PGValue(now - Double(days) * 86400)]) }
            if count > 0 {
                try db.execute("DELETE FROM job_result WHERE job_id IN (SELECT job_id FROM job_result ORDER BY created_at DESC OFFSET $1)",
                               [PGValue(count)])
            }
        }
    }

    // MARK: previews and cancels

    /// The running job's latest preview, for `job.preview` and watchers on any node.
    package func savePreview(_ preview: JobPreview) throws {
        guard let png = Data(base64Encoded: preview.png) else { return }
        try write { db in
            try db.execute("""
                INSERT INTO job_preview (job_id, step, total, png) VALUES ($1, $2, $3, $4)
                ON CONFLICT (job_id) DO UPDATE SET step = excluded.step, total = excluded.total, png = excluded.png
                """, [.text(preview.job), PGValue(preview.step), PGValue(preview.total), .bytes(png)])
            try announce(ClusterMessage(node: node, job: preview.job, kind: .preview, step: preview.step), db)
        }
    }

    /// The latest preview of a running job (`job.preview`: an ended job has none, its result replaces
    /// it); with `step`, that step's preview whatever the job's state now (a relayed preview whose job
    /// ended meanwhile), nil once a newer one replaced it.
    package func preview(of id: String, step: Int? = nil) throws -> JobPreview? {
        try write { db in
            let condition = step == nil ? "job.state = 'running'" : "job_preview.step = $2"
            let rows = try db.execute("""
                SELECT job_preview.step AS step, job_preview.total AS total, job_preview.png AS png FROM job_preview
                JOIN job ON job.id = job_preview.job_id WHERE job_preview.job_id = $1 AND \(condition)
                """, [.text(id)] + (step.map { [PGValue($0)] } ?? []))
            guard let step = rows.int(0, "step"), let total = rows.int(0, "total"), let png = rows.bytes(0, "png") else { return nil }
            return JobPreview(job: id, step: step, total: total, png: png.base64EncodedString())
        }
    }

    /// Asks the node running `id` to stop it: at once through its listener, and at its next lease
    /// renewal should the message be missed. Returns that node's name; nil when the job is not running.
    package func requestCancel(_ id: String) throws -> String? {
        try write { db in
            guard let runner = try db.execute("UPDATE job SET cancel_requested = true WHERE id = $1 AND state = 'running' RETURNING node",
                                              [.text(id)]).string(0, "node") else { return nil }
            try announce(ClusterMessage(node: node, job: id, kind: .cancel, target: runner), db)
            return runner
        }
    }

    // MARK: nodes

    /// This node's row in `node`: written at start, every 10 s while it runs, and at its stop.
    package func heartbeat(state: String, running: String?, startedAt: Date) throws {
        try write { db in
            try db.execute("""
                INSERT INTO node (name, model, state, running, started_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (name) DO UPDATE SET model = excluded.model, state = excluded.state, running = excluded.running,
                    started_at = excluded.started_at, last_seen = excluded.last_seen
                """, [.text(node), PGValue(modelIdentity), .text(state), PGValue(running), PGValue(startedAt.timeIntervalSince1970), PGValue(now)])
        }
    }

    /// Seconds without a heartbeat after which a node shows as offline.
    static let offlineAfter = 45.0

    package func nodes() throws -> [NodeStatus]? {
        try write { db in
            let rows = try db.execute("SELECT name, model, state, running, last_seen FROM node ORDER BY name")
            return (0..<rows.count).map { r in
                let seen = rows.double(r, "last_seen") ?? 0
                let state = rows.string(r, "state") ?? "offline"
                let offline = state != "stopped" && now - seen > Self.offlineAfter
                return NodeStatus(name: rows.string(r, "name") ?? "", model: rows.string(r, "model"), state: offline ? "offline" : state,
                                  running: offline || state == "stopped" ? nil : rows.string(r, "running"),
                                  lastSeen: JobConversion.timestamp(Date(timeIntervalSince1970: seen)))
            }
        }
    }
}

/// The inversion cache's shared tier: every node's inversions, least recently used evicted beyond
/// `inversionLimit` bytes (the nodes' `cache_size_mb`).
extension PostgresJobStore: SharedInversionTier {
    package func fetch(_ key: String) throws -> Data? {
        try write { db in
            try db.execute("UPDATE inversion SET used_at = $2 WHERE key = $1 RETURNING data", [.text(key), PGValue(now)]).bytes(0, "data")
        }
    }

    package func put(_ key: String, _ data: Data) throws {
        try write { db in
            try db.execute("""
                INSERT INTO inversion (key, data, used_at) VALUES ($1, $2, $3)
                ON CONFLICT (key) DO UPDATE SET data = excluded.data, used_at = excluded.used_at
                """, [.text(key), .bytes(data), PGValue(now)])
            try db.execute("""
                DELETE FROM inversion WHERE key IN (
                    SELECT key FROM (SELECT key, sum(length(data)) OVER (ORDER BY used_at DESC, key) AS running FROM inversion) AS t
                    WHERE running > $1)
                """, [PGValue(inversionLimit)])
        }
    }
}
