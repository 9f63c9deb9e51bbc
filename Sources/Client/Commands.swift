import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Wire

/// What xattnctl's commands do over one connection; each returns the process exit code.
struct Commands {
    let connection: Connection
    let json: Bool

    func hello() throws {
        _ = try connection.call(.hello, try JSONValue(encoding: HelloParams(protocolVersions: [WireProtocol.version], client: "xattnctl")))
    }

    /// What a command line asks for (parsed by CommandTree).
    enum Command {
        case status(job: String?)
        case list(limit: Int)
        case watch(job: String, preview: String?)
        case cancel(job: String), retry(job: String)
        case result(job: String, out: String)
        case admin(RPCMethod)
        case info
    }

    func run(_ command: Command) throws -> Int32 {
        switch command {
        case let .status(job?):
            return try show(try connection.call(.get, try JSONValue(encoding: JobReference(job: job))), as: JobInfo.self, line: describe)
        case .status(nil):
            return try show(try connection.call(.status), as: DaemonStatus.self) { s in
                "\(s.server) \(s.state)\(s.paused ? " (paused)" : ""): \(s.queued)/\(s.queueLimit) queued, running \(s.running ?? "nothing"); model \(s.model.state) (\(s.model.path))"
                    + "\nstore: images \(Self.megabytes(s.store.imageBytes)) of \(Self.megabytes(s.store.imageLimit)), database \(Self.megabytes(s.store.databaseBytes)), results \(Self.megabytes(s.store.resultBytes))"
                    + (s.store.available == false ? "\nstore UNAVAILABLE: \(s.store.error ?? "")" : "")
                    + (s.folders ?? []).map { f in "\nfolder \(f.name) (\(f.path)): \(f.mode), \(f.waiting) waiting, \(f.processing) processing" }.joined()
                    + (s.nodes ?? []).map { n in
                        "\nnode \(n.name)\(n.name == s.node ? " (this one)" : ""): \(n.state), running \(n.running ?? "nothing"), last seen \(n.lastSeen)"
                    }.joined()
            }
        case let .list(limit):
            return try show(try connection.call(.list, try JSONValue(encoding: ListParams(limit: limit))), as: ListResult.self) { r in
                r.jobs.isEmpty ? "no jobs" : r.jobs.map(describe).joined(separator: "\n")
            }
        case let .watch(job, preview): return try watch(job, preview: preview)
        case let .cancel(job), let .retry(job):
            let method: RPCMethod
            if case .cancel = command { method = .cancel } else { method = .retry }
            return try show(try connection.call(method, try JSONValue(encoding: JobReference(job: job))), as: JobAcknowledgement.self) { a in
                describe(a.job)
            }
        case let .result(job, out): return try saveResult(job, to: out)
        case let .admin(method): return try show(try connection.call(method), as: Acknowledgement.self) { _ in "ok" }
        case .info:
            return try show(try connection.call(.modelStatus), as: ModelStatus.self) { m in
                "model \(m.state): \(m.path)" + (m.identity.map { " identity \($0.prefix(16))" } ?? "") + (m.loadSeconds.map { String(format: ", loaded in %.1f s", $0) } ?? "")
            }
        }
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }

    func describe(_ job: JobInfo) -> String {
        var line = "\(job.id)  \(job.state.rawValue)  priority \(job.priority)  \(job.source)\(job.folder.map { " \($0)" } ?? "")  created \(job.createdAt)"
        if let p = job.progress { line += "  \(p.phase) \(p.step)/\(p.total)" }
        if let e = job.error { line += "  error: \(e.message)" }
        return line
    }

    /// Prints a result as JSON (--json) or as a line for people.
    func show<T: Decodable>(_ value: JSONValue, as type: T.Type, line: (T) -> String) throws -> Int32 {
        if json {
            print(String(decoding: try JSONEncoder.pretty.encode(value), as: UTF8.self))
        } else {
            print(line(try value.decode(T.self)))
        }
        return 0
    }

    func submit(_ request: SubmitParams, wait: Bool, out: String?, preview: String? = nil) throws -> Int32 {
        let submitted = try connection.call(.submit, try JSONValue(encoding: request)).decode(SubmitResult.self)
        guard wait || out != nil else {
            if json { print(String(decoding: try JSONEncoder.pretty.encode(submitted), as: UTF8.self)) } else { print(submitted.job.id) }
            return 0
        }
        let code = try watch(submitted.job.id, preview: preview)
        if code == 0, let out { return try saveResult(submitted.job.id, to: out) }
        return code
    }

    /// Follows a job to its end: a progress bar on a terminal, plain lines otherwise. With
    /// `preview`, that file is rewritten (aside, then renamed) with each preview; the latest one is
    /// written at once when the job already has one.
    func watch(_ job: String, preview: String? = nil) throws -> Int32 {
        var info = try connection.call(.watch, try JSONValue(encoding: WatchParams(job: job, previews: preview != nil ? true : nil))).decode(JobInfo.self)
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        if let preview, !info.state.isFinal,
           let latest = try? connection.call(.preview, try JSONValue(encoding: JobReference(job: job))).decode(JobPreviewResult.self).preview {
            try write(latest, to: preview)
        }
        while !info.state.isFinal {
            let (method, params) = try connection.nextNotification()
            if method == RPCNotificationName.preview.rawValue, let preview, let image = try? params.decode(JobPreview.self), image.job == job {
                try write(image, to: preview)
            } else if method == RPCNotificationName.progress.rawValue, let progress = try? params.decode(ProgressNotification.self), progress.job == job {
                report(progress.progress, terminal: terminal)
            } else if method == RPCNotificationName.state.rawValue, let state = try? params.decode(StateNotification.self), state.job.id == job {
                info = state.job
                if !json && !terminal { FileHandle.standardError.write(Data("\(job) \(info.state.rawValue)\n".utf8)) }
            }
        }
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
        if json { print(String(decoding: try JSONEncoder.pretty.encode(info), as: UTF8.self)) } else { print(describe(info)) }
        return info.state == .succeeded ? 0 : ClientError.Kind.jobFailed.rawValue
    }

    func report(_ p: JobProgress, terminal: Bool) {
        let eta = p.etaSeconds.map { String(format: " ETA %d:%02d", Int($0) / 60, Int($0) % 60) } ?? ""
        if terminal {
            let width = 30, filled = p.total > 0 ? width * p.step / p.total : 0
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(p.phase) \(p.step)/\(p.total)\(eta)".utf8))
        } else if !json {
            FileHandle.standardError.write(Data("\(p.phase) \(p.step)/\(p.total)\(eta)\n".utf8))
        }
    }

    func write(_ preview: JobPreview, to path: String) throws {
        guard let png = Data(base64Encoded: preview.png) else { throw ClientError(kind: .failure, description: "a preview is not base64") }
        try png.write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    func saveResult(_ job: String, to path: String) throws -> Int32 {
        let result = try connection.call(.result, try JSONValue(encoding: JobReference(job: job))).decode(JobResult.self)
        guard let png = Data(base64Encoded: result.png) else { throw ClientError(kind: .failure, description: "the result is not base64") }
        try png.write(to: URL(fileURLWithPath: path), options: .atomic)
        if !json { print("wrote \(path)") }
        return 0
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
