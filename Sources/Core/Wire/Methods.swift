/// The methods of protocol version 1 (protocol/README.md is normative).
public enum RPCMethod: String, CaseIterable, Sendable {
    case hello = "daemon.hello"
    case status = "daemon.status"
    case reload = "daemon.reload"
    case submit = "job.submit"
    case get = "job.get"
    case list = "job.list"
    case watch = "job.watch"
    case cancel = "job.cancel"
    case retry = "job.retry"
    case setPriority = "job.setPriority"
    case result = "job.result"
    case pause = "queue.pause"
    case resume = "queue.resume"
    case modelStatus = "model.status"
    case preview = "job.preview"
}

/// Notifications the daemon sends on a connection that called `job.watch`.
public enum RPCNotificationName: String, CaseIterable, Sendable {
    case progress = "job.progress"
    case state = "job.state"
    case heartbeat = "daemon.heartbeat"
    /// Sent to watches that asked for previews (`job.watch` with `previews: true`).
    case preview = "job.preview"
}

public struct HelloParams: Codable, Equatable, Sendable {
    /// Every protocol version the client speaks; the daemon picks the highest it also speaks.
    public var protocolVersions: [Int]
    public var client: String?
    public init(protocolVersions: [Int], client: String? = nil) { (self.protocolVersions, self.client) = (protocolVersions, client) }
}

public struct HelloResult: Codable, Equatable, Sendable {
    public var protocolVersion: Int
    public var server: String
    public var capabilities: [String]
    public var maxFrameSize: Int
    public init(protocolVersion: Int, server: String, capabilities: [String], maxFrameSize: Int) {
        (self.protocolVersion, self.server, self.capabilities, self.maxFrameSize) = (protocolVersion, server, capabilities, maxFrameSize)
    }
}

/// A transfer's options on the wire; absent fields take ALGORITHM.md §1's defaults. Ranges are
/// [start, end) pairs.
/// The values of the `precision` option (docs/PERFORMANCE.md, "Precision").
public enum PrecisionChoice: String, CaseIterable, Sendable {
    /// Whatever the model was loaded in (the daemon's `precision` setting).
    case auto
    /// Float products: exact to the reference.
    case fp32
    /// bfloat16 operands, float accumulation: faster on CPUs with AMX, or AVX512-BF16 on AMD.
    case bf16
}

public struct TransferParameters: Codable, Equatable, Sendable {
    public var domain: String?
    public var prompt: String?
    public var objectNoun: String?
    public var seed: UInt64?
    public var timesteps: Int?
    public var skip: Int?
    public var maskedAdain: Bool?
    public var swapGuidance: Double?
    public var contrast: Double?
    public var crossAttnRange0: [Int]?
    public var crossAttnRange1: [Int]?
    public var adainRange: [Int]?
    /// "fp32", "bf16" or "auto" (the loaded model's): `PrecisionChoice`.
    public var precision: String?
    /// "512x512" style, "auto" or "native" (the model's own square; the default).
    public var size: String?
    /// Generation steps between previews (default: about ten per job).
    public var previewEvery: Int?
    /// "linear" (latent colours, no network; the default) or "vae" (the decoder, full size).
    public var previewDecoder: String?
    public init() {}

