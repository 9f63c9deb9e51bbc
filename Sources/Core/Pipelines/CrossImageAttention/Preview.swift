import Foundation

/// The output branch at one generation step, for previews (docs/ALGORITHM.md §10): its latent
/// before the step and the ε the step used, from which the predicted clean latent follows.
public struct PreviewPoint {
    /// Generation steps done (1…total).
    public let step: Int
    public let total: Int
    let latent: Tensor
    let noise: Tensor
    let alpha: Float

    /// x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ, [4, h, w] in the UNet's (scaled) latent space.
    public var predictedLatent: Tensor {
        let (sqrtBeta, sqrtAlpha) = ((1 - alpha).squareRoot(), alpha.squareRoot())
        var out = Tensor(uninitializedShape: latent.shape)
        latent.withUnsafePointer { x in
            noise.withUnsafePointer { e in
                out.withUnsafeMutablePointer { o in for i in 0..<latent.count { o[i] = (x[i] - sqrtBeta * e[i]) / sqrtAlpha } }
            }
        }
        return out
    }
}

/// How a preview is made from a predicted clean latent.
public enum PreviewDecoder: String, CaseIterable, Codable, Sendable {
    /// A fixed linear map of the 4 latent channels to RGB, at latent resolution (h×w): no network.
    case linear
    /// The VAE decoder at full resolution: exact, the cost of one decode per preview.
    case vae
}

/// Preview images of a latent.
public enum LatentPreview {
    /// RGB = Σ_c latent[c]·F[c] for SD 1.5's (scaled) latent space: a least-squares fit of its VAE
    /// decoder's output colours on its latents, published by the community (ComfyUI's SD 1.5 latent
    /// format); the result is read as [−1, 1] like a decoded image. Other latent spaces (another
    /// VAE, random weights) give colours with no meaning, the layout still shows.
    static let sd15Factors: [[Float]] = [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]

    /// [4, h, w] → an h×w RGB image.
    public static func linear(_ latent: Tensor) -> RGBImage {
        let (channels, h, w) = (latent.shape[0], latent.shape[1], latent.shape[2])
        var rgb = Tensor(shape: [3, h, w])
        latent.withUnsafePointer { x in
            rgb.withUnsafeMutablePointer { out in
                for c in 0..<min(channels, sd15Factors.count) {
                    for k in 0..<3 {
                        let f = sd15Factors[c][k]
                        for i in 0..<(h * w) { out[k * h * w + i] += f * x[c * h * w + i] }
                    }
                }
            }
        }
        return ImagePreprocessing.image(from: rgb)
    }

    /// The predicted latent as `decoder` shows it.
    public static func image(_ point: PreviewPoint, decoder: PreviewDecoder, model: StableDiffusionModel) -> RGBImage {
        let latent = point.predictedLatent
        switch decoder {
        case .linear:
            return linear(latent)
        case .vae:
            let decoded = model.vae.decode(latent.scaled(by: 1 / model.vae.config.scalingFactor).reshaped([1] + latent.shape))
            return ImagePreprocessing.image(from: decoded.reshaped(Array(decoded.shape.dropFirst())))
        }
    }

    /// Every `every` generation steps and at the last: ⌈steps / 10⌉ by default (about ten per job).
    public static func defaultInterval(generationSteps n: Int) -> Int { max(1, (n + 9) / 10) }

    public static func isDue(step: Int, total: Int, every: Int) -> Bool { step == total || step % max(every, 1) == 0 }
}
