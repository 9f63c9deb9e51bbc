/// Vectorised elementary functions on 8 lanes and the loops that apply them. Softmax, SiLU and
/// GELU are bound by `exp`; libm's scalar `expf` would cost more than the matrix products around them.

public typealias Float8 = SIMD8<Float>

/// e^x, Cephes `expf` scheme: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and
/// 2^n built in the exponent bits. Max relative error ≈ 2e-7 (1–2 ulp) over [−87.3, 88.7]; inputs
/// outside are clamped (so e^−∞ gives ≈ 1e−38, not 0 — harmless for softmax and sigmoid).
@inline(__always)
public func vexp(_ input: Float8) -> Float8 {
    let x = vmin(vmax(input, Float8(repeating: -87.33654)), Float8(repeating: 88.72283))
    // n = round(x / ln 2) by adding 1.5·2^23: the sum's low mantissa bits hold n (|n| ≤ 127), and
    // subtracting the constant again gives n as a float. Plain adds, so it vectorises on any x86-64
    // (SSE2 has no vector floor; `rounded()` would call libm per lane).
    let magic = Float8(repeating: 12582912.0)
    let shifted = magic.addingProduct(x, Float8(repeating: 1.44269504088896341))
    let n = shifted - magic
    // r = x − n·ln2 in two parts for precision (Cody–Waite).
    var r = x.addingProduct(n, Float8(repeating: -0.693359375))
    r = r.addingProduct(n, Float8(repeating: 2.12194440e-4))
    let r2 = r * r
    var p = Float8(repeating: 1.9875691500e-4)
    p = Float8(repeating: 1.3981999507e-3).addingProduct(p, r)
    p = Float8(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = Float8(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = Float8(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = Float8(repeating: 5.0000001201e-1).addingProduct(p, r)
    p = (r + 1).addingProduct(p, r2)
    // 2^n built in the exponent field.
    let nBits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: Float8.self)
    return p * scale
}

/// 1 / (1 + e^−x).
@inline(__always)
public func vsigmoid(_ x: Float8) -> Float8 {
    1 / (1 + vexp(-x))
}

/// erf(x), Abramowitz & Stegun 7.1.26: absolute error ≤ 1.5e-7.
@inline(__always)
public func verf(_ x: Float8) -> Float8 {
    let negative = x .< Float8(repeating: 0)
    let a = x.replacing(with: -x, where: negative)
    let t = 1 / (1 + 0.3275911 * a)
    var p = Float8(repeating: 1.061405429)
    p = p * t - 1.453152027
    p = p * t + 1.421413741
    p = p * t - 0.284496736
    p = p * t + 0.254829592
    let y = 1 - p * t * vexp(-a * a)
    return y.replacing(with: -y, where: negative)
}

/// Loads up to 8 floats (the rest zero).
@inline(__always)
func loadPartial(_ p: UnsafePointer<Float>, _ n: Int) -> Float8 {
    var v = Float8()
    for i in 0..<n { v[i] = p[i] }
    return v
}

/// Stores the first n lanes.
@inline(__always)
func storePartial(_ v: Float8, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { p[i] = v[i] }
}

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

@inline(__always)
func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
}

/// dst[i] = op(src[i]) for i in 0..<count, 8 lanes at a time (dst may equal src).
@inline(__always)
func mapVector(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int,
    _ op: (Float8) -> Float8
) {
    var i = 0
    while i + 8 <= count {
        store8(op(load8(src + i)), dst + i)
        i += 8
    }
    if i < count { storePartial(op(loadPartial(src + i, count - i)), dst + i, count - i) }
}

/// Splits 0..<count into contiguous ranges of at least `grain` elements and runs them on the pool.
func parallelRanges(_ count: Int, grain: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    let pool = ComputePool.shared
    let pieces = max(1, min(pool.preferredSplit * 4, count / max(grain, 1)))
    let size = (count + pieces - 1) / pieces
    pool.parallelFor(pieces) { p in
        let start = p * size
        let end = min(count, start + size)
        if start < end { body(start..<end) }
    }
}

/// Horizontal sum of 8 lanes.
@inline(__always)
func hsum(_ v: Float8) -> Float { v.sum() }

/// Horizontal max of 8 lanes.
@inline(__always)
func hmax(_ v: Float8) -> Float {
    var m = v[0]
    for i in 1..<8 where v[i] > m { m = v[i] }
    return m
}

/// Lane-wise maximum and minimum. The standard library's `pointwiseMax`/`pointwiseMin` are not
/// inlined (a call per vector, with `vzeroupper`); a compare and a blend are two instructions.
@inline(__always)
func vmax(_ a: Float8, _ b: Float8) -> Float8 { a.replacing(with: b, where: a .< b) }

@inline(__always)
func vmin(_ a: Float8, _ b: Float8) -> Float8 { a.replacing(with: b, where: b .< a) }
