import CKernels

/// A block of attention probability rows handed to an `AttentionProbabilityHook`: rows
/// firstRow..<firstRow+rowCount of head `head` of batch item `batch`, each `keyCount` wide
/// (softmax already applied), stored contiguously with row stride `keyCount`.
public struct AttentionProbabilities {
    public let batch: Int
    public let head: Int
    public let firstRow: Int
    public let rowCount: Int
    public let keyCount: Int
    public let rows: UnsafeMutablePointer<Float>
}

/// Transforms (or records) the probability rows of chosen batch items after the softmax and before
/// they multiply V — the seam the cross-image "contrast" step (ALGORITHM.md §8) and the attention
/// recording for self-segmentation (§9) plug into.
///
/// Threading contract: `transform` may run on several pool threads at once, but all heads of one
/// (batch, row block) run in head order on one thread, so accumulating over heads into per-row
/// storage needs no locking.
public struct AttentionProbabilityHook {
    public var appliesTo: (Int) -> Bool
    public var transform: (AttentionProbabilities) -> Void

    public init(appliesTo: @escaping (Int) -> Bool, transform: @escaping (AttentionProbabilities) -> Void) {
        self.appliesTo = appliesTo
        self.transform = transform
    }
}

/// Where one attention operand's elements are: element (batch b, head h, token t, channel i) is at
/// `base + b·batchStride + h·headStride + t·tokenStride + i` (channels contiguous, as sgemm needs).
struct AttentionOperand {
    let base: UnsafePointer<Float>
    let batchStride, headStride, tokenStride, tokens: Int

    func at(batch: Int, head: Int) -> UnsafePointer<Float> { base + batch * batchStride + head * headStride }
}

public enum Attention {
    /// Scaled-dot-product attention in the projection layout: q [B, Nq, H·d], k and v [Bkv, Nk, H·d]
    /// → [B, Nq, H·d], per head softmax(Q·Kᵀ/√d)·V. `keyValueSource[b]` names the batch item of k/v
    /// that query item b attends to (identity by default), so one item can use another's keys and
    /// values with no copy. Heads are read in place through strides; nothing is transposed.
    /// With `causal`, query i attends to keys 0...i only (CLIP's text transformer), as an additive
    /// mask of −∞ would give: those probabilities are exactly 0.
    public static func attention(
        q: Tensor, k: Tensor, v: Tensor, heads: Int,
        keyValueSource: [Int]? = nil, causal: Bool = false, precision: Precision = .fp32,
        hook: AttentionProbabilityHook? = nil
    ) -> Tensor {
        OpProfile.measure("attention") {
            precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention needs [B, N, H·d] operands")
            precondition(k.shape == v.shape && k.dim(2) == q.dim(2), "attention: q \(q.shape), k \(k.shape), v \(v.shape)")
            let (batch, nq, width) = (q.shape[0], q.shape[1], q.shape[2])
            let nk = k.shape[1]
            precondition(width % heads == 0, "attention: width \(width) not divisible by \(heads) heads")
            var out = Tensor(uninitializedShape: q.shape)
            q.withUnsafePointer { qp in
                k.withUnsafePointer { kp in
                    v.withUnsafePointer { vp in
                        out.withUnsafeMutablePointer { op in
                            let d = width / heads
                            (precision == .bf16 ? runBF16 : run)(
                                AttentionOperand(base: qp, batchStride: nq * width, headStride: d, tokenStride: width, tokens: nq),
                                AttentionOperand(base: kp, batchStride: nk * width, headStride: d, tokenStride: width, tokens: nk),
                                AttentionOperand(base: vp, batchStride: nk * width, headStride: d, tokenStride: width, tokens: nk),
                                AttentionOutput(base: op, batchStride: nq * width, headStride: d, tokenStride: width),
                                AttentionShape(batch: batch, heads: heads, headDim: d,
                                               keyValueSource: keyValueSource ?? Array(0..<batch), keyValueBatches: k.shape[0], causal: causal),
                                hook)
                        }
                    }
                }
            }
            return out
        }
    }

