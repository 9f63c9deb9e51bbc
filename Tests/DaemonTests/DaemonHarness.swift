import Foundation
import Testing
import Wire

/// A real xattnd on the tiny model in a temporary directory, and helpers to drive it.
final class DaemonHarness {
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
    /// `extra` flags replace the defaults they name (--model, --socket).
    func start(extra: [String] = [], environment: [String: String] = [:]) throws {
        let p = Process()
        let command = [Self.binaries.appendingPathComponent("xattnd").path, "run", "--state-dir", stateDirectory]
            + (extra.contains("--model") ? [] : ["--model", Self.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path])
            + (extra.contains("--socket") ? [] : ["--socket", socket]) + extra
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst())
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Not the test runner's pipes: a daemon left behind must not keep them open.
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        process = p
        for _ in 0..<100 {
            if ctl(["status"]).code == 0 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("xattnd did not start")
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
        let p = Process()
        var command = [Self.binaries.appendingPathComponent("xattnctl").path] + (arguments.contains("--socket") ? [] : ["--socket", socket]) + arguments
        if let uid { command = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + command }
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst())
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs xattnd with `arguments` to its end (not `run`); returns exit code, stdout and stderr.
    static func xattnd(_ arguments: [String]) throws -> (code: Int32, output: String, error: String) {
        let p = Process()
        p.executableURL = binaries.appendingPathComponent("xattnd")
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        (p.standardOutput, p.standardError) = (out, err)
        try p.run()
        let error = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, output, error)
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
