import Foundation
@testable import Service

/// A throwaway PostgreSQL cluster for the tests (issue: "no other host is contacted"): `initdb` in a
/// temporary directory, as the unprivileged user `nobody` when the tests run as root (PostgreSQL
/// refuses to run as root), listening on a Unix socket in that directory only
/// (`listen_addresses = ''`), stopped when the test process exits. Each store gets a database of
/// its own. The server comes from Debian's `postgresql` (scripts/setup installs it); without it
/// every PostgreSQL test fails, saying so.
final class TestPostgres: @unchecked Sendable {
    static let shared = Result { try TestPostgres() }
    nonisolated(unsafe) static var dataDirectory: String?
    nonisolated(unsafe) static var pgCtl: String?
    let directory: String
    private let lock = NSLock()

    struct Failure: Error, CustomStringConvertible { let description: String }

    init() throws {
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted()
        guard let version = versions.last(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }) else {
            throw Failure(description: "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): scripts/setup installs Debian's postgresql")
        }
        let bin = "/usr/lib/postgresql/\(version)/bin"
        directory = "/tmp/xattn-pg-" + UUID().uuidString.prefix(8)
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
        try run([bin + "/initdb", "-D", data, "-U", "xattn", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        Self.dataDirectory = data
        Self.pgCtl = (prefix + [bin + "/pg_ctl"]).joined(separator: " ")
        atexit {
            guard let data = TestPostgres.dataDirectory, let pgCtl = TestPostgres.pgCtl else { return }
            _ = system("\(pgCtl) -D \(data) -m immediate stop >/dev/null 2>&1; rm -rf \((data as NSString).deletingLastPathComponent)")
        }
        try run([bin + "/pg_ctl", "-D", data, "-l", directory + "/server.log", "-w", "-t", "30",
                 "-o", "-k \(directory) -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_connections=200", "start"])
    }

    /// A new, empty database's connection string.
    func database() throws -> String {
        lock.lock(); defer { lock.unlock() }
        let name = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try PGConnection(url: "host=\(directory) dbname=postgres user=xattn").execute("CREATE DATABASE \(name)")
        return "host=\(directory) dbname=\(name) user=xattn"
    }
}
