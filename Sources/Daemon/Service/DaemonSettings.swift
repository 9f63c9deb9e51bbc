import Foundation
import Wire

/// Everything xattnd is configured with: defaults, then the TOML file, then command-line flags.
package struct DaemonSettings: Equatable {
    package var model: String?
    package var tokenizer: String?
    /// The form the model's weights are loaded in, and so every job's products (auto: bf16 where
    /// the CPU has AVX512-BF16, else fp32).
    package var precision = PrecisionChoice.auto
    package var stateDirectory = "/var/lib/xattnd"
    package var socket = "/run/xattnd.sock"
    package var socketGroup: String?
    package var queueLimit = 100
    var maximumFrameSize = WireProtocol.defaultMaximumFrameSize
    var adminGroup: String?
    package var maxAttempts = 3
    var idleTimeout = 300
    /// Connections served at once, bytes held in unanswered requests, seconds per frame.
    var maxConnections = 64
    var maxBufferedBytes = 256 << 20
    var frameTimeout = 30
    /// Bytes of images the job store may hold.
    package var storeMaxBytes = 4 << 30
    /// "owner": a job is seen by its owner and the admins only; "all": by every user of the socket.
    var jobVisibility = "owner"
    package var cache = true
    package var cacheDirectory: String?
    package var cacheSizeMB = 2048
    /// Results (PNG + JSON) older than this many days are deleted; 0 keeps them.
    package var resultRetentionDays = 30
    /// At most this many results are kept (newest first); 0 keeps all.
    package var resultRetentionCount = 1000
    /// Pixels of one model input at most (the `size` option's bound; ImageGeometry.defaultMaxPixels).
    package var maxPixels = 1024 * 1024
    /// A shared PostgreSQL job store (README, "Several machines"); nil: SQLite in the state directory.
    package var database: String?
    /// A file holding the database's password (read at start; never logged nor shown).
    package var databasePasswordFile: String?
    /// This node's name in a shared database: the one configured, else the host name (looked up
    /// only when asked: Foundation's host name may wait on a DNS lookup, and settings are made often).
    package var node: String {
        get { configuredNode ?? ProcessInfo.processInfo.hostName }
        set { configuredNode = newValue }
    }
    private var configuredNode: String?
    /// Seconds a node's claim on a running job lasts without renewal (renewed every quarter of it):
    /// after a node is killed or cut off, its job runs elsewhere this long after its last renewal.
    package var leaseSeconds = 60
    /// Hot folders (`[[folder]]` tables).
    package var folders: [HotFolderSettings] = []

    /// Settings that only a restart can change (the model stays loaded, the socket stays bound).
    static let restartOnly: [(String, @Sendable (DaemonSettings) -> String?)] = [
        ("model", { $0.model }), ("tokenizer", { $0.tokenizer }), ("precision", { $0.precision.rawValue }), ("state_dir", { $0.stateDirectory }),
        ("socket", { $0.socket }), ("socket_group", { $0.socketGroup }), ("cache", { "\($0.cache)" }), ("cache_dir", { $0.cacheDirectory }),
        ("max_pixels", { "\($0.maxPixels)" }), ("database", { $0.database }), ("database_password_file", { $0.databasePasswordFile }),
        ("node", { $0.configuredNode }), ("lease_seconds", { "\($0.leaseSeconds)" }), ("folder", { "\($0.folders)" }),
    ]

    package struct Invalid: Error, CustomStringConvertible { package let description: String }

    static func precision(_ text: String, _ name: String) throws -> PrecisionChoice {
        guard let choice = PrecisionChoice(rawValue: text) else {
            throw Invalid(description: "\(name) must be one of \(PrecisionChoice.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
        }
        return choice
    }

    /// Values from a TOML configuration file; unknown keys are errors (typos must not pass).
    mutating func apply(toml text: String, path: String) throws {
        let values: [String: JSONValue]
        do { values = try TOML.parse(text) } catch { throw Invalid(description: "\(path): \(error)") }
        for (key, value) in values {
            let field = ConfigField(key: key, value: value, context: path)
            switch key {
            case "model": model = try field.string()
            case "tokenizer": tokenizer = try field.string()
            case "precision": precision = try Self.precision(try field.string(), "\(path): precision")
            case "state_dir": stateDirectory = try field.string()
            case "socket": socket = try field.string()
            case "socket_group": socketGroup = try field.string()
            case "queue_limit": queueLimit = try field.integer(Bounds.queueLimit)
            case "max_frame_size": maximumFrameSize = try field.integer(Bounds.maximumFrameSize)
            case "admin_group": adminGroup = try field.string()
            case "max_attempts": maxAttempts = try field.integer(Bounds.maxAttempts)
            case "idle_timeout": idleTimeout = try field.integer(Bounds.idleTimeout)
            case "max_connections": maxConnections = try field.integer(Bounds.maxConnections)
            case "max_buffered_bytes": maxBufferedBytes = try field.integer(Bounds.maxBufferedBytes)
            case "frame_timeout": frameTimeout = try field.integer(Bounds.frameTimeout)
            case "store_max_bytes": storeMaxBytes = try field.integer(Bounds.storeMaxBytes)
            case "job_visibility":
                jobVisibility = try field.string()
                guard Self.jobVisibilities.contains(jobVisibility) else { throw field.invalid("must be \"owner\" or \"all\"") }
            case "cache": cache = try field.bool()
            case "cache_dir": cacheDirectory = try field.string()
            case "cache_size_mb": cacheSizeMB = try field.integer(1...1_000_000)
            case "result_retention_days": resultRetentionDays = try field.integer(0...36500)
            case "max_pixels": maxPixels = try field.integer(4096...(1 << 26))
            case "database": database = try field.string()
            case "database_password_file": databasePasswordFile = try field.string()
            case "lease_seconds": leaseSeconds = try field.integer(4...3600)
            case "node":
                node = try field.string()
                guard !node.isEmpty, node.count <= 200 else { throw field.invalid("must be a name of 1 to 200 characters") }
            case "result_retention_count": resultRetentionCount = try field.integer(0...10_000_000)
            case "folder":
                guard case let .array(tables) = value else { throw field.invalid("must be [[folder]] tables") }
                folders = try tables.enumerated().map { index, table in
                    guard case let .object(fields) = table else { throw field.invalid("must be [[folder]] tables") }
                    return try HotFolderSettings.parse(fields, at: index, file: path)
                }
                try HotFolderSettings.validate(folders)
            default: throw field.unknown
            }
        }
    }

    /// Flags win over the file; each is held to the bounds of its key.
    mutating func apply(overrides o: SettingsOverrides) throws {
        func bounded(_ value: Int?, _ range: ClosedRange<Int>, _ flag: String) throws -> Int? {
            guard let value else { return nil }
            guard range.contains(value) else { throw Invalid(description: "--\(flag) must be in \(range.lowerBound)…\(range.upperBound), got \(value)") }
            return value
        }
        if let v = o.model { model = v }
        if let v = o.tokenizer { tokenizer = v }
        if let v = o.precision { precision = try Self.precision(v, "--precision") }
        if let v = o.stateDirectory { stateDirectory = v }
        if let v = o.socket { socket = v }
        if let v = o.socketGroup { socketGroup = v }
        if let v = o.adminGroup { adminGroup = v }
        if let v = o.cacheDirectory { cacheDirectory = v }
        if let v = o.database { database = v }
        if let v = o.node {
            guard !v.isEmpty, v.count <= 200 else { throw Invalid(description: "--node must be a name of 1 to 200 characters") }
            node = v
        }
        if let v = try bounded(o.queueLimit, Bounds.queueLimit, "queue-limit") { queueLimit = v }
        if let v = try bounded(o.maximumFrameSize, Bounds.maximumFrameSize, "max-frame-size") { maximumFrameSize = v }
        if let v = try bounded(o.maxAttempts, Bounds.maxAttempts, "max-attempts") { maxAttempts = v }
        if let v = try bounded(o.idleTimeout, Bounds.idleTimeout, "idle-timeout") { idleTimeout = v }
        if let v = try bounded(o.maxConnections, Bounds.maxConnections, "max-connections") { maxConnections = v }
        if let v = try bounded(o.maxBufferedBytes, Bounds.maxBufferedBytes, "max-buffered-bytes") { maxBufferedBytes = v }
        if let v = try bounded(o.frameTimeout, Bounds.frameTimeout, "frame-timeout") { frameTimeout = v }
        if let v = try bounded(o.storeMaxBytes, Bounds.storeMaxBytes, "store-max-bytes") { storeMaxBytes = v }
        if let v = o.jobVisibility {
            guard Self.jobVisibilities.contains(v) else { throw Invalid(description: "--job-visibility must be owner or all, got '\(v)'") }
            jobVisibility = v
        }
        if o.noCache { cache = false }
    }

    /// The bounds of numeric settings, the same for a file's key and its flag.
    enum Bounds {
        static let queueLimit = 1...1_000_000
        static let maximumFrameSize = 1024...(1 << 30)
        static let maxAttempts = 1...100
        static let idleTimeout = 1...86400
        static let maxConnections = 1...100_000
        static let maxBufferedBytes = 1024...(1 << 40)
        static let frameTimeout = 1...3600
        static let storeMaxBytes = 1024...(1 << 50)
    }
    static let jobVisibilities = ["owner", "all"]

    /// Group names must exist; a model is required.
    func validate() throws {
        guard model != nil else { throw Invalid(description: "no model: give --model or model = \"…\" in the configuration file") }
        for (name, group) in [("admin_group", adminGroup), ("socket_group", socketGroup)] {
            if let group, getgrnam(group) == nil { throw Invalid(description: "\(name): no group '\(group)' on this system") }
        }
        for folder in folders {
            for fixed in [folder.appearance, folder.structure].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: fixed) {
                throw Invalid(description: "hot folder '\(folder.name)': cannot read the fixed image \(fixed)")
            }
        }
    }

    package var serviceLimits: ServiceLimits {
        ServiceLimits(queueLimit: queueLimit, maximumFrameSize: maximumFrameSize, sharedJobs: jobVisibility == "all")
    }

    /// Result images and their sidecars.
    package var resultsDirectory: String { stateDirectory + "/results" }

    package var connectionLimits: ConnectionLimits {
        ConnectionLimits(maxConnections: maxConnections, maxBufferedBytes: maxBufferedBytes, frameTimeout: frameTimeout, idleTimeout: idleTimeout)
    }

    package var adminGID: gid_t? { adminGroup.flatMap { getgrnam($0)?.pointee.gr_gid } }

    /// Reads the configuration file (if any) and the flags into settings, validated.
    package static func load(file: String?, overrides: SettingsOverrides = SettingsOverrides()) throws -> DaemonSettings {
        var settings = DaemonSettings()
        if let file {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw Invalid(description: "\(file): cannot read the configuration file")
            }
            try settings.apply(toml: text, path: file)
        }
        try settings.apply(overrides: overrides)
        try settings.validate()
        return settings
    }
}

