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

    /// The roles of the batch's items in order.
    var roles: [GenerationRole] {
        switch self {
        case .pair: return [.appearance, .structure]
        case .triple: return [.output, .appearance, .structure]
        case .quad: return [.output, .appearance, .structure, .outputPlain]
        }
    }
}

/// What a batch item of a generation pass is.
enum GenerationRole: Equatable { case output, appearance, structure, outputPlain }

/// Keys and values of A's own pass at the layers O swaps, for the pass of O and S that follows
/// when A's latent has another size (docs/ALGORITHM.md §8, "Two sizes"). Written and read by one
/// UNet call at a time (attention layers run in turn; only their insides are parallel).
final class AppearanceKeysValues {
    var bySite: [AttentionSite: (k: Tensor, v: Tensor)] = [:]
}

/// The attention processor of one generation pass: cross-image attention with contrasting
/// (§8) for the O-swap item, and, in the step whose counter is `adainRange.start − 1`, the
/// recording of A's and S's attention for the self-segmentation masks (§9).
///
/// A pass holds `roles` in order: the whole step ([A, S], [O, A, S], [O-swap, A, S, O-plain]) when
/// the two images have one size; otherwise A alone ([A], keeping its keys and values at the
/// swapped layers in `appearance`), then the others ([S], [O, S], [O-swap, S, O-plain]), where O
/// attends to what A's pass kept.
public final class CrossImageProcessor: AttentionProcessor {
    let options: TransferOptions
    let counter: Int
    let roles: [GenerationRole]
    /// The step swaps (its batch is `.quad`).
    let swapping: Bool
    let recorder: AttentionRecorder?
    let appearance: AppearanceKeysValues?

    init(options: TransferOptions, counter: Int, roles: [GenerationRole], swapping: Bool, recorder: AttentionRecorder?,
         appearance: AppearanceKeysValues? = nil) {
        (self.options, self.counter, self.roles, self.swapping) = (options, counter, roles, swapping)
        (self.recorder, self.appearance) = (recorder, appearance)
    }

    /// The processor of a generation step with swapping: a batch of four [O-swap, A, S, O-plain]
    /// at counter value `counter` (benchmarks measure a step with it).
    public convenience init(options: TransferOptions, counter: Int) {
        self.init(options: options, counter: counter, roles: GenerationBatch.quad.roles, swapping: true, recorder: nil)
    }

    /// §8: only the decoder's self-attention at levels 0 and 1, while the level's range holds c.
    func swaps(at site: AttentionSite) -> Bool {
        guard swapping, site.stage == .up, site.kind == .selfAttention else { return false }
        switch site.level {
        case 0: return options.crossAttentionRange0.contains(counter)
        case 1: return options.crossAttentionRange1.contains(counter)
        default: return false
        }
    }

