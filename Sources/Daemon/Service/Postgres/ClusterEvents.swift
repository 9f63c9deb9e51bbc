import Foundation
import Logging
import Wire

/// The jobs' events between the nodes of a shared store (README, "Several machines"). What this
/// node publishes (its worker's progress, previews and states; its RPC methods' cancels) goes out
/// on NOTIFY; what other nodes publish comes in through a `NotificationListener` and is published
/// here, so a client of any node watches any job, sees its progress and preview, and cancels it;
/// and this node's heartbeat keeps its row in `node` current for `daemon.status`.
package final class ClusterEvents: @unchecked Sendable {
    let store: PostgresJobStore
    let events: EventHub
    let logger: Logger
    private let url: String
    private let password: String?
    private var listener: NotificationListener?
    /// Messages go out in order on one queue: a worker never waits for the database.
    private let outbox = DispatchQueue(label: "xattn-cluster-outbox")
    private let lock = NSLock()
    private var remoteProgress: [String: JobProgress] = [:]
    private var lastProgressSent: [String: Date] = [:]
    private var waiting = 0
    private var cancelHandler: (String) -> Void = { _ in }
    private var queueHandler: () -> Void = {}
    private var heartbeat: DispatchSourceTimer?
    private var nodeState: () -> (state: String, running: String?) = { ("starting", nil) }
    private let startedAt = Date()

    /// Progress goes out at most this often per job (and always at a phase's last step).
    static let progressInterval = 0.25
    /// Messages waiting to go out beyond which progress is dropped (the database is slow or away).
    static let backlog = 32
    static let heartbeatInterval = 10

    package init(store: PostgresJobStore, events: EventHub, url: String, password: String?, logger: Logger) {
        (self.store, self.events, self.logger, self.url, self.password) = (store, events, logger, url, password)
        events.relay { [weak self] job, event in self?.send(job, event) }
    }

    /// Called with a job this node runs that a client of another node cancelled.
    package func onCancel(_ handler: @escaping (String) -> Void) { lock.lock(); cancelHandler = handler; lock.unlock() }
    /// Called when the queue changed on any node, and after the listener reconnected.
    package func onQueueChange(_ handler: @escaping () -> Void) { lock.lock(); queueHandler = handler; lock.unlock() }
    /// What the heartbeat reports: "starting", "ready" or "stopping", and the running job.
    package func reportState(_ provider: @escaping () -> (state: String, running: String?)) { lock.lock(); nodeState = provider; lock.unlock() }

    package var isListening: Bool { lock.lock(); defer { lock.unlock() }; return listener?.isListening ?? false }

    package func start() {
        let listener = NotificationListener(url: url, password: password) { [weak self] in self?.receive($0) }
        listener.start()
        let timer = DispatchSource.makeTimerSource(queue: outbox)
        timer.schedule(deadline: .now(), repeating: .seconds(Self.heartbeatInterval))
        timer.setEventHandler { [weak self] in self?.beat() }
        timer.resume()
        lock.lock(); (heartbeat, self.listener) = (timer, listener); lock.unlock()
    }

    /// At an orderly stop: the row says "stopped", the listener ends.
    package func stop() {
        lock.lock(); heartbeat?.cancel(); heartbeat = nil; let listener = self.listener; lock.unlock()
        listener?.stop()
        outbox.sync { try? store.heartbeat(state: "stopped", running: nil, startedAt: startedAt) }
    }

    /// Reports this node's state now (the model is loaded, the service stops), not at the next beat.
    package func beatSoon() { outbox.async { [weak self] in self?.beat() } }

    private func beat() {
        lock.lock(); let (state, running) = nodeState(); lock.unlock()
        do { try store.heartbeat(state: state, running: running, startedAt: startedAt) } catch {
            logger.warning("the node's heartbeat failed", metadata: ["error": "\(error)"])
        }
    }

    /// The latest progress another node reported for a job it runs.
    package func progress(of job: String) -> JobProgress? { lock.lock(); defer { lock.unlock() }; return remoteProgress[job] }

    // MARK: out

    private func send(_ job: String, _ event: EventHub.Event) {
        switch event {
        case let .progress(notification):
            let now = Date(), p = notification.progress
            lock.lock()
            let due = p.step >= p.total || now.timeIntervalSince(lastProgressSent[job] ?? .distantPast) >= Self.progressInterval
            let room = waiting < Self.backlog
            if due && room { lastProgressSent[job] = now }
            lock.unlock()
            guard due && room else { return }
            enqueue { try $0.announce(ClusterMessage(node: $0.node, job: job, kind: .progress, progress: p)) }
        case let .state(info):
            if info.state.isFinal { lock.lock(); lastProgressSent[job] = nil; lock.unlock() }
            enqueue { try $0.announce(ClusterMessage(node: $0.node, job: job, kind: .state)) }
            // The node list shows the job a node runs from its start, not from the next beat.
            if info.state == .running || info.state.isFinal { beatSoon() }
        case let .preview(preview):
            enqueue { try $0.savePreview(preview) }
        }
    }

    private func enqueue(_ body: @escaping @Sendable (PostgresJobStore) throws -> Void) {
        lock.lock(); waiting += 1; lock.unlock()
        outbox.async { [self] in
            defer { lock.lock(); waiting -= 1; lock.unlock() }
            do { try body(store) } catch {
                logger.warning("telling the other nodes of a job event failed", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: in

    private func receive(_ notification: (channel: String, payload: String)?) {
        guard let notification, notification.channel == PostgresJobStore.eventChannel else {
            lock.lock(); let handler = queueHandler; lock.unlock()
            handler()
            return
        }
        guard let message = try? JSONDecoder().decode(ClusterMessage.self, from: Data(notification.payload.utf8)), message.node != store.node else { return }
        let job = message.job
        do {
            switch message.kind {
            case .progress:
                guard let progress = message.progress else { return }
                lock.lock(); remoteProgress[job] = progress; lock.unlock()
                events.publish(job, .progress(ProgressNotification(job: job, progress: progress)), relayed: true)
            case .state:
                guard let record = try store.get(job) else { return }
                lock.lock()
                if record.jobState != .running { remoteProgress[job] = nil }
                let progress = remoteProgress[job]
                lock.unlock()
                events.publish(job, .state(JobConversion.info(record, progress: progress)), relayed: true)
            case .preview:
                if let preview = try store.preview(of: job, step: message.step) { events.publish(job, .preview(preview), relayed: true) }
            case .cancel:
                guard message.target == store.node else { return }
                lock.lock(); let handler = cancelHandler; lock.unlock()
                handler(job)
            }
        } catch {
            logger.warning("reading another node's job event failed", metadata: ["job_id": "\(job)", "error": "\(error)"])
        }
    }
}
