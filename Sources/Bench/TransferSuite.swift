import Foundation
import Core

/// `xattn-bench transfer`: the default job is too long to run whole on 2 cores, so this measures
/// its parts at 512 px on SD 1.5-shaped random weights — one inversion step (batch 2: uncond and
/// cond), one generation step with swapping (batch 4 with the cross-image processor), VAE encode
/// and decode — and projects a default job from the pass counts (ALGORITHM.md §10).
enum TransferSuite {
    static func run(json: Bool) throws {
        let peak = KernelSuite.peakGflops()
        var rows: [[String: Any]] = []
        var projections: [String: Any] = [:]
        for precision in ModelSuite.precisions {
            projections[precision.rawValue] = try measure(precision, peak: peak, json: json, rows: &rows)
        }
        if json {
            printJSON(["suite": "transfer", "peak_sgemm_gflops": peak, "results": rows,
                       "unet_passes_batch1": ["reference": 808, "xattn": 518, "xattn_cached_inversions": 250],
                       "projections": projections])
        } else {
            print(String(format: "peak sgemm %.1f GFLOP/s", peak))
            print("UNet passes of batch 1: reference 808, xattn 518, xattn with cached inversions 250")
        }
    }

    /// The parts of a job in one precision, and the job projected from them.
    static func measure(_ precision: Precision, peak: Double, json: Bool, rows: inout [[String: Any]]) throws -> [String: Double] {
        let unet = try UNetModel(config: UNetConfig(), weights: WeightReader(source: RandomWeights(seed: 1), component: "unet", precision: precision),
                                 configPath: "SD 1.5 defaults")
        // The VAE stays fp32 in every model (StableDiffusionModel.load): measured as the job runs it.
        let vae = try AutoencoderKL(config: VAEConfig(), weights: WeightReader(source: RandomWeights(seed: 2), component: "vae", precision: .fp32),
                                    configPath: "SD 1.5 defaults")
        var seconds: [String: Double] = [:]
        /// The best of `runs` (the machine's speed moves from minute to minute; a job's steps repeat).
        func measure(_ name: String, batch: Int, runs: Int = 1, _ body: () -> Void) {
            OpProfile.reset()
            OpProfile.isEnabled = true
            body()
            OpProfile.isEnabled = false
            let flops = OpProfile.matrixFlops
            var elapsed = Double.infinity
            for _ in 0..<runs {
                let start = Clock.now()
                body()
                elapsed = min(elapsed, Clock.now() - start)
            }
            let gflops = flops / elapsed / 1e9
            seconds[name] = elapsed
            rows.append(["name": name, "batch": batch, "precision": precision.rawValue, "seconds": elapsed, "gflops": gflops,
                         "ratio_to_peak": gflops / peak])
            if !json {
                print(String(format: "%-22@ b%d %@ %8.3f s %7.1f GFLOP/s  %.2f of fp32 peak", name, batch, precision.rawValue,
                             elapsed, gflops, gflops / peak))
            }
        }
        let context2 = benchTensor([2, 77, 768], seed: 3), context4 = benchTensor([4, 77, 768], seed: 3)
        let latents2 = benchTensor([2, 4, 64, 64], seed: 4), latents4 = benchTensor([4, 4, 64, 64], seed: 5)
        // The UNet steps, which make up the projection: the first run (counting FLOPs) warms up,
        // then the best of three.
        measure("inversion_step", batch: 2, runs: 3) { _ = unet(latents2, timesteps: [801], context: context2, freeU: .reference) }
        let swap = CrossImageProcessor(options: TransferOptions(), counter: 12)
        measure("generation_step_swap", batch: 4, runs: 3) { _ = unet(latents4, timesteps: [601], context: context4, processor: swap, freeU: .reference) }
        let image = benchTensor([1, 3, 512, 512], seed: 6)
        let latent = benchTensor([1, 4, 64, 64], seed: 7)
        measure("vae_encode", batch: 1, runs: 2) { _ = vae.encodeMean(image) }
        measure("vae_decode", batch: 1, runs: 2) { _ = vae.decode(latent) }

        // Default job: 2 encodes, 2 × 67 inversion steps of batch 2, 11 generation steps of batch
        // 2 (≈ an inversion step) and 57 of batch 4, 1 decode. The reference: 2 × 100 inversion
        // steps of batch 2 (its two batch-1 calls ≈ one of batch 2) and 68 steps of two batch-3
        // passes (≈ 1.5 batch-4 steps each), 3 decodes.
        let (inv, gen, enc, dec) = (seconds["inversion_step"] ?? 0, seconds["generation_step_swap"] ?? 0, seconds["vae_encode"] ?? 0, seconds["vae_decode"] ?? 0)
        let projected = 2 * enc + 2 * 67 * inv + 11 * inv + 57 * gen + dec
        let reference = 2 * enc + 2 * 100 * inv + 68 * 1.5 * gen + 3 * dec
        let cached = 11 * inv + 57 * gen + dec
        if !json {
            print(String(format: "%@: projected default job %.0f s (%.1f min); with both inversions cached %.0f s; the reference's schedule on this engine %.0f s",
                         precision.rawValue, projected, projected / 60, cached, reference))
        }
        return ["projected_default_job_seconds": projected, "projected_reference_schedule_seconds": reference,
                "projected_cached_job_seconds": cached]
    }
}