    /// The same computation in PyTorch's `scaled_dot_product_attention` layout: q [B, H, Nq, d],
    /// k and v [B, H, Nk, d] → [B, H, Nq, d].
    public static func attentionHeadsFirst(q: Tensor, k: Tensor, v: Tensor, hook: AttentionProbabilityHook? = nil) -> Tensor {
        precondition(q.rank == 4 && k.shape == v.shape && k.rank == 4, "attentionHeadsFirst needs [B, H, N, d]")
        let (batch, heads, nq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let nk = k.shape[2]
        precondition(k.shape[0] == batch && k.shape[1] == heads && k.shape[3] == d, "attention: q \(q.shape), k \(k.shape)")
        var out = Tensor(uninitializedShape: q.shape)
        q.withUnsafePointer { qp in
            k.withUnsafePointer { kp in
                v.withUnsafePointer { vp in
                    out.withUnsafeMutablePointer { op in
                        run(
                            AttentionOperand(base: qp, batchStride: heads * nq * d, headStride: nq * d, tokenStride: d, tokens: nq),
                            AttentionOperand(base: kp, batchStride: heads * nk * d, headStride: nk * d, tokenStride: d, tokens: nk),
                            AttentionOperand(base: vp, batchStride: heads * nk * d, headStride: nk * d, tokenStride: d, tokens: nk),
                            AttentionOutput(base: op, batchStride: heads * nq * d, headStride: nq * d, tokenStride: d),
                            AttentionShape(batch: batch, heads: heads, headDim: d, keyValueSource: Array(0..<batch),
                                           keyValueBatches: batch, causal: false),
                            hook)
                    }
                }
            }
        }
        return out
    }

    /// Rows of queries per work item: the score block [rows, Nk] is capped at 2 MB (128 rows for
    /// 4096 keys; measured faster than L2-sized 32-row blocks, since each sgemm call re-packs all of
    /// K), and small enough that there are at least four items per thread to balance.
    static func rowBlock(keys: Int, queries: Int, batch: Int, threads: Int) -> Int {
        let fit = max(16, (2048 * 1024 / 4) / max(keys, 1) / 16 * 16)
        let wantedBlocks = max(1, (4 * threads + batch - 1) / batch)
        let balanced = max(16, roundUp((queries + wantedBlocks - 1) / wantedBlocks, 16))
        return min(fit, balanced, max(queries, 1))
    }

    /// Work item = (batch item, block of query rows); inside it every head in order. Rows no hook
    /// reads, on AVX-512 CPUs: the fused kernel (`xattn_attention_f32`: scores, online softmax and
    /// the product with V a block of keys at a time, nothing written but the output). Otherwise
    /// S = (1/√d)·Q_blk·Kᵀ (sgemm into scratch [rows, Nk]), row softmax, hook, O_blk = P·V (sgemm
    /// straight into the output at its strides). Scratch is one score block per thread, whatever
    /// the batch size or token count.
    static func run(_ q: AttentionOperand, _ k: AttentionOperand, _ v: AttentionOperand, _ out: AttentionOutput,
                    _ shape: AttentionShape, _ hook: AttentionProbabilityHook?) {
        let nq = q.tokens, nk = k.tokens, d = shape.headDim
        let block = rowBlock(keys: nk, queries: nq, batch: shape.batch, threads: ComputePool.shared.threadCount)
        let blocks = (nq + block - 1) / block
        let hooked = shape.hooked(by: hook)
        // What xattn_attention_f32 takes: it declines only without AVX-512, or with no keys or channels.
        let fusable = !shape.causal && nk > 0 && d > 0 && xattn_cpu_has_avx512() != 0
        ComputePool.shared.parallelFor(shape.batch * blocks) { item, scratch in
            let b = item / blocks
            let first = (item % blocks) * block
            let rows = min(block, nq - first)
            let source = shape.keyValueSource[b]
            if fusable && !hooked[b] {
                let work = scratch.floats(xattn_attention_f32_scratch(Int32(d)))
                for h in 0..<shape.heads {
                    let fused = xattn_attention_f32(
                        q.at(batch: b, head: h) + first * q.tokenStride, q.tokenStride, k.at(batch: source, head: h), k.tokenStride,
                        v.at(batch: source, head: h), v.tokenStride, out.at(batch: b, head: h) + first * out.tokenStride,
                        out.tokenStride, Int32(rows), Int32(nk), Int32(d), shape.scale, work)
                    precondition(fused != 0, "xattn_attention_f32 refused a shape it takes")
                    // Its two products, as the profile counts sgemm's.
                    OpProfile.addFlops(rows, nk, d)
                    OpProfile.addFlops(rows, d, nk)
                }
                return
            }
            let scores = scratch.floats(rows * nk)
            for h in 0..<shape.heads {
                let qBlock = q.at(batch: b, head: h) + first * q.tokenStride
                // [rows, d] × [Nk, d]ᵀ → [rows, Nk]; the 1/√d scale is applied inside the softmax.
                Gemm.sgemmSerial(qBlock, .normal, lda: q.tokenStride, k.at(batch: source, head: h), .transposed,
                                 ldb: k.tokenStride, scores, ldc: nk, m: rows, n: nk, k: d)
                shape.probabilities(scores, batch: b, head: h, firstRow: first, rows: rows, keys: nk, hook: hooked[b] ? hook : nil)
                // [rows, Nk] × [Nk, d] → [rows, d] at the output's strides.
                Gemm.sgemmSerial(scores, .normal, lda: nk, v.at(batch: source, head: h), .normal, ldb: v.tokenStride,
                                 out.at(batch: b, head: h) + first * out.tokenStride, ldc: out.tokenStride, m: rows, n: d, k: nk)
            }
        }
    }
}

/// Where the attention output goes: element (b, h, t, i) at base + b·batchStride + h·headStride + t·tokenStride + i.
struct AttentionOutput {
    let base: UnsafeMutablePointer<Float>
    let batchStride, headStride, tokenStride: Int

