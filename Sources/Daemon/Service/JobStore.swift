import Core
import Foundation
import Wire

/// One job as stored. Images live in `job_input`, apart, so listing never reads them.
package struct JobRecord: Codable, Equatable, Sendable {
    var id: String
    var idempotencyKey: String?
    var owner: Int64
    var source: String
    var folder: String?
    var state: String
    var priority: Int
    var attempts: Int
    /// TransferParameters as JSON.
    var parameters: String
    var inputHash: String
    var createdAt: Date
    var startedAt: Date?
    var finishedAt: Date?
    /// RPCErrorObject as JSON.
    var error: String?
    var resultPath: String?
    /// Times the process died abnormally (crash, SIGKILL, power loss) while this job ran.
    var abnormalStops = 0
    /// On a shared store, the node the job was submitted on: its owner is (node, uid), so uid 1000
    /// of one machine is not uid 1000 of another. nil on one machine.
    var ownerNode: String?

    /// Whether `uid` on node `node` (nil: this machine's store is not shared) owns the job.
    func isOwned(by uid: UInt32, on node: String?) -> Bool {
        UInt32(clamping: owner) == uid && (ownerNode == nil || ownerNode == node)
    }

    var jobState: JobState { JobState(rawValue: state) ?? .failed }

    /// The rule for a job found running after its process died (a crash, a kill, a power loss, or
    /// on a shared store an expired lease): one more abnormal stop; failed at the second, or once
    /// started `maxAttempts` times, else back to the queue. Returns whether it failed.
    mutating func recoverFromAbnormalStop(maxAttempts: Int, at now: Date) throws -> Bool {
        abnormalStops += 1
        let reason: String? = abnormalStops >= Self.abnormalStopLimit
            ? "the service stopped abnormally (a crash, a kill or a power loss) \(abnormalStops) times while running this job; it is not run again automatically (xattnctl retry runs it once more)"
            : attempts >= maxAttempts ? "interrupted \(attempts) times; not retried" : nil
        if let reason {
            state = JobState.failed.rawValue
            finishedAt = now
            error = String(decoding: try JSONEncoder.sorted.encode(WireError.internalError(reason).object), as: UTF8.self)
            return true
        }
        state = JobState.queued.rawValue
        startedAt = nil
        return false
    }

    /// Abnormal stops during one job after which it is failed instead of run again.
    static let abnormalStopLimit = 2

    /// Back to the queue to run again (a retry, a hot-folder re-drop): its end and errors forgotten.
    mutating func requeue() {
        (state, error, finishedAt, startedAt, resultPath, abnormalStops) = (JobState.queued.rawValue, nil, nil, nil, nil, 0)
    }
}

/// A hot-folder drop: `files` are its names in processing/ (a job directory is one name).
package struct FolderItem: Codable, Equatable, Sendable {
    var id: Int64?
    var folder: String
    var name: String
    /// JSON array of names.
    var files: String
    var jobId: String
    var delivered = false
    var createdAt = Date()

    var fileNames: [String] { (try? JSONDecoder().decode([String].self, from: Data(files.utf8))) ?? [] }
}

/// A hot-folder failure to report in the folder: `NAME.error.json` beside the inputs in failed/.
/// Recorded first, written then, and written again until it is (a full disk, a name too long).
package struct FolderReport: Codable, Equatable, Sendable {
    var id: Int64?
    var folder: String
    /// The inputs' stem in failed/.
    var name: String
    /// The error file's fields (JSON object).
    var fields: String
    var written = false
    var createdAt = Date()
}

/// Why the store refused something.
package enum StoreError: Error, Equatable {
    case queueFull(limit: Int)
    /// The images of waiting jobs fill the store's bound (`store_max_bytes`).
    case storeFull(limit: Int)
    case notFound(String)
    case invalidState(String)
}