/// One `key = value` of the configuration read as the type its setting needs; errors name the
/// file (and table) and the key.
struct ConfigField {
    let key: String
    let value: JSONValue
    /// Where it is: the file, or the file and the table.
    let context: String

    func invalid(_ problem: String) -> DaemonSettings.Invalid { DaemonSettings.Invalid(description: "\(context): \(key) \(problem)") }

    /// A key no setting has (typos must not pass).
    var unknown: DaemonSettings.Invalid { DaemonSettings.Invalid(description: "\(context): unknown setting '\(key)'") }

    func string() throws -> String {
        guard case let .string(s) = value else { throw invalid("must be a string") }
        return s
    }

    func bool() throws -> Bool {
        guard case let .bool(b) = value else { throw invalid("must be true or false") }
        return b
    }

    func integer(_ range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        guard case let .integer(n) = value, range.contains(n) else {
            switch (range.lowerBound, range.upperBound) {
            case (Int.min, Int.max): throw invalid("must be a whole number")
            case (let low, Int.max): throw invalid("must be a whole number ≥ \(low)")
            default: throw invalid("must be a whole number in \(range.lowerBound)…\(range.upperBound)")
            }
        }
        return n
    }

    /// An integer or a float; `unit` words the error ("seconds").
    func number(_ range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude, unit: String? = nil) throws -> Double {
        let x: Double
        switch value {
        case let .integer(n): x = Double(n)
        case let .number(f): x = f
        default: throw invalid("must be a number" + (unit.map { " of \($0)" } ?? ""))
        }
        guard range.contains(x) else { throw invalid("must be in \(range.lowerBound)…\(range.upperBound)" + (unit.map { " \($0)" } ?? "")) }
        return x
    }