    /// Seeds are 0…2⁶³−1: every JSON tool reads them as an integer (the sidecar records one).
    public static let maximumSeed = UInt64(Int64.max)
    /// Job priorities (`job.submit`, `job.setPriority`, a hot folder's `priority`).
    public static let priorities = -1_000_000...1_000_000
    /// DDIM steps T any model takes (the model's schedule may allow fewer: checked against it).
    public static let timestepBounds = 1...1000
    /// Steps skipped, K; also below T.
    public static let skipBounds = 0...999

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case domain, prompt, objectNoun, seed, timesteps, skip, maskedAdain, swapGuidance, contrast
        case crossAttnRange0, crossAttnRange1, adainRange, precision, size, previewEvery, previewDecoder
    }

    private struct AnyKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// Refuses keys that are not options, wherever options are decoded (a submit, a hot folder's
    /// options file): a typo such as `seeds` must not silently run with the default seed. The
    /// error is `invalid_options` naming the key.
    public init(from decoder: Decoder) throws {
        let keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        if let unknown = keys.sorted().first(where: { CodingKeys(rawValue: $0) == nil }) {
            throw WireError.invalidOptions("unknown option '\(unknown)' (known: \(CodingKeys.allCases.map(\.stringValue).joined(separator: ", ")))")
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        domain = try c.decodeIfPresent(String.self, forKey: .domain)
        prompt = try c.decodeIfPresent(String.self, forKey: .prompt)
        objectNoun = try c.decodeIfPresent(String.self, forKey: .objectNoun)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        timesteps = try c.decodeIfPresent(Int.self, forKey: .timesteps)
        skip = try c.decodeIfPresent(Int.self, forKey: .skip)
        maskedAdain = try c.decodeIfPresent(Bool.self, forKey: .maskedAdain)
        swapGuidance = try c.decodeIfPresent(Double.self, forKey: .swapGuidance)
        contrast = try c.decodeIfPresent(Double.self, forKey: .contrast)
        crossAttnRange0 = try c.decodeIfPresent([Int].self, forKey: .crossAttnRange0)
        crossAttnRange1 = try c.decodeIfPresent([Int].self, forKey: .crossAttnRange1)
        adainRange = try c.decodeIfPresent([Int].self, forKey: .adainRange)
        precision = try c.decodeIfPresent(String.self, forKey: .precision)
        size = try c.decodeIfPresent(String.self, forKey: .size)
        previewEvery = try c.decodeIfPresent(Int.self, forKey: .previewEvery)
        previewDecoder = try c.decodeIfPresent(String.self, forKey: .previewDecoder)
    }

    /// Every option's key, `null` for one not given (its default applies).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(domain, forKey: .domain); try c.encode(prompt, forKey: .prompt); try c.encode(objectNoun, forKey: .objectNoun)
        try c.encode(seed, forKey: .seed); try c.encode(timesteps, forKey: .timesteps); try c.encode(skip, forKey: .skip)
        try c.encode(maskedAdain, forKey: .maskedAdain); try c.encode(swapGuidance, forKey: .swapGuidance); try c.encode(contrast, forKey: .contrast)
        try c.encode(crossAttnRange0, forKey: .crossAttnRange0); try c.encode(crossAttnRange1, forKey: .crossAttnRange1)
        try c.encode(adainRange, forKey: .adainRange); try c.encode(precision, forKey: .precision)
        try c.encode(size, forKey: .size); try c.encode(previewEvery, forKey: .previewEvery); try c.encode(previewDecoder, forKey: .previewDecoder)
    }

    /// `other`'s fields where it has them, ours otherwise.
    public func overridden(by other: TransferParameters) -> TransferParameters {
        var merged = self
        func take<T>(_ field: WritableKeyPath<TransferParameters, T?>) {
            if let value = other[keyPath: field] { merged[keyPath: field] = value }
        }
        take(\.domain); take(\.prompt); take(\.objectNoun); take(\.seed); take(\.timesteps); take(\.skip)
        take(\.maskedAdain); take(\.swapGuidance); take(\.contrast)
        take(\.crossAttnRange0); take(\.crossAttnRange1); take(\.adainRange); take(\.precision)
        take(\.size); take(\.previewEvery); take(\.previewDecoder)
        return merged
    }
}