/// A job to queue, as the RPC methods and the hot folders hand it to the store.
package struct NewJob {
    var owner: UInt32
    var source: String
    var folder: String?
    var priority: Int
    var idempotencyKey: String?
    var parameters: TransferParameters
    var inputs: JobInputs

    /// The queued job this submit becomes, under a new id.
    func queuedRecord(createdAt: Date) -> JobRecord {
        JobRecord(id: "j-" + UUID().uuidString.lowercased().prefix(12).replacingOccurrences(of: "-", with: ""),
                  idempotencyKey: idempotencyKey, owner: Int64(owner), source: source, folder: folder,
                  state: JobState.queued.rawValue, priority: priority, attempts: 0, parameters: parametersJSON,
                  inputHash: contentHash, createdAt: createdAt, abnormalStops: 0)
    }

    /// The options as stored (sorted keys: equal options, equal text).
    var parametersJSON: String { String(decoding: (try? JSONEncoder.sorted.encode(parameters)) ?? Data(), as: UTF8.self) }

    /// SHA-256 of both images, the options and the masks given, each length-prefixed: equal
    /// hashes, equal work (a job without masks hashes as before masks existed).
    var contentHash: String {
        var hash = Core.SHA256()
        var parts = [Array(inputs.structure), Array(inputs.appearance), Array(parametersJSON.utf8)]
        for (name, mask) in [("structure-mask", inputs.structureMask), ("appearance-mask", inputs.appearanceMask)] {
            if let mask { parts += [Array(name.utf8), Array(mask)] }
        }
        for part in parts {
            hash.update(Array("\(part.count):".utf8))
            hash.update(part)
        }
        return Core.SHA256.hex(hash.finalize())
    }
}

/// The files a job runs on: its two images (PNG or JPEG) and the object masks the user drew.
package struct JobInputs: Equatable, Sendable {
    var structure: Data
    var appearance: Data
    var structureMask: Data?
    var appearanceMask: Data?

    init(structure: Data, appearance: Data, structureMask: Data? = nil, appearanceMask: Data? = nil) {
        (self.structure, self.appearance, self.structureMask, self.appearanceMask) = (structure, appearance, structureMask, appearanceMask)
    }

    var bytes: Int { structure.count + appearance.count + (structureMask?.count ?? 0) + (appearanceMask?.count ?? 0) }
}

/// The persistent job queue as the service uses it: jobs and their images, hot-folder items and
/// error reports, the pause flag. Each call is one transaction. `SQLiteJobStore` (one machine, the
/// state directory) is the implementation today; the tests in ServiceTests' JobStoreTests hold any
/// implementation to the same behaviour.
package protocol JobStore: AnyObject, Sendable {
    /// Bytes of images the store may hold (`store_max_bytes`; live).
    var maximumImageBytes: Int { get set }
    var isPaused: Bool { get }
    func setPaused(_ paused: Bool) throws

    /// Inserts a queued job, or returns the job an earlier submit with the same idempotency key
    /// created. Refuses (`queueFull`) when `limit` jobs are already queued, (`storeFull`) when the
    /// images of waiting jobs leave no room.
    func submit(_ new: NewJob, limit: Int) throws -> (JobRecord, existing: Bool)
    /// A hot-folder drop: its job (an earlier one with the same content, requeued if it had failed
    /// or been cancelled or `rerun` says so, or a new one) and its item, in one transaction. A store
    /// that keeps results itself (PostgresJobStore) reruns a succeeded job when it no longer keeps
    /// its result, instead of asking `rerun` (which looks for this machine's result file).
    func submit(_ new: NewJob, limit: Int, item: FolderItem, rerun: (JobRecord) -> Bool) throws -> (JobRecord, existing: Bool, requeued: Bool)
    /// Marks the highest-priority, oldest queued job running (attempts + 1) and returns it; nil
    /// when none is queued or the queue is paused.
    func claimNext() throws -> JobRecord?
    /// This process's node name on a shared store; nil on one machine.
    var nodeName: String? { get }
    /// Extends this node's claim on a running job; false when this node should stop running it (its
    /// lease was taken by another node, or the job was cancelled from another node).
    func renewLease(_ id: String) throws -> Bool
    /// Records the end (or, with a state that is not final, the return to the queue) of a running job.
    @discardableResult
    func finish(_ id: String, state: JobState, error: RPCErrorObject?, resultPath: String?) throws -> JobRecord
    /// At start: jobs left running by an abnormal stop are requeued, or failed at their second
    /// abnormal stop or after `maxAttempts` starts.
    func recoverInterrupted(maxAttempts: Int) throws -> (requeued: [String], failed: [String])
    func cancelQueued(_ id: String) throws -> JobRecord
    func retry(_ id: String) throws -> JobRecord
    func setPriority(_ id: String, _ priority: Int) throws -> JobRecord

    func get(_ id: String) throws -> JobRecord?
    /// Newest first; only `owner`'s jobs when given, with the number of others' jobs left out.
    func list(states: [JobState]?, limit: Int, owner: UInt32?) throws -> (jobs: [JobRecord], others: Int)
    func queuedCount() throws -> Int
    func inputs(of id: String) throws -> JobInputs
    /// Deletes the images of ended jobs that no longer need them; returns how many jobs' went.
    @discardableResult
    func pruneImages(days: Int, count: Int) throws -> Int
    /// Bytes of images held, and bytes the store takes on disk.
    func usage() throws -> (imageBytes: Int, fileBytes: Int)

    func undelivered(folder: String) throws -> [(item: FolderItem, job: JobRecord)]
    func markDelivered(_ itemID: Int64) throws
    func addReport(_ report: FolderReport) throws -> FolderReport
    func unwrittenReports(folder: String) throws -> [FolderReport]
    func markReportWritten(_ id: Int64) throws

    // What the nodes of a shared store share beyond the queue (README, "Several machines"). A store
    // of one machine keeps none of it (the defaults below): its results are the worker's files, its
    // previews the worker's memory, and there are no other nodes.
    /// "sqlite" or "postgresql" (`daemon.status`).
    var kind: String { get }
    /// Keeps a succeeded job's image and sidecar where every node can fetch them.
    func saveResult(_ id: String, png: Data, sidecar: Data) throws
    func keptResult(of id: String) throws -> (png: Data, sidecar: Data)?
    /// Drops kept results beyond the retention limits (days, count; 0 = unlimited).
    func pruneResults(days: Int, count: Int) throws
    /// A running job's latest kept preview; with `step`, that step's, whatever the job's state now.
    func preview(of id: String, step: Int?) throws -> JobPreview?
    /// Asks the node running `id` to stop it; that node's name, or nil when no node runs it.
    func requestCancel(_ id: String) throws -> String?
    /// Every node that has used the store (nil: a store of one machine).
    func nodes() throws -> [NodeStatus]?
}

