import CKernels

extension Attention {
    /// `run` with bf16 products (docs/PERFORMANCE.md, "Precision"); the softmax, the scale and the
    /// hook (contrast, ALGORITHM.md §8; recording, §9) see float probabilities exactly as in fp32.
    /// K and Vᵀ (as A's rows) are packed once per key/value item and head; per work item, Q's rows
    /// are packed, the scores computed, P packed as B's columns and Oᵀ = Vᵀ·Pᵀ, so a head of 40
    /// channels fills 40 of 42 rows of the register tile (Pᵀ's 32-wide panels would leave 24 of 64
    /// columns empty), and is copied into the output transposed.
    /// Rows no hook reads take a shorter way on AVX512 CPUs: the exponentials stay unnormalised and
    /// the output row is divided by their sum instead. Their scores are computed by key, Sᵀ = K·Qᵀ
    /// (K as A's rows, Q as B's columns), so that the softmax runs down columns, 32 query lines (two
    /// vectors) per pass, and writes P's packed bf16 words directly (xattn_softmax_pack_columns): no float
    /// probabilities are stored, read back and transposed. Hooked rows keep S = Q·Kᵀ (K as B's
    /// columns) and the float softmax the hooks read.
    static func runBF16(_ q: AttentionOperand, _ k: AttentionOperand, _ v: AttentionOperand, _ out: AttentionOutput,
                        _ shape: AttentionShape, _ hook: AttentionProbabilityHook?) {
        let nq = q.tokens, nk = k.tokens, d = shape.headDim, heads = shape.heads
        let pool = ComputePool.shared
        let used = Array(Set(shape.keyValueSource)).sorted()
        let hooked = shape.hooked(by: hook)
        // Rows no hook reads (on AVX512 CPUs): scores by key, Sᵀ = K·Qᵀ, whose softmax runs down
        // columns 32 query lines at a time and writes P's packed words itself.
        let byKey = (0..<shape.batch).map { !hooked[$0] && !shape.causal && BF16Gemm.vectorKernelIsSupported }
        var keys = [PackedBF16?](repeating: nil, count: shape.keyValueBatches * heads)
        var keyRows = keys, values = keys
        for item in used {
            let readers = (0..<shape.batch).filter { shape.keyValueSource[$0] == item }
            for h in 0..<heads {
                if readers.contains(where: { !byKey[$0] }) { keys[item * heads + h] = PackedBF16(lines: nk, depth: d, side: .columns) }
                if readers.contains(where: { byKey[$0] }) { keyRows[item * heads + h] = PackedBF16(lines: nk, depth: d, side: .rows) }
                values[item * heads + h] = PackedBF16(lines: d, depth: nk, side: .rows)
            }
        }
        let (packedKeys, packedKeyRows, packedValues) = (keys, keyRows, values)
        pool.parallelFor(used.count * heads) { i in
            let item = used[i / heads], h = i % heads
            let source = k.at(batch: item, head: h)
            packedKeys[item * heads + h]?.pack(source, lineStride: k.tokenStride, depthStride: 1)
            packedKeyRows[item * heads + h]?.pack(source, lineStride: k.tokenStride, depthStride: 1)
            packedValues[item * heads + h]?.pack(v.at(batch: item, head: h), lineStride: 1, depthStride: v.tokenStride)
        }
        // K is packed once, so small blocks cost no repacking: 32 rows of 4096 keys keep the score
        // block (512 KiB), its packed probabilities and Oᵀ in L2 between the two products.
        let block = min(rowBlock(keys: nk, queries: nq, batch: shape.batch, threads: pool.threadCount),
                        max(32, (512 * 1024 / 4) / max(nk, 1) / 32 * 32))
        let blocks = (nq + block - 1) / block
        pool.parallelFor(shape.batch * blocks) { item, scratch in
            let b = item / blocks
            let first = (item % blocks) * block
            let rows = min(block, nq - first)
            let scores = scratch.floats(rows * max(nk, d) + rows)
            let inverse = scores + rows * max(nk, d)
            let words = scratch.words(max(BF16Gemm.words(lines: rows, depth: d, side: .rows),
                                          BF16Gemm.words(lines: rows, depth: d, side: .columns),
                                          BF16Gemm.words(lines: rows, depth: nk, side: .columns)))
            let source = shape.keyValueSource[b]
            for h in 0..<heads {
                guard let value = packedValues[source * heads + h]?.layout else { continue }
                let query = q.at(batch: b, head: h) + first * q.tokenStride
                var probabilities = BF16Gemm.layout(lines: rows, depth: nk, side: .columns, words: words)
                if byKey[b], let key = packedKeyRows[source * heads + h]?.layout {
                    var queries = BF16Gemm.layout(lines: rows, depth: d, side: .columns, words: words)
                    xattn_bf16_pack(query, q.tokenStride, 1, &queries, 0, Int32(rows))
                    BF16Gemm.multiplySerial(key, queries, aPanels: 0..<BF16Gemm.panels(key), bPanels: 0..<BF16Gemm.panels(queries),
                                            c: scores, ldc: rows, accumulate: false)
                    xattn_softmax_pack_columns(scores, rows, Int32(nk), shape.scale, &probabilities, inverse)
                } else if let key = packedKeys[source * heads + h]?.layout {
                    var queries = BF16Gemm.layout(lines: rows, depth: d, side: .rows, words: words)
                    xattn_bf16_pack(query, q.tokenStride, 1, &queries, 0, Int32(rows))
                    BF16Gemm.multiplySerial(queries, key, aPanels: 0..<BF16Gemm.panels(queries), bPanels: 0..<BF16Gemm.panels(key),
                                            c: scores, ldc: nk, accumulate: false)
                    // Hooked or causal rows, or no AVX-512 here (else the row went by key): normalised.
                    shape.probabilities(scores, batch: b, head: h, firstRow: first, rows: rows, keys: nk, hook: hooked[b] ? hook : nil)
                    inverse.initialize(repeating: 1, count: rows)
                    xattn_bf16_pack(scores, nk, 1, &probabilities, 0, Int32(rows))
                } else {
                    continue
                }
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
        withExtendedLifetime((keys, keyRows, values)) {}
    }
}
