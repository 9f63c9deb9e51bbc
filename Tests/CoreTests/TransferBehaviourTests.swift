import Foundation
import Testing
import Core

/// Determinism, cancellation, validation and the cache, on the tiny model with a short schedule.
@Suite(.serialized) struct TransferBehaviourTests {
    func pipeline() throws -> TransferPipeline {
        TransferPipeline(model: try TinySD.requireModel(), schedule: try NoiseSchedule())
    }

    func images() throws -> (Tensor, Tensor) {
        let file = try SafetensorsFile(path: Fixtures.path("tiny-transfer/expected.safetensors"))
        return (try file.tensor("structure.image"), try file.tensor("appearance.image"))
    }

    var shortOptions: TransferOptions {
        var o = TransferParityTests.options
        o.seed = 1234
        return o
    }

    /// §11: the seeded generator makes every draw; two runs give the same bytes, another seed not.
    @Test func sameSeedSameBytes() throws {
        let (s, a) = try images()
        let p = try pipeline()
        let first = try p.run(structure: s, appearance: a, options: shortOptions)
        let second = try p.run(structure: s, appearance: a, options: shortOptions)
        #expect(first.image.scalars == second.image.scalars)
        var other = shortOptions
        other.seed = 99
        #expect(try p.run(structure: s, appearance: a, options: other).image.scalars != first.image.scalars)
    }

