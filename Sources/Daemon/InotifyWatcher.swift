import Service
import CInotifyTools
import Foundation
import SystemCalls
import Glibc

/// The libinotifytools boundary (the only file that imports it). libinotifytools keeps
/// process-global state and returns events in static storage (not thread-safe): every
/// call is made from this one thread, and each event is copied out before the next call.
/// It watches each inbox and, one level down, the job directories in it.
final class InotifyWatcher: @unchecked Sendable {
    private let onEvent: @Sendable (FolderEvent) -> Void
    private let lock = NSLock()
    private var requests: [String] = []
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    static let inboxEvents = Int32(bitPattern: UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVE_SELF | IN_DELETE_SELF))

    /// False when inotify cannot be used at all (then every folder is polled).
    let isAvailable: Bool

    init(onEvent: @escaping @Sendable (FolderEvent) -> Void) {
        self.onEvent = onEvent
        isAvailable = inotifytools_initialize() != 0
    }

    func start() {
        guard isAvailable else { return }
        let thread = Thread { [self] in loop(); finished.signal() }
        thread.name = "xattn-inotify"
        self.thread = thread
        thread.start()
    }

    /// Asks the watcher thread to watch `inbox` (and its subdirectories); done within a second.
    func watch(_ inbox: String) {
        lock.lock(); requests.append(inbox); lock.unlock()
    }

    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        if thread != nil { finished.wait() }
    }

    private var watched: [String: String] = [:]  // directory → the inbox it belongs to (thread-owned)

    private func loop() {
        while true {
            lock.lock()
            let pending = requests, stop = stopping
            requests = []
            lock.unlock()
            if stop { return }
            for inbox in pending { add(inbox, under: inbox) }
            // A one-second timeout bounds how long a request or a stop waits.
            guard let event = inotifytools_next_event(1) else { continue }
            let mask = event.pointee.mask, wd = event.pointee.wd
            // The name follows the fixed part of the struct (a flexible array member), NUL-padded.
            let name = event.pointee.len > 0
                ? String(cString: (UnsafeRawPointer(event) + MemoryLayout<inotify_event>.size).assumingMemoryBound(to: CChar.self))
                : ""
            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                onEvent(FolderEvent(inbox: "", path: "", kind: .overflow))
                continue
            }
            guard let raw = inotifytools_filename_from_wd(wd) else { continue }
            var directory = String(cString: raw)
            if directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
            guard let inbox = watched[directory] else { continue }
            let relativeDirectory = directory == inbox ? "" : String(directory.dropFirst(inbox.count + 1))
            let path = relativeDirectory.isEmpty ? name : (name.isEmpty ? relativeDirectory : relativeDirectory + "/" + name)
            let isDirectory = mask & UInt32(IN_ISDIR) != 0
            if mask & UInt32(IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF) != 0 {
                if mask & UInt32(IN_IGNORED) != 0 || mask & UInt32(IN_MOVE_SELF) != 0 {
                    inotifytools_remove_watch_by_wd(wd)
                    watched[directory] = nil
                }
                if directory == inbox { onEvent(FolderEvent(inbox: inbox, path: "", kind: .watchLost)) }
                continue
            }
            if isDirectory && relativeDirectory.isEmpty && mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 {
                add(directory + "/" + name, under: inbox)
            }
            let kind: FolderEvent.Kind
            if mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0 {
                kind = .complete
            } else if mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 {
                kind = .removed
            } else {
                kind = .writing
            }
            onEvent(FolderEvent(inbox: inbox, path: path, kind: kind, isDirectory: isDirectory))
        }
    }

    /// Watches `directory`; for an inbox also each job directory already in it.
    private func add(_ directory: String, under inbox: String) {
        guard inotifytools_watch_file(directory, Self.inboxEvents) != 0 else {
            // A job directory that vanished at once needs nothing; a lost inbox is reported.
            if directory == inbox { onEvent(FolderEvent(inbox: inbox, path: "", kind: .watchLost)) }
            return
        }
        watched[directory] = inbox
        guard directory == inbox, let names = try? FileManager.default.contentsOfDirectory(atPath: inbox) else { return }
        for name in names where !DropName(name).isJunk {
            if let status = try? POSIX.linkStatus(inbox + "/" + name), status.st_mode & S_IFMT == S_IFDIR {
                add(inbox + "/" + name, under: inbox)
            }
        }
    }
}
