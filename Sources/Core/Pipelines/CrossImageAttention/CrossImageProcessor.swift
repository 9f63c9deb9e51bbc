import Foundation

/// How the latents of one generation step are batched (ALGORITHM.md §6.1).
enum GenerationBatch: Equatable {
    /// [A, S]: no layer swaps and O is still bit-for-bit S, so O needs no pass of its own.
    case pair
    /// [O, A, S]: no layer swaps, so O's swap and plain passes are the same pass.
    case triple
    /// [O-swap, A, S, O-plain]: the swap pass and the plain pass in one batch; A and S are the
    /// same in both passes, so they are computed once.
    case quad

    var size: Int { self == .pair ? 2 : self == .triple ? 3 : 4 }
    var appearanceIndex: Int { self == .pair ? 0 : 1 }
    var structureIndex: Int { self == .pair ? 1 : 2 }
}

/// The attention processor of one generation step: cross-image attention with contrasting
/// (§8) for the O-swap item, and, in the step whose counter is `adainRange.start − 1`, the
/// recording of A's and S's attention for the self-segmentation masks (§9).
public final class CrossImageProcessor: AttentionProcessor {
    let options: TransferOptions
    let counter: Int
    let batch: GenerationBatch
    let recorder: AttentionRecorder?

    init(options: TransferOptions, counter: Int, batch: GenerationBatch, recorder: AttentionRecorder?) {
        (self.options, self.counter, self.batch, self.recorder) = (options, counter, batch, recorder)
    }

    /// The processor of a generation step with swapping: a batch of four [O-swap, A, S, O-plain]
    /// at counter value `counter` (benchmarks measure a step with it).
    public convenience init(options: TransferOptions, counter: Int) {
        self.init(options: options, counter: counter, batch: .quad, recorder: nil)
    }

    /// §8: only the decoder's self-attention at levels 0 and 1, while the level's range holds c.
    func swaps(at site: AttentionSite) -> Bool {
        guard batch == .quad, site.stage == .up, site.kind == .selfAttention else { return false }
        switch site.level {
        case 0: return options.crossAttentionRange0.contains(counter)
        case 1: return options.crossAttentionRange1.contains(counter)
        default: return false
        }
    }

    public func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, site: AttentionSite, precision: Precision) -> Tensor {
        precondition(q.shape[0] == batch.size, "generation batch of \(batch.size) expected, got \(q.shape[0])")
        let swap = swaps(at: site)
        var source = Array(0..<batch.size)
        if swap {
            // O takes S's keys and values on every fifth counter value below 40, else A's.
            source[0] = counter % 5 == 0 && counter < 40 ? batch.structureIndex : batch.appearanceIndex
        }
        let recording = recorder?.records(site) ?? false
        guard swap || recording else {
            return Attention.attention(q: q, k: k, v: v, heads: heads, keyValueSource: source, precision: precision)
        }
        let (a, s) = (batch.appearanceIndex, batch.structureIndex)
        let strength = options.contrastStrength
        let recorder = self.recorder
        let hook = AttentionProbabilityHook(appliesTo: { b in (swap && b == 0) || (recording && (b == a || b == s)) }) { block in
            if block.batch == 0 && swap {
                Self.contrast(block, strength: strength)
            } else if let recorder {
                recorder.accumulate(block, site: site, item: block.batch == a ? 0 : 1, heads: heads)
            }
        }
        return Attention.attention(q: q, k: k, v: v, heads: heads, keyValueSource: source, precision: precision, hook: hook)
    }

    /// P' = clamp((P − 1/N)·s + 1/N, 0, 1), rows not renormalised. The reference subtracts each
    /// row's mean, which for a softmax row is 1/N.
    static func contrast(_ block: AttentionProbabilities, strength: Float) {
        let mean = 1 / Float(block.keyCount)
        let offset = Float8(repeating: mean - mean * strength)
        let zero = Float8(repeating: 0), one = Float8(repeating: 1)
        let n = block.rowCount * block.keyCount
        var i = 0
        while i + 8 <= n {
            store8(vmin(vmax(load8(block.rows + i) * strength + offset, zero), one), block.rows + i)
            i += 8
        }
        while i < n {
            block.rows[i] = min(max((block.rows[i] - mean) * strength + mean, 0), 1)
            i += 1
        }
    }
}

/// Head-averaged attention of A and S at the two layers the masks read (§9): the last decoder
/// self-attention at level 0 ([N, N]) and the noun columns of the last decoder cross-attention at
/// level 1 ([N₁, nouns]). Buffers are allocated up front from the token counts, so pool threads
/// write into them without locks: all heads of a row block run on one thread in turn, and
/// different blocks write different rows.
final class AttentionRecorder {
    let selfSite: AttentionSite
    let crossSite: AttentionSite
    let nounPositions: [Int]
    let selfTokens: Int
    let crossTokens: Int
    /// Per item (0 = A, 1 = S).
    let selfAttention: [UnsafeMutablePointer<Float>]
    let crossAttention: [UnsafeMutablePointer<Float>]

    /// `latentSize`: (h, w) of level 0; level 1 is what the UNet's stride-2 convolution makes of it.
    init(unet: UNetConfig, latentSize: (h: Int, w: Int), nounPositions: [Int]) {
        // Level L is up block (levels − 1 − L); its last transformer is attentions[layersPerBlock],
        // its last block transformer_blocks[transformerLayersPerBlock − 1].
        let levels = unet.levels
        selfSite = AttentionSite(stage: .up, block: levels - 1, level: 0, kind: .selfAttention,
                                 transformer: unet.layersPerBlock, layer: unet.transformerLayersPerBlock - 1)
        crossSite = AttentionSite(stage: .up, block: levels - 2, level: 1, kind: .crossAttention,
                                  transformer: unet.layersPerBlock, layer: unet.transformerLayersPerBlock - 1)
        self.nounPositions = nounPositions
        selfTokens = latentSize.h * latentSize.w
        crossTokens = ((latentSize.h + 1) / 2) * ((latentSize.w + 1) / 2)
        let selfCount = selfTokens * selfTokens, crossCount = crossTokens * nounPositions.count
        selfAttention = (0..<2).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: selfCount)
            p.initialize(repeating: 0, count: selfCount)
            return p
        }
        crossAttention = (0..<2).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(crossCount, 1))
            p.initialize(repeating: 0, count: max(crossCount, 1))
            return p
        }
    }

    deinit {
        for p in selfAttention + crossAttention { p.deallocate() }
    }

    func records(_ site: AttentionSite) -> Bool { site == selfSite || site == crossSite }

    /// Adds P / heads for one block of rows.
    func accumulate(_ block: AttentionProbabilities, site: AttentionSite, item: Int, heads: Int) {
        let weight = 1 / Float(heads)
        if site == selfSite {
            precondition(block.keyCount == selfTokens, "self-attention of \(block.keyCount) tokens at level 0, expected \(selfTokens)")
            let out = selfAttention[item] + block.firstRow * selfTokens
            let n = block.rowCount * selfTokens
            var i = 0
            while i + 8 <= n { store8(load8(out + i) + load8(block.rows + i) * weight, out + i); i += 8 }
            while i < n { out[i] += block.rows[i] * weight; i += 1 }
        } else {
            precondition(block.firstRow + block.rowCount <= crossTokens, "cross-attention rows beyond level 1's \(crossTokens) tokens")
            let width = nounPositions.count
            for r in 0..<block.rowCount {
                let row = crossAttention[item] + (block.firstRow + r) * width
                for (j, position) in nounPositions.enumerated() {
                    row[j] += block.rows[r * block.keyCount + position] * weight
                }
            }
        }
    }
}