    public func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, site: AttentionSite, precision: Precision) -> Tensor {
        precondition(q.shape[0] == roles.count, "generation batch of \(roles.count) expected, got \(q.shape[0])")
        let swap = swaps(at: site)
        let (o, a, s) = (roles.firstIndex(of: .output), roles.firstIndex(of: .appearance), roles.firstIndex(of: .structure))
        if swap, roles == [.appearance], let store = appearance { store.bySite[site] = (k, v) }
        var source = Array(0..<roles.count)
        var apart: (k: Tensor, v: Tensor)?
        if swap, let o {
            // O takes S's keys and values on every fifth counter value below 40, else A's.
            if counter % 5 == 0 && counter < 40, let s {
                source[o] = s
            } else if let a {
                source[o] = a
            } else if let kept = appearance?.bySite[site] {
                apart = kept
            } else {
                preconditionFailure("A's keys and values at \(site) were not kept by its pass")
            }
        }
        let recording = recorder?.records(site) ?? false
        let swapped = swap && o != nil
        guard swapped || recording else {
            return Attention.attention(q: q, k: k, v: v, heads: heads, keyValueSource: source, precision: precision)
        }
        var recorded: [Int: Int] = [:]
        if recording {
            if let a { recorded[a] = 0 }
            if let s { recorded[s] = 1 }
        }
        let hook = hook(contrasting: swapped ? o : nil, recording: recorded, site: site, heads: heads)
        guard let apart, let o else {
            return Attention.attention(q: q, k: k, v: v, heads: heads, keyValueSource: source, precision: precision, hook: hook)
        }
        // O attends to A's keys and values, which have A's token count: a call of its own.
        precondition(o == 0, "O is the first item of a generation batch")
        let outO = Attention.attention(q: q.items(0..<1), k: apart.k, v: apart.v, heads: heads, precision: precision, hook: hook)
        guard roles.count > 1 else { return outO }
        let rest = 1..<roles.count
        let restHook = self.hook(contrasting: nil, recording: recorded.reduce(into: [:]) { $0[$1.key - 1] = $1.value }, site: site, heads: heads)
        let outRest = Attention.attention(q: q.items(rest), k: k.items(rest), v: v.items(rest), heads: heads,
                                          keyValueSource: source.dropFirst().map { $0 - 1 }, precision: precision,
                                          hook: recorded.isEmpty ? nil : restHook)
        return Tensor.concatenatingItems([outO, outRest])
    }

    /// Contrast for batch item `contrasting`; accumulation into the recorder for the items of
    /// `recording` (batch index → recorder item: 0 = A, 1 = S).
    private func hook(contrasting: Int?, recording: [Int: Int], site: AttentionSite, heads: Int) -> AttentionProbabilityHook {
        let strength = options.contrastStrength
        let recorder = self.recorder
        return AttentionProbabilityHook(appliesTo: { b in b == contrasting || recording[b] != nil }) { block in
            if block.batch == contrasting {
                Self.contrast(block, strength: strength)
            } else if let recorder, let item = recording[block.batch] {
                recorder.accumulate(block, site: site, item: item, heads: heads)
            }
        }
    }

    /// P' = clamp((P − 1/N)·s + 1/N, 0, 1), rows not renormalised. The reference subtracts each
    /// row's mean, which for a softmax row is 1/N (N: the keys O attends to, A's or S's).
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
/// level 1 ([N₁, nouns]), each at its own image's size. Buffers are allocated up front from the
/// token counts, so pool threads write into them without locks: all heads of a row block run on
/// one thread in turn, and different blocks write different rows.
final class AttentionRecorder {
    let selfSite: AttentionSite
    let crossSite: AttentionSite
    let nounPositions: [Int]
    /// Per item (0 = A, 1 = S): level 0's (h, w), and the token counts at levels 0 and 1.
    let latentSizes: [(h: Int, w: Int)]
    let selfTokens: [Int]
    let crossTokens: [Int]
    let selfAttention: [UnsafeMutablePointer<Float>]
    let crossAttention: [UnsafeMutablePointer<Float>]

    /// `appearance`, `structure`: the latents' (h, w) at level 0; level 1 is what the UNet's
    /// stride-2 convolution makes of it.
    init(unet: UNetConfig, appearance: (h: Int, w: Int), structure: (h: Int, w: Int), nounPositions: [Int]) {
        // Level L is up block (levels − 1 − L); its last transformer is attentions[layersPerBlock],
        // its last block transformer_blocks[transformerLayersPerBlock − 1].
        let levels = unet.levels
        selfSite = AttentionSite(stage: .up, block: levels - 1, level: 0, kind: .selfAttention,
                                 transformer: unet.layersPerBlock, layer: unet.transformerLayersPerBlock - 1)
        crossSite = AttentionSite(stage: .up, block: levels - 2, level: 1, kind: .crossAttention,
                                  transformer: unet.layersPerBlock, layer: unet.transformerLayersPerBlock - 1)
        self.nounPositions = nounPositions
        latentSizes = [appearance, structure]
        selfTokens = latentSizes.map { $0.h * $0.w }
        crossTokens = latentSizes.map { (($0.h + 1) / 2) * (($0.w + 1) / 2) }
        func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            return p
        }
        selfAttention = selfTokens.map { zeroed($0 * $0) }
        crossAttention = crossTokens.map { zeroed($0 * nounPositions.count) }
    }

    deinit {
        for p in selfAttention + crossAttention { p.deallocate() }
    }

    func records(_ site: AttentionSite) -> Bool { site == selfSite || site == crossSite }

    /// Adds P / heads for one block of rows of item 0 (A) or 1 (S).
    func accumulate(_ block: AttentionProbabilities, site: AttentionSite, item: Int, heads: Int) {
        let weight = 1 / Float(heads)
        if site == selfSite {
            let tokens = selfTokens[item]
            precondition(block.keyCount == tokens, "self-attention of \(block.keyCount) tokens at level 0, expected \(tokens)")
            let out = selfAttention[item] + block.firstRow * tokens
            let n = block.rowCount * tokens
            var i = 0
            while i + 8 <= n { store8(load8(out + i) + load8(block.rows + i) * weight, out + i); i += 8 }
            while i < n { out[i] += block.rows[i] * weight; i += 1 }
        } else {
            precondition(block.firstRow + block.rowCount <= crossTokens[item], "cross-attention rows beyond level 1's \(crossTokens[item]) tokens")
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