public struct SubmitParams: Codable, Equatable, Sendable {
    /// The images' file contents (PNG or JPEG), base64: the daemon never opens a path a client names.
    public var structure: String
    public var appearance: String
    public var options: TransferParameters?
    /// Higher runs first; default 0.
    public var priority: Int?
    /// A repeated key returns the job it first created instead of a new one.
    public var idempotencyKey: String?
    /// Object masks the user drew (PNG or JPEG, white = object), base64; each replaces the
    /// self-segmentation for its image.
    public var structureMask: String?
    public var appearanceMask: String?
    public init(structure: String, appearance: String, options: TransferParameters? = nil, priority: Int? = nil, idempotencyKey: String? = nil,
                structureMask: String? = nil, appearanceMask: String? = nil) {
        (self.structure, self.appearance, self.options, self.priority, self.idempotencyKey) = (structure, appearance, options, priority, idempotencyKey)
        (self.structureMask, self.appearanceMask) = (structureMask, appearanceMask)
    }
}

public enum JobState: String, Codable, CaseIterable, Sendable {
    case queued, running, succeeded, failed, cancelled
    public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

public struct JobProgress: Codable, Equatable, Sendable {
    /// encode, invert structure, invert appearance, generate, decode
    public var phase: String
    public var step: Int
    public var total: Int
    /// Estimated seconds until the job ends, when known.
    public var etaSeconds: Double?
    public init(phase: String, step: Int, total: Int, etaSeconds: Double? = nil) {
        (self.phase, self.step, self.total, self.etaSeconds) = (phase, step, total, etaSeconds)
    }

    /// Every field present, `null` when unknown (protocol/README.md, "Absent values").
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(phase, forKey: .phase); try c.encode(step, forKey: .step); try c.encode(total, forKey: .total)
        try c.encode(etaSeconds, forKey: .etaSeconds)
    }
}

public struct JobInfo: Codable, Equatable, Sendable {
    public var id: String
    public var state: JobState
    public var priority: Int
    /// uid of the submitting user (peer credentials), or of the hot folder's owner.
    public var owner: UInt32
    /// "rpc" or "hot-folder"
    public var source: String
    public var folder: String?
    public var attempts: Int
    /// ISO 8601 UTC times.
    public var createdAt: String
    public var startedAt: String?
    public var finishedAt: String?
    public var progress: JobProgress?
    public var error: RPCErrorObject?
    public var options: TransferParameters
    public init(id: String, state: JobState, priority: Int, owner: UInt32, source: String, folder: String? = nil, attempts: Int,
                createdAt: String, startedAt: String? = nil, finishedAt: String? = nil, progress: JobProgress? = nil,
                error: RPCErrorObject? = nil, options: TransferParameters) {
        (self.id, self.state, self.priority, self.owner, self.source, self.folder, self.attempts) = (id, state, priority, owner, source, folder, attempts)
        (self.createdAt, self.startedAt, self.finishedAt, self.progress, self.error, self.options) = (createdAt, startedAt, finishedAt, progress, error, options)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(state, forKey: .state); try c.encode(priority, forKey: .priority)
        try c.encode(owner, forKey: .owner); try c.encode(source, forKey: .source); try c.encode(folder, forKey: .folder)
        try c.encode(attempts, forKey: .attempts); try c.encode(createdAt, forKey: .createdAt); try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt); try c.encode(progress, forKey: .progress); try c.encode(error, forKey: .error)
        try c.encode(options, forKey: .options)
    }
}

public struct SubmitResult: Codable, Equatable, Sendable {
    public var job: JobInfo
    /// True when the idempotency key matched an earlier job (returned instead of a new one).
    public var existing: Bool

    public init(job: JobInfo, existing: Bool) {
        self.job = job
        self.existing = existing
    }
}

/// Params of job.get, job.watch, job.cancel, job.retry, job.result.
public struct JobReference: Codable, Equatable, Sendable {
    public var job: String
    public init(job: String) { self.job = job }
}

/// `job.watch`'s parameters: with `previews`, the watch also gets `job.preview` notifications.
public struct WatchParams: Codable, Equatable, Sendable {
    public var job: String
    public var previews: Bool?
    public init(job: String, previews: Bool? = nil) { (self.job, self.previews) = (job, previews) }
}

