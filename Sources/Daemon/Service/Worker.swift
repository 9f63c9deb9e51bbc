import Core
import Foundation
import Logging
import Wire

/// The one compute worker: a dedicated thread (never the event loop or Swift's cooperative pool)
/// that takes the highest-priority, oldest queued job, runs it, and records the outcome.
package final class Worker: @unchecked Sendable {
    let store: any JobStore
    let events: EventHub
    let model: StableDiffusionModel
    let schedule: NoiseSchedule
    let resultsDirectory: String
    /// What options are checked against (the worker checks every job again before it runs it).
    package var engine: JobAdmission.Engine { JobAdmission.Engine(model: model, schedule: schedule, maxPixels: maxPixels) }
    /// Pixels of one model input at most (`max_pixels`).
    package var maxPixels = ImageGeometry.defaultMaxPixels
    let cache: InversionCache?
    let logger: Logger

    /// Result retention (days, count; 0 = unlimited), changed by reloads.
    package var retention: (days: Int, count: Int) {
        get { condition.lock(); defer { condition.unlock() }; return retentionLimits }
        set { condition.lock(); retentionLimits = newValue; condition.unlock() }
    }
    private var retentionLimits = (days: 30, count: 1000)
    /// Told "idle" or the running job's phase and step (systemd's STATUS= line): only changes, and
    /// progress at most once a second (sd_notify blocks when the manager's queue is full).
    package var onStatus: (String) -> Void = { _ in }
    private var lastStatus = ("", Date.distantPast)
    /// Seconds between renewals of the running job's lease on a shared store: a quarter of the
    /// lease, so three renewals may fail before it expires.
    package var leaseRenewal = 15.0

    private func status(_ text: String, progress: Bool = false) {
        guard text != lastStatus.0, !progress || Date().timeIntervalSince(lastStatus.1) >= 1 else { return }
        lastStatus = (text, Date())
        onStatus(text)
    }
    private let condition = NSCondition()
    private var stopping = false
    private var running: (id: String, cancellation: TransferCancellation, requeue: Bool)?
    private var latestProgress: [String: JobProgress] = [:]
    private var latestPreview: [String: JobPreview] = [:]
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    package init(store: any JobStore, events: EventHub, model: StableDiffusionModel, schedule: NoiseSchedule,
                 resultsDirectory: String, cache: InversionCache?, logger: Logger) {
        (self.store, self.events, self.model, self.schedule) = (store, events, model, schedule)
        (self.resultsDirectory, self.cache, self.logger) = (resultsDirectory, cache, logger)
    }

    package func start() {
        let thread = Thread { [self] in loop(); finished.signal() }
        thread.name = "xattn-worker"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// A job was queued, the queue resumed, or a priority changed.
    package func wake() { condition.lock(); condition.signal(); condition.unlock() }

    /// The running job's id, if any.
    package var runningJob: String? { condition.lock(); defer { condition.unlock() }; return running?.id }

    func progress(of job: String) -> JobProgress? { condition.lock(); defer { condition.unlock() }; return latestProgress[job] }

    /// The running job's latest preview.
    func preview(of job: String) -> JobPreview? { condition.lock(); defer { condition.unlock() }; return latestPreview[job] }

    /// Stops the running job `id` at the next UNet pass; false when it is not the running one.
    package func cancel(_ id: String) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard let running, running.id == id else { return false }
        running.cancellation.cancel()
        return true
    }

    /// Stops intake; the running job stops at its next pass and is queued again. Waits for it.
    package func shutdown() {
        condition.lock()
        stopping = true
        if let current = running {
            running = (current.id, current.cancellation, true)
            current.cancellation.cancel()
        }
        condition.signal()
        condition.unlock()
        if thread != nil { finished.wait() }
    }

    private func loop() {
        while true {
            condition.lock()
            if stopping { condition.unlock(); return }
            condition.unlock()
            let job: JobRecord?
            do { job = try store.claimNext() } catch {
                logger.error("claiming a job failed: \(error)")
                job = nil
            }
            guard let job else {
                status("idle, \((try? store.queuedCount()) ?? 0) queued\(store.isPaused ? " (paused)" : "")")
                condition.lock()
                if !stopping { _ = condition.wait(until: Date().addingTimeInterval(5)) }
                condition.unlock()
                continue
            }
            run(job)
        }
    }

    private func run(_ job: JobRecord) {
        let cancellation = TransferCancellation()
        lastRenewal = Date()
        condition.lock(); running = (job.id, cancellation, false); condition.unlock()
        events.publish(job.id, .state(JobConversion.info(job)))
        logger.info("job started", metadata: ["job_id": "\(job.id)", "attempt": "\(job.attempts)"])
        let outcome = execute(job, cancellation: cancellation)
        // The job's buffers, kept by the allocator while it ran, go back: between jobs the
        // service holds its model only.
        EngineSetup.releaseFreeMemory()
        condition.lock()
        let requeue = running?.requeue ?? false
        running = nil
        latestProgress[job.id] = nil
        latestPreview[job.id] = nil
        condition.unlock()
        let record: JobRecord
        do {
            record = try persistently("recording the end of job \(job.id)") {
                switch outcome {
                case let .success(path): return try store.finish(job.id, state: .succeeded, resultPath: path)
                case .cancelled: return try store.finish(job.id, state: requeue ? .queued : .cancelled)
                case let .failure(error): return try store.finish(job.id, state: .failed, error: error.object)
                }
            }
        } catch {
            logger.error("recording job \(job.id) failed: \(error)")
            return
        }
        logger.info("job ended", metadata: ["job_id": "\(job.id)", "state": "\(record.state)"])
        pruneResultFiles()
        do {
            try store.pruneImages(days: retention.days, count: retention.count)
            try store.pruneResults(days: retention.days, count: retention.count)
        } catch { logger.error("pruning job images or results failed: \(error)") }
        events.publish(job.id, .state(JobConversion.info(record)))
    }

    enum Outcome { case success(String), cancelled, failure(WireError) }

    private var lastRenewal = Date()

    /// A store write that must not be lost (a job's end, its result): run again with backoff while
    /// the store cannot be reached (a shared database restarting), until it is written, the store
    /// refuses it (`StoreError`: nothing to wait for), or the service stops.
    private func persistently<T>(_ what: String, _ body: () throws -> T) throws -> T {
        var delay = 0.5
        while true {
            do { return try body() } catch let error as StoreError { throw error } catch {
                condition.lock(); let stop = stopping; condition.unlock()
                if stop { throw error }
                logger.warning("\(what) failed; retrying", metadata: ["error": "\(error)", "seconds": "\(delay)"])
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 30)
            }
        }
    }

    /// Between UNet passes: keeps this node's claim alive; a claim another node has taken since
    /// (this node was frozen or cut off longer than the lease) stops the job here.
    private func renewLease(_ id: String, cancellation: TransferCancellation) {
        guard Date().timeIntervalSince(lastRenewal) >= leaseRenewal else { return }
        lastRenewal = Date()
        do {
            if try !store.renewLease(id) {
                logger.warning("the job was cancelled from another node, or its lease was taken by one; stopping it here", metadata: ["job_id": "\(id)"])
                cancellation.cancel()
            }
        } catch {
            logger.warning("renewing the job's lease failed; retrying", metadata: ["job_id": "\(id)", "error": "\(error)"])
        }
    }

    /// Deletes results beyond the retention limits (oldest first), PNG and JSON together.
    private func pruneResultFiles() {
        let (days, count) = retention
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: resultsDirectory) else { return }
        var results: [(stem: String, date: Date)] = []
        for name in names where name.hasSuffix(".png") {
            let date = (try? manager.attributesOfItem(atPath: resultsDirectory + "/" + name))?[.modificationDate] as? Date ?? .distantPast
            results.append((String(name.dropLast(4)), date))
        }
        results.sort { $0.date > $1.date }
        let cutoff = Date().addingTimeInterval(-Double(days) * 86400)
        for (index, result) in results.enumerated() where (count > 0 && index >= count) || (days > 0 && result.date < cutoff) {
            try? manager.removeItem(atPath: resultsDirectory + "/\(result.stem).png")
            try? manager.removeItem(atPath: resultsDirectory + "/\(result.stem).json")
        }
    }

    private func execute(_ job: JobRecord, cancellation: TransferCancellation) -> Outcome {
        do {
            let parameters = try JSONDecoder().decode(TransferParameters.self, from: Data(job.parameters.utf8))
            // Read again should the store be briefly away (a shared database restarting just after
            // the claim): that is no reason for the job to fail.
            let files = try persistently("reading the inputs of job \(job.id)") { try store.inputs(of: job.id) }
            // Checked again here: a job queued while the model loaded was not checked against it.
            let (options, admitted) = try JobAdmission.admit(files, parameters: parameters, engine: engine, images: true)
            guard let inputs = admitted, let structure = inputs.structure, let appearance = inputs.appearance else {
                throw WireError.internalError("the job's inputs were not prepared")
            }
            let pipeline = TransferPipeline(model: model, schedule: schedule)
            let eta = ETAEstimator(options: options)
            let previews = PreviewPublisher(job: job.id, options: options, model: model) { [self] preview in
                condition.lock(); latestPreview[job.id] = preview; condition.unlock()
                events.publish(job.id, .preview(preview))
            }
            let result = try pipeline.run(
                structure: structure, appearance: appearance, options: options, masks: inputs.masks, cache: cache,
                cancellation: cancellation, progress: { [self] p in
                let progress = JobProgress(phase: p.phase.rawValue, step: p.step, total: p.total, etaSeconds: eta.update(p))
                condition.lock(); latestProgress[job.id] = progress; condition.unlock()
                let eta = progress.etaSeconds.map { String(format: ", ETA %.0f min", $0 / 60) } ?? ""
                status("job \(job.id): \(p.phase.rawValue) \(p.step)/\(p.total)\(eta)", progress: true)
                renewLease(job.id, cancellation: cancellation)
                events.publish(job.id, .progress(ProgressNotification(job: job.id, progress: progress)))
            }, preview: previews.take)
            let written = try writeResult(job, result: result, options: options, inputs: inputs, files: files)
            // On a shared store, where every node can fetch it: a client of another node asks for
            // it, a hot folder of another node delivers it.
            try persistently("keeping the result of job \(job.id)") { try store.saveResult(job.id, png: written.png, sidecar: written.sidecar) }
            return .success(written.path)
        } catch TransferError.cancelled {
            return .cancelled
        } catch {
            return .failure(WireError(from: error))
        }
    }

    /// NAME.png and NAME.json (every parameter, seed, model identity, timings), each written to a
    /// temporary name and renamed.
    private func writeResult(_ job: JobRecord, result: TransferResult, options: TransferOptions, inputs: TransferInputs,
                             files: JobInputs) throws -> (path: String, png: Data, sidecar: Data) {
        // The service user's alone: results are shown to others only through the RPC's rules.
        try FileManager.default.createDirectory(atPath: resultsDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = resultsDirectory + "/\(job.id).png"
        let png = try PNGLibrary.encode(ImagePreprocessing.image(from: result.image))
        try png.write(to: URL(fileURLWithPath: path), options: .atomic)
        let sidecar: [String: JSONValue] = [
            "job": .string(job.id), "options": (try? JSONValue(encoding: JobConversion.parameters(options, ranIn: model.precision))) ?? .null, "seed": .integer(Int(clamping: options.seed)),
            "model": .string(model.identity), "modelPath": .string(model.path), "unetPasses": .integer(result.unetPasses),
            "seconds": .object(result.secondsPerPhase.mapValues { .number($0) }), "warnings": .array(result.warnings.map { .string($0) }),
            "inputHash": .string(job.inputHash),
            "geometry": .object(["structure": Self.describe(inputs.structureGeometry), "appearance": Self.describe(inputs.appearanceGeometry)]),
            "masks": options.maskedAdaIN
                ? .object(["structure": Self.maskSource(files.structureMask), "appearance": Self.maskSource(files.appearanceMask)]) : .null,
        ]
        let sidecarData = try JSONEncoder.sorted.encode(JSONValue.object(sidecar))
        try sidecarData.write(to: URL(fileURLWithPath: resultsDirectory + "/\(job.id).json"), options: .atomic)
        return (path, png, sidecarData)
    }
}

