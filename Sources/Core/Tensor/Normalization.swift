/// GroupNorm and LayerNorm with PyTorch's semantics (biased variance, eps inside the square root).
extension Tensor {
    /// `nn.GroupNorm(groups, C, eps)` with affine weight and bias, optionally followed by SiLU in the
    /// same pass. x: [B, C, *spatial] → same shape; weight, bias: [C].
    ///
    /// Each (batch, group) is one work item: its statistics in two passes (mean, then the centred
    /// sum of squares, accumulated per 8-lane block in Double), then the affine map. A group of SD's
    /// largest maps (10 channels × 64×64) is 160 KB, so passes two and three run from L2.
    public func groupNorm(groups: Int, weight: Tensor, bias: Tensor, eps: Float, fusedSiLU: Bool = false) -> Tensor {
        OpProfile.measure(fusedSiLU ? "groupnorm+silu" : "groupnorm") {
            precondition(rank >= 2, "groupNorm needs [B, C, …], got \(shape)")
            let batch = shape[0], channels = shape[1]
            precondition(channels % groups == 0, "groupNorm: \(channels) channels not divisible by \(groups) groups")
            precondition(weight.shape == [channels] && bias.shape == [channels],
                         "groupNorm affine parameters must be [\(channels)]")
            let spatial = count / max(batch * channels, 1)
            let perGroup = channels / groups
            let groupSize = perGroup * spatial
            var out = Tensor(uninitializedShape: shape)
            withUnsafePointer { src in
                weight.withUnsafePointer { gamma in
                    bias.withUnsafePointer { beta in
                        out.withUnsafeMutablePointer { dst in
                            ComputePool.shared.parallelFor(batch * groups) { item in
                                let offset = item * groupSize
                                let (mean, variance) = Self.meanAndVariance(src + offset, count: groupSize)
                                let rstd = 1 / (variance + Double(eps)).squareRoot()
                                let firstChannel = (item % groups) * perGroup
                                for c in 0..<perGroup {
                                    let channel = firstChannel + c
                                    let scale = Float(Double(gamma[channel]) * rstd)
                                    let shift = beta[channel] - Float(mean) * scale
                                    let base = offset + c * spatial
                                    if fusedSiLU {
                                        mapVector(src + base, dst + base, spatial) { x in
                                            let y = x * scale + shift
                                            return y * vsigmoid(y)
                                        }
                                    } else {
                                        mapVector(src + base, dst + base, spatial) { x in x * scale + shift }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    /// `nn.LayerNorm(D, eps)` over the last dimension with affine weight and bias: [..., D] → same.
    public func layerNorm(weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
        OpProfile.measure("layernorm") {
            let width = dim(-1)
            precondition(weight.shape == [width] && bias.shape == [width],
                         "layerNorm affine parameters must be [\(width)], input \(shape)")
            let rows = count / max(width, 1)
            var out = Tensor(uninitializedShape: shape)
            withUnsafePointer { src in
                weight.withUnsafePointer { gamma in
                    bias.withUnsafePointer { beta in
                        out.withUnsafeMutablePointer { dst in
                            parallelRanges(rows, grain: max(1, 16384 / max(width, 1))) { range in
                                for row in range {
                                    let x = src + row * width, y = dst + row * width
                                    let (mean, variance) = Self.meanAndVariance(x, count: width)
                                    let rstd = Float(1 / (variance + Double(eps)).squareRoot())
                                    let m = Float(mean)
                                    var i = 0
                                    while i + 8 <= width {
                                        store8((load8(x + i) - m) * rstd * load8(gamma + i) + load8(beta + i), y + i)
                                        i += 8
                                    }
                                    while i < width { y[i] = (x[i] - m) * rstd * gamma[i] + beta[i]; i += 1 }
                                }
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    /// Mean and biased variance of `count` contiguous floats: two passes, 8-lane Float partial sums
    /// over blocks of 1024 elements folded into Double, so large groups lose no precision.
    static func meanAndVariance(_ x: UnsafePointer<Float>, count: Int) -> (mean: Double, variance: Double) {
        guard count > 0 else { return (0, 0) }
        let block = 1024
        var total = 0.0
        var start = 0
        while start < count {
            let end = min(count, start + block)
            var s8 = Float8()
            var i = start
            while i + 8 <= end { s8 += load8(x + i); i += 8 }
            var s = Double(hsum(s8))
            while i < end { s += Double(x[i]); i += 1 }
            total += s
            start = end
        }
        let mean = total / Double(count)
        let m = Float8(repeating: Float(mean))
        var squares = 0.0
        start = 0
        while start < count {
            let end = min(count, start + block)
            var s8 = Float8()
            var i = start
            while i + 8 <= end { let d = load8(x + i) - m; s8 += d * d; i += 8 }
            var s = Double(hsum(s8))
            while i < end { let d = Double(x[i]) - mean; s += d * d; i += 1 }
            squares += s
            start = end
        }
        return (mean, squares / Double(count))
    }
}