/// A preview of a running job's output (the `job.preview` notification, and `job.preview`'s
/// result): the predicted clean image after `step` of the `total` generation steps, a PNG in base64.
public struct JobPreview: Codable, Equatable, Sendable {
    public var job: String
    public var step: Int
    public var total: Int
    public var png: String
    public init(job: String, step: Int, total: Int, png: String) { (self.job, self.step, self.total, self.png) = (job, step, total, png) }
}

/// `job.preview`'s result: the latest preview of the job, or null while it has none (queued, before
/// its first preview, or ended: the result replaces it).
public struct JobPreviewResult: Codable, Equatable, Sendable {
    public var job: String
    public var preview: JobPreview?
    public init(job: String, preview: JobPreview?) { (self.job, self.preview) = (job, preview) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job); try c.encode(preview, forKey: .preview)
    }
}

public struct ListParams: Codable, Equatable, Sendable {
    public var states: [JobState]?
    public var limit: Int?
    public init(states: [JobState]? = nil, limit: Int? = nil) { (self.states, self.limit) = (states, limit) }
}

public struct ListResult: Codable, Equatable, Sendable {
    public var jobs: [JobInfo]
    /// Jobs of other users that match the filter but are not shown (job visibility "owner").
    public var others: Int

    public init(jobs: [JobInfo], others: Int = 0) {
        (self.jobs, self.others) = (jobs, others)
    }
}

public struct SetPriorityParams: Codable, Equatable, Sendable {
    public var job: String
    public var priority: Int

    public init(job: String, priority: Int) {
        self.job = job
        self.priority = priority
    }
}

public struct JobResult: Codable, Equatable, Sendable {
    public var job: String
    /// The output image (PNG), base64.
    public var png: String
    /// Every parameter, the seed, the model identity and the timings.
    public var sidecar: JSONValue

    public init(job: String, png: String, sidecar: JSONValue) {
        self.job = job
        self.png = png
        self.sidecar = sidecar
    }
}

public struct ModelStatus: Codable, Equatable, Sendable {
    /// "loading", "ready" or "failed"
    public var state: String
    public var path: String
    public var identity: String?
    public var loadSeconds: Double?
    public var error: String?
    /// "fp32" or "bf16" once loaded: the precision every job's products run in.
    public var precision: String?

    public init(state: String, path: String, identity: String? = nil, loadSeconds: Double? = nil, error: String? = nil,
                precision: String? = nil) {
        self.precision = precision
        self.state = state
        self.path = path
        self.identity = identity
        self.loadSeconds = loadSeconds
        self.error = error
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(state, forKey: .state); try c.encode(path, forKey: .path); try c.encode(identity, forKey: .identity)
        try c.encode(loadSeconds, forKey: .loadSeconds); try c.encode(error, forKey: .error); try c.encode(precision, forKey: .precision)
    }
}

public struct DaemonStatus: Codable, Equatable, Sendable {
    public var server: String
    public var protocolVersion: Int
    /// "starting", "ready" or "stopping"
    public var state: String
    public var paused: Bool
    public var queued: Int
    public var queueLimit: Int
    public var running: String?
    public var model: ModelStatus
    /// The configured hot folders (null on daemons that have none).
    public var folders: [FolderStatus]?
    public var store: StoreStatus
    /// On a shared store (README, "Several machines"): this daemon's node name and every node that
    /// has used the database, this one included; null on one machine.
    public var node: String?
    public var nodes: [NodeStatus]?

