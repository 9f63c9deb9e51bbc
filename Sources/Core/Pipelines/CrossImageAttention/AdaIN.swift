/// Adaptive instance normalisation of the output latent towards the appearance latent
/// (ALGORITHM.md §9), per latent channel, with σ = √(unbiased variance + 1e-5) as the reference.
enum AdaIN {
    /// Mean and σ of channel values where `mask` is 1 (all pixels when nil), or nil when fewer
    /// than two pixels count: the unbiased variance is undefined there (the reference gets NaN).
    static func statistics(_ x: UnsafePointer<Float>, count: Int, mask: [Float]?) -> (mean: Double, sigma: Double)? {
        var n = 0, sum = 0.0
        for i in 0..<count where mask.map({ $0[i] == 1 }) ?? true { sum += Double(x[i]); n += 1 }
        guard n >= 2 else { return nil }
        let mean = sum / Double(n)
        var squares = 0.0
        for i in 0..<count where mask.map({ $0[i] == 1 }) ?? true { let d = Double(x[i]) - mean; squares += d * d }
        return (mean, (squares / Double(n - 1) + 1e-5).squareRoot())
    }

    /// O' = (O − μ_O)/σ_O · σ_A + μ_A over all pixels. o: [C, H, W], a: [C, H', W'] (A may have
    /// another size: the statistics are per channel).
    static func plain(_ o: Tensor, _ a: Tensor) -> Tensor {
        masked(o, a, structureMask: nil, appearanceMask: nil) ?? o
    }

    /// Statistics of A over M_A, of O over M_S; O' = O·(1 − M_S) + normalised(O)·M_S. Returns nil
    /// when a mask has fewer than two pixels (the caller falls back to plain AdaIN).
    static func masked(_ o: Tensor, _ a: Tensor, structureMask: [Float]?, appearanceMask: [Float]?) -> Tensor? {
        precondition(o.rank == 3 && a.rank == 3 && o.shape[0] == a.shape[0], "AdaIN needs two [C, H, W] latents")
        let (channels, plane, planeA) = (o.shape[0], o.shape[1] * o.shape[2], a.shape[1] * a.shape[2])
        var out = o
        var ok = true
        a.withUnsafePointer { ap in
            o.withUnsafePointer { op in
                out.withUnsafeMutablePointer { dst in
                    for c in 0..<channels {
                        guard let sa = statistics(ap + c * planeA, count: planeA, mask: appearanceMask),
                              let so = statistics(op + c * plane, count: plane, mask: structureMask) else { ok = false; return }
                        for i in 0..<plane {
                            let x = op[c * plane + i]
                            let normalised = (x - Float(so.mean)) / Float(so.sigma) * Float(sa.sigma) + Float(sa.mean)
                            if let m = structureMask?[i] {
                                dst[c * plane + i] = x * (1 - m) + normalised * m
                            } else {
                                dst[c * plane + i] = normalised
                            }
                        }
                    }
                }
            }
        }
        return ok ? out : nil
    }
}