extension JobStore {
    /// This process's node name on a shared store; nil on one machine.
    package var nodeName: String? { nil }

    /// `text` (a uid, a folder's name) made unique across the nodes of a shared store: owners and
    /// idempotency keys are per node (README, "Several machines").
    func scoped(_ text: String) -> String { nodeName.map { "\($0)/\(text)" } ?? text }

    /// Extends this node's claim on a running job; false when the job is no longer this node's. A
    /// store of one machine has no leases.
    package func renewLease(_ id: String) throws -> Bool { true }
    package func saveResult(_ id: String, png: Data, sidecar: Data) throws {}
    package func keptResult(of id: String) throws -> (png: Data, sidecar: Data)? { nil }
    package func pruneResults(days: Int, count: Int) throws {}
    package func preview(of id: String, step: Int?) throws -> JobPreview? { nil }
    package func requestCancel(_ id: String) throws -> String? { nil }
    package func nodes() throws -> [NodeStatus]? { nil }

    @discardableResult
    func finish(_ id: String, state: JobState, error: RPCErrorObject? = nil, resultPath: String? = nil) throws -> JobRecord {
        try finish(id, state: state, error: error, resultPath: resultPath)
    }

    func list(states: [JobState]?, limit: Int) throws -> (jobs: [JobRecord], others: Int) {
        try list(states: states, limit: limit, owner: nil)
    }

    /// A succeeded job's image and sidecar: kept by a shared store (it ran on any node), else from
    /// this machine's results directory; nil when it has none (or retention removed it).
    func resultFiles(of record: JobRecord) throws -> (png: Data, sidecar: Data?)? {
        guard record.jobState == .succeeded else { return nil }
        if let kept = try keptResult(of: record.id) { return (kept.png, kept.sidecar) }
        guard let path = record.resultPath, let png = FileManager.default.contents(atPath: path) else { return nil }
        return (png, FileManager.default.contents(atPath: (path as NSString).deletingPathExtension + ".json"))
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