    /// `[start, end]`.
    func range() throws -> [Int] {
        guard case let .array(items) = value, items.count == 2, case let .integer(a) = items[0], case let .integer(b) = items[1] else {
            throw invalid("must be [start, end]")
        }
        return [a, b]
    }
}

/// Re-reads the configuration on SIGHUP or `daemon.reload` and applies it atomically: either every
/// changed live setting takes effect, or (on any error) the old configuration stays, whole.
package final class Reloader: @unchecked Sendable {
    private let lock = NSLock()
    private var settings: DaemonSettings
    let file: String?
    let overrides: SettingsOverrides
    /// Applies live settings to the running parts.
    let apply: (DaemonSettings) -> Void

    package init(settings: DaemonSettings, file: String?, overrides: SettingsOverrides, apply: @escaping (DaemonSettings) -> Void) {
        (self.settings, self.file, self.overrides, self.apply) = (settings, file, overrides, apply)
    }

    var current: DaemonSettings { lock.lock(); defer { lock.unlock() }; return settings }

    package func reload() throws -> DaemonSettings {
        lock.lock(); defer { lock.unlock() }
        let fresh = try DaemonSettings.load(file: file, overrides: overrides)
        let changed = DaemonSettings.restartOnly.filter { $0.1(fresh) != $0.1(settings) }.map(\.0)
        guard changed.isEmpty else {
            throw DaemonSettings.Invalid(description: "\(changed.joined(separator: ", ")) changed: these take effect only after a restart; nothing was applied")
        }
        settings = fresh
        apply(fresh)
        return fresh
    }
}
