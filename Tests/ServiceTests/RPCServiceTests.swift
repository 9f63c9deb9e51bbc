import Core
import Foundation
import Logging
import Testing
@testable import Service
import Wire

/// A connection as the service sees it: every notification it is sent, recorded.
final class RecordingConnection: @unchecked Sendable {
    private let lock = NSLock()
    private var sent: [RPCMessage] = []
    private var nextID = 0
    lazy var session = Session { [self] message in lock.lock(); sent.append(message); lock.unlock() }
    let service: RPCService
    let caller: Caller

    init(_ service: RPCService, uid: UInt32 = 1000, admin: Bool = false, greet: Bool = true) {
        (self.service, caller) = (service, Caller(uid: uid, gid: uid, isAdmin: admin))
        if greet { _ = call("daemon.hello", ["protocolVersions": [.integer(WireProtocol.version)]]) }
    }

    var notifications: [(method: String, params: JSONValue)] {
        lock.lock(); defer { lock.unlock() }
        return sent.compactMap { if case let .notification(method, params) = $0 { (method, params ?? .null) } else { nil } }
    }

    /// The result, or the error's reason.
    func call(_ method: String, _ params: JSONValue = [:]) -> Result<JSONValue, RPCErrorObject> {
        lock.lock(); nextID += 1; let id = nextID; lock.unlock()
        switch service.handle(.request(id: .number(id), method: method, params: params), caller: caller, session: session) {
        case let .response(_, result)?: return .success(result)
        case let .error(_, error)?: return .failure(error)
        default: return .failure(RPCErrorObject(code: 0, message: "no reply"))
        }
    }

    func reason(_ method: String, _ params: JSONValue = [:]) -> String? {
        guard case let .failure(error) = call(method, params), case let .string(reason)? = error.data?["reason"] else { return nil }
        return reason
    }

    func value<T: Decodable>(_ method: String, _ params: JSONValue = [:], as type: T.Type) throws -> T {
        try call(method, params).get().decode(T.self)
    }

    func submit(_ options: TransferParameters = Fixtures.quick, key: String? = nil) throws -> JobInfo {
        let params = SubmitParams(structure: Fixtures.structure.base64EncodedString(), appearance: Fixtures.appearance.base64EncodedString(),
                                  options: options, idempotencyKey: key)
        return try value("job.submit", try JSONValue(encoding: params), as: SubmitResult.self).job
    }
}

/// The RPC methods over a real store and event hub, in-process: no socket, no daemon process.
@Suite struct RPCServiceTests {
    let scratch: Scratch
    let store: any JobStore
    let events = EventHub()
    let service: RPCService

    init() throws {
        scratch = try Scratch()
        store = try scratch.store()
        service = RPCService(store: store, events: events, limits: ServiceLimits(), resultsDirectory: scratch.path + "/results",
                             loading: ModelStatus(state: "loading", path: Fixtures.model, identity: nil, loadSeconds: nil, error: nil))
    }

    /// Before `daemon.hello` every method, known or not, is invalid_request.
    @Test func everythingWaitsForTheHandshake() {
        let connection = RecordingConnection(service, greet: false)
        #expect(connection.reason("daemon.status") == "invalid_request")
        #expect(connection.reason("no.such.method") == "invalid_request")
        #expect(connection.reason("daemon.hello", ["protocolVersions": [99]]) == "unsupported_protocol")
        _ = connection.call("daemon.hello", ["protocolVersions": [.integer(WireProtocol.version)]])
        #expect(connection.reason("no.such.method") == "method_not_found")
    }

