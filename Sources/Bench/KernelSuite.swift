import Foundation
import Core

/// `xattn-bench kernels`: the engine's kernels at Stable Diffusion 1.5 sizes, each as a ratio to
/// the sgemm peak measured in the same run.
enum KernelSuite {
    /// GFLOP/s of a large square product through the engine's pool-split sgemm: the ceiling every
    /// other kernel is compared with.
    static func peakGflops(size n: Int = 2048) -> Double {
        let a = benchTensor([n, n], seed: 1), b = benchTensor([n, n], seed: 2)
        var c = Tensor(shape: [n, n])
        let seconds = Clock.best {
            a.withUnsafePointer { ap in b.withUnsafePointer { bp in c.withUnsafeMutablePointer { cp in
                Gemm.sgemm(ap, .normal, lda: n, bp, .normal, ldb: n, cp, ldc: n, m: n, n: n, k: n)
            } } }
        }
        return 2 * Double(n * n * n) / seconds / 1e9
    }

    /// The same product with OpenBLAS's own threads, for comparison with the pool split.
    static func openBLASThreadedGflops(size n: Int = 2048, threads: Int) -> Double {
        let a = benchTensor([n, n], seed: 1), b = benchTensor([n, n], seed: 2)
        var c = Tensor(shape: [n, n])
        let seconds = Clock.best {
            a.withUnsafePointer { ap in b.withUnsafePointer { bp in c.withUnsafeMutablePointer { cp in
                Gemm.sgemmOpenBLASThreaded(ap, bp, cp, m: n, n: n, k: n, threads: threads)
            } } }
        }
        return 2 * Double(n * n * n) / seconds / 1e9
    }

