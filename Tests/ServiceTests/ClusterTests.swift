import Core
import Foundation
import Logging
import Testing
@testable import Service
import TestSupport
import Wire

/// One xattnd of a shared store, in-process: its store connection, event hub, RPC methods, worker
/// (the tiny model) and cluster events, as ServiceStart wires them.
final class ClusterNode: @unchecked Sendable {
    let store: PostgresJobStore
    let events = EventHub()
    let service: RPCService
    let worker: Worker
    let cluster: ClusterEvents
    let scratch: Scratch
    let url: String

    init(url: String, name: String, model: StableDiffusionModel) throws {
        (scratch, self.url) = (try Scratch(), url)
        store = try PostgresJobStore(url: url, node: name, leaseSeconds: 8)
        store.modelIdentity = model.identity
        // XATTN_TEST_LOG=1 shows the nodes' warnings (a failed renewal, a retried write).
        var logger = Logger(label: name) { label -> any LogHandler in
            ProcessInfo.processInfo.environment["XATTN_TEST_LOG"] == nil ? SwiftLogNoOpLogHandler() : StreamLogHandler.standardError(label: label)
        }
        logger.logLevel = Logger.Level.warning
        service = RPCService(store: store, events: events, limits: ServiceLimits(), resultsDirectory: scratch.path + "/results",
                             loading: ModelStatus(state: "loading", path: Fixtures.model))
        cluster = ClusterEvents(store: store, events: events, url: url, password: nil, logger: logger)
        service.cluster = cluster
        worker = Worker(store: store, events: events, model: model, schedule: try NoiseSchedule(config: try NoiseSchedule.Config(near: Fixtures.model)),
                        resultsDirectory: scratch.path + "/results", cache: nil, logger: logger)
        worker.leaseRenewal = 2
        service.attach(ServiceBackend(worker: worker, model: ModelStatus(state: "ready", path: Fixtures.model, identity: model.identity),
                                      reload: {}, folders: nil))
        let worker = worker
        cluster.onQueueChange { worker.wake() }
        cluster.onCancel { _ = worker.cancel($0) }
        cluster.reportState { ("ready", worker.runningJob) }
        cluster.start()
        let deadline = Date() + 10
        while !cluster.isListening && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }

    func stop() {
        worker.shutdown()
        cluster.stop()
    }
}

/// Nodes of one PostgreSQL store through their RPC methods (README, "Several machines"): a client
/// of one node follows, cancels and fetches a job another node runs; owners are per node; a node
/// claims only jobs for the model it has loaded.
@Suite(.serialized) struct ClusterTests {
    static let model = Result { try StableDiffusionModel.load(from: Fixtures.model) }

    /// Nodes on a new database of the tests' cluster.
    static func nodes(_ names: [String]) throws -> [ClusterNode] {
        let url = try TestPostgres.shared.get().database()
        let model = try Self.model.get()
        return try names.map { try ClusterNode(url: url, name: $0, model: model) }
    }

    static func twoNodes() throws -> (ClusterNode, ClusterNode) {
        let nodes = try Self.nodes(["a", "b"])
        return (nodes[0], nodes[1])
    }

