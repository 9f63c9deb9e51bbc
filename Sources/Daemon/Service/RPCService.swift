import Core
import Foundation
import Wire

/// Who is calling, from the socket's peer credentials.
package struct Caller: Sendable {
    let uid: UInt32
    let gid: UInt32
    /// root, the daemon's own user, or a member of the admin group.
    let isAdmin: Bool

    package init(uid: UInt32, gid: UInt32, isAdmin: Bool) { (self.uid, self.gid, self.isAdmin) = (uid, gid, isAdmin) }
}

/// One connection's protocol state. `send` delivers notifications (thread-safe).
package final class Session: @unchecked Sendable {
    let send: (RPCMessage) -> Void
    private let lock = NSLock()
    private var helloDone = false
    private var watches: [(job: String, token: UUID)] = []

    package init(send: @escaping (RPCMessage) -> Void) { self.send = send }

    var greeted: Bool {
        get { lock.lock(); defer { lock.unlock() }; return helloDone }
        set { lock.lock(); helloDone = newValue; lock.unlock() }
    }

    package var isWatching: Bool { lock.lock(); defer { lock.unlock() }; return !watches.isEmpty }

    func add(watch job: String, token: UUID) { lock.lock(); watches.append((job, token)); lock.unlock() }

    func remove(token: UUID) { lock.lock(); watches.removeAll { $0.token == token }; lock.unlock() }

    /// On disconnect: stop receiving events (the jobs themselves go on).
    package func close(_ events: EventHub) {
        lock.lock(); let all = watches; watches = []; lock.unlock()
        for watch in all { events.unwatch(watch.job, watch.token) }
    }
}

/// Settings of the RPC surface.
package struct ServiceLimits {
    package var queueLimit = 100
    package var maximumFrameSize = WireProtocol.defaultMaximumFrameSize
    /// Whether every user sees every job (`job_visibility = "all"`, a shared gallery); by default
    /// a job's options, images, progress and result are its owner's and the admins' only.
    var sharedJobs = false
}

/// What exists once the model is loaded. Until then the service answers from the store alone:
/// jobs can be submitted, listed, watched and cancelled while they wait for the model.
package struct ServiceBackend {
    package var worker: Worker
    var model: ModelStatus
    /// Re-reads and applies the configuration; throws its error (the old one then stays).
    package var reload: () throws -> Void
    /// The hot folders' state, for `daemon.status` (nil when none are configured).
    var folders: (() -> [FolderStatus])?

    package init(worker: Worker, model: ModelStatus, reload: @escaping () throws -> Void, folders: (() -> [FolderStatus])?) {
        (self.worker, self.model, self.reload, self.folders) = (worker, model, reload, folders)
    }
}

