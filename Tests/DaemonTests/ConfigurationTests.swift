import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// The TOML configuration, `xattnctl reload` and SIGHUP, through the real daemon.
@Suite(.serialized) struct ConfigurationTests {
    func queueLimit(_ daemon: DaemonHarness) -> Int? {
        let output = daemon.ctl(["--json", "status"]).output
        return (try? JSONDecoder().decode(DaemonStatus.self, from: Data(output.utf8)))?.queueLimit
    }

    @Test func fileReloadAndErrors() throws {
        let daemon = try DaemonHarness()
        let config = daemon.directory.appendingPathComponent("xattnd.toml").path
        func write(_ text: String) { _ = FileManager.default.createFile(atPath: config, contents: Data(text.utf8)) }
        write("""
            # xattnd test configuration
            queue_limit = 1   # one job
            result_retention_count = 5
            """)
        try daemon.start(extra: ["--config", config])
        #expect(queueLimit(daemon) == 1)
        #expect(daemon.ctl(["pause"]).code == 0)
        _ = daemon.submit()
        #expect(daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance] + DaemonHarness.quick).code == 4)

        write("queue_limit = 3\n")
        #expect(daemon.ctl(["reload"]).code == 0)
        #expect(queueLimit(daemon) == 3)

        // A typo: refused, and the configuration in force stays whole.
        write("queue_limit = 7\nqueue_limt = 9\n")
        #expect(daemon.ctl(["reload"]).code == 1)
        #expect(queueLimit(daemon) == 3)
        // Turning the inversion cache off needs a restart: refused too. (The model would be too,
        // but here it comes from a flag, and flags win over the file.)
        write("queue_limit = 7\ncache = false\n")
        #expect(daemon.ctl(["reload"]).code == 1)
        #expect(queueLimit(daemon) == 3)

        // SIGHUP reloads the same way.
        write("queue_limit = 5\n")
        if let pid = daemon.process?.processIdentifier { kill(pid, SIGHUP) }
        var seen: Int?
        for _ in 0..<50 { seen = queueLimit(daemon); if seen == 5 { break }; Thread.sleep(forTimeInterval: 0.1) }
        #expect(seen == 5)
    }

    /// The shipped example is valid (with this machine's group in place of the installed ones), and a
    /// group that does not exist is reported by name.
    @Test func exampleConfigurationParses() throws {
        let daemon = try DaemonHarness()
        let example = try DaemonHarness.exampleConfiguration()
        let config = daemon.directory.appendingPathComponent("example.toml").path
        _ = FileManager.default.createFile(atPath: config, contents: Data(example.utf8))
        let (code, _, message) = try DaemonHarness.xattnd(["check-config", config])
        #expect(code == 0, "\(message)")

        let missing = "xattn-no-such-group-\(UUID().uuidString.prefix(8))"
        _ = FileManager.default.createFile(atPath: config, contents: Data(try DaemonHarness.exampleConfiguration(adminGroup: missing).utf8))
        let (badCode, _, badMessage) = try DaemonHarness.xattnd(["check-config", config])
        #expect(badCode != 0 && badMessage.contains("no group '\(missing)'"), "\(badMessage)")
    }

    @Test func invalidConfigurationIsReportedAtStart() throws {
        let daemon = try DaemonHarness()
        let config = daemon.directory.appendingPathComponent("bad.toml").path
        _ = FileManager.default.createFile(atPath: config, contents: Data("queue_limit = \"ten\"\n".utf8))
        let (code, _, message) = try DaemonHarness.xattnd(["run", "--config", config, "--socket", daemon.socket, "--state-dir", daemon.stateDirectory])
        #expect(code != 0)
        #expect(message.contains("queue_limit must be a whole number"))
    }
}
