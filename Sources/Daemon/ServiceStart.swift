import Core
import Foundation
import SystemCalls
import Logging
import Service
import Wire

/// The service's start, as the steps it takes in order, and its orderly stop.
///
/// 1. `openStore`: the job store, with jobs interrupted by an abnormal stop requeued or failed.
/// 2. `listen`: the socket. While the model loads (a minute for SD 1.5 from a cold disk) clients
///    see "starting" and can already queue, list, watch and cancel jobs.
/// 3. `loadModel`: weights and schedule, the hot folders' options checked against them.
/// 4. `startWork`: the worker, the hot folders, reloads; then READY=1.
/// 5. `serveUntilStopped`: until SIGTERM/SIGINT.
final class ServiceStart {
    let settings: DaemonSettings
    let file: String?
    let overrides: SettingsOverrides
    let logger = DaemonLogging.logger()
    private let adminGroup: LockedValue<gid_t?>

    init(settings: DaemonSettings, file: String?, overrides: SettingsOverrides) {
        (self.settings, self.file, self.overrides) = (settings, file, overrides)
        adminGroup = LockedValue(settings.adminGID)
    }

    func run() throws {
        let store = try openStore()
        let events = EventHub()
        let (service, server) = try listen(store: store, events: events)
        let engine: JobAdmission.Engine, loadSeconds: Double
        do { (engine, loadSeconds) = try loadModel() } catch {
            server.stop()
            throw error
        }
        let (worker, hotFolders) = try startWork(store: store, events: events, service: service, server: server, engine: engine, loadSeconds: loadSeconds)
        serveUntilStopped(service: service, server: server, worker: worker, hotFolders: hotFolders)
    }

    /// Step 1. The store holds every user's images: the state directory is the service user's alone.
    func openStore() throws -> any JobStore {
        try FileManager.default.createDirectory(atPath: settings.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let store: any JobStore
        if let database = settings.database {
            store = try PostgresJobStore(url: database, password: try databasePassword(), node: settings.node, leaseSeconds: Double(settings.leaseSeconds))
            logger.info("job store: PostgreSQL", metadata: ["node": "\(settings.node)"])
        } else {
            store = try SQLiteJobStore(path: settings.stateDirectory + "/jobs.sqlite")
        }
        store.maximumImageBytes = settings.storeMaxBytes
        let recovered = try store.recoverInterrupted(maxAttempts: settings.maxAttempts)
        if !recovered.requeued.isEmpty || !recovered.failed.isEmpty {
            logger.notice("interrupted jobs", metadata: ["requeued": "\(recovered.requeued)", "failed": "\(recovered.failed)"])
        }
        return store
    }

    /// The shared database's password, from `database_password_file` (nil without one).
    func databasePassword() throws -> String? {
        try settings.databasePasswordFile.map { file -> String in
            do { return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) } catch {
                throw UsageError("database_password_file \(file): \(error.localizedDescription)")
            }
        }
    }

    /// Step 2.
    func listen(store: any JobStore, events: EventHub) throws -> (RPCService, RPCServer) {
        let service = RPCService(store: store, events: events, limits: settings.serviceLimits, resultsDirectory: settings.resultsDirectory,
                                 loading: ModelStatus(state: "loading", path: settings.model ?? "", identity: nil, loadSeconds: nil, error: nil))
        let ownUID = getuid()
        if let shared = store as? PostgresJobStore, let database = settings.database {
            // From now on this node's events reach the others and theirs reach its clients; its row
            // in `node` says "starting" until the model is loaded.
            let cluster = ClusterEvents(store: shared, events: events, url: database, password: try databasePassword(), logger: logger)
            cluster.reportState { [weak service] in
                guard let service else { return ("stopped", nil) }
                return (service.isStopping ? "stopping" : (service.backend == nil ? "starting" : "ready"), service.backend?.worker.runningJob)
            }
            cluster.start()
            service.cluster = cluster
        }
        let server = RPCServer(service: service, events: events, logger: logger, limits: settings.connectionLimits) { [adminGroup] uid, gid in
            uid == 0 || uid == ownUID || (adminGroup.value.map { Self.isMember(uid: uid, gid: gid, of: $0) } ?? false)
        }
        try server.start(path: settings.socket)
        if let interval = Systemd.watchdogInterval() { server.startWatchdog(intervalMicroseconds: interval) }
        if let group = settings.socketGroup.flatMap({ getgrnam($0)?.pointee.gr_gid }), RPCServer.inheritedSocket() == nil {
            do { try POSIX.chown(settings.socket, group: group) } catch {
                logger.error("the socket's group could not be set; only its owner can connect", metadata: ["error": "\(error)"])
            }
        }
        Signals.onHangup { [logger] in
            guard let reload = service.backend?.reload else { logger.notice("SIGHUP ignored: the model is still loading"); return }
            do { try reload() } catch { logger.error("reload failed; the previous configuration stays", metadata: ["error": "\(error)"]) }
        }
        return (service, server)
    }

