import Foundation
import Testing
@testable import Service

/// An inbox held in memory, seen by the tracker through a FolderView: the tests decide what a
/// listing and an lstat return, and when.
final class FakeInbox: @unchecked Sendable {
    static let root = "/in"
    private let lock = NSLock()
    private var entries: [String: DropTracker.Status] = [:]

    func put(_ name: String, size: Int64 = 100, modified: Double = 1, links: Int = 1, unusable: String? = nil) {
        lock.lock(); defer { lock.unlock() }
        entries[Self.root + "/" + name] = DropTracker.Status(size: size, modified: modified, isDirectory: false, links: links, unusable: unusable)
    }

    func directory(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        entries[Self.root + "/" + name] = DropTracker.Status(size: 0, modified: 1, isDirectory: true, links: 2, unusable: nil)
    }

    var view: FolderView {
        FolderView(list: { [self] directory in
            lock.lock(); defer { lock.unlock() }
            return entries.keys.filter { ($0 as NSString).deletingLastPathComponent == directory }.map { ($0 as NSString).lastPathComponent }
        }, status: { [self] path in
            lock.lock(); defer { lock.unlock() }
            return entries[path]
        })
    }
}

/// Timelines of the drop tracker with an injected clock and filesystem: when a drop is taken,
/// never taken, failed or timed out (docs/SERVICE.md, "Hot-folder state machine").
@Suite struct DropTrackerTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let inbox = FakeInbox()

    func tracker(settle: Double = 1, unpaired: Double = 300, fixedAppearance: Bool = false) -> DropTracker {
        var settings = HotFolderSettings(name: "f", path: "/")
        (settings.settle, settings.unpairedTimeout) = (settle, unpaired)
        if fixedAppearance { settings.appearance = "/fixed.png" }
        return DropTracker(inbox: FakeInbox.root, settings: settings, view: inbox.view)
    }

    func closed(_ name: String) -> FolderEvent { FolderEvent(inbox: FakeInbox.root, path: name, kind: .complete) }
    func writing(_ name: String) -> FolderEvent { FolderEvent(inbox: FakeInbox.root, path: name, kind: .writing) }

    @Test func closedPairIsTakenAfterTheSettleDelay() {
        var tracker = tracker()
        for name in ["a.structure.png", "a.appearance.png"] { inbox.put(name); tracker.apply(closed(name), now: t0) }
        #expect(tracker.verdicts(now: t0 + 0.9).isEmpty)
        let verdicts = tracker.verdicts(now: t0 + 1)
        guard case let .ready(drop)? = verdicts.first, verdicts.count == 1 else { Issue.record("\(verdicts)"); return }
        #expect(drop.stem == "a" && drop.structure == ".structure.png" && drop.appearance == ".appearance.png" && drop.options == nil)
    }

    /// Drawn masks belong to their pair (NAME.structure-mask.png) or their job directory
    /// (appearance-mask.png); two of one kind make the drop invalid.
    @Test func masksJoinTheirDrop() {
        var tracker = tracker()
        for name in ["a.structure.png", "a.appearance.png", "a.structure-mask.png", "b.structure.png", "b.appearance.png",
                     "b.appearance-mask.png", "b.appearance-mask.jpg"] {
            inbox.put(name); tracker.apply(closed(name), now: t0)
        }
        inbox.directory("c")
        for name in ["structure.png", "appearance.png", "appearance-mask.png"] { inbox.put("c/" + name) }
        tracker.apply(FolderEvent(inbox: FakeInbox.root, path: "c", kind: .complete, isDirectory: true), now: t0)
        let verdicts = tracker.verdicts(now: t0 + 1)
        #expect(verdicts.contains(.ready(DropTracker.Drop(stem: "a", suffixes: [".appearance.png", ".structure-mask.png", ".structure.png"],
                                                          structure: ".structure.png", appearance: ".appearance.png", structureMask: ".structure-mask.png"))))
        #expect(verdicts.contains { if case let .invalid(drop, reason) = $0 { drop.stem == "b" && reason == "two appearance masks" } else { false } })
        #expect(verdicts.contains { if case let .ready(drop) = $0 { drop.stem == "c" && drop.appearanceMask == "/appearance-mask.png" } else { false } })
    }

    /// IN_CREATE/IN_MODIFY without a close: not taken, however long it stays unchanged.
    @Test func aFileBeingWrittenIsNeverTaken() {
        var tracker = tracker()
        inbox.put("a.structure.png"); tracker.apply(closed("a.structure.png"), now: t0)
        inbox.put("a.appearance.png", size: 10); tracker.apply(writing("a.appearance.png"), now: t0)
        #expect(tracker.verdicts(now: t0 + 200).isEmpty)
        inbox.put("a.appearance.png", size: 50, modified: 2); tracker.apply(closed("a.appearance.png"), now: t0 + 200)
        #expect(tracker.verdicts(now: t0 + 200.5).isEmpty)
        #expect(tracker.verdicts(now: t0 + 201).count == 1)
    }

    /// A file found by a scan (no events) is taken only once a later look finds it unchanged a
    /// settle delay after its last change: a writer we never heard of may still be busy.
    @Test func aScannedFileNeedsALaterLookUnchanged() {
        var tracker = tracker()
        inbox.put("a.structure.png"); inbox.put("a.appearance.png", size: 10)
        tracker.scan(now: t0)
        inbox.put("a.appearance.png", size: 60, modified: 2)
        #expect(tracker.verdicts(now: t0 + 0.6).isEmpty)  // looked: it grew
        #expect(tracker.verdicts(now: t0 + 1.2).isEmpty)  // unchanged for 0.6 s only
        #expect(tracker.verdicts(now: t0 + 1.7).count == 1)
    }

    /// Lost events (an overflow) forget "being written": the close may have been among them.
    @Test func lostEventsForgetWriting() {
        var tracker = tracker()
        inbox.put("a.structure.png"); inbox.put("a.appearance.png")
        tracker.apply(closed("a.structure.png"), now: t0)
        tracker.apply(writing("a.appearance.png"), now: t0)
        #expect(tracker.verdicts(now: t0 + 5).isEmpty)
        tracker.scan(now: t0 + 5)
        #expect(tracker.verdicts(now: t0 + 5).isEmpty)  // a plain scan keeps "being written"
        tracker.scan(now: t0 + 5, forgetWriting: true)
        // Unchanged since t0, as the scan's look confirms: taken now.
        #expect(tracker.verdicts(now: t0 + 5).count == 1)
    }

    @Test func aLoneHalfTimesOut() {
        var tracker = tracker(unpaired: 300)
        inbox.put("a.structure.png"); tracker.apply(closed("a.structure.png"), now: t0)
        #expect(tracker.verdicts(now: t0 + 299).isEmpty)
        guard case let .timedOut(drop, reason)? = tracker.verdicts(now: t0 + 300).first else { Issue.record("no timeout"); return }
        #expect(drop.stem == "a" && reason.contains("a.appearance.png/.jpg"))
    }

    @Test func aLoneImageIsAJobWithAFixedAppearance() {
        var tracker = tracker(fixedAppearance: true)
        inbox.put("cat.jpg"); tracker.apply(closed("cat.jpg"), now: t0)
        guard case let .ready(drop)? = tracker.verdicts(now: t0 + 1).first else { Issue.record("not ready"); return }
        #expect(drop.stem == "cat" && drop.structure == ".jpg" && drop.appearance == nil)
    }

    @Test func aDirectoryWithTwoStructureImagesIsInvalid() {
        var tracker = tracker()
        inbox.directory("job")
        for name in ["structure.png", "structure.jpg", "appearance.png"] { inbox.put("job/" + name) }
        tracker.apply(FolderEvent(inbox: FakeInbox.root, path: "job", kind: .complete, isDirectory: true), now: t0)
        #expect(tracker.verdicts(now: t0 + 1) == [.invalid(DropTracker.Drop(stem: "job", suffixes: [""], structure: "/structure.png",
                                                                            appearance: "/appearance.png"), reason: "two structure images")])
    }

    /// A symbolic link is never followed nor waited for: it fails, with why.
    @Test func aLinkFailsWithItsReason() {
        var tracker = tracker()
        inbox.put("a.structure.png", unusable: "is a symbolic link; links are not followed: drop the file itself")
        inbox.put("a.appearance.png")
        tracker.apply(writing("a.structure.png"), now: t0)
        tracker.apply(closed("a.appearance.png"), now: t0)
        guard case let .invalid(_, reason)? = tracker.verdicts(now: t0 + 1).first else { Issue.record("not failed"); return }
        #expect(reason == "a.structure.png is a symbolic link; links are not followed: drop the file itself")
    }

    /// `ln` makes a whole file with IN_CREATE and no close: a second link means it is complete.
    @Test func aHardLinkIsComplete() {
        var tracker = tracker()
        inbox.put("a.structure.png", links: 2); tracker.apply(writing("a.structure.png"), now: t0)
        inbox.put("a.appearance.png"); tracker.apply(closed("a.appearance.png"), now: t0)
        #expect(tracker.verdicts(now: t0 + 1).count == 1)
    }

    @Test func junkIsIgnoredAndRemovalsForgotten() {
        var tracker = tracker(unpaired: 1)
        inbox.put(".DS_Store"); tracker.apply(closed(".DS_Store"), now: t0)
        inbox.put("a.structure.png.part"); tracker.apply(closed("a.structure.png.part"), now: t0)
        #expect(tracker.entries.isEmpty)
        inbox.put("notes.txt"); tracker.apply(closed("notes.txt"), now: t0)
        tracker.apply(FolderEvent(inbox: FakeInbox.root, path: "notes.txt", kind: .removed), now: t0 + 0.5)
        #expect(tracker.verdicts(now: t0 + 10).isEmpty)
    }
}
