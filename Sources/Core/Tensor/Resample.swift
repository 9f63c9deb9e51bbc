#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reshaping kernels that move data without arithmetic, and the timestep embedding.
extension Tensor {
    /// Nearest-neighbour 2× upsampling (`F.interpolate(scale_factor=2, mode="nearest")`):
    /// [B, C, H, W] → [B, C, 2H, 2W], out[y, x] = in[y / 2, x / 2].
    public func upsampleNearest2x() -> Tensor {
        OpProfile.measure("upsample") {
            precondition(rank == 4, "upsampleNearest2x needs [B, C, H, W], got \(shape)")
            let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
            var out = Tensor(uninitializedShape: [shape[0], shape[1], 2 * h, 2 * w])
            withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    parallelRanges(planes, grain: max(1, 16384 / max(h * w, 1))) { range in
                        for plane in range {
                            let s = src + plane * h * w, d = dst + plane * 4 * h * w
                            for y in 0..<h {
                                let row = d + 2 * y * 2 * w
                                for x in 0..<w {
                                    let v = s[y * w + x]
                                    row[2 * x] = v
                                    row[2 * x + 1] = v
                                }
                                (row + 2 * w).update(from: row, count: 2 * w)
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    /// `torch.cat(tensors, dim=1)`: [B, C_i, *] → [B, ΣC_i, *] (all other dimensions equal).
    public static func concatChannels(_ tensors: [Tensor]) -> Tensor {
        OpProfile.measure("concat") {
            guard let first = tensors.first else { return Tensor(shape: [0]) }
            precondition(first.rank >= 2, "concatChannels needs [B, C, …]")
            let batch = first.shape[0], tail = Array(first.shape.dropFirst(2))
            for t in tensors {
                precondition(t.rank == first.rank && t.shape[0] == batch && Array(t.shape.dropFirst(2)) == tail,
                             "concatChannels: \(t.shape) does not fit \(first.shape)")
            }
            let inner = tail.reduce(1, *)
            let total = tensors.reduce(0) { $0 + $1.shape[1] }
            var out = Tensor(uninitializedShape: [batch, total] + tail)
            out.withUnsafeMutablePointer { dst in
                for b in 0..<batch {
                    var offset = b * total * inner
                    for t in tensors {
                        let size = t.shape[1] * inner
                        t.withUnsafePointer { src in (dst + offset).update(from: src + b * size, count: size) }
                        offset += size
                    }
                }
            }
            return out
        }
    }

    /// Channels lo..<hi of [B, C, *] → [B, hi − lo, *] (a copy).
    public func channels(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 2 && range.lowerBound >= 0 && range.upperBound <= shape[1], "channels \(range) of \(shape)")
        let batch = shape[0], inner = count / max(batch * shape[1], 1)
        var out = Tensor(uninitializedShape: [batch, range.count] + Array(shape.dropFirst(2)))
        withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                for b in 0..<batch {
                    (dst + b * range.count * inner).update(
                        from: src + (b * shape[1] + range.lowerBound) * inner, count: range.count * inner)
                }
            }
        }
        return out
    }

    /// diffusers' `get_timestep_embedding`: for each timestep t, with half = dim / 2 and
    /// f_i = exp(−ln(maxPeriod) · i / (half − freqShift)), the row [sin(t·f), cos(t·f)] — or
    /// [cos, sin] when `flipSinToCos` (SD's UNet) — zero-padded by one column when dim is odd.
    /// Computed in Float32 in the same order as PyTorch. timesteps: [N] → [N, dim].
    public static func timestepEmbedding(
        timesteps: [Float], dim: Int, flipSinToCos: Bool, freqShift: Float, maxPeriod: Float = 10000
    ) -> Tensor {
        let half = dim / 2
        var out = Tensor(shape: [timesteps.count, dim])
        let logPeriod = Float(log(Double(maxPeriod)))
        let frequencies = (0..<half).map { i in expf(-logPeriod * Float(i) / (Float(half) - freqShift)) }
        out.withUnsafeMutablePointer { p in
            for (row, t) in timesteps.enumerated() {
                let r = p + row * dim
                for i in 0..<half {
                    let angle = t * frequencies[i]
                    let (first, second) = flipSinToCos ? (cosf(angle), sinf(angle)) : (sinf(angle), cosf(angle))
                    r[i] = first
                    r[half + i] = second
                }
            }
        }
        return out
    }
}