extension Worker {
    /// Where an image was cut and the size it ran at, for the sidecar.
    static func describe(_ g: ImageGeometry) -> JSONValue {
        .object(["source": .string("\(g.sourceWidth)x\(g.sourceHeight)"), "crop": .array([g.cropX, g.cropY, g.cropWidth, g.cropHeight].map { .integer($0) }),
                 "size": .string(g.sizeDescription)])
    }

    /// A given mask's hash, or the self-segmentation that replaced it.
    static func maskSource(_ file: Data?) -> JSONValue {
        guard let file else { return .object(["source": .string("self-segmentation")]) }
        var hash = Core.SHA256()
        hash.update(file)
        return .object(["source": .string("given"), "sha256": .string(Core.SHA256.hex(hash.finalize()))])
    }
}

/// Remaining time from the pace so far, in UNet passes of batch 1: an inversion step is 2, a
/// generation step about 3.6 (11 of 2 and 57 of 4 at the defaults), a decode about 3.
final class ETAEstimator {
    let start = Date()
    let inversionSteps: Int
    let generationSteps: Int
    var passesDone = 0.0

    init(options: TransferOptions) {
        inversionSteps = max(options.timesteps - 1 - options.skip, 0)
        generationSteps = options.generationSteps
    }

    func update(_ p: TransferProgress) -> Double? {
        let generationPass = 3.6
        let remainingInversion: Double, done: Double
        switch p.phase {
        case .encode: (done, remainingInversion) = (0, Double(2 * inversionSteps) * 2)
        case .invertStructure: (done, remainingInversion) = (Double(p.step) * 2, Double(inversionSteps - p.step) * 2 + Double(inversionSteps) * 2)
        case .invertAppearance: (done, remainingInversion) = (Double(inversionSteps + p.step) * 2, Double(inversionSteps - p.step) * 2)
        case .generate, .decode: (done, remainingInversion) = (Double(inversionSteps) * 4, 0)
        }
        let generationDone = p.phase == .generate ? Double(p.step) : (p.phase == .decode ? Double(generationSteps) : 0)
        passesDone = done + generationDone * generationPass
        guard passesDone > 0 else { return nil }
        let remaining = remainingInversion + (Double(generationSteps) - generationDone) * generationPass + (p.phase == .decode && p.step == p.total ? 0 : 3)
        return Date().timeIntervalSince(start) / passesDone * remaining
    }
}
