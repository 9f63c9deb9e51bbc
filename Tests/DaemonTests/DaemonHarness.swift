import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// A real xattnd on the tiny model in a temporary directory, and helpers to drive it.
/// Driven from one test thread; other threads only read `socket` and `directory` (constants).
final class DaemonHarness: @unchecked Sendable {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The built binaries sit beside the test executable.
    static let binaries: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("xattnd").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }()
    static let structure = repository.appendingPathComponent("Tests/Fixtures/images/demo-structure.png").path
    static let appearance = repository.appendingPathComponent("Tests/Fixtures/images/demo-appearance.png").path

    let directory: URL
    var socket: String { directory.appendingPathComponent("sock").path }
    var stateDirectory: String { directory.appendingPathComponent("state").path }
    private(set) var process: Process?
    var processID: Int32 { process?.processIdentifier ?? 0 }

    init() throws {
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("xd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit {
        process?.terminate()
        process?.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts xattnd and waits until its socket answers.
    /// `extra` flags replace the defaults they name (--model, --socket). Returns once the daemon
    /// is ready (model loaded, hot folders set up), or with `untilReady: false` once it answers.
    /// `log`: a file for the daemon's stderr (default: discarded).
    func start(extra: [String] = [], environment: [String: String] = [:], untilReady: Bool = true, log: String? = nil) throws {
        let p = Process()
        let command = [Self.binaries.appendingPathComponent("xattnd").path, "run", "--state-dir", stateDirectory]
            + (extra.contains("--model") ? [] : ["--model", Self.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path])
            + (extra.contains("--socket") ? [] : ["--socket", socket]) + extra
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst())
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Not the test runner's pipes: a daemon left behind must not keep them open.
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        if let log { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        p.standardError = FileHandle(forWritingAtPath: log ?? "/dev/null")
        try p.run()
        process = p
        for _ in 0..<100 {
            let status = ctl(["--json", "status"])
            if status.code == 0 && (!untilReady || (try? JSONDecoder().decode(DaemonStatus.self, from: Data(status.output.utf8)))?.state == "ready") {
                return
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("xattnd did not start")
    }

    /// The shipped example configuration with the host-specific values a fresh machine lacks (the
    /// `xattn` and `xattn-admin` groups that only `scripts/install` creates) replaced by the test
    /// process's own group, so what is checked is the file, never the state of the machine.
    static func exampleConfiguration(adminGroup: String? = nil) throws -> String {
        let text = try String(contentsOfFile: repository.appendingPathComponent("systemd/xattnd.toml").path, encoding: .utf8)
        guard let entry = getgrgid(getgid()), let name = String(validatingCString: entry.pointee.gr_name) else {
            throw CocoaError(.featureUnsupported)
        }
        return text.replacingOccurrences(of: "\"xattn-admin\"", with: "\"\(adminGroup ?? name)\"").replacingOccurrences(of: "\"xattn\"", with: "\"\(name)\"")
    }

    /// SIGTERM and wait.
    func stop() {
        process?.terminate()
        process?.waitUntilExit()
        process = nil
    }

    /// Runs xattnctl; returns exit code and stdout.
    @discardableResult
    func ctl(_ arguments: [String], asUser uid: UInt32? = nil) -> (code: Int32, output: String) {
        var command = [Self.binaries.appendingPathComponent("xattnctl").path] + (arguments.contains("--socket") ? [] : ["--socket", socket]) + arguments
        if let uid { command = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + command }
        do {
            let run = try Self.runToEnd(command)
            return (run.code, run.output.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            return (-1, "\(error)")
        }
    }

    /// Runs `command` to its end; its stdout and stderr go through temporary files, not pipes.
    /// Tests run in parallel, and Foundation's Process leaves pipe descriptors inheritable: a
    /// daemon another test spawns at that moment would hold a pipe's write end open for its whole
    /// life, and reading that pipe to its end would never finish.
    static func runToEnd(_ command: [String]) throws -> (code: Int32, output: String, error: String) {
        let base = NSTemporaryDirectory() + "xattn-run-\(UUID().uuidString)"
        let (outPath, errPath) = (base + ".out", base + ".err")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst())
        p.standardOutput = FileHandle(forWritingAtPath: outPath)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        p.waitUntilExit()
        let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return (p.terminationStatus, read(outPath), read(errPath))
    }

    /// Calls `body` with `path` as a Unix socket address (for bind and connect).
    static func withSocketAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    }

    /// Runs xattnd with `arguments` to its end (not `run`); returns exit code, stdout and stderr.
    static func xattnd(_ arguments: [String]) throws -> (code: Int32, output: String, error: String) {
        try runToEnd([binaries.appendingPathComponent("xattnd").path] + arguments)
    }

    /// A short job (T = 20) so that tests stay fast.
    static let quick = ["--domain", "animal", "--timesteps", "20", "--skip", "6", "--adain-range", "4:14"]

    func submit(_ extra: [String] = DaemonHarness.quick) -> String {
        ctl(["submit", Self.structure, Self.appearance] + extra).output
    }

    func state(_ job: String) -> String {
        let output = ctl(["--json", "status", job]).output
        guard let info = try? JSONDecoder().decode(JobInfo.self, from: Data(output.utf8)) else { return "unknown" }
        return info.state.rawValue
    }

    func waitUntil(_ job: String, isIn states: Set<String>, seconds: Double = 60) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var current = state(job)
        while !states.contains(current) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            current = state(job)
        }
        return current
    }
}
