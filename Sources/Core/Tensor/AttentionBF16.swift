import CKernels

extension Attention {
    /// `run` with bf16 products (docs/PERFORMANCE.md, "Precision"); the softmax, the scale and the
    /// hook (contrast, ALGORITHM.md §8; recording, §9) see float probabilities exactly as in fp32.
    /// Rows no hook reads take a shorter way on AVX512 CPUs: the exponentials stay unnormalised
    /// (xattn_softmax_unnormalised, 16 lanes) and the output row is divided by their sum instead,
    /// which saves a pass over the scores.
    /// K (as B's columns) and Vᵀ (as A's rows) are packed once per key/value item and head; per
    /// work item, Q's rows are packed, S = Q·Kᵀ, then P is packed as B's columns and Oᵀ = Vᵀ·Pᵀ, so
    /// a head of 40 channels fills 40 of 42 rows of the register tile (Pᵀ's 32-wide panels would
    /// leave 24 of 64 columns empty), and is copied into the output transposed.
    static func runBF16(_ q: AttentionOperand, _ k: AttentionOperand, _ v: AttentionOperand, _ out: AttentionOutput,
                        _ shape: AttentionShape, _ hook: AttentionProbabilityHook?) {
        let nq = q.tokens, nk = k.tokens, d = shape.headDim, heads = shape.heads
        let pool = ComputePool.shared
        let used = Array(Set(shape.keyValueSource)).sorted()
        var keys = [PackedBF16?](repeating: nil, count: shape.keyValueBatches * heads)
        var values = keys
        for item in used {
            for h in 0..<heads {
                keys[item * heads + h] = PackedBF16(lines: nk, depth: d, side: .columns)
                values[item * heads + h] = PackedBF16(lines: d, depth: nk, side: .rows)
            }
        }
        let (packedKeys, packedValues) = (keys, values)
        pool.parallelFor(used.count * heads) { i in
            let item = used[i / heads], h = i % heads
            packedKeys[item * heads + h]?.pack(k.at(batch: item, head: h), lineStride: k.tokenStride, depthStride: 1)
            packedValues[item * heads + h]?.pack(v.at(batch: item, head: h), lineStride: 1, depthStride: v.tokenStride)
        }
        // K is packed once, so small blocks cost no repacking: 32 rows of 4096 keys keep the score
        // block (512 KiB), its packed probabilities and Oᵀ in L2 between the two products.
        let block = min(rowBlock(keys: nk, queries: nq, batch: shape.batch, threads: pool.threadCount),
                        max(32, (512 * 1024 / 4) / max(nk, 1) / 32 * 32))
        let blocks = (nq + block - 1) / block
        let hooked = shape.hooked(by: hook)
        pool.parallelFor(shape.batch * blocks) { item, scratch in
            let b = item / blocks
            let first = (item % blocks) * block
            let rows = min(block, nq - first)
            let scores = scratch.floats(rows * max(nk, d) + rows)
            let inverse = scores + rows * max(nk, d)
            let words = scratch.words(max(BF16Gemm.words(lines: rows, depth: d, side: .rows),
                                          BF16Gemm.words(lines: rows, depth: nk, side: .columns)))
            let source = shape.keyValueSource[b]
            for h in 0..<heads {
                guard let key = packedKeys[source * heads + h]?.layout, let value = packedValues[source * heads + h]?.layout else { continue }
                var queries = BF16Gemm.layout(lines: rows, depth: d, side: .rows, words: words)
                xattn_bf16_pack(q.at(batch: b, head: h) + first * q.tokenStride, q.tokenStride, 1, &queries, 0, Int32(rows))
                BF16Gemm.multiplySerial(queries, key, aPanels: 0..<BF16Gemm.panels(queries), bPanels: 0..<BF16Gemm.panels(key),
                                        c: scores, ldc: nk, accumulate: false)
                if hooked[b] || shape.causal || !RowSoftmax.unnormalised(scores, rows: rows, width: nk, stride: nk, scale: shape.scale, inverse: inverse) {
                    shape.probabilities(scores, batch: b, head: h, firstRow: first, rows: rows, keys: nk, hook: hooked[b] ? hook : nil)
                    inverse.initialize(repeating: 1, count: rows)
                }
                var probabilities = BF16Gemm.layout(lines: rows, depth: nk, side: .columns, words: words)
                xattn_bf16_pack(scores, nk, 1, &probabilities, 0, Int32(rows))
                // Oᵀ [d, rows] into the score buffer (free again), then to the output's strides.
                BF16Gemm.multiplySerial(value, probabilities, aPanels: 0..<BF16Gemm.panels(value),
                                        bPanels: 0..<BF16Gemm.panels(probabilities), c: scores, ldc: rows, accumulate: false)
                let o = out.at(batch: b, head: h) + first * out.tokenStride
                for r in 0..<rows {
                    let row = o + r * out.tokenStride, scale = inverse[r]
                    for i in 0..<d { row[i] = scores[i * rows + r] * scale }
                }
            }
        }
        withExtendedLifetime((keys, values)) {}
    }
}

extension RowSoftmax {
    /// Each row ← exp(scale·(x − max)), unnormalised, and inverse[row] ← 1 / Σ (16 lanes,
    /// xattn_softmax_unnormalised); false, doing nothing, on a CPU without AVX512-BF16.
    static func unnormalised(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int, scale: Float,
                             inverse: UnsafeMutablePointer<Float>) -> Bool {
        xattn_softmax_unnormalised(p, stride, Int32(rows), Int32(width), scale, inverse) != 0
    }
}
