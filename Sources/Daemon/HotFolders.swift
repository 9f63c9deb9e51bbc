import Service
import Foundation
import Logging
import Wire

/// All hot folders. inotify events arrive as values from the watcher thread; everything else —
/// scans, settling, claims, deliveries — happens in order on one serial queue, so the folders'
/// state needs no locks. A tick a tenth of a second long drives settle delays, timeouts, polling,
/// periodic scans and the return of a folder that was deleted.
final class HotFolders: @unchecked Sendable {
    private let queue = DispatchQueue(label: "xattn-hotfolders")
    private let folders: [HotFolder]
    private let logger: Logger
    private var watcher: InotifyWatcher?
    private var timer: DispatchSourceTimer?
    private var stopped = false
    private static let tick = DispatchTimeInterval.milliseconds(100)

    init(settings: [HotFolderSettings], store: any JobStore, engine: JobAdmission.Engine, events: EventHub, logger: Logger,
         queueLimit: @escaping () -> Int, wake: @escaping () -> Void) {
        folders = settings.map { HotFolder(settings: $0, store: store, engine: engine, logger: logger, queueLimit: queueLimit, wake: wake) }
        self.logger = logger
        events.observeStates { [weak self] info in
            // Any folder may hold drops of this job (a retried job, a pair dropped again).
            guard info.state.isFinal, info.source == "hot-folder", let self else { return }
            queue.async { if !self.stopped { for folder in self.folders where folder.isReady { folder.deliverFinished() } } }
        }
        events.observePreviews { [weak self] preview in
            guard let self else { return }
            queue.async { if !self.stopped { for folder in self.folders where folder.isReady { folder.writePreview(preview) } } }
        }
    }

    /// Delivers what ended while the daemon was down, scans every folder, and starts watching.
    func start() {
        guard !folders.isEmpty else { return }
        let watcher = InotifyWatcher { [weak self] event in
            guard let self else { return }
            self.queue.async { self.handle(event) }
        }
        if !watcher.isAvailable && folders.contains(where: { !$0.settings.poll }) {
            logger.warning("inotify is unavailable; every hot folder is polled")
        }
        self.watcher = watcher
        watcher.start()
        queue.sync {
            let now = Date()
            for folder in folders { bringUp(folder, now: now) }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + Self.tick, repeating: Self.tick)
            timer.setEventHandler { [weak self] in self?.tick() }
            timer.resume()
            self.timer = timer
        }
    }

    /// Stops intake; claims in progress finish first. Jobs already queued stay queued.
    func stop() {
        watcher?.stop()
        queue.sync {
            stopped = true
            timer?.cancel()
        }
    }

    /// What `daemon.status` reports of each folder.
    func status() -> [FolderStatus] {
        queue.sync {
            folders.map { folder in
                let entries = folder.tracker.entries
                let waiting = entries.filter { !$0.value.isDirectory }.count
                return FolderStatus(name: folder.settings.name, path: folder.settings.path,
                                    mode: !folder.isReady ? "unavailable" : folder.polling ? "polling" : "inotify",
                                    waiting: waiting, processing: folder.undeliveredCount)
            }
        }
    }

    /// Directories made, watch requested, restart leftovers reconciled, everything scanned.
    private func bringUp(_ folder: HotFolder, now: Date) {
        guard folder.prepare() else { return }
        folder.polling = folder.settings.poll || !(watcher?.isAvailable ?? false)
        if !folder.polling { watcher?.watch(folder.settings.inbox) }
        folder.reconcile()
        folder.scan(now: now, lostEvents: true)
        // The watch is set up on the watcher thread within a second: look again once it is.
        if !folder.polling { folder.nextScan = now.addingTimeInterval(2) }
        folder.isReady = true
        logger.info("watching hot folder", metadata: ["folder": "\(folder.settings.name)", "path": "\(folder.settings.path)",
                                                      "mode": "\(folder.polling ? "polling" : "inotify")"])
    }

    private func handle(_ event: FolderEvent) {
        guard !stopped else { return }
        let now = Date()
        switch event.kind {
        case .overflow:
            logger.warning("inotify queue overflowed; rescanning every hot folder")
            for folder in folders where folder.isReady { folder.scan(now: now, lostEvents: true) }
        case .watchLost:
            for folder in folders where folder.settings.inbox == event.inbox && folder.isReady {
                logger.warning("hot folder lost (deleted or moved); waiting for it to come back", metadata: ["folder": "\(folder.settings.name)"])
                folder.isReady = false
                folder.nextScan = now
            }
        default:
            for folder in folders where folder.settings.inbox == event.inbox { folder.apply(event, now: now) }
        }
    }

    private func tick() {
        guard !stopped else { return }
        let now = Date()
        for folder in folders {
            if !folder.isReady {
                // Deleted folders are looked for once a second.
                if now >= folder.nextScan { folder.nextScan = now.addingTimeInterval(1); bringUp(folder, now: now) }
                continue
            }
            if now >= folder.nextScan {
                // A scan also finds what inotify cannot report (network filesystems) and delivers
                // anything whose job ended without an event reaching us.
                folder.scan(now: now, lostEvents: false)
                folder.deliverFinished()
            }
            folder.process(now: now)
        }
    }
}
