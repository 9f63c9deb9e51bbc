/// Softmax over rows, the primitive shared by `Tensor.softmax()` and attention.
enum RowSoftmax {
    /// In place, for each of `rows` rows of `width` contiguous floats (row stride `stride`):
    /// row ← softmax(scale · row) = exp(scale·(x − max)) / Σ exp(scale·(x − max)).
    /// `scale` must be positive (it is the attention's 1/√d).
    static func apply(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int, scale: Float) {
        for row in 0..<rows {
            let x = p + row * stride
            // Pass 1: the row maximum (subtracted for stability, as every softmax does).
            var m8 = Float8(repeating: -.infinity)
            var i = 0
            while i + 8 <= width { m8 = vmax(m8, load8(x + i)); i += 8 }
            var maxValue = hmax(m8)
            while i < width { maxValue = Swift.max(maxValue, x[i]); i += 1 }
            // Pass 2: exponentials and their sum.
            let shift = Float8(repeating: maxValue * scale)
            var s8 = Float8()
            i = 0
            while i + 8 <= width {
                let e = vexp(load8(x + i) * scale - shift)
                store8(e, x + i)
                s8 += e
                i += 8
            }
            var sum = hsum(s8)
            if i < width {
                let n = width - i
                let e = vexp(loadPartial(x + i, n) * scale - shift)
                storePartial(e, x + i, n)
                for lane in 0..<n { sum += e[lane] }
            }
            // Pass 3: normalise.
            let inverse = 1 / sum
            i = 0
            while i + 8 <= width { store8(load8(x + i) * inverse, x + i); i += 8 }
            while i < width { x[i] *= inverse; i += 1 }
        }
    }
}

extension Tensor {
    /// Softmax over the last dimension. Shape unchanged.
    public func softmax() -> Tensor {
        OpProfile.measure("softmax") {
            let width = dim(-1)
            let rows = count / max(width, 1)
            var out = self
            out.withUnsafeMutablePointer { p in
                parallelRanges(rows, grain: max(1, 16384 / max(width, 1))) { r in
                    RowSoftmax.apply(p + r.lowerBound * width, rows: r.count, width: width, stride: width, scale: 1)
                }
            }
            return out
        }
    }
}