    public init(server: String, protocolVersion: Int, state: String, paused: Bool, queued: Int, queueLimit: Int, running: String? = nil,
                model: ModelStatus, folders: [FolderStatus]? = nil, store: StoreStatus, node: String? = nil, nodes: [NodeStatus]? = nil) {
        self.node = node
        self.nodes = nodes
        self.server = server
        self.protocolVersion = protocolVersion
        self.state = state
        self.paused = paused
        self.queued = queued
        self.queueLimit = queueLimit
        self.running = running
        self.model = model
        self.folders = folders
        self.store = store
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(server, forKey: .server); try c.encode(protocolVersion, forKey: .protocolVersion); try c.encode(state, forKey: .state)
        try c.encode(paused, forKey: .paused); try c.encode(queued, forKey: .queued); try c.encode(queueLimit, forKey: .queueLimit)
        try c.encode(running, forKey: .running); try c.encode(model, forKey: .model); try c.encode(folders, forKey: .folders)
        try c.encode(store, forKey: .store); try c.encode(node, forKey: .node); try c.encode(nodes, forKey: .nodes)
    }
}

/// One xattnd of a shared store, as it last reported itself (every 10 s while it runs).
public struct NodeStatus: Codable, Equatable, Sendable {
    public var name: String
    /// The identity of the model it has loaded (null while it loads).
    public var model: String?
    /// "starting", "ready", "stopped", or "offline" when it has not reported for 45 s (killed, cut off).
    public var state: String
    /// The job it runs.
    public var running: String?
    /// RFC 3339.
    public var lastSeen: String

    public init(name: String, model: String?, state: String, running: String?, lastSeen: String) {
        (self.name, self.model, self.state, self.running, self.lastSeen) = (name, model, state, running, lastSeen)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name); try c.encode(model, forKey: .model); try c.encode(state, forKey: .state)
        try c.encode(running, forKey: .running); try c.encode(lastSeen, forKey: .lastSeen)
    }
}

/// What the daemon keeps on disk (`daemon.status`).
public struct StoreStatus: Codable, Equatable, Sendable {
    /// The job store's files (database and write-ahead log).
    public var databaseBytes: Int
    /// Result images and their sidecars.
    public var resultBytes: Int
    /// Images of jobs held in the store (waiting jobs', and failed or cancelled ones' for retry).
    public var imageBytes: Int
    /// The bound on `imageBytes` (`store_max_bytes`): beyond it, submits are refused with queue_full.
    public var imageLimit: Int
    /// "sqlite" (one machine) or "postgresql" (shared); absent from daemons before shared stores.
    public var kind: String?
    /// Whether the store answered this status; when false (the database is down or restarting) the
    /// byte counts are 0, `queued` is the last known count, and `error` says why.
    public var available: Bool?
    public var error: String?

    public init(databaseBytes: Int, resultBytes: Int, imageBytes: Int, imageLimit: Int, kind: String? = nil, available: Bool? = nil, error: String? = nil) {
        (self.databaseBytes, self.resultBytes, self.imageBytes, self.imageLimit) = (databaseBytes, resultBytes, imageBytes, imageLimit)
        (self.kind, self.available, self.error) = (kind, available, error)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(databaseBytes, forKey: .databaseBytes); try c.encode(resultBytes, forKey: .resultBytes)
        try c.encode(imageBytes, forKey: .imageBytes); try c.encode(imageLimit, forKey: .imageLimit)
        try c.encode(kind, forKey: .kind); try c.encode(available, forKey: .available); try c.encode(error, forKey: .error)
    }
}

/// One hot folder as the daemon sees it.
public struct FolderStatus: Codable, Equatable, Sendable {
    public var name: String
    public var path: String
    /// "inotify", "polling", or "unavailable" (the folder is missing; the daemon waits for it).
    public var mode: String
    /// Files in in/ not yet taken (being written, settling, or waiting for their pair).
    public var waiting: Int
    /// Drops claimed whose results have not been delivered yet.
    public var processing: Int

    public init(name: String, path: String, mode: String, waiting: Int, processing: Int) {
        (self.name, self.path, self.mode, self.waiting, self.processing) = (name, path, mode, waiting, processing)
    }
}

