import Foundation
import Wire

/// Job events fanned out to the connections watching them. Thread-safe: the worker publishes from
/// its thread, connections subscribe and unsubscribe from the event loop. On a shared store, the
/// events published here also go to the other nodes (`relay`), and theirs come back through
/// `publish(_:_:relayed: true)`.
package final class EventHub: @unchecked Sendable {
    package enum Event {
        case progress(ProgressNotification)
        case state(JobInfo)
        case preview(JobPreview)
    }

    private let lock = NSLock()
    private var watchers: [String: [UUID: (Event) -> Void]] = [:]
    private var stateObservers: [(JobInfo) -> Void] = []
    private var previewObservers: [(JobPreview) -> Void] = []
    private var relayHandler: ((String, Event) -> Void)?

    package init() {}

    /// Calls `handler` with every job's state changes (hot folders deliver results this way).
    package func observeStates(_ handler: @escaping (JobInfo) -> Void) {
        lock.lock(); stateObservers.append(handler); lock.unlock()
    }

    /// Calls `handler` with every job's previews (hot folders keep NAME.preview.png this way).
    package func observePreviews(_ handler: @escaping (JobPreview) -> Void) {
        lock.lock(); previewObservers.append(handler); lock.unlock()
    }

    /// Calls `handler` for every event of `job` until `unwatch(job, token)`.
    func watch(_ job: String, token: UUID, _ handler: @escaping (Event) -> Void) {
        lock.lock(); watchers[job, default: [:]][token] = handler; lock.unlock()
    }

    func unwatch(_ job: String, _ token: UUID) {
        lock.lock(); watchers[job]?[token] = nil; lock.unlock()
    }

    /// Receives every event published on this node (not those relayed from others).
    package func relay(_ handler: @escaping (String, Event) -> Void) { lock.lock(); relayHandler = handler; lock.unlock() }

    package func publish(_ job: String, _ event: Event, relayed: Bool = false) {
        lock.lock()
        let relay = relayed ? nil : relayHandler
        let handlers = Array((watchers[job] ?? [:]).values)
        let observers = stateObservers, previewers = previewObservers
        lock.unlock()
        for handler in handlers { handler(event) }
        if case let .state(info) = event { for observer in observers { observer(info) } }
        if case let .preview(preview) = event { for observer in previewers { observer(preview) } }
        relay?(job, event)
    }
}
