import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Wire

/// The commands of xattnctl; each returns the process exit code.
struct Commands {
    let connection: Connection
    let json: Bool

    static let usage = """
        usage: xattnctl [--socket PATH] [--json] COMMAND
          submit STRUCTURE.png APPEARANCE.png [--domain N] [--prompt T] [--object-noun N] [--seed N]
                 [--timesteps T] [--skip K] [--no-masked-adain] [--swap-guidance X] [--contrast X]
                 [--cross-attn-range-0 A:B] [--cross-attn-range-1 A:B] [--adain-range A:B]
                 [--priority N] [--key IDEMPOTENCY_KEY] [--wait] [--out FILE]
          status [JOB]   list [--limit N]   watch JOB   cancel JOB   retry JOB   result JOB --out FILE
          pause   resume   reload   info
        The socket is --socket, else $XATTN_SOCKET, else /run/xattnd.sock.
        Exit codes: 0 done, 1 failed, 2 usage, 3 daemon not reachable, 4 queue full, 5 job failed or cancelled.
        """

    func hello() throws {
        _ = try connection.call(.hello, try JSONValue(encoding: HelloParams(protocolVersions: [WireProtocol.version], client: "xattnctl")))
    }

    func run(_ command: String, _ rest: [String]) throws -> Int32 {
        switch command {
        case "submit": return try submit(rest)
        case "status":
            if let job = rest.first { return try show(try connection.call(.get, try JSONValue(encoding: JobReference(job: job))), as: JobInfo.self, line: describe) }
            return try show(try connection.call(.status), as: DaemonStatus.self) { s in
                "\(s.server) \(s.state)\(s.paused ? " (paused)" : ""): \(s.queued)/\(s.queueLimit) queued, running \(s.running ?? "nothing"); model \(s.model.state) (\(s.model.path))"
                    + (s.folders ?? []).map { f in "\nfolder \(f.name) (\(f.path)): \(f.mode), \(f.waiting) waiting, \(f.processing) processing" }.joined()
            }
        case "list":
            let limit = try option("limit", in: rest).map { text -> Int in
                guard let n = Int(text), (1...1000).contains(n) else { throw ClientError(kind: .usage, description: "--limit takes 1…1000") }
                return n
            } ?? 100
            return try show(try connection.call(.list, try JSONValue(encoding: ListParams(limit: limit))), as: ListResult.self) { r in
                r.jobs.isEmpty ? "no jobs" : r.jobs.map(describe).joined(separator: "\n")
            }
        case "watch":
            guard let job = rest.first else { throw ClientError(kind: .usage, description: "watch needs a job id") }
            return try watch(job)
        case "cancel", "retry":
            guard let job = rest.first else { throw ClientError(kind: .usage, description: "\(command) needs a job id") }
            return try show(try connection.call(command == "cancel" ? .cancel : .retry, try JSONValue(encoding: JobReference(job: job))),
                            as: Acknowledgement.self) { a in a.job.map(describe) ?? "ok" }
        case "result":
            guard let job = rest.first, let out = option("out", in: rest) else { throw ClientError(kind: .usage, description: "result needs JOB --out FILE") }
            return try saveResult(job, to: out)
        case "pause", "resume", "reload":
            let method: RPCMethod = command == "pause" ? .pause : command == "resume" ? .resume : .reload
            return try show(try connection.call(method), as: Acknowledgement.self) { _ in "ok" }
        case "info":
            return try show(try connection.call(.modelStatus), as: ModelStatus.self) { m in
                "model \(m.state): \(m.path)" + (m.identity.map { " identity \($0.prefix(16))" } ?? "") + (m.loadSeconds.map { String(format: ", loaded in %.1f s", $0) } ?? "")
            }
        default:
            throw ClientError(kind: .usage, description: "unknown command '\(command)'")
        }
    }

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

    func option(_ name: String, in arguments: [String]) -> String? {
        guard let i = arguments.firstIndex(of: "--\(name)"), i + 1 < arguments.count else { return nil }
        return arguments[i + 1]
    }

    func submit(_ arguments: [String]) throws -> Int32 {
        let positional = Self.positionals(arguments, valued: ["domain", "prompt", "object-noun", "seed", "timesteps", "skip", "swap-guidance",
                                                              "contrast", "cross-attn-range-0", "cross-attn-range-1", "adain-range", "priority", "key", "out"])
        guard positional.count == 2 else { throw ClientError(kind: .usage, description: "submit needs STRUCTURE.png APPEARANCE.png") }
        func file(_ path: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path) else { throw ClientError(kind: .usage, description: "\(path): cannot read the file") }
            return data.base64EncodedString()
        }
        var p = TransferParameters()
        p.domain = option("domain", in: arguments)
        p.prompt = option("prompt", in: arguments)
        p.objectNoun = option("object-noun", in: arguments)
        p.seed = option("seed", in: arguments).flatMap(UInt64.init)
        p.timesteps = option("timesteps", in: arguments).flatMap(Int.init)
        p.skip = option("skip", in: arguments).flatMap(Int.init)
        if arguments.contains("--no-masked-adain") { p.maskedAdain = false }
        p.swapGuidance = option("swap-guidance", in: arguments).flatMap(Double.init)
        p.contrast = option("contrast", in: arguments).flatMap(Double.init)
        func range(_ name: String) throws -> [Int]? {
            guard let text = option(name, in: arguments) else { return nil }
            let parts = text.split(separator: ":").compactMap { Int($0) }
            guard parts.count == 2 else { throw ClientError(kind: .usage, description: "--\(name) must be A:B") }
            return parts
        }
        p.crossAttnRange0 = try range("cross-attn-range-0")
        p.crossAttnRange1 = try range("cross-attn-range-1")
        p.adainRange = try range("adain-range")
        let request = SubmitParams(structure: try file(positional[0]), appearance: try file(positional[1]), options: p,
                                   priority: option("priority", in: arguments).flatMap(Int.init), idempotencyKey: option("key", in: arguments))
        let submitted = try connection.call(.submit, try JSONValue(encoding: request)).decode(SubmitResult.self)
        let out = option("out", in: arguments)
        guard arguments.contains("--wait") || out != nil else {
            if json { print(String(decoding: try JSONEncoder.pretty.encode(submitted), as: UTF8.self)) } else { print(submitted.job.id) }
            return 0
        }
        let code = try watch(submitted.job.id)
        if code == 0, let out { return try saveResult(submitted.job.id, to: out) }
        return code
    }

    /// Follows a job to its end: a progress bar on a terminal, plain lines otherwise.
    func watch(_ job: String) throws -> Int32 {
        var info = try connection.call(.watch, try JSONValue(encoding: JobReference(job: job))).decode(JobInfo.self)
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        while !info.state.isFinal {
            let (method, params) = try connection.nextNotification()
            if method == RPCNotificationName.progress.rawValue, let progress = try? params.decode(ProgressNotification.self), progress.job == job {
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

    func saveResult(_ job: String, to path: String) throws -> Int32 {
        let result = try connection.call(.result, try JSONValue(encoding: JobReference(job: job))).decode(JobResult.self)
        guard let png = Data(base64Encoded: result.png) else { throw ClientError(kind: .failure, description: "the result is not base64") }
        try png.write(to: URL(fileURLWithPath: path), options: .atomic)
        if !json { print("wrote \(path)") }
        return 0
    }

    /// Arguments that are neither options nor option values.
    static func positionals(_ arguments: [String], valued: Set<String>) -> [String] {
        var result: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a.hasPrefix("--") { i += valued.contains(String(a.dropFirst(2))) ? 2 : 1 } else { result.append(a); i += 1 }
        }
        return result
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
