import Foundation
import Service

/// A throwaway PostgreSQL cluster for the tests (issue: "no other host is contacted"): `initdb` in a
/// temporary directory, as the unprivileged user `nobody` when the tests run as root (PostgreSQL
/// refuses to run as root), listening on a Unix socket in that directory only
/// (`listen_addresses = ''`), stopped when the test process exits. Each store gets a database of
/// its own. The server comes from Debian's `postgresql` (scripts/setup installs it); without it
/// every PostgreSQL test fails, saying so. Tests share one cluster; a test that stops the server
/// makes one of its own.
package final class TestPostgres: @unchecked Sendable {
    package static let shared = Result { try TestPostgres() }
    /// Every cluster started ("pg_ctl -D data" commands), stopped at exit.
    nonisolated(unsafe) static var started: [String] = []
    static let startedLock = NSLock()
    package let directory: String
    private let pgCtlCommand: String
    private let data: String
    private let lock = NSLock()

    package struct Failure: Error, CustomStringConvertible { package let description: String }

    package init() throws {
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted()
        guard let version = versions.last(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }) else {
            throw Failure(description: "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): scripts/setup installs Debian's postgresql")
        }
        let bin = "/usr/lib/postgresql/\(version)/bin"
        let directory = "/tmp/xattn-pg-" + UUID().uuidString.prefix(8)
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let asRoot = getuid() == 0
        if asRoot { guard chown(directory, 65534, 65534) == 0 else { throw Failure(description: "chown \(directory) failed") } }
        let prefix = asRoot ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
        // system(3), not Foundation's Process: pg_ctl's exit was seen by waitpid only, never by
        // Process.waitUntilExit, which then waited for ever (the zombie stayed).
        func run(_ command: [String]) throws {
            let line = (prefix + command).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            let status = system("cd \(directory) && \(line) >/dev/null 2>&1")
            guard status == 0 else {
                let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
                throw Failure(description: "\(command.joined(separator: " ")) failed (status \(status))\n\(log.suffix(2000))")
            }
        }
        let data = directory + "/data"
        self.data = data
        try run([bin + "/initdb", "-D", data, "-U", "xattn", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        Self.startedLock.lock()
        if Self.started.isEmpty {
            atexit {
                for cluster in TestPostgres.started {
                    _ = system("\(cluster) -m immediate stop >/dev/null 2>&1; rm -rf \(cluster.split(separator: " ").last.map { ($0 as NSString).deletingLastPathComponent } ?? "/nonexistent")")
                }
            }
        }
        Self.started.append((prefix + [bin + "/pg_ctl", "-D", data]).joined(separator: " "))
        Self.startedLock.unlock()
        pgCtlCommand = (prefix + [bin + "/pg_ctl"]).map { "'" + $0 + "'" }.joined(separator: " ")
        try run([bin + "/pg_ctl", "-D", data, "-l", directory + "/server.log", "-w", "-t", "30",
                 "-o", "-k \(directory) -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_connections=200", "start"])
    }

    /// A cluster of a test's own stops with it (the shared one lives until the process exits).
    deinit {
        let command = Self.startedLock.withLock { () -> String? in
            guard let index = Self.started.firstIndex(where: { $0.hasSuffix(" " + data) }) else { return nil }
            return Self.started.remove(at: index)
        }
        if let command { _ = system("\(command) -m immediate stop >/dev/null 2>&1; rm -rf \(directory)") }
    }

    /// Stops the server (every connection drops), waits `seconds`, starts it again with the same
    /// settings (pg_ctl restart keeps the options the server was started with).
    package func restart(downFor seconds: Double) throws {
        lock.lock(); defer { lock.unlock() }
        guard system("cd \(directory) && \(pgCtlCommand) -D \(data) -m fast -w stop >/dev/null 2>&1") == 0 else {
            throw Failure(description: "pg_ctl stop failed")
        }
        Thread.sleep(forTimeInterval: seconds)
        let options = "-k \(directory) -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_connections=200"
        guard system("cd \(directory) && \(pgCtlCommand) -D \(data) -l \(directory)/server.log -w -t 30 -o \"\(options)\" start >/dev/null 2>&1") == 0 else {
            throw Failure(description: "pg_ctl start failed")
        }
    }

    /// A new, empty database's connection string.
    /// Rows of a query on database `url`, by column name (text; nil for NULL).
    package func rows(_ url: String, _ sql: String) throws -> [[String: String]] {
        let result = try PGConnection(url: url).execute(sql)
        return (0..<result.count).map { r in
            var row: [String: String] = [:]
            for column in result.columns { row[column] = result.string(r, column) }
            return row
        }
    }

    package func database() throws -> String {
        lock.lock(); defer { lock.unlock() }
        let name = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try PGConnection(url: "host=\(directory) dbname=postgres user=xattn").execute("CREATE DATABASE \(name)")
        return "host=\(directory) dbname=\(name) user=xattn"
    }
}
