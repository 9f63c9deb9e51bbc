import Foundation
import Core

/// `xattn-bench unet`: the full-size SD 1.5 UNet (batch 1 and 4, 64×64 latent, 77-token
/// context), VAE encode and decode at 512×512 and the text encoder, on random weights made in
/// process. FLOPs are those of the sgemm calls actually made (2·m·n·k each); the peak is measured
/// in the same run.
enum ModelSuite {
    struct Row {
        var name: String, batch: Int, precision: Precision, seconds: Double, gflops: Double, ratio: Double, peakRSSMB: Double
        /// bf16 only: ‖y_bf16 − y_fp32‖₂ / ‖y_fp32‖₂ on the same inputs and weights.
        var deviation: Double?
        var json: [String: Any] {
            var row: [String: Any] = ["name": name, "batch": batch, "precision": precision.rawValue, "seconds": seconds,
                                      "gflops": gflops, "ratio_to_peak": ratio, "peak_rss_mb": peakRSSMB]
            if let deviation { row["relative_l2_from_fp32"] = deviation }
            return row
        }
    }

    /// The precisions this CPU runs, fp32 first (the reference for the others' deviation).
    static var precisions: [Precision] { Precision.bf16IsSupported ? [.fp32, .bf16] : [.fp32] }

    static func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.scalars, y = b.scalars
        var difference = 0.0, norm = 0.0
        for i in 0..<min(x.count, y.count) {
            difference += Double(x[i] - y[i]) * Double(x[i] - y[i])
            norm += Double(y[i]) * Double(y[i])
        }
        return (difference / max(norm, .leastNonzeroMagnitude)).squareRoot()
    }

    static func peakRSSMB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024  // KiB on Linux
    }

    /// `only`: that precision alone (no deviation is reported then: fp32 is its reference).
    static func run(json: Bool, quick: Bool, only: Precision? = nil) throws {
        let precisions = only.map { [$0] } ?? Self.precisions
        let peak = KernelSuite.peakGflops()
        var rows: [Row] = []
        var profiles: [String: [OpProfile.Entry]] = [:]
        var references: [String: Tensor] = [:]
        /// Times `body` (best of `runs` after a warm-up); a bf16 row also reports how far its output
        /// is from the fp32 row's of the same name and batch.
        func measure(_ name: String, batch: Int, precision: Precision, runs: Int, _ body: () -> Tensor) {
            let output = body()  // warm-up: first touches of scratch memory
            OpProfile.reset()
            OpProfile.isEnabled = true
            var best = Double.infinity
            for _ in 0..<runs {
                let t0 = Clock.now()
                _ = body()
                best = min(best, Clock.now() - t0)
            }
            OpProfile.isEnabled = false
            let key = "\(name) b\(batch)"
            if precision == .fp32 { references[key] = output }
            let flops = OpProfile.matrixFlops / Double(runs)
            let row = Row(name: name, batch: batch, precision: precision, seconds: best, gflops: flops / best / 1e9,
                          ratio: flops / best / 1e9 / peak, peakRSSMB: peakRSSMB(),
                          deviation: precision == .fp32 ? nil : references[key].map { relativeL2(output, $0) })
            rows.append(row)
            profiles[name + (batch > 1 ? " b\(batch)" : "") + " \(precision)"] = OpProfile.entries.map {
                OpProfile.Entry(name: $0.name, seconds: $0.seconds / Double(runs), calls: $0.calls / runs)
            }
            if !json {
                print(String(format: "%-14@ b%d %@ %8.3f s %7.1f GFLOP/s  %.2f of fp32 peak  peak RSS %.0f MB%@", name, batch,
                             precision.rawValue, best, row.gflops, row.ratio, row.peakRSSMB,
                             row.deviation.map { String(format: "  rel. L2 from fp32 %.4f", $0) } ?? ""))
            }
        }

        let context = benchTensor([4, 77, 768], seed: 3)
        for precision in precisions {
            let unet = try UNetModel(config: UNetConfig(), weights: WeightReader(source: RandomWeights(seed: 1), component: "unet", precision: precision),
                                     configPath: "SD 1.5 defaults")
            for batch in quick ? [1] : [1, 4] {
                let latents = benchTensor([batch, 4, 64, 64], seed: 4)
                let ctx = batch == 4 ? context : benchTensor([1, 77, 768], seed: 3)
                measure("unet", batch: batch, precision: precision, runs: batch == 1 && !quick ? 2 : 1) {
                    unet(latents, timesteps: [981], context: ctx, freeU: .reference)
                }
            }
        }
        for precision in quick ? [] : precisions {
            let vae = try AutoencoderKL(config: VAEConfig(), weights: WeightReader(source: RandomWeights(seed: 2), component: "vae", precision: precision),
                                        configPath: "SD 1.5 defaults")
            let image = benchTensor([1, 3, 512, 512], seed: 5)
            measure("vae_encode", batch: 1, precision: precision, runs: 1) { vae.encodeMean(image) }
            let latent = benchTensor([1, 4, 64, 64], seed: 6)
            measure("vae_decode", batch: 1, precision: precision, runs: 1) { vae.decode(latent) }
        }
        for precision in precisions {
            let text = try CLIPTextModel(config: CLIPTextConfig(), weights: WeightReader(source: RandomWeights(seed: 3), component: "text_encoder", precision: precision),
                                         configPath: "SD 1.5 defaults")
            let ids = [49406] + Array(repeating: 320, count: 20) + Array(repeating: 49407, count: 56)
            measure("text_encoder", batch: 1, precision: precision, runs: 3) { text([ids]) }
        }

        if json {
            let profileJSON = profiles.mapValues { entries in entries.map { ["op": $0.name, "seconds": $0.seconds, "calls": $0.calls] as [String: Any] } }
            printJSON(["suite": "unet", "peak_sgemm_gflops": peak, "threads": ComputePool.shared.threadCount,
                       "results": rows.map(\.json), "profile": profileJSON])
        } else {
            print(String(format: "peak sgemm %.1f GFLOP/s", peak))
            for (name, entries) in profiles.sorted(by: { $0.key < $1.key }) {
                let total = entries.reduce(0) { $0 + $1.seconds }
                print("profile \(name): " + entries.prefix(9).map { String(format: "%@ %.0f%%", $0.name, 100 * $0.seconds / max(total, 1e-9)) }.joined(separator: ", "))
            }
        }
    }
}