    static func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date() + seconds
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return try condition()
    }

    /// A job submitted on A runs on B (A's worker is not started): A's watcher gets B's progress,
    /// previews and end; A fetches the result; A's status lists both nodes and B's running job.
    @Test func aClientOfOneNodeFollowsAJobOnAnother() throws {
        let (a, b) = try Self.twoNodes()
        defer { a.stop(); b.stop() }
        let client = RecordingConnection(a.service)
        var options = Fixtures.quick
        options.previewEvery = 7
        let job = try client.submit(options)
        _ = try client.value("job.watch", try JSONValue(encoding: WatchParams(job: job.id, previews: true)), as: JobInfo.self)
        b.worker.start()
        #expect(Self.waitUntil(120) { !client.session.isWatching }, "the watch ended")

        let states = client.notifications.filter { $0.method == "job.state" }.compactMap { try? $0.params.decode(StateNotification.self).job }
        #expect(states.map(\.state).contains(.running) && states.last?.state == .succeeded, "\(states.map(\.state))")
        let progress = client.notifications.filter { $0.method == "job.progress" }.compactMap { try? $0.params.decode(ProgressNotification.self) }
        #expect(!progress.isEmpty && progress.allSatisfy { $0.job == job.id })
        #expect(progress.contains { $0.progress.phase == "generate" && $0.progress.step == $0.progress.total }, "a phase's last step always goes out")
        let previews = client.notifications.filter { $0.method == "job.preview" }.compactMap { try? $0.params.decode(JobPreview.self) }
        // B keeps only its latest preview in the database; one replaced before A read it is skipped
        // (protocol/README.md), so a fast job may show A only the last.
        let steps = previews.map(\.step)
        #expect(steps == [7, 14] || steps == [14], "B's previews reach A's watcher, the last always: \(steps)")
        #expect(previews.allSatisfy { Data(base64Encoded: $0.png).map { (try? ImageDecoder.decode($0)) != nil } ?? false })

        let result = try client.value("job.result", ["job": .string(job.id)], as: JobResult.self)
        let image = try ImageDecoder.decode(try #require(Data(base64Encoded: result.png)))
        #expect(image.width == 128 && image.height == 128)
        #expect(result.sidecar["job"] == .string(job.id) && result.sidecar["seed"] != nil)
        #expect(!FileManager.default.fileExists(atPath: a.scratch.path + "/results/\(job.id).png"), "the result came from the database, not A's disk")

        let status = try client.value("daemon.status", as: DaemonStatus.self)
        #expect(status.node == "a" && status.store.kind == "postgresql" && status.store.available == true)
        #expect(status.nodes?.map(\.name) == ["a", "b"] && status.nodes?.allSatisfy { $0.state == "ready" && $0.model == a.store.modelIdentity } == true)
    }

    /// A cancel asked on A stops the job B runs at B's next UNet pass; A's watcher hears
    /// "cancelled", and B's worker is free again.
    @Test func aCancelOnOneNodeStopsTheJobOnAnother() throws {
        let (a, b) = try Self.twoNodes()
        defer { a.stop(); b.stop() }
        let client = RecordingConnection(a.service)
        var options = Fixtures.quick
        (options.timesteps, options.skip) = (200, 10)
        let job = try client.submit(options)
        _ = try client.value("job.watch", ["job": .string(job.id)], as: JobInfo.self)
        b.worker.start()
        #expect(Self.waitUntil(60) { client.notifications.contains { $0.method == "job.progress" } }, "B started it")
        let asked = Date()
        _ = try client.value("job.cancel", ["job": .string(job.id)], as: JobAcknowledgement.self)
        #expect(Self.waitUntil(30) { !client.session.isWatching })
        let seconds = Date().timeIntervalSince(asked)
        let last = client.notifications.last { $0.method == "job.state" }.flatMap { try? $0.params.decode(StateNotification.self).job }
        #expect(last?.state == .cancelled)
        #expect(try b.store.get(job.id)?.jobState == .cancelled)
        #expect(b.worker.runningJob == nil)
        // One tiny-model pass takes milliseconds: the cancel crossed nodes well within a second.
        #expect(seconds < 5, "cancelled after \(seconds) s")
    }

    /// A job's owner is (node, uid): uid 1000 of node B neither sees nor cancels uid 1000 of A's job,
    /// and its idempotency keys are its own.
    @Test func ownersArePerNode() throws {
        let (a, b) = try Self.twoNodes()
        defer { a.stop(); b.stop() }
        let onA = RecordingConnection(a.service), onB = RecordingConnection(b.service)
        let job = try onA.submit(key: "same-key")
        #expect(onB.reason("job.get", ["job": .string(job.id)]) == "permission_denied")
        #expect(onB.reason("job.cancel", ["job": .string(job.id)]) == "permission_denied")
        let listed = try onB.value("job.list", as: ListResult.self)
        #expect(listed.jobs.isEmpty && listed.others == 1)
        #expect(try onB.submit(key: "same-key").id != job.id, "B's uid 1000 has keys of its own")
        #expect(try onA.value("job.list", as: ListResult.self).jobs.map(\.id) == [job.id])
        #expect(try RecordingConnection(b.service, uid: 0, admin: true).value("job.get", ["job": .string(job.id)], as: JobInfo.self).id == job.id,
                "an admin of any node sees every job")
    }

    /// The bar on claim overhead: 300 short jobs (T = 5, 64×64) on three nodes; per job, the time outside
    /// its computation (the claim, the lease, reading its inputs, writing and keeping its result,
    /// recording its end), from the database's timestamps and each sidecar's computing seconds:
    /// (finished − started − computing) plus the gap from the node's previous job's end to this
    /// claim (the queue never empties before the last claims). Printed; the bar is 50 ms.
    @Test func claimOverheadPerJob() throws {
        let nodes = try Self.nodes(["a", "b", "c"])
        let url = nodes[0].url
        defer { nodes.forEach { $0.stop() } }
        nodes[0].service.limits.queueLimit = 1000
        let client = RecordingConnection(nodes[0].service)
        var options = Fixtures.quick
        (options.timesteps, options.skip, options.crossAttnRange0, options.crossAttnRange1, options.adainRange) = (5, 1, [1, 4], [1, 4], [1, 4])
        options.size = "64x64"
        for i in 0..<300 {
            options.seed = UInt64(i)
            _ = try client.submit(options)
        }
        let start = Date()
        nodes.forEach { $0.worker.start() }
        #expect(try Self.waitUntil(600) { try nodes[0].store.list(states: [.succeeded], limit: 1000).jobs.count == 300 })
        let wall = Date().timeIntervalSince(start)
        let rows = try TestPostgres.shared.get().rows(url, """
            SELECT job.node AS node, job.started_at AS started, job.finished_at AS finished, convert_from(job_result.sidecar, 'UTF8') AS sidecar
            FROM job JOIN job_result ON job_result.job_id = job.id WHERE job.state = 'succeeded'
            """)
        #expect(rows.count == 300)
        var overhead = 0.0, computing = 0.0, worst = 0.0
        for (_, jobs) in Dictionary(grouping: rows, by: { $0["node"] ?? "" }) {
            var previousEnd: Double?
            for job in jobs.sorted(by: { Double($0["started"] ?? "") ?? 0 < Double($1["started"] ?? "") ?? 0 }) {
                let (started, finished) = (Double(job["started"] ?? "") ?? 0, Double(job["finished"] ?? "") ?? 0)
                let sidecar = try JSONDecoder().decode(JSONValue.self, from: Data((job["sidecar"] ?? "").utf8))
                guard case let .object(phases)? = sidecar["seconds"] else { Issue.record("no seconds in the sidecar"); continue }
                let computed = phases.values.reduce(0.0) { if case let .number(s) = $1 { $0 + s } else { $0 } }
                let outside = (finished - started - computed) + (previousEnd.map { started - $0 } ?? 0)
                (overhead, computing, worst, previousEnd) = (overhead + outside, computing + computed, max(worst, outside), finished)
            }
        }
        let perJob = overhead / Double(rows.count)
        print(String(format: "claim overhead (300 jobs, 3 nodes, T 5, 64x64): %.1f ms per job outside computing (worst %.1f ms), computing %.1f ms per job, %.1f s wall",
                     perJob * 1000, worst * 1000, computing / Double(rows.count) * 1000, wall))
        // The bar (50 ms) is a measurement, reported above; CI machines are loaded, so this checks
        // only that nothing pathological (a poll interval between jobs, a lost wake) crept in.
        #expect(perJob < 0.5, "\(perJob) s per job outside computing")
    }

    /// A node claims only jobs for the model it has loaded (or for none in particular: submitted
    /// while the submitting node's model loaded).
    @Test func nodesClaimOnlyJobsForTheirModel() throws {
        let stores = try SharedStoreTests.nodes(["a", "b"])
        (stores[0].modelIdentity, stores[1].modelIdentity) = ("model-1", "model-2")
        let forOne = try stores[0].submit(Fixtures.job(seed: 1), limit: 10).0
        #expect(try stores[1].claimNext() == nil, "b has another model")
        stores[1].modelIdentity = nil
        let forAny = try stores[1].submit(Fixtures.job(seed: 2), limit: 10).0
        stores[1].modelIdentity = "model-2"
        #expect(try stores[1].claimNext()?.id == forAny.id)
        #expect(try stores[0].claimNext()?.id == forOne.id)
    }

    /// Hot-folder items and reports are the node's whose folder they came from, even when two nodes
    /// have folders of the same name.
    @Test func folderItemsBelongToTheirNode() throws {
        let stores = try SharedStoreTests.nodes(["a", "b"])
        let item = FolderItem(folder: "inbox", name: "cat", files: "[\"cat.structure.png\"]", jobId: "")
        let (job, _, _) = try stores[0].submit(Fixtures.job(key: "folder:a/inbox:x"), limit: 10, item: item) { _ in false }
        #expect(try stores[0].undelivered(folder: "inbox").map(\.job.id) == [job.id])
        #expect(try stores[1].undelivered(folder: "inbox").isEmpty)
        _ = try stores[1].addReport(FolderReport(folder: "inbox", name: "dog", fields: "{}"))
        #expect(try stores[0].unwrittenReports(folder: "inbox").isEmpty && stores[1].unwrittenReports(folder: "inbox").count == 1)
    }

    /// Results and previews kept in the database; a preview only while its job runs; results
    /// pruned by count like the results directory.
    @Test func resultsAndPreviewsAreShared() throws {
        let stores = try SharedStoreTests.nodes(["a", "b"])
        let first = try stores[0].submit(Fixtures.job(seed: 1), limit: 10).0, second = try stores[0].submit(Fixtures.job(seed: 2), limit: 10).0
        #expect(try stores[1].claimNext()?.id == first.id)
        try stores[1].savePreview(JobPreview(job: first.id, step: 3, total: 9, png: Data([9, 9]).base64EncodedString()))
        #expect(try stores[0].preview(of: first.id) == JobPreview(job: first.id, step: 3, total: 9, png: Data([9, 9]).base64EncodedString()))
        try stores[1].saveResult(first.id, png: Data([1]), sidecar: Data("{}".utf8))
        let finished = try stores[1].finish(first.id, state: .succeeded, resultPath: "/elsewhere/\(first.id).png")
        #expect(try stores[0].preview(of: first.id) == nil, "the result replaces the preview")
        #expect(try stores[0].preview(of: first.id, step: 3)?.step == 3, "a relayed preview is still read after the job ended")
        #expect(try stores[0].preview(of: first.id, step: 2) == nil, "a step another replaced is skipped")
        #expect(try stores[0].resultFiles(of: finished)?.png == Data([1]), "any node reads it")
        #expect(try stores[0].claimNext()?.id == second.id)
        try stores[0].saveResult(second.id, png: Data([2]), sidecar: Data("{}".utf8))
        try stores[0].pruneResults(days: 0, count: 1)
        #expect(try stores[0].keptResult(of: first.id) == nil && stores[0].keptResult(of: second.id)?.png == Data([2]))
    }

    /// The inversion cache's shared tier: an entry one node stored is fetched by another; beyond
    /// the limit the least recently used entries go.
    @Test func inversionsAreShared() throws {
        let stores = try SharedStoreTests.nodes(["a", "b"])
        stores[0].inversionLimit = 250
        try stores[0].put("k1", Data(repeating: 1, count: 100))
        try stores[0].put("k2", Data(repeating: 2, count: 100))
        #expect(try stores[1].fetch("k1") == Data(repeating: 1, count: 100), "b reads a's entry (and marks it used)")
        try stores[0].put("k3", Data(repeating: 3, count: 100))
        #expect(try stores[1].fetch("k2") == nil, "the least recently used entry was evicted")
        #expect(try stores[1].fetch("k1") != nil && stores[1].fetch("k3") != nil)
    }
}
