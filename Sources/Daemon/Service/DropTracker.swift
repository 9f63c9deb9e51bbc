import Foundation
import SystemCalls
import Glibc

/// The two things the tracker asks of a filesystem, as values: a directory's names, and a path's
/// status without following links. `.disk` asks the real one; tests give a folder of their own.
struct FolderView: Sendable {
    var list: @Sendable (String) -> [String]
    var status: @Sendable (String) -> DropTracker.Status?

    static let disk = FolderView(list: { (try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? [] },
                                 status: DropTracker.lstatus)
}

/// What is known of the files in one inbox, and which of them form a job that is complete.
///
/// A file counts as complete when inotify said its writer closed it or it was renamed into place
/// and it has then stayed unchanged for the settle delay; a file found by a scan (at start, after
/// an overflow, in polling mode) must be seen unchanged by a look at least the settle delay after
/// its last change. A file being written (IN_CREATE / IN_MODIFY since the last close) is never
/// taken. Such files are looked at every `lookInterval`, not every tick: on a network filesystem a
/// stat is a round trip.
package struct DropTracker {
    package struct Entry {
        var firstSeen: Date
        var lastChange: Date
        var lastLook: Date
        var size: Int64
        var modified: Double
        package var isDirectory: Bool
        var writing = false
        var closed = false
        /// Why this entry can never be taken (a symbolic link, a FIFO …), or nil for a file or directory.
        var unusable: String?

        /// Nothing will write it any more: its writer closed it, or it is not a file anyone writes
        /// (it then gets a verdict of its own).
        var finished: Bool { closed || unusable != nil }
        var beingWritten: Bool { writing && unusable == nil }
    }

    /// One job, as found in the inbox. Names are `stem + suffix` at the inbox's top level; the
    /// images and options are `stem + suffix` paths too (`/structure.png` inside a directory).
    struct Drop: Equatable {
        var stem: String
        var suffixes: [String]
        var structure: String?
        var appearance: String?
        var options: String?
        var structureMask: String?
        var appearanceMask: String?
    }

    enum Verdict: Equatable {
        case ready(Drop)
        /// Settled but unusable (two structure images, a link …): fails at once.
        case invalid(Drop, reason: String)
        /// Settled, not a job, and older than the unpaired timeout.
        case timedOut(Drop, reason: String)
    }

    let inbox: String
    /// Seconds a finished file must stay unchanged (the polling default is longer).
    var settle: TimeInterval
    let unpairedTimeout: TimeInterval
    /// The folder has a fixed image, so a lone image (or a lone part) is a whole job.
    let hasFixedAppearance: Bool
    let hasFixedStructure: Bool
    /// How often files without a close event are looked at again (the poll interval when polling).
    var lookInterval: TimeInterval
    package private(set) var entries: [String: Entry] = [:]
    /// How the inbox is looked at (the disk; a test's own folder in tests).
    let view: FolderView

    init(inbox: String, settings: HotFolderSettings, view: FolderView = .disk) {
        (self.inbox, self.view) = (inbox, view)
        settle = settings.settle(polling: settings.poll)
        unpairedTimeout = settings.unpairedTimeout
        hasFixedAppearance = settings.appearance != nil
        hasFixedStructure = settings.structure != nil
        lookInterval = max(0.1, settle / 2)
    }

    struct Status {
        var size: Int64
        var modified: Double
        var isDirectory: Bool
        /// Hard links to the file (more than one: made by `ln` or `cp -l`, its content complete).
        var links: Int
        /// Why it can never be a job's file, for anything but a regular file or a directory.
        var unusable: String?
    }

    /// lstat: a link is seen as a link, never followed.
    static func lstatus(_ path: String) -> Status? {
        guard let s = try? POSIX.linkStatus(path) else { return nil }
        let unusable: String?
        switch s.st_mode & S_IFMT {
        case S_IFREG, S_IFDIR: unusable = nil
        case S_IFLNK: unusable = "is a symbolic link; links are not followed: drop the file itself"
        case S_IFIFO: unusable = "is a FIFO (named pipe), not a file"
        default: unusable = "is not a regular file"
        }
        return Status(size: Int64(s.st_size), modified: Double(s.st_mtim.tv_sec) + Double(s.st_mtim.tv_nsec) * 1e-9,
                      isDirectory: s.st_mode & S_IFMT == S_IFDIR, links: Int(s.st_nlink), unusable: unusable)
    }

    /// Whether a relative path is worth tracking: no junk at either level, at most one level deep.
    static func tracked(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return !path.isEmpty && parts.count <= 2 && parts.allSatisfy { !$0.isEmpty && !DropName(String($0)).isJunk }
    }

    // MARK: events

    mutating func apply(_ event: FolderEvent, now: Date) {
        guard Self.tracked(event.path) else { return }
        switch event.kind {
        case .removed:
            entries[event.path] = nil
            if event.isDirectory { entries = entries.filter { !$0.key.hasPrefix(event.path + "/") } }
        case .complete, .writing:
            guard let s = view.status(inbox + "/" + event.path) else { entries[event.path] = nil; return }
            var entry = entries[event.path]
                ?? Entry(firstSeen: now, lastChange: now, lastLook: now, size: s.size, modified: s.modified, isDirectory: s.isDirectory)
            (entry.lastChange, entry.lastLook, entry.size, entry.modified, entry.isDirectory) = (now, now, s.size, s.modified, s.isDirectory)
            entry.unusable = s.unusable
            // IN_CREATE of a new hard link (`ln`, `cp -l`) names a whole file no writer will close.
            let complete = event.kind == .complete || s.links > 1
            if !s.isDirectory { (entry.closed, entry.writing) = (complete, !complete) }
            entries[event.path] = entry
            if let slash = event.path.firstIndex(of: "/") { touch(String(event.path[..<slash]), now: now) }
            // A directory renamed in arrives whole: its files bring no events of their own. One
            // made in place may have had files written before its own watch was set up (the
            // watcher sets it up before handing the event on), so it is looked into as well.
            if s.isDirectory { scanDirectory(event.path, now: now, closed: event.kind == .complete) }
        case .overflow, .watchLost:
            break
        }
    }

    private mutating func touch(_ path: String, now: Date) {
        entries[path]?.lastChange = now
    }

    // MARK: scans

    /// Looks at everything in the inbox; `forgetWriting` after lost events (a close may be among them).
    mutating func scan(now: Date, forgetWriting: Bool = false) {
        var seen = Set<String>()
        for name in view.list(inbox) where Self.tracked(name) {
            seen.insert(name)
            observe(name, now: now, closed: false)
            if entries[name]?.isDirectory == true {
                for inner in view.list(inbox + "/" + name) where Self.tracked(name + "/" + inner) {
                    seen.insert(name + "/" + inner)
                    observe(name + "/" + inner, now: now, closed: false)
                }
            }
        }
        entries = entries.filter { seen.contains($0.key) }
        if forgetWriting { for key in entries.keys { entries[key]?.writing = false } }
    }

    private mutating func scanDirectory(_ directory: String, now: Date, closed: Bool) {
        for inner in view.list(inbox + "/" + directory) where Self.tracked(directory + "/" + inner) {
            observe(directory + "/" + inner, now: now, closed: closed)
        }
    }

    private mutating func observe(_ path: String, now: Date, closed: Bool) {
        guard let s = view.status(inbox + "/" + path) else { entries[path] = nil; return }
        if var entry = entries[path] {
            if entry.size != s.size || entry.modified != s.modified { (entry.lastChange, entry.size, entry.modified) = (now, s.size, s.modified) }
            entry.lastLook = now
            entry.closed = entry.closed || closed
            entry.unusable = s.unusable
            entries[path] = entry
        } else {
            entries[path] = Entry(firstSeen: now, lastChange: now, lastLook: now, size: s.size, modified: s.modified,
                                  isDirectory: s.isDirectory, closed: closed, unusable: s.unusable)
        }
    }

    /// Forgets names that were claimed or failed (their files have left the inbox).
    mutating func forget(_ drop: Drop) {
        for suffix in drop.suffixes {
            let name = drop.stem + suffix
            entries[name] = nil
            entries = entries.filter { !$0.key.hasPrefix(name + "/") }
        }
    }

    // MARK: verdicts

    /// Complete jobs, invalid drops and timed-out leftovers, each settled.
    mutating func verdicts(now: Date) -> [Verdict] {
        // A file found by a scan is looked at again: a writer we had no event from may still be busy.
        for (path, entry) in entries where !entry.finished && !entry.isDirectory && now.timeIntervalSince(entry.lastLook) >= lookInterval {
            observe(path, now: now, closed: false)
        }
        var groups: [String: (drop: Drop, paths: [String], problem: String?)] = [:]
        for path in entries.keys.sorted() {
            let parts = path.split(separator: "/").map(String.init)
            let top = parts[0]
            if entries[top]?.isDirectory == true {
                var group = groups["d/" + top] ?? (Drop(stem: top, suffixes: [""]), [], nil)
                group.paths.append(path)
                if parts.count == 2 { assign(DropName(parts[1]), "/" + parts[1], to: &group, path: path) }
                groups["d/" + top] = group
            } else if parts.count == 1 {
                switch DropName(top) {
                case let .part(stem, role) where !stem.isEmpty:
                    var group = groups["p/" + stem] ?? (Drop(stem: stem, suffixes: []), [], nil)
                    group.paths.append(path)
                    group.drop.suffixes.append(String(top.dropFirst(stem.count)))
                    assign(.part(stem: stem, role: role), String(top.dropFirst(stem.count)), to: &group, path: path)
                    groups["p/" + stem] = group
                case .part(_, .structure), .part(_, .appearance), .image:
                    let stem = (top as NSString).deletingPathExtension
                    let suffix = String(top.dropFirst(stem.count))
                    var drop = Drop(stem: stem, suffixes: [suffix])
                    if hasFixedAppearance { drop.structure = suffix } else if hasFixedStructure { drop.appearance = suffix }
                    groups["i/" + top] = (drop, [path], nil)
                case .part(_, .options), .part(_, .structureMask), .part(_, .appearanceMask), .other, .junk:
                    groups["o/" + top] = (Drop(stem: top, suffixes: [""]), [path], nil)
                }
            }
        }
        var result: [Verdict] = []
        for key in groups.keys.sorted() {
            guard let group = groups[key], group.paths.allSatisfy({ settled($0, now: now) }) else { continue }
            if let problem = group.problem { result.append(.invalid(group.drop, reason: problem)); continue }
            let drop = group.drop
            // Every entry reaches a verdict: a link, FIFO or device fails at once with its reason.
            if let path = group.paths.first(where: { entries[$0]?.unusable != nil }), let why = entries[path]?.unusable {
                result.append(.invalid(drop, reason: "\(path) \(why)")); continue
            }
            let complete = (drop.structure != nil || hasFixedStructure) && (drop.appearance != nil || hasFixedAppearance)
                && !(drop.structure == nil && drop.appearance == nil)
            if complete && !key.hasPrefix("o/") {
                result.append(.ready(drop))
            } else if let oldest = group.paths.compactMap({ entries[$0]?.firstSeen }).min(), now.timeIntervalSince(oldest) >= unpairedTimeout {
                result.append(.timedOut(drop, reason: unpairedReason(key: key, drop: drop)))
            }
        }
        return result
    }

    private func assign(_ name: DropName, _ suffix: String, to group: inout (drop: Drop, paths: [String], problem: String?), path: String) {
        guard case let .part(_, role) = name else { return }
        switch role {
        case .structure:
            if group.drop.structure != nil { group.problem = "two structure images" }
            group.drop.structure = suffix
        case .appearance:
            if group.drop.appearance != nil { group.problem = "two appearance images" }
            group.drop.appearance = suffix
        case .options:
            group.drop.options = suffix
        case .structureMask:
            if group.drop.structureMask != nil { group.problem = "two structure masks" }
            group.drop.structureMask = suffix
        case .appearanceMask:
            if group.drop.appearanceMask != nil { group.problem = "two appearance masks" }
            group.drop.appearanceMask = suffix
        }
    }

    private func settled(_ path: String, now: Date) -> Bool {
        guard let entry = entries[path] else { return false }
        let confirmed = entry.finished || entry.isDirectory || entry.lastLook.timeIntervalSince(entry.lastChange) >= settle
        return !entry.beingWritten && now.timeIntervalSince(entry.lastChange) >= settle && confirmed
    }

    private func unpairedReason(key: String, drop: Drop) -> String {
        let waited = String(format: "%.0f s", unpairedTimeout)
        switch key.prefix(2) {
        case "d/": return "the job directory has no \(drop.structure == nil ? "structure.png/.jpg" : "appearance.png/.jpg") after \(waited)"
        case "p/": return "no \(drop.stem)\(drop.structure == nil ? ".structure" : ".appearance").png/.jpg arrived within \(waited)"
        case "i/": return "not a pair: name files NAME.structure.EXT and NAME.appearance.EXT, or give the folder a fixed appearance or structure"
        default: return "not an image (.png, .jpg, .jpeg) nor part of a job"
        }
    }
}
