import Core
import Foundation
import Logging
import Wire

/// One configured hot folder: what is in its inbox, the drops it claims as jobs, and the results
/// and failures it delivers. Used only from the hot-folder queue (HotFolders).
package final class HotFolder {
    package let settings: HotFolderSettings
    package private(set) var tracker: DropTracker
    private let store: any JobStore
    private let logger: Logger
    private let queueLimit: () -> Int
    private let wake: () -> Void
    /// The loaded model and schedule drops are checked against (hot folders start after the load).
    private let engine: JobAdmission.Engine
    /// in/ and the other directories exist and (unless polling) inotify watches in/.
    package var isReady = false
    /// Scanned every poll interval: configured so, or inotify is unavailable.
    package var polling = false {
        didSet {
            tracker.settle = settings.settle(polling: polling)
            tracker.lookInterval = polling ? settings.pollInterval : max(0.1, tracker.settle / 2)
        }
    }
    package var nextScan = Date.distantPast
    private var deferredUntil = Date.distantPast
    private var reportedMissing = false
    private var reportedFullQueue = false

    package init(settings: HotFolderSettings, store: any JobStore, engine: JobAdmission.Engine, logger: Logger,
                 queueLimit: @escaping () -> Int, wake: @escaping () -> Void) {
        (self.settings, self.store, self.engine, self.queueLimit, self.wake) = (settings, store, engine, queueLimit, wake)
        var logger = logger
        logger[metadataKey: "folder"] = "\(settings.name)"
        self.logger = logger
        tracker = DropTracker(inbox: settings.inbox, settings: settings)
    }

    /// Makes the directories; false (logged once) while the folder does not exist.
    package func prepare() -> Bool {
        do {
            try FolderFiles.prepare(settings)
            reportedMissing = false
            return true
        } catch {
            if !reportedMissing { logger.warning("hot folder unavailable; waiting for it", metadata: ["error": "\(error)"]) }
            reportedMissing = true
            return false
        }
    }

    package func apply(_ event: FolderEvent, now: Date) { tracker.apply(event, now: now) }

    package func scan(now: Date, lostEvents: Bool = false) {
        failUndecodableNames()
        tracker.scan(now: now, forgetWriting: lostEvents)
        writePendingReports()
        nextScan = now.addingTimeInterval(polling ? settings.pollInterval : settings.scanInterval)
    }

    /// Claims every complete drop and fails the invalid and the timed-out ones.
    package func process(now: Date) {
        guard isReady, now >= deferredUntil, !tracker.entries.isEmpty else { return }
        for verdict in tracker.verdicts(now: now) {
            switch verdict {
            case let .ready(drop):
                if !claim(drop, now: now) { return }
            case let .invalid(drop, reason):
                reject(drop, error: ["code": .null, "reason": .string("invalid_drop"), "message": .string(reason)])
            case let .timedOut(drop, reason):
                reject(drop, error: ["code": .null, "reason": .string("unpaired"), "message": .string(reason)])
            }
        }
    }

    // MARK: claiming

    /// Moves the drop into processing/, reads it and queues its job. False when the queue is
    /// full: the drop goes back to in/ and the folder waits a little.
    private func claim(_ drop: DropTracker.Drop, now: Date) -> Bool {
        tracker.forget(drop)
        let stem: String
        do {
            stem = try FolderFiles.move(stem: drop.stem, suffixes: drop.suffixes, from: settings.inbox, to: settings.processing)
        } catch {
            logger.warning("claiming a drop failed; it stays in in/", metadata: ["name": "\(drop.stem)", "error": "\(error)"])
            return true
        }
        let files = drop.suffixes.map { stem + $0 }
        let inputs: (files: JobInputs, parameters: TransferParameters, owner: UInt32)
        do {
            inputs = try read(drop, stem: stem)
        } catch let error as WireError {
            finish(stem: stem, files: files, from: settings.processing, error: error.failureFields, job: nil)
            return true
        } catch {
            finish(stem: stem, files: files, from: settings.processing, error: WireError.invalidImage("\(error)").failureFields, job: nil)
            return true
        }
        var new = NewJob(owner: inputs.owner, source: "hot-folder", folder: settings.name, priority: settings.priority,
                         idempotencyKey: nil, parameters: inputs.parameters, inputs: inputs.files)
        // The same pair with the same options dropped again in this folder is the same job.
        new.idempotencyKey = "folder:\(store.scoped(settings.name)):" + new.contentHash
        let item = FolderItem(folder: settings.name, name: stem, files: Self.json(files), jobId: "")
        do {
            // An earlier job whose result was pruned is computed again rather than delivering nothing.
            let (job, existing, requeued) = try store.submit(new, limit: queueLimit(), item: item) { earlier in
                !(earlier.resultPath.map { FileManager.default.fileExists(atPath: $0) } ?? false)
            }
            reportedFullQueue = false
            logger.info(existing ? (requeued ? "drop matches an earlier job; running it again" : "drop matches an earlier job") : "drop queued",
                        metadata: ["name": "\(stem)", "job_id": "\(job.id)"])
            if !existing || requeued { wake() }
            if job.jobState.isFinal { deliverFinished() }
            return true
        } catch StoreError.queueFull, StoreError.storeFull {
            _ = try? FolderFiles.move(stem: stem, suffixes: drop.suffixes, from: settings.processing, to: settings.inbox)
            deferredUntil = now.addingTimeInterval(2)
            if !reportedFullQueue { logger.notice("the queue is full; drops wait in in/ until it has room", metadata: ["name": "\(drop.stem)"]) }
            reportedFullQueue = true
            return false
        } catch {
            finish(stem: stem, files: files, from: settings.processing, error: WireError(from: error).failureFields, job: nil)
            return true
        }
    }

    /// The images (the drop's or the folder's fixed one), the masks the drop has, and the options
    /// (the folder's, then the drop's options file), checked as a submit is.
    private func read(_ drop: DropTracker.Drop, stem: String) throws -> (JobInputs, TransferParameters, UInt32) {
        func file(_ suffix: String?, fixed: String?, role: String) throws -> Data {
            let path = suffix.map { settings.processing + "/" + stem + $0 } ?? fixed ?? ""
            do { return try FolderFiles.read(path, followLinks: suffix == nil) } catch { throw WireError.invalidImage("\(role): \(error)") }
        }
        let structure = try file(drop.structure, fixed: settings.structure, role: "structure")
        let appearance = try file(drop.appearance, fixed: settings.appearance, role: "appearance")
        let files = JobInputs(structure: structure, appearance: appearance,
                              structureMask: try drop.structureMask.map { try file($0, fixed: nil, role: "structure mask") },
                              appearanceMask: try drop.appearanceMask.map { try file($0, fixed: nil, role: "appearance mask") })
        var parameters = settings.options
        if let options = drop.options {
            let fromFile: TransferParameters
            do {
                fromFile = try JSONDecoder().decode(TransferParameters.self, from: try FolderFiles.read(settings.processing + "/" + stem + options, limit: 1 << 20))
            } catch let error as WireError { throw error } catch {
                throw WireError.invalidOptions("\(stem + options): not a JSON object of options: \(error)")
            }
            parameters = parameters.overridden(by: fromFile)
        }
        try JobAdmission.admit(files, parameters: parameters, engine: engine)
        let first = settings.processing + "/" + stem + (drop.structure ?? drop.appearance ?? "")
        return (files, parameters, FolderFiles.owner(first) ?? getuid())
    }

    /// A drop that will not become a job: to failed/ with its error file.
    private func reject(_ drop: DropTracker.Drop, error: [String: JSONValue]) {
        tracker.forget(drop)
        finish(stem: drop.stem, files: drop.suffixes.map { drop.stem + $0 }, from: settings.inbox, error: error, job: nil)
    }

    // MARK: delivering

    package var undeliveredCount: Int { (try? store.undelivered(folder: settings.name).count) ?? 0 }

    /// Delivers every drop whose job has ended.
    package func deliverFinished() {
        let pending: [(item: FolderItem, job: JobRecord)]
        do { pending = try store.undelivered(folder: settings.name) } catch {
            logger.error("reading the hot-folder items failed", metadata: ["error": "\(error)"])
            return
        }
        for (item, job) in pending where job.jobState.isFinal { deliver(item, job) }
    }

    /// The result (NAME.png, NAME.json) to out/ and the inputs to done/; or the inputs and
    /// NAME.error.json to failed/.
    private func deliver(_ item: FolderItem, _ job: JobRecord) {
        var failure: [String: JSONValue]?
        switch job.jobState {
        case .succeeded:
            do { try writeResult(item, job) } catch {
                self.error("delivering a result failed", item, error)
                failure = WireError.internalError("the result could not be written: \(error)").failureFields
                failure?["reason"] = .string("delivery_failed")
            }
        case .cancelled:
            failure = ["code": .null, "reason": .string("cancelled"), "message": .string("the job was cancelled")]
        default:
            let object = job.error.flatMap { try? JSONDecoder().decode(RPCErrorObject.self, from: Data($0.utf8)) }
            failure = ["code": object.map { .integer($0.code) } ?? .null, "reason": .string(object?.reason ?? "failed"),
                     "message": .string(object?.message ?? "the job failed")]
        }
        finish(stem: item.name, files: item.fileNames, from: settings.processing, error: failure, job: job.id)
        try? FileManager.default.removeItem(atPath: previewPath(item))
        do { if let id = item.id { try store.markDelivered(id) } } catch { self.error("recording a delivery failed", item, error) }
    }

    private func previewPath(_ item: FolderItem) -> String { settings.processing + "/" + item.name + ".preview.png" }

    /// With `previews = true`: processing/NAME.preview.png of every drop of the job, replaced
    /// whole (written aside, then renamed) so a viewer never reads half a file.
    package func writePreview(_ preview: JobPreview) {
        guard settings.previews, let png = Data(base64Encoded: preview.png) else { return }
        guard let pending = try? store.undelivered(folder: settings.name) else { return }
        for (item, job) in pending where job.id == preview.job && !job.jobState.isFinal {
            do { try png.write(to: URL(fileURLWithPath: previewPath(item)), options: .atomic) } catch {
                logger.warning("writing a preview failed", metadata: ["name": "\(item.name)", "error": "\(error)"])
            }
        }
    }

    private func writeResult(_ item: FolderItem, _ job: JobRecord) throws {
        guard let (png, stored) = try store.resultFiles(of: job) else { throw FolderFiles.Failure(description: "the job's result is no longer kept") }
        var sidecar: [String: JSONValue] = [:]
        if let data = stored, case let .object(fields)? = try? JSONDecoder().decode(JSONValue.self, from: data) { sidecar = fields }
        sidecar["folder"] = .string(settings.name)
        sidecar["name"] = .string(item.name)
        sidecar["inputs"] = .array(item.fileNames.map { .string($0) })
        sidecar["job"] = .string(job.id)
        let stem = FolderFiles.freeStem(item.name, suffixes: [".png", ".json"], in: settings.outbox)
        // The JSON first: whoever waits for NAME.png finds its parameters beside it.
        try JSONEncoder.sorted.encode(JSONValue.object(sidecar)).write(to: URL(fileURLWithPath: settings.outbox + "/" + stem + ".json"), options: .atomic)
        try png.write(to: URL(fileURLWithPath: settings.outbox + "/" + stem + ".png"), options: .atomic)
    }

    /// Moves `files` (named `stem + suffix`) from `source` to done/, or with an error to failed/
    /// beside `STEM.error.json`.
    private func finish(stem: String, files: [String], from source: String, error: [String: JSONValue]?, job: String?) {
        let suffixes = files.map { String($0.dropFirst(stem.count)) }
        let target = error == nil ? settings.done : settings.failed
        let present = suffixes.filter { FolderFiles.exists(source + "/" + stem + $0) }
        let moved: String
        do { moved = try FolderFiles.move(stem: stem, suffixes: present, from: source, to: target, extraSuffixes: [".error.json"]) } catch {
            logger.error("moving a drop out of \((source as NSString).lastPathComponent)/ failed", metadata: ["name": "\(stem)", "error": "\(error)"])
            return
        }
        var metadata: Logger.Metadata = ["name": "\(moved)"]
        if let job { metadata["job_id"] = "\(job)" }
        guard let fields = error else {
            logger.info("drop done", metadata: metadata)
            return
        }
        report(fields, moved: moved, inputs: present.map { moved + $0 }, job: job, metadata: metadata)
    }

    /// Records a failure (the fields of its error file) and writes `MOVED.error.json` in failed/.
    private func report(_ failure: [String: JSONValue], moved: String, inputs: [String], job: String?, metadata: Logger.Metadata) {
        var (fields, metadata) = (failure, metadata)
        fields["job"] = job.map { .string($0) } ?? .null
        fields["time"] = .string(JobConversion.timestamp(Date()))
        fields["folder"] = .string(settings.name)
        fields["inputs"] = .array(inputs.map { .string($0) })
        if case let .string(message)? = fields["message"] { metadata["error"] = "\(message)" }
        logger.notice("drop failed", metadata: metadata)
        // Recorded before it is written: the failure reaches the folder even if writing fails now.
        let text = String(decoding: (try? JSONEncoder.sorted.encode(JSONValue.object(fields))) ?? Data(), as: UTF8.self)
        do {
            let report = try store.addReport(FolderReport(folder: settings.name, name: moved, fields: text))
            write(report)
        } catch {
            logger.error("recording a failure failed", metadata: ["name": "\(moved)", "error": "\(error)"])
        }
    }

    /// `NAME.error.json` in failed/ (a shorter name when that one is too long); on failure (a full
    /// disk) it stays recorded and is tried again at every scan.
    private func write(_ report: FolderReport) {
        let path = settings.failed + "/" + FolderFiles.fittingName(report.name, suffix: ".error.json")
        do {
            try Data(report.fields.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            if let id = report.id { try store.markReportWritten(id) }
        } catch {
            if !failedReports.contains(report.id ?? -1) {
                logger.error("writing an error file failed; trying again at each scan", metadata: ["name": "\(report.name)", "error": "\(error)"])
                failedReports.insert(report.id ?? -1)
            }
        }
    }

    /// Error files not written yet (logged once each).
    private var failedReports: Set<Int64> = []

    /// Entries of in/ whose names are not valid UTF-8 (Linux allows any bytes) cannot be taken:
    /// nothing downstream can name them. Each goes to failed/ under an escaped name (`caf%E9.png`)
    /// with its error file, instead of sitting in in/ with no verdict.
    private func failUndecodableNames() {
        for bytes in FolderFiles.undecodableNames(in: settings.inbox) {
            let stem = FolderFiles.freeStem(FolderFiles.escapedName(bytes), suffixes: ["", ".error.json"], in: settings.failed)
            do { try FolderFiles.move(bytes: bytes, from: settings.inbox, to: settings.failed + "/" + stem) } catch {
                logger.error("moving an entry with an undecodable name failed", metadata: ["name": "\(stem)", "error": "\(error)"])
                continue
            }
            let message = "the name is not valid UTF-8, so the file cannot be taken; it was renamed to \(stem)"
            report(["code": .null, "reason": .string("invalid_drop"), "message": .string(message)], moved: stem, inputs: [stem], job: nil,
                   metadata: ["name": "\(stem)"])
        }
    }

    /// Writes the error files that could not be written before.
    func writePendingReports() {
        for report in (try? store.unwrittenReports(folder: settings.name)) ?? [] { write(report) }
    }

    // MARK: restart

    /// After a restart: drops whose job ended while the daemon was down are delivered, and
    /// anything in processing/ that no job knows of (a claim cut short) goes back to in/.
    package func reconcile() {
        deliverFinished()
        let known = Set(((try? store.undelivered(folder: settings.name)) ?? []).flatMap { $0.item.fileNames })
        for name in (try? FileManager.default.contentsOfDirectory(atPath: settings.processing)) ?? [] where !known.contains(name) && !DropName(name).isJunk {
            _ = try? FolderFiles.move(stem: name, suffixes: [""], from: settings.processing, to: settings.inbox)
            logger.notice("an unrecorded claim went back to in/", metadata: ["name": "\(name)"])
        }
    }

    private func error(_ message: Logger.Message, _ item: FolderItem, _ error: Error) {
        logger.error(message, metadata: ["name": "\(item.name)", "job_id": "\(item.jobId)", "error": "\(error)"])
    }

    static func json(_ names: [String]) -> String {
        String(decoding: (try? JSONEncoder.sorted.encode(names)) ?? Data("[]".utf8), as: UTF8.self)
    }
}

extension WireError {
    /// The fields of an error file for this error.
    var failureFields: [String: JSONValue] {
        let object = self.object
        return ["code": .integer(object.code), "reason": .string(reason), "message": .string(object.message)]
    }
}