    static func run(json: Bool) {
        let peak = peakGflops()
        let threaded = openBLASThreadedGflops(threads: ComputePool.shared.threadCount)
        var results: [BenchResult] = []
        func compute(_ name: String, _ shape: String, flops: Double, _ body: () -> Void) {
            let seconds = Clock.best(body)
            let gflops = flops / seconds / 1e9
            results.append(BenchResult(name: name, shape: shape, seconds: seconds, gflops: gflops, ratioToPeak: gflops / peak))
            if !json { report(results[results.count - 1]) }
        }

        for (c, size, kernel) in [(320, 64, 3), (640, 32, 3), (1280, 16, 3), (1280, 8, 3), (320, 64, 1)] {
            let x = benchTensor([1, c, size, size]), w = benchTensor([c, c, kernel, kernel], seed: 3), b = benchTensor([c], seed: 4)
            let flops = 2.0 * Double(c * c * kernel * kernel * size * size)
            compute("conv\(kernel)x\(kernel)", "\(c)->\(c) @ \(size)x\(size)", flops: flops) {
                _ = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(kernel / 2), algorithm: .direct)
            }
            if kernel == 3 {
                compute("conv3x3_winograd", "\(c)->\(c) @ \(size)x\(size)", flops: flops) {
                    _ = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1), algorithm: .winograd)
                }
            }
            if Precision.bf16IsSupported {
                let packed = PackedBF16(rowsOf: w)
                compute("conv\(kernel)x\(kernel)_bf16", "\(c)->\(c) @ \(size)x\(size)", flops: flops) {
                    _ = x.conv2d(packed: packed, kernel: kernel, bias: b, stride: 1, padding: .uniform(kernel / 2))
                }
            }
        }

        // Self-attention: 4096 tokens, 8 heads of 40 (SD 1.5's first level), batch 2.
        let q = benchTensor([2, 4096, 320], seed: 5), k = benchTensor([2, 4096, 320], seed: 6), v = benchTensor([2, 4096, 320], seed: 7)
        compute("self_attention", "B2 H8 4096x4096 d40", flops: 2 * 2 * 2.0 * 8 * 4096 * 4096 * 40) {
            _ = Attention.attention(q: q, k: k, v: v, heads: 8)
        }
        // The path of layers a probability hook reads (§8's contrast, §9's recorder): scores,
        // softmax and hook, then P·V, instead of the fused kernel.
        let passThrough = AttentionProbabilityHook(appliesTo: { _ in true }) { _ in }
        compute("self_attention_hooked", "B2 H8 4096x4096 d40", flops: 2 * 2 * 2.0 * 8 * 4096 * 4096 * 40) {
            _ = Attention.attention(q: q, k: k, v: v, heads: 8, hook: passThrough)
        }
        if Precision.bf16IsSupported {
            compute("self_attention_bf16", "B2 H8 4096x4096 d40", flops: 2 * 2 * 2.0 * 8 * 4096 * 4096 * 40) {
                _ = Attention.attention(q: q, k: k, v: v, heads: 8, precision: .bf16)
            }
            // The bf16 kernel alone on packed square operands: its ceiling.
            let n = 2048
            let a = benchTensor([n, n], seed: 12), bb = benchTensor([n, n], seed: 13)
            let pa = a.withUnsafePointer { PackedBF16(source: $0, lineStride: n, depthStride: 1, lines: n, depth: n, side: .rows) }
            let pb = bb.withUnsafePointer { PackedBF16(source: $0, lineStride: 1, depthStride: n, lines: n, depth: n, side: .columns) }
            var cc = Tensor(shape: [n, n])
            compute("gemm_bf16_\(BF16Gemm.kernel.name)", "\(n)x\(n)x\(n) packed", flops: 2 * Double(n * n * n)) {
                cc.withUnsafeMutablePointer { BF16Gemm.multiply(pa, pb, c: $0, ldc: n, accumulate: false) }
            }
        }
        // The transformer's linear layers at the first level (4096 tokens of 320): attention's
        // projections, the feed-forward's output, and its GEGLU input layer fused and not.
        if Precision.bf16IsSupported {
            for (inputs, outputs) in [(320, 320), (1280, 320)] {
                let x = benchTensor([4096, inputs], seed: 14), w = PackedBF16(transposedColumnsOf: benchTensor([outputs, inputs], seed: 15))
                let bias = benchTensor([outputs], seed: 16)
                compute("linear_bf16", "4096x\(inputs) -> \(outputs)", flops: 2.0 * 4096 * Double(inputs * outputs)) {
                    _ = x.linear(packed: w, bias: bias)
                }
            }
            let x = benchTensor([4096, 320], seed: 14), w = PackedBF16(transposedColumnsOf: benchTensor([2560, 320], seed: 17))
            let bias = benchTensor([2560], seed: 18)
            compute("linear_geglu_bf16", "4096x320 -> 2x1280 fused", flops: 2.0 * 4096 * 320 * 2560) {
                _ = x.linearGEGLU(packed: w, bias: bias)
            }
            compute("linear_geglu_bf16", "4096x320 -> 2x1280 in two", flops: 2.0 * 4096 * 320 * 2560) {
                _ = x.linear(packed: w, bias: bias).geglu()
            }
        }

        // Cross-attention: 4096 queries against the 77 text tokens.
        let kc = benchTensor([2, 77, 320], seed: 8), vc = benchTensor([2, 77, 320], seed: 9)
        compute("cross_attention", "B2 H8 4096x77 d40", flops: 2 * 2 * 2.0 * 8 * 4096 * 77 * 40) {
            _ = Attention.attention(q: q, k: kc, v: vc, heads: 8)
        }

        // GroupNorm + SiLU: memory bound; effective traffic = input read once + output written once.
        let x = benchTensor([1, 320, 64, 64]), g = benchTensor([320], seed: 10), b = benchTensor([320], seed: 11)
        let seconds = Clock.best { _ = x.groupNorm(groups: 32, weight: g, bias: b, eps: 1e-5, fusedSiLU: true) }
        let bytes = 2.0 * Double(x.count * 4)
        results.append(BenchResult(name: "groupnorm_silu", shape: "320x64x64 G32", seconds: seconds,
                                   gigabytesPerSecond: bytes / seconds / 1e9))
        if !json { report(results[results.count - 1]) }

        if json {
            printJSON(["suite": "kernels", "peak_sgemm_gflops": peak, "openblas_threaded_sgemm_gflops": threaded,
                       "threads": ComputePool.shared.threadCount, "results": results.map(\.json)])
        } else {
            print(String(format: "peak sgemm (pool split) %.1f GFLOP/s; OpenBLAS threaded %.1f GFLOP/s", peak, threaded))
        }
    }

    static func report(_ r: BenchResult) {
        if let gflops = r.gflops, let ratio = r.ratioToPeak {
            print(String(format: "%-16@ %-24@ %9.3f ms %8.1f GFLOP/s  %.2f of peak", r.name, r.shape, r.seconds * 1e3, gflops, ratio))
        } else if let bandwidth = r.gigabytesPerSecond {
            print(String(format: "%-16@ %-24@ %9.3f ms %8.1f GB/s", r.name, r.shape, r.seconds * 1e3, bandwidth))
        }
    }
}