    /// Cancelling during generation stops within one UNet pass with `.cancelled`.
    @Test func cancellationStopsPromptly() throws {
        let (s, a) = try images()
        let cancellation = TransferCancellation()
        var afterCancel = 0
        #expect(throws: TransferError.cancelled) {
            try pipeline().run(structure: s, appearance: a, options: shortOptions, cancellation: cancellation) { progress in
                if cancellation.isCancelled { afterCancel += 1 }
                if progress.phase == .generate && progress.step == 2 { cancellation.cancel() }
            }
        }
        #expect(afterCancel == 0)
    }

    @Test func optionsAreValidated() throws {
        let (s, a) = try images()
        var o = TransferOptions()
        o.skip = 100
        #expect(throws: TransferError.invalidOption(option: "skip", reason: "must be in 0…99 (below timesteps), got 100")) {
            try pipeline().run(structure: s, appearance: a, options: o)
        }
        o = TransferOptions()
        o.adainRange = StepRange(30, 20)
        #expect(throws: TransferError.invalidOption(option: "adain-range", reason: "must be A:B with 0 ≤ A ≤ B, got 30:20")) {
            try pipeline().run(structure: s, appearance: a, options: o)
        }
        o = shortOptions
        o.objectNoun = "giraffe"
        #expect(throws: TransferError.objectNounNotInPrompt(noun: "giraffe", prompt: "A photo of a animal")) {
            try pipeline().run(structure: s, appearance: a, options: o)
        }
        o = TransferOptions()
        o.crossAttentionRange1 = StepRange(70, 90)
        #expect(throws: TransferError.self) { try pipeline().run(structure: s, appearance: a, options: o) }
        #expect(StepRange(parsing: "10:90") == StepRange(10, 90))
        #expect(StepRange(parsing: "10-90") == nil)
    }

    /// A cached inversion is used only for the same image, prompt, schedule, seed and model.
    @Test func cacheKeysTrackEverythingThatMatters() throws {
        let (s, a) = try images()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-keys-\(UUID().uuidString)").path
        let cache = try InversionCache(directory: directory)
        let p = try pipeline()
        let first = try p.run(structure: s, appearance: a, options: shortOptions, cache: cache)
        #expect(first.unetPasses > 0)
        #expect(try p.run(structure: s, appearance: a, options: shortOptions, cache: cache).unetPasses == first.unetPasses - 2 * 2 * 13)
        var reseeded = shortOptions
        reseeded.seed = 7
        #expect(try p.run(structure: s, appearance: a, options: reseeded, cache: cache).unetPasses == first.unetPasses)
        // The same appearance with another structure image: only the structure is inverted again.
        let swapped = try p.run(structure: a, appearance: a, options: shortOptions, cache: cache)
        #expect(swapped.unetPasses == first.unetPasses - 2 * 13)
    }

    /// Beyond its byte budget the cache drops the least recently used entries.
    @Test func cacheEvictsLeastRecentlyUsed() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-lru-\(UUID().uuidString)").path
        let entry = InversionResult(xSkip: Tensor(shape: [4, 8, 8], repeating: 1), zs: Tensor(shape: [3, 4, 8, 8], repeating: 2))
        let cache = try InversionCache(directory: directory, maximumBytes: 6000)  // one entry is ~4.3 KB with its header; two do not fit
        try cache.store("first", entry)
        #expect(cache.load("first", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) != nil)
        try cache.store("second", entry)
        #expect(cache.load("first", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) == nil)
        #expect(cache.load("second", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8])?.zs.scalars == entry.zs.scalars)
    }

    /// A shared tier (several machines' cache): an entry one machine stores is found by another
    /// machine with an empty directory, as a file of its own from then on; a failing tier leaves
    /// the cache working as this machine's alone.
    @Test func sharedTierCarriesEntriesBetweenMachines() throws {
        final class Tier: SharedInversionTier, @unchecked Sendable {
            let lock = NSLock()
            var entries: [String: Data] = [:]
            var failing = false
            struct Down: Error {}
            func fetch(_ key: String) throws -> Data? { lock.lock(); defer { lock.unlock() }; if failing { throw Down() }; return entries[key] }
            func put(_ key: String, _ data: Data) throws { lock.lock(); defer { lock.unlock() }; if failing { throw Down() }; entries[key] = data }
        }
        let tier = Tier()
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-tier-\(UUID().uuidString)").path
        let (one, two) = (try InversionCache(directory: base + "/one", shared: tier), try InversionCache(directory: base + "/two", shared: tier))
        let entry = InversionResult(xSkip: Tensor(shape: [4, 8, 8], repeating: 1), zs: Tensor(shape: [3, 4, 8, 8], repeating: 2))
        try one.store("k", entry)
        #expect(tier.entries["k"] == FileManager.default.contents(atPath: base + "/one/k.safetensors"))
        #expect(two.load("k", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8])?.zs.scalars == entry.zs.scalars)
        #expect(FileManager.default.fileExists(atPath: base + "/two/k.safetensors"))
        tier.failing = true
        try one.store("other", entry)
        #expect(one.load("other", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) != nil)
        #expect(two.load("missing", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) == nil)
    }

    /// An entry whose tensors do not have the shapes the job needs (another schedule under the same
    /// name, a damaged or foreign file) is deleted and missed, so the inversion is computed again;
    /// before, its tensors went into generation and indexing past them trapped.
    @Test func misShapedCacheEntryIsDiscarded() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-shape-\(UUID().uuidString)").path
        let cache = try InversionCache(directory: directory)
        try cache.store("entry", InversionResult(xSkip: Tensor(shape: [4, 8, 8], repeating: 1), zs: Tensor(shape: [2, 4, 8, 8])))
        #expect(cache.load("entry", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) == nil)
        #expect(!FileManager.default.fileExists(atPath: directory + "/entry.safetensors"))
        _ = FileManager.default.createFile(atPath: directory + "/junk.safetensors", contents: Data("not a safetensors file".utf8))
        #expect(cache.load("junk", xSkipShape: [4, 8, 8], zsShape: [3, 4, 8, 8]) == nil)
        #expect(!FileManager.default.fileExists(atPath: directory + "/junk.safetensors"))

        // Through the pipeline: a wrong entry under the real key is replaced by a computed one.
        let (s, a) = try images()
        let p = try pipeline()
        let clean = try p.run(structure: s, appearance: a, options: shortOptions)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) { try FileManager.default.removeItem(atPath: directory + "/" + name) }
        _ = try p.run(structure: s, appearance: a, options: shortOptions, cache: cache)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            try SafetensorsWriter.write([("x_skip", Tensor(shape: [4, 2, 2])), ("zs", Tensor(shape: [1, 4, 2, 2]))], to: directory + "/" + name)
        }
        let recomputed = try p.run(structure: s, appearance: a, options: shortOptions, cache: cache)
        #expect(recomputed.unetPasses == clean.unetPasses)
        #expect(recomputed.image.scalars == clean.image.scalars)
    }

    /// Options that only the model and its schedule can refuse (before: traps deep in a job).
    @Test func optionsAreValidatedAgainstTheModel() throws {
        let model = try TinySD.requireModel()
        let schedule = try NoiseSchedule()
        var o = TransferOptions()
        // T = 1000, K = 0: the grid starts at t = 999 + 1 = 1000, past ᾱ's last index 999.
        o.timesteps = 1000
        o.skip = 0
        o.adainRange = StepRange(20, 100)
        #expect { try o.validate(for: model, schedule: schedule) } throws: { error in
            guard case let .invalidOption(option, reason) = error as? TransferError else { return false }
            return option == "timesteps" && reason.contains("timestep 1000") && reason.contains("at most 999")
        }
        o.skip = 1  // the first grid index used is then 1: t = 999
        o.domain = "animal"
        try o.validate(for: model, schedule: schedule)
        o.timesteps = 999
        o.skip = 0
        try o.validate(for: model, schedule: schedule)

        // A noun longer than the prompt's 75 tokens (before: a negative range in TransferRun).
        o = shortOptions
        o.objectNoun = String(repeating: "zebra ", count: 100)
        #expect { try o.validate(for: model, schedule: schedule) } throws: { error in
            guard case let .invalidOption(option, reason) = error as? TransferError else { return false }
            return option == "object-noun" && reason.contains("longer than the 75")
        }
        o.prompt = String(repeating: "zebra ", count: 100)
        o.objectNoun = "zebra"
        try o.validate(for: model, schedule: schedule)
        o.objectNoun = "giraffe"
        #expect(throws: TransferError.self) { try o.validate(for: model, schedule: schedule) }
    }

    /// FIPS 180-4 examples; digests from Python's hashlib.sha256.
    @Test func sha256Vectors() {
        var empty = SHA256()
        #expect(SHA256.hex(empty.finalize()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var abc = SHA256()
        abc.update("abc")
        #expect(SHA256.hex(abc.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var long = SHA256()
        long.update("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
        #expect(SHA256.hex(long.finalize()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var blocks = SHA256()
        blocks.update(Array(repeating: UInt8(ascii: "a"), count: 1000))
        #expect(SHA256.hex(blocks.finalize()) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
