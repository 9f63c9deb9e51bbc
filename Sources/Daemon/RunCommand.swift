import Core
import Foundation
import Logging
import Wire

/// `xattnd run`: the service. Loads the model once, then serves the queue and the socket until
/// SIGTERM/SIGINT, which stop intake, stop the running job at its next pass, requeue it, and exit.
enum RunCommand {
    static let usage = """
        usage: xattnd run --model DIR_OR_FILE [--state-dir DIR] [--socket PATH] [--queue-limit N]
          [--max-frame-size BYTES] [--admin-group NAME] [--max-attempts N] [--idle-timeout SECONDS]
          [--cache-dir DIR] [--no-cache] [--tokenizer DIR]
        """

    static func run(_ raw: [String]) throws {
        let a = try Arguments(raw, valued: ["model", "state-dir", "socket", "queue-limit", "max-frame-size", "admin-group",
                                            "max-attempts", "idle-timeout", "cache-dir", "tokenizer"], switches: ["no-cache"])
        var logger = Logger(label: "xattnd")
        logger.logLevel = .info
        let stateDirectory = a.string("state-dir") ?? "/var/lib/xattnd"
        let socket = a.string("socket") ?? "/run/xattnd.sock"
        var limits = ServiceLimits()
        if let n = try a.parse("queue-limit", as: "a whole number ≥ 1", { Int($0).flatMap { $0 >= 1 ? $0 : nil } }) { limits.queueLimit = n }
        if let n = try a.parse("max-frame-size", as: "a number of bytes ≥ 1024", { Int($0).flatMap { $0 >= 1024 ? $0 : nil } }) { limits.maximumFrameSize = n }
        let maxAttempts = try a.parse("max-attempts", as: "a whole number ≥ 1", { Int($0).flatMap { $0 >= 1 ? $0 : nil } }) ?? 3
        let idle = try a.parse("idle-timeout", as: "seconds", { Int64($0) }) ?? 300
        let adminGroup = try a.string("admin-group").map { name -> gid_t in
            guard let group = getgrnam(name) else { throw Arguments.UsageError(description: "--admin-group: no group '\(name)'") }
            return group.pointee.gr_gid
        }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)

        Systemd.notify("STATUS=loading the model")
        let modelPath = try a.required("model")
        let start = Date()
        let model = try StableDiffusionModel.load(from: modelPath, tokenizer: a.string("tokenizer"))
        let loadSeconds = Date().timeIntervalSince(start)
        logger.info("model loaded", metadata: ["path": "\(modelPath)", "seconds": "\(String(format: "%.1f", loadSeconds))", "identity": "\(model.identity.prefix(12))"])
        let schedule = try NoiseSchedule(config: try TransferCommand.schedulerConfig(near: model.path))

        let store = try JobStore(path: stateDirectory + "/jobs.sqlite")
        let recovered = try store.recoverInterrupted(maxAttempts: maxAttempts)
        if !recovered.requeued.isEmpty || !recovered.failed.isEmpty {
            logger.notice("interrupted jobs", metadata: ["requeued": "\(recovered.requeued)", "failed": "\(recovered.failed)"])
        }
        let cache = a.flag("no-cache") ? nil : try InversionCache(directory: a.string("cache-dir") ?? stateDirectory + "/inversions")
        let events = EventHub()
        let worker = Worker(store: store, events: events, model: model, schedule: schedule,
                            resultsDirectory: stateDirectory + "/results", cache: cache, logger: logger)
        let status = ModelStatus(state: "ready", path: modelPath, identity: model.identity, loadSeconds: loadSeconds, error: nil)
        let service = RPCService(store: store, worker: worker, events: events, limits: limits, model: status)
        let ownUID = getuid()
        let server = RPCServer(service: service, events: events, logger: logger, idleTimeoutSeconds: idle) { uid, gid in
            uid == 0 || uid == ownUID || (adminGroup.map { isMember(uid: uid, gid: gid, of: $0) } ?? false)
        }
        worker.start()
        try server.start(path: socket)

        let done = DispatchSemaphore(value: 0)
        Signals.onInterrupt {
            logger.info("stopping")
            Systemd.notify("STOPPING=1")
            service.beginShutdown()
            server.stop()
            worker.shutdown()
            done.signal()
        }
        Systemd.notify("READY=1\nSTATUS=ready")
        logger.info("ready", metadata: ["socket": "\(socket)", "state": "\(stateDirectory)"])
        done.wait()
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
