import Service
import Core
import Foundation
import Logging
import Wire

/// `xattnd run`: the service. Loads the model once, then serves the queue and the socket until
/// SIGTERM/SIGINT, which stop intake, stop the running job at its next pass, requeue it, and exit.
enum RunCommand {
    static let usage = """
        usage: xattnd run [--config FILE] [--model DIR_OR_FILE] [--state-dir DIR] [--socket PATH]
          [--socket-group NAME] [--queue-limit N] [--max-frame-size BYTES] [--admin-group NAME]
          [--max-attempts N] [--idle-timeout SECONDS] [--max-connections N] [--max-buffered-bytes BYTES]
          [--frame-timeout SECONDS] [--job-visibility owner|all] [--store-max-bytes BYTES]
          [--cache-dir DIR] [--no-cache] [--tokenizer DIR]
        Flags override the configuration file (TOML; see systemd/xattnd.toml).
        """

    static func run(_ raw: [String]) throws {
        let flags = try Arguments(raw, valued: ["config", "model", "state-dir", "socket", "socket-group", "queue-limit", "max-frame-size",
                                                "admin-group", "max-attempts", "idle-timeout", "max-connections", "max-buffered-bytes",
                                                "frame-timeout", "job-visibility", "store-max-bytes", "cache-dir", "tokenizer"], switches: ["no-cache"])
        let settings: DaemonSettings
        do { settings = try DaemonSettings.load(file: flags.string("config"), flags: flags) } catch let error as DaemonSettings.Invalid {
            throw Arguments.UsageError(description: error.description)
        }
        let logger = DaemonLogging.logger()
        // The job store holds every user's images: the state directory is the service user's alone.
        try FileManager.default.createDirectory(atPath: settings.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let modelPath = settings.model ?? ""

        // The store and the socket come first: while the model loads (a minute for SD 1.5 from a
        // cold disk) clients see "starting" and can already queue, list, watch and cancel jobs.
        let store = try JobStore(path: settings.stateDirectory + "/jobs.sqlite")
        store.maximumImageBytes = settings.storeMaxBytes
        let recovered = try store.recoverInterrupted(maxAttempts: settings.maxAttempts)
        if !recovered.requeued.isEmpty || !recovered.failed.isEmpty {
            logger.notice("interrupted jobs", metadata: ["requeued": "\(recovered.requeued)", "failed": "\(recovered.failed)"])
        }
        let events = EventHub()
        let service = RPCService(store: store, events: events,
                                 limits: settings.serviceLimits, resultsDirectory: settings.resultsDirectory,
                                 loading: ModelStatus(state: "loading", path: modelPath, identity: nil, loadSeconds: nil, error: nil))
        let adminGroup = LockedValue(settings.adminGID)
        let ownUID = getuid()
        let server = RPCServer(service: service, events: events, logger: logger, limits: settings.connectionLimits) { uid, gid in
            uid == 0 || uid == ownUID || (adminGroup.value.map { isMember(uid: uid, gid: gid, of: $0) } ?? false)
        }
        try server.start(path: settings.socket)
        if let interval = Systemd.watchdogInterval() { server.startWatchdog(intervalMicroseconds: interval) }
        if let group = settings.socketGroup.flatMap({ getgrnam($0)?.pointee.gr_gid }), RPCServer.inheritedSocket() == nil {
            if chown(settings.socket, uid_t.max, group) != 0 {
                logger.error("the socket's group could not be set; only its owner can connect",
                             metadata: ["socket": "\(settings.socket)", "error": "\(String(cString: strerror(errno)))"])
            }
        }

        Signals.onHangup {
            guard let reload = service.backend?.reload else { logger.notice("SIGHUP ignored: the model is still loading"); return }
            do { try reload() } catch { logger.error("reload failed; the previous configuration stays", metadata: ["error": "\(error)"]) }
        }

        Systemd.notify("STATUS=loading the model")
        let start = Date()
        // Loading 4 GB of weights can outlast TimeoutStartSec: keep extending it while we work.
        let extender = DispatchSource.makeTimerSource(queue: .global())
        extender.schedule(deadline: .now(), repeating: .seconds(10))
        extender.setEventHandler { Systemd.notify("EXTEND_TIMEOUT_USEC=30000000") }
        extender.resume()
        defer { extender.cancel() }
        let model: StableDiffusionModel, schedule: NoiseSchedule
        do {
            model = try StableDiffusionModel.load(from: modelPath, tokenizer: settings.tokenizer)
            schedule = try NoiseSchedule(config: try NoiseSchedule.Config(near: model.path))
            // A folder's options that this model refuses would fail every drop: refuse them now.
            for folder in settings.folders {
                do { _ = try JobAdmission.options(folder.options, engine: JobAdmission.Engine(model: model, schedule: schedule)) } catch {
                    throw Arguments.UsageError(description: "hot folder '\(folder.name)': \(error)")
                }
            }
        } catch {
            server.stop()
            throw error
        }
        extender.cancel()
        let loadSeconds = Date().timeIntervalSince(start)
        logger.info("model loaded", metadata: ["path": "\(modelPath)", "seconds": "\(String(format: "%.1f", loadSeconds))", "identity": "\(model.identity.prefix(12))"])

        let cache = settings.cache
            ? try InversionCache(directory: settings.cacheDirectory ?? Self.systemdCacheDirectory ?? settings.stateDirectory + "/inversions",
                                 maximumBytes: settings.cacheSizeMB << 20)
            : nil
        let worker = Worker(store: store, events: events, model: model, schedule: schedule,
                            resultsDirectory: settings.resultsDirectory, cache: cache, logger: logger)
        worker.retention = (settings.resultRetentionDays, settings.resultRetentionCount)
        let hotFolders = HotFolders(settings: settings.folders, store: store, engine: worker.engine,
                                    events: events, logger: logger,
                                    queueLimit: { service.limits.queueLimit }, wake: { worker.wake() })
        let reloader = Reloader(settings: settings, file: flags.string("config"), flags: flags) { fresh in
            service.limits = fresh.serviceLimits
            worker.retention = (fresh.resultRetentionDays, fresh.resultRetentionCount)
            adminGroup.value = fresh.adminGID
            server.budget.limits = fresh.connectionLimits
            store.maximumImageBytes = fresh.storeMaxBytes
        }
        let reload = {
            Systemd.notify("RELOADING=1")
            defer { Systemd.notify("READY=1") }
            _ = try reloader.reload()
            logger.info("configuration reloaded")
        }
        worker.onStatus = { Systemd.notify("STATUS=\($0)") }
        worker.start()
        hotFolders.start()
        // Last: "ready" means the worker runs and the hot folders have been set up and scanned.
        service.attach(ServiceBackend(worker: worker, model: ModelStatus(state: "ready", path: modelPath, identity: model.identity,
                                                                         loadSeconds: loadSeconds, error: nil),
                                      reload: reload, folders: settings.folders.isEmpty ? nil : { hotFolders.status() }))

        let done = DispatchSemaphore(value: 0)
        Signals.onInterrupt {
            logger.info("stopping")
            Systemd.notify("STOPPING=1")
            service.beginShutdown()
            hotFolders.stop()
            // The worker first: the running job goes back to the queue and its watchers hear so;
            // then the connections answer what they hold and close, then the event loop.
            worker.shutdown()
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

/// A value shared between threads (the admin group, changed by reloads, read per connection).
final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
