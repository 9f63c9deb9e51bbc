import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport
import Wire

/// Three real xattnd processes on one PostgreSQL database (README, "Several machines"), with the
/// tiny model. The cluster is this suite's own: one test stops and starts the server.
@Suite(.serialized) struct ClusterDaemonTests {
    /// The default T = 100 job of the tiny model: seconds long, long enough to interrupt.
    static let long = ["--domain", "animal", "--timesteps", "100", "--skip", "32", "--cross-attn-range-0", "10:90",
                       "--cross-attn-range-1", "10:70", "--adain-range", "20:100"]

    let postgres: TestPostgres
    let url: String
    let nodes: [DaemonHarness]

    /// Nodes n1…n3, each with a hot folder `drop` of its own and an 8 s lease (renewed every 2 s).
    init() throws {
        postgres = try TestPostgres()
        url = try postgres.database()
        var nodes: [DaemonHarness] = []
        for n in 1...3 {
            let daemon = try DaemonHarness()
            let folder = daemon.directory.appendingPathComponent("drop").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let config = daemon.directory.appendingPathComponent("xattnd.toml").path
            let text = "lease_seconds = 8\n[[folder]]\npath = \"\(folder)\"\n" + HotFolderTests.quickOptions
            _ = FileManager.default.createFile(atPath: config, contents: Data(text.utf8))
            try daemon.start(extra: ["--config", config, "--database", url, "--node", "n\(n)"], log: daemon.directory.appendingPathComponent("log").path)
            nodes.append(daemon)
        }
        self.nodes = nodes
    }

    func job(_ id: String) throws -> [String: String] {
        try #require(try postgres.rows(url, "SELECT state, node, attempts, owner_node FROM job WHERE id = '\(id)'").first)
    }

