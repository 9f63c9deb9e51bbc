import Foundation
import Core

/// `xattn-bench sizes`: what a job costs as the image grows (docs/ALGORITHM.md §2, "Sizes"). For
/// 512×512, 512×768 and 768×768: one full-size SD 1.5 UNet pass (batch 1, the precision `auto`
/// picks, random weights), its ratio to the 512² pass of the same run, the token counts, the
/// self-segmentation's [N, N] maps, and the peak resident size so far; then what a preview costs:
/// the linear map and a VAE decode at 512².
enum SizeSuite {
    static let sizes = [(512, 512), (512, 768), (768, 768)]

    static func run(json: Bool) throws {
        let precision = Precision.fastest
        let unet = try UNetModel(config: UNetConfig(), weights: WeightReader(source: RandomWeights(seed: 1), component: "unet", precision: precision),
                                 configPath: "SD 1.5 defaults")
        let context = benchTensor([1, 77, 768], seed: 3)
        // A warm-up pass at the smallest size: first touches of scratch memory are not timed.
        _ = unet(benchTensor([1, 4, 64, 64], seed: 4), timesteps: [981], context: context, freeU: .reference)
        var rows: [[String: Any]] = []
        var base = 0.0
        for (width, height) in sizes {
            let latent = benchTensor([1, 4, height / 8, width / 8], seed: 4)
            let t0 = Clock.now()
            _ = unet(latent, timesteps: [981], context: context, freeU: .reference)
            let seconds = Clock.now() - t0
            if base == 0 { base = seconds }
            let tokens = (width / 8) * (height / 8)
            rows.append(["size": "\(width)x\(height)", "precision": precision.rawValue, "unet_pass_seconds": seconds,
                         "ratio_to_512x512": seconds / base, "tokens_level0": tokens, "pixels_ratio": Double(width * height) / (512 * 512),
                         "self_segmentation_mb": Double(2 * tokens * tokens * 4) / 1e6,
                         "estimated_working_mb": Double(TransferFootprint.workingBytes(pixels: width * height, latentTokens: tokens)) / 1e6,
                         "peak_rss_mb": ModelSuite.peakRSSMB()])
            if !json {
                print(String(format: "unet %4dx%-4d %@ %7.2f s  %.2f× the 512² pass  (%.2f× the pixels, %d tokens; masks' maps %.0f MB)",
                             width, height, precision.rawValue, seconds, seconds / base, Double(width * height) / (512 * 512), tokens,
                             Double(2 * tokens * tokens * 4) / 1e6))
            }
        }
        // Previews at 512²: the linear map, and the VAE decoder (always fp32).
        let vae = try AutoencoderKL(config: VAEConfig(), weights: WeightReader(source: RandomWeights(seed: 2), component: "vae", precision: .fp32),
                                    configPath: "SD 1.5 defaults")
        let latent = benchTensor([4, 64, 64], seed: 6)
        var t0 = Clock.now()
        for _ in 0..<10 { _ = LatentPreview.linear(latent) }
        let linear = (Clock.now() - t0) / 10
        t0 = Clock.now()
        _ = vae.decode(latent.reshaped([1, 4, 64, 64]))
        let decode = Clock.now() - t0
        let previews: [String: Any] = ["linear_seconds": linear, "vae_seconds": decode, "unet_pass_seconds_512": base,
                                       "linear_over_unet_pass": linear / base, "vae_over_unet_pass": decode / base]
        if json {
            printJSON(["suite": "sizes", "threads": ComputePool.shared.threadCount, "results": rows, "preview_512": previews])
        } else {
            print(String(format: "preview 512²: linear %.2f ms (%.5f of a UNet pass), VAE decode %.2f s (%.2f UNet passes)",
                         linear * 1000, linear / base, decode, decode / base))
        }
    }
}