/// Method dispatch, as plain logic over the store, the worker and the event hub (no sockets):
/// every request gets exactly one reply; watches also get notifications through the session.
package final class RPCService: @unchecked Sendable {
    static let serverName = "xattnd 0.1"
    let store: any JobStore
    let events: EventHub
    private let lock = NSLock()
    private var stopping = false
    private var currentLimits: ServiceLimits
    private var loading: ModelStatus
    private var currentBackend: ServiceBackend?

    /// `loading`: what `model.status` says until `attach` is called.
    package init(store: any JobStore, events: EventHub, limits: ServiceLimits, resultsDirectory: String, loading: ModelStatus) {
        (self.store, self.events, self.currentLimits, self.loading) = (store, events, limits, loading)
        self.resultsDirectory = resultsDirectory
    }

    /// On a shared store: the other nodes' events (progress of the jobs they run).
    package var cluster: ClusterEvents? {
        get { lock.lock(); defer { lock.unlock() }; return clusterEvents }
        set { lock.lock(); clusterEvents = newValue; lock.unlock() }
    }
    private var clusterEvents: ClusterEvents?

    /// The model is loaded: the worker runs jobs from now on.
    package func attach(_ backend: ServiceBackend) { lock.lock(); currentBackend = backend; lock.unlock() }

    package var backend: ServiceBackend? { lock.lock(); defer { lock.unlock() }; return currentBackend }
    private var worker: Worker? { backend?.worker }
    var model: ModelStatus { backend?.model ?? { lock.lock(); defer { lock.unlock() }; return loading }() }

    /// The limits in force (a reload may change them; new connections see the new frame size).
    package var limits: ServiceLimits {
        get { lock.lock(); defer { lock.unlock() }; return currentLimits }
        set { lock.lock(); currentLimits = newValue; lock.unlock() }
    }

    /// New work is refused from now on.
    package func beginShutdown() { lock.lock(); stopping = true; lock.unlock() }
    package var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// The reply to one message (nil for anything that is not a request).
    package func handle(_ message: RPCMessage, caller: Caller, session: Session) -> RPCMessage? {
        guard case let .request(id, method, params) = message else { return nil }
        do {
            let result = try dispatch(method, params: params ?? .object([:]), caller: caller, session: session)
            return .response(id: id, result: result)
        } catch {
            return .error(id: id, error: WireError(from: error).object)
        }
    }

    /// Params as the method's type; a field that does not fit is named (a transfer option's as
    /// `invalid_options`, anything else as `invalid_params`).
    private func decode<T: Decodable>(_ type: T.Type, _ params: JSONValue) throws -> T {
        do { return try params.decode(T.self) } catch let error as WireError { throw error } catch {
            let problem = DecodingProblem.describe(error)
            if problem.path.first == "options" { throw WireError.invalidOptions(problem.text) }
            throw WireError.invalidParams(problem.text)
        }
    }

    static func checkPriority(_ priority: Int?) throws {
        if let priority, !TransferParameters.priorities.contains(priority) {
            throw WireError.invalidParams("priority: must be in \(TransferParameters.priorities.lowerBound)…\(TransferParameters.priorities.upperBound), got \(priority)")
        }
    }

    private func dispatch(_ method: String, params: JSONValue, caller: Caller, session: Session) throws -> JSONValue {
        // Before the handshake every other method, known or not, is invalid_request (spec: Handshake).
        if method != RPCMethod.hello.rawValue && !session.greeted { throw WireError.invalidRequest("send daemon.hello first") }
        guard let known = RPCMethod(rawValue: method) else { throw WireError.methodNotFound(method) }
        switch known {
        case .hello:
            let hello = try decode(HelloParams.self, params)
            guard hello.protocolVersions.contains(WireProtocol.version) else {
                throw WireError.unsupportedProtocol(requested: hello.protocolVersions, supported: WireProtocol.version...WireProtocol.version)
            }
            session.greeted = true
            return try JSONValue(encoding: HelloResult(protocolVersion: WireProtocol.version, server: Self.serverName,
                                                      capabilities: ["watch", "priority", "idempotency", "previews", "masks", "sizes"], maxFrameSize: limits.maximumFrameSize))
        case .status:
            return try JSONValue(encoding: status())
        case .modelStatus:
            return try JSONValue(encoding: model)
        case .reload:
            guard caller.isAdmin else { throw WireError.permissionDenied("reload needs an admin") }
            guard let reload = backend?.reload else { throw WireError.modelNotReady("the configuration can be reloaded once the model is loaded") }
            do { try reload() } catch {
                throw WireError.invalidState("the configuration was not applied: \(error); the previous one stays in effect")
            }
            return try JSONValue(encoding: Acknowledgement())
        case .submit:
            return try JSONValue(encoding: try submit(try decode(SubmitParams.self, params), caller: caller))
        case .get:
            let job = try decode(JobReference.self, params).job
            try visible(job, caller)
            return try JSONValue(encoding: try info(job))
        case .list:
            let list = try decode(ListParams.self, params)
            if let limit = list.limit, !(1...1000).contains(limit) { throw WireError.invalidParams("limit: must be in 1…1000, got \(limit)") }
            let (jobs, others) = try store.list(states: list.states, limit: list.limit ?? 100,
                                                owner: seesEverything(caller) ? nil : caller.uid)
            return try JSONValue(encoding: ListResult(jobs: jobs.map { JobConversion.info($0, progress: progress(of: $0.id)) }, others: others))
        case .watch:
            let request = try decode(WatchParams.self, params)
            try visible(request.job, caller)
            return try JSONValue(encoding: try watch(request.job, previews: request.previews ?? false, session: session))
        case .preview:
            let job = try decode(JobReference.self, params).job
            try visible(job, caller)
            guard try store.get(job) != nil else { throw WireError.jobNotFound(job) }
            return try JSONValue(encoding: JobPreviewResult(job: job, preview: try worker?.preview(of: job) ?? store.preview(of: job, step: nil)))
        case .cancel:
            return try JSONValue(encoding: try cancel(try decode(JobReference.self, params).job, caller: caller))
        case .retry:
            let job = try decode(JobReference.self, params).job
            try authorize(job, caller)
            let record = try store.retry(job)
            worker?.wake()
            return try JSONValue(encoding: JobAcknowledgement(job: JobConversion.info(record)))
        case .setPriority:
            let request = try decode(SetPriorityParams.self, params)
            try Self.checkPriority(request.priority)
            try authorize(request.job, caller)
            let record = try store.setPriority(request.job, request.priority)
            worker?.wake()
            return try JSONValue(encoding: JobAcknowledgement(job: JobConversion.info(record)))
        case .result:
            let job = try decode(JobReference.self, params).job
            try visible(job, caller)
            return try JSONValue(encoding: try result(job))
        case .pause, .resume:
            guard caller.isAdmin else { throw WireError.permissionDenied("\(method) needs an admin") }
            try store.setPaused(known == .pause)
            worker?.wake()
            return try JSONValue(encoding: Acknowledgement())
        }
    }

    private func submit(_ request: SubmitParams, caller: Caller) throws -> SubmitResult {
        guard !isStopping else { throw WireError.shuttingDown }
        try Self.checkPriority(request.priority)
        guard let structure = Data(base64Encoded: request.structure), let appearance = Data(base64Encoded: request.appearance) else {
            throw WireError.invalidParams("structure and appearance must be base64")
        }
        func mask(_ text: String?, _ name: String) throws -> Data? {
            guard let text else { return nil }
            guard let data = Data(base64Encoded: text) else { throw WireError.invalidParams("\(name) must be base64") }
            return data
        }
        let inputs = JobInputs(structure: structure, appearance: appearance,
                               structureMask: try mask(request.structureMask, "structureMask"), appearanceMask: try mask(request.appearanceMask, "appearanceMask"))
        // Decoded whole and checked here (requests are handled off the event loop): a broken file
        // or a mask that cannot be used is refused now, not queued to fail later.
        try JobAdmission.admit(inputs, parameters: request.options ?? TransferParameters(), engine: worker?.engine)
        let (record, existing) = try store.submit(NewJob(
            owner: caller.uid, source: "rpc", folder: nil, priority: request.priority ?? 0,
            // Scoped to the caller: another user's key must neither match nor reveal their job.
            idempotencyKey: request.idempotencyKey.map { "user:\(store.scoped(String(caller.uid))):\($0)" },
            parameters: request.options ?? TransferParameters(), inputs: inputs), limit: limits.queueLimit)
        if !existing { worker?.wake() }
        return SubmitResult(job: JobConversion.info(record), existing: existing)
    }

    private func info(_ job: String) throws -> JobInfo {
        guard let record = try store.get(job) else { throw WireError.jobNotFound(job) }
        return JobConversion.info(record, progress: progress(of: job))
    }

    /// A running job's progress: this node's worker's, or the one its node last reported.
    private func progress(of job: String) -> JobProgress? { worker?.progress(of: job) ?? cluster?.progress(of: job) }

    /// Registers first, then takes the snapshot, so no event between the two is lost. The token is
    /// made before anything can use it, and the session knows the watch before events can end it:
    /// a final state arriving at any moment removes both, and removing twice is harmless. (Before,
    /// the handler captured a token assigned only after registration, and the session learnt of
    /// the watch after the snapshot: a job ending in between left a watch that never ended, so the
    /// connection got heartbeats forever and was never closed as idle.)
    private func watch(_ job: String, previews: Bool, session: Session) throws -> JobInfo {
        let token = UUID()
        session.add(watch: job, token: token)
        let end = { [events] in
            events.unwatch(job, token)
            session.remove(token: token)
        }
        events.watch(job, token: token) { event in
            switch event {
            case let .progress(progress):
                session.send(.notification(method: RPCNotificationName.progress.rawValue, params: try? JSONValue(encoding: progress)))
            case let .state(info):
                session.send(.notification(method: RPCNotificationName.state.rawValue, params: try? JSONValue(encoding: StateNotification(job: info))))
                if info.state.isFinal { end() }
            case let .preview(preview):
                if previews { session.send(.notification(method: RPCNotificationName.preview.rawValue, params: try? JSONValue(encoding: preview))) }
            }
        }
        let snapshot: JobInfo
        do { snapshot = try info(job) } catch { end(); throw error }
        if snapshot.state.isFinal { end() }
        return snapshot
    }

    private func cancel(_ job: String, caller: Caller) throws -> JobAcknowledgement {
        let record = try authorize(job, caller)
        switch record.jobState {
        case .queued:
            let cancelled = try store.cancelQueued(job)
            let info = JobConversion.info(cancelled)
            events.publish(job, .state(info))
            return JobAcknowledgement(job: info)
        case .running:
            // Here, or on the node running it (which stops at its next UNet pass).
            let stopping = try worker?.cancel(job) == true || store.requestCancel(job) != nil
            guard stopping else { throw WireError.invalidState("job \(job) is ending") }
            return JobAcknowledgement(job: JobConversion.info(record))
        default:
            throw WireError.invalidState("job \(job) is \(record.state)")
        }
    }

    private func result(_ job: String) throws -> JobResult {
        guard let record = try store.get(job) else { throw WireError.jobNotFound(job) }
        guard let (png, stored) = try store.resultFiles(of: record) else {
            throw WireError.invalidState(record.jobState == .succeeded ? "job \(job)'s result is no longer kept (retention)" : "job \(job) is \(record.state); it has no result")
        }
        let sidecar = stored.flatMap { try? JSONDecoder().decode(JSONValue.self, from: $0) } ?? .null
        return JobResult(job: job, png: png.base64EncodedString(), sidecar: sidecar)
    }

    /// Where the worker writes results (for the store's use in `daemon.status`).
    let resultsDirectory: String

    /// The daemon's state is "starting", "ready" or "stopping" whatever the store's: when the store
    /// cannot be reached (a shared database restarting), the status says so and answers from what
    /// this node knows.
    private func status() -> DaemonStatus {
        var store = StoreStatus(databaseBytes: 0, resultBytes: 0, imageBytes: 0, imageLimit: self.store.maximumImageBytes, kind: self.store.kind, available: true)
        var (queued, paused, nodes): (Int, Bool, [NodeStatus]?) = (lastQueued.value, false, nil)
        do {
            let (images, database) = try self.store.usage()
            (store.imageBytes, store.databaseBytes) = (images, database)
            queued = try self.store.queuedCount()
            paused = self.store.isPaused
            nodes = try self.store.nodes()
            lastQueued.value = queued
        } catch {
            (store.available, store.error) = (false, WireError(from: error).message)
        }
        let manager = FileManager.default
        store.resultBytes = ((try? manager.contentsOfDirectory(atPath: resultsDirectory)) ?? []).reduce(0) { total, name in
            total + (((try? manager.attributesOfItem(atPath: resultsDirectory + "/" + name))?[.size] as? NSNumber)?.intValue ?? 0)
        }
        return DaemonStatus(server: Self.serverName, protocolVersion: WireProtocol.version,
                            state: isStopping ? "stopping" : (backend == nil ? "starting" : "ready"),
                            paused: paused, queued: queued, queueLimit: limits.queueLimit, running: worker?.runningJob, model: model,
                            folders: backend?.folders?(), store: store, node: self.store.nodeName, nodes: nodes)
    }

    /// The queue's length when the store last answered.
    private let lastQueued = LockedValue(0)

    /// Admins see every job, and everyone does on a daemon configured as a shared gallery.
    private func seesEverything(_ caller: Caller) -> Bool { caller.isAdmin || limits.sharedJobs }

    /// A job's options, images, progress and result are shown to its owner and the admins only.
    @discardableResult
    private func visible(_ job: String, _ caller: Caller) throws -> JobRecord {
        guard let record = try store.get(job) else { throw WireError.jobNotFound(job) }
        guard seesEverything(caller) || record.isOwned(by: caller.uid, on: store.nodeName) else {
            throw WireError.permissionDenied("job \(job) belongs to another user")
        }
        return record
    }

    /// The job, if the caller owns it or is an admin.
    @discardableResult
    private func authorize(_ job: String, _ caller: Caller) throws -> JobRecord {
        guard let record = try store.get(job) else { throw WireError.jobNotFound(job) }
        guard caller.isAdmin || record.isOwned(by: caller.uid, on: store.nodeName) else {
            throw WireError.permissionDenied("job \(job) belongs to uid \(record.owner)\(record.ownerNode.map { " on node \($0)" } ?? "")")
        }
        return record
    }
}