    /// Step 3. Loading 4 GB of weights can outlast TimeoutStartSec: systemd is asked for more time
    /// every 10 s meanwhile.
    func loadModel() throws -> (JobAdmission.Engine, seconds: Double) {
        Systemd.notify("STATUS=loading the model")
        let start = Date()
        let extender = DispatchSource.makeTimerSource(queue: .global())
        extender.schedule(deadline: .now(), repeating: .seconds(10))
        extender.setEventHandler { Systemd.notify("EXTEND_TIMEOUT_USEC=30000000") }
        extender.resume()
        defer { extender.cancel() }
        let path = settings.model ?? ""
        if let error = EngineSetup.prepare() { throw UsageError(error) }
        let model = try StableDiffusionModel.load(from: path, tokenizer: settings.tokenizer, precision: settings.precision.resolved)
        EngineSetup.releaseFreeMemory()  // the load's transient buffers (a bf16 conversion's float copies)
        let engine = JobAdmission.Engine(model: model, schedule: try NoiseSchedule(config: try NoiseSchedule.Config(near: model.path)),
                                         maxPixels: settings.maxPixels)
        // A folder's options that this model refuses would fail every drop: refuse them now.
        for folder in settings.folders {
            do { _ = try JobAdmission.options(folder.options, engine: engine) } catch {
                throw UsageError("hot folder '\(folder.name)': \(error)")
            }
        }
        let seconds = Date().timeIntervalSince(start)
        logger.info("model loaded", metadata: ["path": "\(path)", "seconds": "\(String(format: "%.1f", seconds))", "identity": "\(model.identity.prefix(12))",
                                            "precision": "\(model.precision.rawValue)"])
        return (engine, seconds)
    }

    /// Step 4. Last comes "ready": the worker runs and the hot folders have been set up and scanned.
    func startWork(store: any JobStore, events: EventHub, service: RPCService, server: RPCServer,
                   engine: JobAdmission.Engine, loadSeconds: Double) throws -> (Worker, HotFolders) {
        let shared = store as? PostgresJobStore
        shared?.modelIdentity = engine.model.identity
        shared?.inversionLimit = settings.cacheSizeMB << 20
        let cache = settings.cache
            ? try InversionCache(directory: settings.cacheDirectory ?? Self.systemdCacheDirectory ?? settings.stateDirectory + "/inversions",
                                 maximumBytes: settings.cacheSizeMB << 20, shared: shared)
            : nil
        let worker = Worker(store: store, events: events, model: engine.model, schedule: engine.schedule,
                            resultsDirectory: settings.resultsDirectory, cache: cache, logger: logger)
        worker.retention = (settings.resultRetentionDays, settings.resultRetentionCount)
        worker.maxPixels = settings.maxPixels
        worker.leaseRenewal = Double(settings.leaseSeconds) / 4
        let hotFolders = HotFolders(settings: settings.folders, store: store, engine: engine, events: events, logger: logger,
                                    queueLimit: { service.limits.queueLimit }, wake: { worker.wake() })
        let reloader = Reloader(settings: settings, file: file, overrides: overrides) { [adminGroup] fresh in
            service.limits = fresh.serviceLimits
            worker.retention = (fresh.resultRetentionDays, fresh.resultRetentionCount)
            adminGroup.value = fresh.adminGID
            server.budget.limits = fresh.connectionLimits
            store.maximumImageBytes = fresh.storeMaxBytes
        }
        let reload = { [logger] in
            Systemd.notify("RELOADING=1")
            defer { Systemd.notify("READY=1") }
            _ = try reloader.reload()
            logger.info("configuration reloaded")
        }
        worker.onStatus = { Systemd.notify("STATUS=\($0)") }
        worker.start()
        if let cluster = service.cluster {
            // Idle nodes start a job submitted anywhere at once, and a cancel asked on any node
            // stops the job here (README, "Several machines").
            cluster.onQueueChange { worker.wake() }
            cluster.onCancel { _ = worker.cancel($0) }
        }
        hotFolders.start()
        let model = ModelStatus(state: "ready", path: settings.model ?? "", identity: engine.model.identity, loadSeconds: loadSeconds, error: nil,
                                precision: engine.model.precision.rawValue)
        service.attach(ServiceBackend(worker: worker, model: model, reload: reload,
                                      folders: settings.folders.isEmpty ? nil : { hotFolders.status() }))
        service.cluster?.beatSoon()
        return (worker, hotFolders)
    }

    /// Step 5. On SIGTERM/SIGINT: intake stops; the worker first (the running job goes back to the
    /// queue and its watchers hear so), then the connections answer what they hold and close.
    func serveUntilStopped(service: RPCService, server: RPCServer, worker: Worker, hotFolders: HotFolders) {
        let done = DispatchSemaphore(value: 0)
        Signals.onInterrupt { [logger] in
            logger.info("stopping")
            Systemd.notify("STOPPING=1")
            service.beginShutdown()
            hotFolders.stop()
            worker.shutdown()
            service.cluster?.stop()
            server.stop()
            done.signal()
        }
        Systemd.notify("READY=1\nSTATUS=ready")
        logger.info("ready", metadata: ["socket": "\(settings.socket)", "state": "\(settings.stateDirectory)"])
        done.wait()
    }

    /// The unit's CacheDirectory= (systemd exports it; the first one if several), where the
    /// inversion cache belongs: it may be deleted at any time without losing anything.
    static var systemdCacheDirectory: String? {
        ProcessInfo.processInfo.environment["CACHE_DIRECTORY"]?.split(separator: ":").first.map { $0 + "/inversions" }
    }

    /// Whether user `uid` (primary group `gid`) belongs to group `group`.
    static func isMember(uid: UInt32, gid: UInt32, of group: gid_t) -> Bool {
        if gid == group { return true }
        guard let user = getpwuid(uid), let name = user.pointee.pw_name else { return false }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        guard getgrouplist(name, gid, &groups, &count) >= 0 else { return false }
        return groups.prefix(Int(count)).contains(group)
    }
}