    func at(batch: Int, head: Int) -> UnsafeMutablePointer<Float> { base + batch * batchStride + head * headStride }
}

/// The sizes and options of one attention call, and the steps between the two products that both
/// precisions share.
struct AttentionShape {
    let batch, heads, headDim: Int
    let keyValueSource: [Int]
    let keyValueBatches: Int
    let causal: Bool

    init(batch: Int, heads: Int, headDim: Int, keyValueSource: [Int], keyValueBatches: Int, causal: Bool) {
        precondition(keyValueSource.count == batch && keyValueSource.allSatisfy { (0..<keyValueBatches).contains($0) },
                     "attention: keyValueSource \(keyValueSource) does not fit \(keyValueBatches) key/value items")
        (self.batch, self.heads, self.headDim, self.keyValueSource, self.keyValueBatches, self.causal) =
            (batch, heads, headDim, keyValueSource, keyValueBatches, causal)
    }

    var scale: Float { 1 / Float(headDim).squareRoot() }

    func hooked(by hook: AttentionProbabilityHook?) -> [Bool] {
        (0..<batch).map { b in hook?.appliesTo(b) ?? false }
    }

    /// Scores [rows, keys] → probabilities in place: scaled row softmax (causal rows see keys
    /// 0...row only, the rest exactly 0), then the hook, if it applies to this item.
    func probabilities(_ scores: UnsafeMutablePointer<Float>, batch b: Int, head h: Int, firstRow first: Int, rows: Int,
                       keys nk: Int, hook: AttentionProbabilityHook?) {
        if causal {
            for r in 0..<rows {
                let visible = min(nk, first + r + 1)
                RowSoftmax.apply(scores + r * nk, rows: 1, width: visible, stride: nk, scale: scale)
                (scores + r * nk + visible).initialize(repeating: 0, count: nk - visible)
            }
        } else {
            RowSoftmax.apply(scores, rows: rows, width: nk, stride: nk, scale: scale)
        }
        hook?.transform(AttentionProbabilities(batch: b, head: h, firstRow: first, rowCount: rows, keyCount: nk, rows: scores))
    }
}
