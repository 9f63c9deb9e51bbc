import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// The real daemon and client, end to end, on the tiny model.
@Suite(.serialized) struct DaemonTests {
    @Test func submitWatchAndResult() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let out = daemon.directory.appendingPathComponent("out.png").path
        let run = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--wait", "--out", out] + DaemonHarness.quick)
        #expect(run.code == 0, "\(run.output)")
        let png = try #require(FileManager.default.contents(atPath: out))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        // The sidecar lies beside the result in the state directory.
        let results = try FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/results")
        #expect(results.contains { $0.hasSuffix(".json") })
    }

    /// Cancelling one queued job leaves the others to finish.
    @Test func cancelOneOfSeveral() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let jobs = (0..<3).map { i in daemon.submit(DaemonHarness.quick + ["--seed", "\(i)"]) }
        #expect(daemon.ctl(["cancel", jobs[1]]).code == 0)
        #expect(daemon.waitUntil(jobs[0], isIn: ["succeeded", "failed"]) == "succeeded")
        #expect(daemon.waitUntil(jobs[2], isIn: ["succeeded", "failed"]) == "succeeded")
        #expect(daemon.state(jobs[1]) == "cancelled")
    }

    /// SIGTERM during a job: it is queued again, and after a restart both jobs finish.
    @Test func restartLosesNothing() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let running = daemon.submit(["--domain", "animal"])  // a default job, long enough to interrupt
        let queued = daemon.submit()
        #expect(daemon.waitUntil(running, isIn: ["running"]) == "running")
        daemon.stop()
        try daemon.start()
        #expect(daemon.waitUntil(running, isIn: ["succeeded", "failed"], seconds: 120) == "succeeded")
        #expect(daemon.waitUntil(queued, isIn: ["succeeded", "failed"]) == "succeeded")
        let info = try JSONDecoder().decode(JobInfo.self, from: Data(daemon.ctl(["--json", "status", running]).output.utf8))
        #expect(info.attempts == 2)
    }

    @Test func idempotencyAndQueueLimit() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--queue-limit", "2"])
        #expect(daemon.ctl(["pause"]).code == 0)
        let first = daemon.submit(DaemonHarness.quick + ["--key", "same"])
        #expect(daemon.submit(DaemonHarness.quick + ["--key", "same"]) == first)
        _ = daemon.submit()
        let refused = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance] + DaemonHarness.quick)
        #expect(refused.code == 4)  // queue full
        #expect(daemon.ctl(["resume"]).code == 0)
        #expect(daemon.waitUntil(first, isIn: ["succeeded", "failed"]) == "succeeded")
    }

    @Test func clientSaysWhenTheDaemonIsNotRunning() throws {
        let daemon = try DaemonHarness()
        #expect(daemon.ctl(["status"]).code == 3)
    }

    /// Another user may not cancel root's job (needs setpriv to switch uid; skipped without it).
    @Test func onlyTheOwnerOrAnAdminCancels() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return }
        let daemon = try DaemonHarness()
        try daemon.start()
        #expect(daemon.ctl(["pause"]).code == 0)
        let job = daemon.submit()
        chmod(daemon.socket, 0o666)
        chmod(daemon.directory.path, 0o755)
        let denied = daemon.ctl(["cancel", job], asUser: 65534)
        #expect(denied.code == 1)
        #expect(daemon.ctl(["pause"], asUser: 65534).code == 1)
        #expect(daemon.state(job) == "queued")
        #expect(daemon.ctl(["cancel", job]).code == 0)
    }

    /// A job's options, progress and result are its owner's (and the admins'): another user of the
    /// socket sees only how many such jobs there are (before: uid 65534 could read root's result).
    /// `--job-visibility all` makes a shared gallery. Needs root and setpriv to switch uid.
    @Test func jobsArePrivateToTheirOwners() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return }
        let daemon = try DaemonHarness()
        try daemon.start()
        chmod(daemon.socket, 0o666)
        chmod(daemon.directory.path, 0o755)
        let mine = daemon.submit()
        #expect(daemon.waitUntil(mine, isIn: ["succeeded", "failed"]) == "succeeded")
        let nobody: UInt32 = 65534
        let theirs = try JSONDecoder().decode(ListResult.self, from: Data(daemon.ctl(["--json", "list"], asUser: nobody).output.utf8))
        #expect(theirs.jobs.isEmpty && theirs.others == 1)
        for command in [["status", mine], ["watch", mine], ["result", mine, "--out", "/dev/null"]] {
            #expect(daemon.ctl(command, asUser: nobody).code == 1, "\(command)")
        }
        // Their own job is theirs to see; the admin (root) sees both.
        // Their own copies of the images: the checkout may be unreadable to uid 65534 (a 0700 clone).
        var images: [String] = []
        for source in [DaemonHarness.structure, DaemonHarness.appearance] {
            let copy = daemon.directory.appendingPathComponent((source as NSString).lastPathComponent).path
            try FileManager.default.copyItem(atPath: source, toPath: copy)
            chmod(copy, 0o644)
            images.append(copy)
        }
        let own = daemon.ctl(["submit"] + images + DaemonHarness.quick, asUser: nobody).output
        #expect(daemon.ctl(["--json", "status", own], asUser: nobody).code == 0)
        let visible = try JSONDecoder().decode(ListResult.self, from: Data(daemon.ctl(["--json", "list"], asUser: nobody).output.utf8))
        #expect(visible.jobs.map(\.id) == [own] && visible.others == 1)
        let all = try JSONDecoder().decode(ListResult.self, from: Data(daemon.ctl(["--json", "list"]).output.utf8))
        #expect(Set(all.jobs.map(\.id)) == [mine, own] && all.others == 0)
        // Results on disk are the service user's alone.
        var info = stat()
        #expect(stat(daemon.stateDirectory + "/results", &info) == 0 && info.st_mode & 0o077 == 0)

        daemon.stop()
        try daemon.start(extra: ["--job-visibility", "all"])
        chmod(daemon.socket, 0o666)
        #expect(daemon.ctl(["status", mine], asUser: nobody).code == 0)
    }

    /// Job images are kept only while needed, under a bound: a succeeded job's at once, a failed or
    /// cancelled one's (for retry) within the retention; past `store_max_bytes` of waiting jobs'
    /// images a submit is refused (queue_full); `daemon.status` shows the use. Before, every
    /// input stayed in the store forever (12 large jobs: 128 KiB → 240 MiB) and nothing bounded it.
    @Test func storeKeepsImagesOnlyWhileNeeded() throws {
        let daemon = try DaemonHarness()
        let config = daemon.directory.appendingPathComponent("retention.toml").path
        _ = FileManager.default.createFile(atPath: config, contents: Data("result_retention_count = 1\n".utf8))
        try daemon.start(extra: ["--config", config, "--store-max-bytes", "4096"])
        func store() throws -> StoreStatus {
            try JSONDecoder().decode(DaemonStatus.self, from: Data(daemon.ctl(["--json", "status"]).output.utf8)).store
        }
        let pair = (FileManager.default.contents(atPath: DaemonHarness.structure)?.count ?? 0) + (FileManager.default.contents(atPath: DaemonHarness.appearance)?.count ?? 0)
        #expect(daemon.ctl(["pause"]).code == 0)
        let (a, b) = (daemon.submit(), daemon.submit(DaemonHarness.quick + ["--seed", "2"]))
        #expect(try store().imageBytes == 2 * pair && store().imageLimit == 4096)
        let refused = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance] + DaemonHarness.quick + ["--seed", "3"])
        #expect(refused.code == 4, "\(refused)")

        // Cancelled jobs keep their images for retry, the newest `result_retention_count` of them.
        #expect(daemon.ctl(["cancel", a]).code == 0)
        Thread.sleep(forTimeInterval: 1.1)  // finishedAt orders them
        #expect(daemon.ctl(["cancel", b]).code == 0)
        let c = daemon.submit(DaemonHarness.quick + ["--seed", "3"])  // room: nothing waits but c
        #expect(daemon.ctl(["resume"]).code == 0)
        #expect(daemon.waitUntil(c, isIn: ["succeeded", "failed"]) == "succeeded")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try store().imageBytes == pair)  // c's are gone (succeeded), a's pruned, b's kept
        #expect(daemon.ctl(["retry", a]).code == 1)
        #expect(daemon.ctl(["retry", b]).code == 0)
        #expect(daemon.waitUntil(b, isIn: ["succeeded", "failed"]) == "succeeded")
        let status = try store()
        #expect(status.imageBytes == 0 && status.databaseBytes > 0 && status.resultBytes > 0)
    }
}