    /// While the model loads, the service answers from the store: "starting", and jobs queue;
    /// once a worker with the loaded model is attached they run. (This replaces a process test
    /// that needed a test-only environment variable in the product to hold the load.)
    @Test func servesWhileTheModelLoadsThenRuns() throws {
        let connection = RecordingConnection(service)
        let starting = try connection.value("daemon.status", as: DaemonStatus.self)
        #expect(starting.state == "starting" && starting.model.state == "loading" && starting.running == nil)
        let job = try connection.submit()
        #expect(job.state == .queued)
        #expect(try connection.value("job.watch", ["job": .string(job.id)], as: JobInfo.self).state == .queued)

        let model = try StableDiffusionModel.load(from: Fixtures.model)
        let schedule = try NoiseSchedule(config: try NoiseSchedule.Config(near: Fixtures.model))
        let worker = Worker(store: store, events: events, model: model, schedule: schedule, resultsDirectory: scratch.path + "/results",
                            cache: nil, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        service.attach(ServiceBackend(worker: worker, model: ModelStatus(state: "ready", path: Fixtures.model, identity: model.identity,
                                                                         loadSeconds: 0.1, error: nil), reload: {}, folders: nil))
        worker.start()
        defer { worker.shutdown() }
        let deadline = Date() + 120
        while connection.session.isWatching && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let states = connection.notifications.filter { $0.method == "job.state" }.compactMap { try? $0.params.decode(StateNotification.self).job.state }
        #expect(states == [.running, .succeeded])
        #expect(connection.notifications.contains { $0.method == "job.progress" })
        #expect(try connection.value("daemon.status", as: DaemonStatus.self).state == "ready")
        let result = try connection.value("job.result", ["job": .string(job.id)], as: JobResult.self)
        #expect(Data(base64Encoded: result.png)?.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
    }

    /// A watch ends with the job's final state, whenever that arrives: before the snapshot, during
    /// it, or between the snapshot and the watch's return. Another thread publishes the job's final
    /// state without pause while the job is watched 300 times; once an event has certainly arrived
    /// after each watch, no session may still be watching. (Before the fix the session learnt of
    /// the watch after the snapshot: an end arriving in between left a watch that never ended, so
    /// its connection was never closed as idle. With that order restored this test fails.)
    @Test func aWatchNeverOutlivesItsJob() throws {
        let owner = RecordingConnection(service)
        let job = try owner.submit()
        let ended = { var info = job; info.state = .cancelled; return info }()
        let published = Counter(), stop = Counter()
        let publisher = Thread { [events] in
            while stop.value == 0 { events.publish(job.id, .state(ended)); published.increment() }
        }
        publisher.start()
        defer { stop.increment() }
        for _ in 0..<300 {
            let watcher = RecordingConnection(service)
            _ = try watcher.value("job.watch", ["job": .string(job.id)], as: JobInfo.self)
            let seen = published.value
            while published.value < seen + 2 { sched_yield() }
            #expect(!watcher.session.isWatching)
        }
    }

    @Test func aWatchedJobsEndIsNotified() throws {
        let connection = RecordingConnection(service)
        let job = try connection.submit()
        _ = try connection.value("job.watch", ["job": .string(job.id)], as: JobInfo.self)
        #expect(connection.session.isWatching)
        _ = try connection.value("job.cancel", ["job": .string(job.id)], as: JobAcknowledgement.self)
        #expect(!connection.session.isWatching)
        #expect(try connection.notifications.map { try $0.params.decode(StateNotification.self).job.state } == [.cancelled])
    }

    /// Another user sees that a job exists, never its options, progress or result.
    @Test func jobsArePrivateToTheirOwners() throws {
        let owner = RecordingConnection(service, uid: 1000)
        let other = RecordingConnection(service, uid: 1001)
        let job = try owner.submit()
        for method in ["job.get", "job.watch", "job.result", "job.cancel"] {
            #expect(other.reason(method, ["job": .string(job.id)]) == "permission_denied", "\(method)")
        }
        let theirs = try other.value("job.list", as: ListResult.self)
        #expect(theirs.jobs.isEmpty && theirs.others == 1)
        // The same idempotency key from another user is another request.
        let keyed = try owner.submit(key: "shared")
        #expect(try other.submit(key: "shared").id != keyed.id)
        #expect(try owner.submit(key: "shared").id == keyed.id)
    }

    /// Options are checked at the door, each problem named.
    @Test func badRequestsAreNamed() throws {
        let connection = RecordingConnection(service)
        var options = Fixtures.quick
        options.timesteps = 0
        #expect(connection.reason("job.submit") == "invalid_params")  // no images at all
        guard case let .failure(error) = connection.call("job.submit", try JSONValue(encoding: SubmitParams(
            structure: Fixtures.structure.base64EncodedString(), appearance: Fixtures.appearance.base64EncodedString(), options: options))) else {
            Issue.record("accepted timesteps 0"); return
        }
        #expect(error.data?["reason"] == .string("invalid_options") && error.message.contains("timesteps"))
        #expect(connection.reason("job.submit", ["structure": "@@", "appearance": "@@"]) == "invalid_params")
        #expect(connection.reason("job.submit", ["structure": .string(Data("not an image".utf8).base64EncodedString()),
                                                 "appearance": .string(Fixtures.appearance.base64EncodedString())]) == "invalid_image")
        #expect(connection.reason("job.list", ["limit": 0]) == "invalid_params")
        #expect(connection.reason("job.get", ["job": "j-none"]) == "job_not_found")
        #expect(connection.reason("queue.pause") == "permission_denied")
        #expect(connection.reason("daemon.reload") == "permission_denied")
    }

    @Test func shuttingDownRefusesNewWork() throws {
        let connection = RecordingConnection(service)
        service.beginShutdown()
        #expect(connection.reason("job.submit", try JSONValue(encoding: SubmitParams(
            structure: Fixtures.structure.base64EncodedString(), appearance: Fixtures.appearance.base64EncodedString()))) == "shutting_down")
        #expect(try connection.value("daemon.status", as: DaemonStatus.self).state == "stopping")
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
    func increment() { lock.lock(); count += 1; lock.unlock() }
}