/// The result of methods that only acknowledge (queue.pause, queue.resume, daemon.reload): `{ok: true}`.
public struct Acknowledgement: Codable, Equatable, Sendable {
    public var ok: Bool

    public init(ok: Bool = true) { self.ok = ok }
}

/// The result of methods that change one job (job.cancel, job.retry, job.setPriority): `{ok: true,
/// job}` with the job as it is after the change.
public struct JobAcknowledgement: Codable, Equatable, Sendable {
    public var ok: Bool
    public var job: JobInfo

    public init(ok: Bool = true, job: JobInfo) { (self.ok, self.job) = (ok, job) }
}

public struct ProgressNotification: Codable, Equatable, Sendable {
    public var job: String
    public var progress: JobProgress

    public init(job: String, progress: JobProgress) {
        self.job = job
        self.progress = progress
    }
}

public struct StateNotification: Codable, Equatable, Sendable {
    public var job: JobInfo

    public init(job: JobInfo) {
        self.job = job
    }
}

public struct Heartbeat: Codable, Equatable, Sendable {
    public var time: String

    public init(time: String) {
        self.time = time
    }
}

extension RPCMethod {
    /// Decodes `params` as this method's documented parameter type (throws if they do not fit).
    public func validateParams(_ params: JSONValue) throws {
        switch self {
        case .hello: _ = try params.decode(HelloParams.self)
        case .submit: _ = try params.decode(SubmitParams.self)
        case .get, .cancel, .retry, .result, .preview: _ = try params.decode(JobReference.self)
        case .watch: _ = try params.decode(WatchParams.self)
        case .list: _ = try params.decode(ListParams.self)
        case .setPriority: _ = try params.decode(SetPriorityParams.self)
        case .status, .reload, .pause, .resume, .modelStatus:
            guard params == .object([:]) else { throw WireError.invalidParams("\(rawValue) takes no params") }
        }
    }

    /// `result` decoded as this method's result type and encoded again: what the daemon sends for it.
    public func canonicalResult(_ result: JSONValue) throws -> JSONValue {
        switch self {
        case .hello: return try JSONValue(encoding: try result.decode(HelloResult.self))
        case .status: return try JSONValue(encoding: try result.decode(DaemonStatus.self))
        case .modelStatus: return try JSONValue(encoding: try result.decode(ModelStatus.self))
        case .submit: return try JSONValue(encoding: try result.decode(SubmitResult.self))
        case .get, .watch: return try JSONValue(encoding: try result.decode(JobInfo.self))
        case .list: return try JSONValue(encoding: try result.decode(ListResult.self))
        case .reload, .pause, .resume: return try JSONValue(encoding: try result.decode(Acknowledgement.self))
        case .cancel, .retry, .setPriority: return try JSONValue(encoding: try result.decode(JobAcknowledgement.self))
        case .result: return try JSONValue(encoding: try result.decode(JobResult.self))
        case .preview: return try JSONValue(encoding: try result.decode(JobPreviewResult.self))
        }
    }

    /// Decodes `result` as this method's documented result type (throws if it does not fit).
    public func validateResult(_ result: JSONValue) throws {
        switch self {
        case .hello: _ = try result.decode(HelloResult.self)
        case .status: _ = try result.decode(DaemonStatus.self)
        case .modelStatus: _ = try result.decode(ModelStatus.self)
        case .submit: _ = try result.decode(SubmitResult.self)
        case .get, .watch: _ = try result.decode(JobInfo.self)
        case .list: _ = try result.decode(ListResult.self)
        case .result: _ = try result.decode(JobResult.self)
        case .preview: _ = try result.decode(JobPreviewResult.self)
        case .reload, .pause, .resume: _ = try result.decode(Acknowledgement.self)
        case .cancel, .retry, .setPriority: _ = try result.decode(JobAcknowledgement.self)
        }
    }
}