    /// The node (index) running `id`, once it runs.
    func runner(_ id: String, seconds: Double = 30) throws -> Int? {
        let deadline = Date() + seconds
        while Date() < deadline {
            let row = try job(id)
            if row["state"] == "running", let node = row["node"], let n = Int(node.dropFirst()) { return n - 1 }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    func status(_ daemon: DaemonHarness) -> DaemonStatus? {
        try? JSONDecoder().decode(DaemonStatus.self, from: Data(daemon.ctl(["--json", "status"]).output.utf8))
    }

    /// 60 jobs submitted through the three sockets run exactly once each, spread over the nodes;
    /// every node lists the three; any node hands out any result.
    @Test func sixtyJobsRunOnceAcrossThreeNodes() throws {
        var ids: [String] = []
        for i in 0..<60 { ids.append(nodes[i % 3].submit(DaemonHarness.quick + ["--seed", "\(i)"])) }
        #expect(Set(ids).count == 60 && ids.allSatisfy { $0.hasPrefix("j-") }, "\(ids.prefix(3))")
        let deadline = Date() + 240
        var done: [[String: String]] = []
        while Date() < deadline {
            done = try postgres.rows(url, "SELECT id, node, attempts FROM job WHERE state = 'succeeded'")
            if done.count == 60 { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(done.count == 60)
        #expect(done.allSatisfy { $0["attempts"] == "1" }, "each claimed once")
        let byNode = Dictionary(grouping: done, by: { $0["node"] ?? "?" }).mapValues(\.count)
        #expect(byNode.count >= 2, "the work spread: \(byNode)")
        let listed = try #require(status(nodes[0])?.nodes)
        #expect(listed.map(\.name) == ["n1", "n2", "n3"] && listed.allSatisfy { $0.state == "ready" })
        // A result of a job another node ran, through this node.
        let elsewhere = try #require(done.first { $0["node"] != "n1" }?["id"])
        let out = nodes[0].directory.appendingPathComponent("r.png").path
        #expect(nodes[0].ctl(["result", elsewhere, "--out", out]).code == 0)
        #expect((FileManager.default.contents(atPath: out)?.prefix(4)).map(Array.init) == [0x89, 0x50, 0x4E, 0x47])
    }

    /// A client of one node sees the progress of, and cancels, a job another node runs.
    @Test func aClientOnOneNodeCancelsAJobOnAnother() throws {
        let id = nodes[0].submit(Self.long)
        let running = try #require(try runner(id))
        let other = nodes[(running + 1) % 3]
        var info: JobInfo?
        let deadline = Date() + 20
        while info?.progress == nil && Date() < deadline {
            info = try? JSONDecoder().decode(JobInfo.self, from: Data(other.ctl(["--json", "status", id]).output.utf8))
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(info?.state == .running && info?.progress != nil, "the running node's progress, seen elsewhere")
        let asked = Date()
        #expect(other.ctl(["cancel", id]).code == 0)
        #expect(other.waitUntil(id, isIn: ["cancelled"], seconds: 20) == "cancelled")
        #expect(Date().timeIntervalSince(asked) < 10)
        #expect(try job(id)["state"] == "cancelled")
    }

    /// `kill -9` of the node running a job: once its lease expires (8 s) another node takes the
    /// job (attempt 2) and finishes it; the killed node shows as offline later, not at once.
    @Test func aKilledNodesJobFinishesElsewhere() throws {
        let id = nodes[0].submit(Self.long)
        let running = try #require(try runner(id))
        Thread.sleep(forTimeInterval: 0.5)
        kill(nodes[running].processID, SIGKILL)
        let survivor = nodes[(running + 1) % 3]
        #expect(survivor.waitUntil(id, isIn: ["succeeded", "failed"], seconds: 90) == "succeeded")
        let row = try job(id)
        #expect(row["attempts"] == "2" && row["node"] != "n\(running + 1)", "\(row)")
        #expect(status(survivor)?.nodes?.first { $0.name == "n\(running + 1)" }?.running == id, "last seen running it (offline after 45 s)")
    }

    /// PostgreSQL stopped for 2 s while a job runs: the nodes say so in daemon.status, keep
    /// answering, and once it is back the job ends and nothing is lost.
    @Test func aDatabaseRestartLosesNothing() throws {
        let id = nodes[0].submit(Self.long)
        let running = try #require(try runner(id))
        let stopped = DispatchSemaphore(value: 0), restarted = DispatchSemaphore(value: 0)
        let postgres = postgres
        Thread.detachNewThread {
            stopped.signal()
            do { try postgres.restart(downFor: 2) } catch { Issue.record("\(error)") }
            restarted.signal()
        }
        stopped.wait()
        Thread.sleep(forTimeInterval: 1)
        let during = status(nodes[(running + 1) % 3])
        #expect(during?.store.available == false && during?.store.error?.contains("cannot be reached") == true, "\(String(describing: during?.store))")
        #expect(during?.state == "ready")
        restarted.wait()
        #expect(nodes[running].waitUntil(id, isIn: ["succeeded", "failed"], seconds: 120) == "succeeded")
        #expect(try job(id)["attempts"] == "1", "not moved: the lease (8 s) outlived the outage")
        #expect(status(nodes[0])?.store.available == true)
    }

    /// A drop into the folder of a node busy with another job runs on another node and is
    /// delivered into the folder it was dropped in.
    @Test func aDropRunsElsewhereAndComesHome() throws {
        let busy = nodes[0].submit(Self.long)
        let running = try #require(try runner(busy))
        let home = nodes[running]
        let folder = home.directory.appendingPathComponent("drop")
        try HotFolderTests.structurePNG.write(to: folder.appendingPathComponent("in/cat.structure.png"))
        try HotFolderTests.appearancePNG.write(to: folder.appendingPathComponent("in/cat.appearance.png"))
        let result = folder.appendingPathComponent("out/cat.png").path
        let deadline = Date() + 60
        while !FileManager.default.fileExists(atPath: result) && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(FileManager.default.fileExists(atPath: result), "delivered into the folder it was dropped in")
        let sidecar = try JSONDecoder().decode(JSONValue.self, from: try Data(contentsOf: folder.appendingPathComponent("out/cat.json")))
        guard case let .string(dropJob)? = sidecar["job"] else { Issue.record("no job in the sidecar"); return }
        #expect(try job(dropJob)["node"] != "n\(running + 1)", "it ran on another node")
        #expect(try job(busy)["state"] == "running", "while the folder's node was still busy")
        _ = home.ctl(["cancel", busy])
    }
}
