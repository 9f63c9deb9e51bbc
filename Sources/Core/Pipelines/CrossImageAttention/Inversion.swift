/// What generation needs from an image's edit-friendly DDPM inversion (ALGORITHM.md §5): X[K]
/// and the noise maps Z[K…T−1].
public struct InversionResult: Sendable {
    /// X[K]: [4, h, w]
    public var xSkip: Tensor
    /// Z[K…T−1]: [T − K, 4, h, w]; the last is zero.
    public var zs: Tensor

    public init(xSkip: Tensor, zs: Tensor) { (self.xSkip, self.zs) = (xSkip, zs) }
}

/// Edit-friendly DDPM inversion with η = 1, computing only what generation uses.
struct EditFriendlyInversion {
    let unet: UNetModel
    let schedule: NoiseSchedule
    let timesteps: Int
    let skip: Int
    let guidance: Float
    /// Plain attention, possibly wrapped by the pipeline's observer.
    var processor: AttentionProcessor = PlainAttention()

    /// UNet passes of batch 1 it makes: two per j in K…T−2 (see `invert`).
    var passes: Int { 2 * max(timesteps - 1 - skip, 0) }

    /// - x0: the clean latent [1, 4, h, w] (VAE mean × scaling factor);
    /// - noise(j): the N(0, I) draw for X[j], [4, h, w], asked for j = T−1 down to K (§5.1 order);
    /// - uncond, cond: text embeddings [1, 77, D].
    func invert(x0: Tensor, noise: (Int) throws -> Tensor, uncond: Tensor, cond: Tensor,
                onPass: () throws -> Void) throws -> InversionResult {
        let shape = Array(x0.shape.dropFirst())  // [4, h, w]
        let grid = schedule.grid(steps: timesteps)
        // §5.1: X[T] = x0; X[j] = √ᾱ·x0 + √(1 − ᾱ)·ε_j, each independent. j < K is never used.
        var x: [Int: Tensor] = [timesteps: x0.reshaped(shape)]
        for j in stride(from: timesteps - 1, through: skip, by: -1) {
            let a = schedule.alphasCumprod[grid[j]]
            let eps = try noise(j)
            guard eps.shape == shape else { throw TransferError.invalidNoise(detail: "draw \(j) has shape \(eps.shape), expected \(shape)") }
            x[j] = Self.combine(x0.reshaped(shape), a.squareRoot(), eps, (1 - a).squareRoot())
        }
        // §5.2: Z[j] from X[j] and X[j+1] only, so j < K is skipped exactly. §5.3 sets Z[T−1] to 0
        // whatever it computes, so its UNet passes are skipped too.
        var zs = Tensor(shape: [timesteps - skip] + shape)
        let context = Tensor.stack([uncond.reshaped(Array(uncond.shape.dropFirst())), cond.reshaped(Array(cond.shape.dropFirst()))])
        for j in stride(from: timesteps - 2, through: skip, by: -1) {
            guard let xj = x[j], let xNext = x[j + 1] else { continue }
            let t = grid[j]
            let batch = Tensor.stack([xj, xj])  // [uncond, cond] in one batch of two
            let out = unet(batch, timesteps: [Float(t)], context: context, processor: processor, freeU: .reference)
            try onPass()
            let e = Self.guided(out, scale: guidance)  // e_u + g·(e_c − e_u)
            let (a, aPrev) = schedule.alphas(t, steps: timesteps)
            let variance = schedule.variance(t, steps: timesteps)
            // x0̂ = (X[j] − √(1−ᾱ)·e)/√ᾱ; μ = √ᾱ_prev·x0̂ + √(1 − ᾱ_prev − var)·e; Z = (X[j+1] − μ)/√var
            let mu = DDPMStep.mean(xj, e, alpha: a, alphaPrevious: aPrev, variance: variance)
            let sigma = variance.squareRoot()
            zs.withUnsafeMutablePointer { p in
                let row = p + (j - skip) * mu.count
                xNext.withUnsafePointer { xp in
                    mu.withUnsafePointer { mp in for i in 0..<mu.count { row[i] = (xp[i] - mp[i]) / sigma } }
                }
            }
        }
        guard let xSkip = x[skip] else { throw TransferError.invalidOption(option: "skip", reason: "outside the grid") }
        return InversionResult(xSkip: xSkip, zs: zs)
    }

    /// a·p + b·q elementwise (same shapes).
    static func combine(_ p: Tensor, _ a: Float, _ q: Tensor, _ b: Float) -> Tensor {
        var out = p.scaled(by: a)
        out.add(q, scale: b)
        return out
    }

    /// [2, C, H, W] (uncond, cond) → e_u + g·(e_c − e_u), [C, H, W].
    static func guided(_ out: Tensor, scale g: Float) -> Tensor {
        let item = Array(out.shape.dropFirst())
        let n = out.count / 2
        var e = Tensor(uninitializedShape: item)
        out.withUnsafePointer { p in
            e.withUnsafeMutablePointer { d in
                for i in 0..<n { d[i] = p[i] + g * (p[n + i] - p[i]) }
            }
        }
        return e
    }
}

/// The DDPM step with η = 1 shared by inversion and generation (ALGORITHM.md §5.2, §6.3), in the
/// reference's Float32 order of operations.
enum DDPMStep {
    /// μ = √ᾱ_prev·(x − √(1−ᾱ)·e)/√ᾱ + √(1 − ᾱ_prev − var)·e
    static func mean(_ x: Tensor, _ e: Tensor, alpha a: Float, alphaPrevious aPrev: Float, variance: Float) -> Tensor {
        let (sqrtBeta, sqrtA, sqrtAPrev) = ((1 - a).squareRoot(), a.squareRoot(), aPrev.squareRoot())
        let direction = (1 - aPrev - variance).squareRoot()
        var out = Tensor(uninitializedShape: x.shape)
        x.withUnsafePointer { xp in
            e.withUnsafePointer { ep in
                out.withUnsafeMutablePointer { o in
                    for i in 0..<x.count {
                        let predictedOriginal = (xp[i] - sqrtBeta * ep[i]) / sqrtA
                        o[i] = sqrtAPrev * predictedOriginal + direction * ep[i]
                    }
                }
            }
        }
        return out
    }

    /// x_prev = μ + √var·z
    static func step(_ x: Tensor, _ e: Tensor, z: Tensor, alpha a: Float, alphaPrevious aPrev: Float, variance: Float) -> Tensor {
        var out = mean(x, e, alpha: a, alphaPrevious: aPrev, variance: variance)
        out.add(z, scale: variance.squareRoot())
        return out
    }
}
