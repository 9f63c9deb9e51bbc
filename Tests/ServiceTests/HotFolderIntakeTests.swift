import Core
import Foundation
import Logging
import Testing
@testable import Service
import Wire

/// A hot folder on a scratch directory driven in-process: the files are real, the clock and the
/// jobs' ends are the test's (no daemon, no engine run).
@Suite struct HotFolderIntakeTests {
    static let engine: Result<JobAdmission.Engine, Error> = Result {
        let model = try StableDiffusionModel.load(from: Fixtures.model)
        return JobAdmission.Engine(model: model, schedule: try NoiseSchedule(config: try NoiseSchedule.Config(near: Fixtures.model)))
    }

    static func names(_ directory: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []) }

    /// A ready folder `pets` in `scratch` with a queue limit of 30, taking files settled 0.5 s.
    static func folder(in scratch: Scratch, store: any JobStore, _ configure: (inout HotFolderSettings) -> Void = { _ in }) throws -> HotFolder {
        let path = scratch.path + "/pets"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var settings = HotFolderSettings(name: "pets", path: path)
        settings.settle = 0.5
        configure(&settings)
        let folder = HotFolder(settings: settings, store: store, engine: try engine.get(),
                               logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, queueLimit: { 30 }, wake: {})
        #expect(folder.prepare())
        folder.isReady = true
        return folder
    }

    /// 200 files at once (100 distinct pairs) with a queue limit of 30: 30 are claimed, the rest
    /// wait in in/ while the queue is full, and as jobs end every drop is claimed and delivered;
    /// none is lost or failed.
    @Test func twoHundredFilesWithAFullQueue() throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(clock: clock.read)
        let folder = try Self.folder(in: scratch, store: store) { $0.options = Fixtures.quick }
        let settings = folder.settings

        let base = try PNGLibrary.decode(Fixtures.structure)
        for i in 0..<100 {
            var image = base
            (image.pixels[0], image.pixels[1]) = (UInt8(i), UInt8(i / 7))  // distinct contents: distinct jobs
            try PNGLibrary.encode(image).write(to: URL(fileURLWithPath: settings.inbox + "/p\(i).structure.png"))
            try Fixtures.appearance.write(to: URL(fileURLWithPath: settings.inbox + "/p\(i).appearance.png"))
        }
        folder.scan(now: clock.now, lostEvents: true)
        clock.advance(1)
        folder.scan(now: clock.now)
        folder.process(now: clock.now)
        #expect(try store.queuedCount() == 30)
        #expect(Self.names(settings.processing).count == 60 && Self.names(settings.inbox).count == 140)

        // Each round the queue's jobs "run": a result appears for each, then the folder delivers
        // and claims what waits.
        let results = scratch.path + "/results"
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        for _ in 0..<20 where Self.names(settings.outbox).count < 200 {
            while let job = try store.claimNext() {
                try Fixtures.appearance.write(to: URL(fileURLWithPath: results + "/\(job.id).png"))
                try store.finish(job.id, state: .succeeded, resultPath: results + "/\(job.id).png")
            }
            folder.deliverFinished()
            clock.advance(3)  // past the 2 s a full queue defers the folder
            folder.scan(now: clock.now)
            folder.process(now: clock.now)
        }
        #expect(Self.names(settings.outbox).filter { $0.hasSuffix(".png") }.count == 100)
        #expect(Self.names(settings.outbox).filter { $0.hasSuffix(".json") }.count == 100)
        #expect(Self.names(settings.done).count == 200)
        #expect(Self.names(settings.failed).isEmpty && Self.names(settings.inbox).isEmpty && Self.names(settings.processing).isEmpty)
        #expect(try store.list(states: nil, limit: 1000).jobs.count == 100)
    }

    /// A drop that is not a pair fails with its error file; a broken image fails as invalid_image
    /// and nothing is queued for either.
    @Test func badDropsFailWithTheirReasons() throws {
        let scratch = try Scratch(), clock = ManualClock()
        let store = try scratch.store(clock: clock.read)
        let folder = try Self.folder(in: scratch, store: store) { $0.unpairedTimeout = 10 }
        let settings = folder.settings
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: settings.inbox + "/bad.structure.png"))
        try Fixtures.appearance.write(to: URL(fileURLWithPath: settings.inbox + "/bad.appearance.png"))
        try Fixtures.appearance.write(to: URL(fileURLWithPath: settings.inbox + "/alone.structure.png"))
        folder.scan(now: clock.now, lostEvents: true)
        clock.advance(1)
        folder.scan(now: clock.now)
        folder.process(now: clock.now)
        clock.advance(10)
        folder.scan(now: clock.now)
        folder.process(now: clock.now)
        #expect(Self.names(settings.failed) == ["bad.structure.png", "bad.appearance.png", "bad.error.json",
                                                "alone.structure.png", "alone.error.json"])
        let bad = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: settings.failed + "/bad.error.json")))
        let alone = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: settings.failed + "/alone.error.json")))
        #expect(bad["reason"] == "invalid_image" && alone["reason"] == "unpaired")
        #expect(try store.queuedCount() == 0)
    }
}
