import Foundation
import Testing
import Core

/// Counts UNet passes of batch 1 through the attention-processor seam: the mid block's
/// cross-attention runs exactly once per pass, for every item of the batch.
final class CountingProcessor: AttentionProcessor, @unchecked Sendable {
    let inner: AttentionProcessor
    let counter: PassCounter
    init(_ inner: AttentionProcessor, counter: PassCounter) { (self.inner, self.counter) = (inner, counter) }

    func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, site: AttentionSite, precision: Precision) -> Tensor {
        if site.stage == .mid && site.kind == .crossAttention { counter.add(q.shape[0]) }
        return inner.attend(q: q, k: k, v: v, heads: heads, site: site, precision: precision)
    }
}

final class PassCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ n: Int) { lock.lock(); total += n; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return total }
}

@Suite(.serialized) struct PassCountTests {
    /// At the defaults (T = 100, K = 32): inversion 2 images × 2 (uncond, cond) × 67 steps
    /// (j = K … T−2) = 268, generation 11 steps of [A, S] + 57 of [O-swap, A, S, O-plain] = 250;
    /// 518 in all. ALGORITHM.md §10 counts 522: it also runs j = T−1, whose Z the reference sets
    /// to zero afterwards (zs[-1] = 0), so those 4 passes are elided too, exactly.
    /// With both inversions cached, only generation's 250 remain.
    @Test func defaultJobPassCounts() throws {
        let model = try TinySD.requireModel()
        let pipeline = TransferPipeline(model: model, schedule: try NoiseSchedule())
        let counter = PassCounter()
        pipeline.processorObserver = { CountingProcessor($0, counter: counter) }
        let expected = try #require(try? SafetensorsFile(path: Fixtures.path("tiny-transfer/expected.safetensors")))
        let structure = try expected.tensor("structure.image"), appearance = try expected.tensor("appearance.image")
        var options = TransferOptions()
        options.domain = "animal"
        let cacheDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-cache-\(UUID().uuidString)").path
        let cache = try InversionCache(directory: cacheDirectory)

        let first = try pipeline.run(structure: structure, appearance: appearance, options: options, cache: cache)
        #expect(counter.count == 518)
        #expect(first.unetPasses == 518)

        let second = try pipeline.run(structure: structure, appearance: appearance, options: options, cache: cache)
        #expect(counter.count - 518 == 250)
        #expect(second.unetPasses == 250)
        // The cache returns exactly what was computed, so the job repeats bit for bit.
        #expect(second.output.scalars == first.output.scalars)
        #expect(second.image.scalars == first.image.scalars)
    }
}
