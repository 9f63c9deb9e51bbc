import CKernels

/// Pointwise activations and arithmetic, vectorised and split over the compute pool.
extension Tensor {
    /// Applies `op` to every element, in place when this tensor owns its storage.
    @inline(__always)
    mutating func applyInPlace(_ op: (Float8) -> Float8) {
        OpProfile.measure("pointwise") {
            let n = count
            withUnsafeMutablePointer { p in
                parallelRanges(n) { r in mapVector(p + r.lowerBound, p + r.lowerBound, r.count, op) }
            }
        }
    }

    /// SiLU (swish): x · sigmoid(x). Shape unchanged.
    public func silu() -> Tensor {
        var out = self
        out.applyInPlace { x in x * vsigmoid(x) }
        return out
    }

    /// GELU, exact (erf) form as PyTorch's default: 0.5 · x · (1 + erf(x / √2)). Shape unchanged.
    public func gelu() -> Tensor {
        var out = self
        out.applyInPlace { x in 0.5 * x * (1 + verf(x * 0.70710678118654752)) }
        return out
    }

    /// CLIP's quick-GELU: x · sigmoid(1.702 · x). Shape unchanged.
    public func quickGelu() -> Tensor {
        var out = self
        out.applyInPlace { x in x * vsigmoid(1.702 * x) }
        return out
    }

    /// GEGLU gate of diffusers' `GEGLU` after its projection: the last dimension [..., 2h] is split
    /// into (hidden, gate) halves, and the result is hidden · gelu(gate): [..., 2h] → [..., h].
    public func geglu() -> Tensor {
        OpProfile.measure("geglu") {
            let width = dim(-1)
            precondition(width % 2 == 0, "GEGLU needs an even last dimension, got \(shape)")
            let half = width / 2
            let rows = count / max(width, 1)
            var out = Tensor(uninitializedShape: Array(shape.dropLast()) + [half])
            withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    parallelRanges(rows, grain: max(1, 8192 / max(half, 1))) { range in
                        for row in range {
                            let hidden = src + row * width
                            Self.gegluRow(hidden: hidden, gate: hidden + half, out: dst + row * half, count: half)
                        }
                    }
                }
            }
            return out
        }
    }

    /// One row of GEGLU: out[i] = hidden[i] · gelu(gate[i]) (exact erf form), i < count. Shared by
    /// `geglu()` and the fused `linearGEGLU(packed:bias:)`, so that both round alike.
    @inline(__always)
    static func gegluRow(hidden: UnsafePointer<Float>, gate: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int) {
        if xattn_geglu(hidden, gate, out, Int32(count)) != 0 { return }  // 16 lanes, no division (geglu.c)
        var i = 0
        while i < count {
            let n = min(8, count - i)
            let g = n == 8 ? load8(gate + i) : loadPartial(gate + i, n)
            let h = n == 8 ? load8(hidden + i) : loadPartial(hidden + i, n)
            let y = h * (0.5 * g * (1 + verf(g * 0.70710678118654752)))
            if n == 8 { store8(y, out + i) } else { storePartial(y, out + i, n) }
            i += 8
        }
    }

    /// Elementwise sum of two tensors of the same shape (residual connections).
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        var out = lhs
        out.add(rhs)
        return out
    }

    /// self += other, elementwise, same shape.
    public mutating func add(_ other: Tensor, scale: Float = 1) {
        OpProfile.measure("add") {
            precondition(shape == other.shape, "add: shapes differ \(shape) vs \(other.shape)")
            let n = count
            other.withUnsafePointer { b in
                withUnsafeMutablePointer { a in
                    parallelRanges(n) { r in
                        var i = r.lowerBound
                        while i + 8 <= r.upperBound {
                            store8(load8(a + i) + scale * load8(b + i), a + i)
                            i += 8
                        }
                        while i < r.upperBound { a[i] += scale * b[i]; i += 1 }
                    }
                }
            }
        }
    }

    /// Every element multiplied by `factor`.
    public func scaled(by factor: Float) -> Tensor {
        var out = self
        out.applyInPlace { $0 * factor }
        return out
    }
}
