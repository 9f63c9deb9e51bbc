#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Zero padding on each side of a feature map, in pixels.
public struct Padding2D: Equatable, Sendable {
    public var top, left, bottom, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        (self.top, self.left, self.bottom, self.right) = (top, left, bottom, right)
    }
    /// The same padding on all four sides (PyTorch's `padding=p`).
    public static func uniform(_ p: Int) -> Padding2D { Padding2D(top: p, left: p, bottom: p, right: p) }
}

extension Tensor {
    /// `nn.Conv2d` (groups 1, dilation 1): x [B, Cin, H, W], weight [Cout, Cin, kh, kw] (PyTorch
    /// layout), bias [Cout] → [B, Cout, Ho, Wo] with Ho = (H + top + bottom − kh) / stride + 1.
    ///
    /// A 1×1, stride-1, unpadded convolution is one product W[Cout, Cin] × X[Cin, H·W]. Otherwise
    /// the output positions are cut into column panels; each work item unfolds its panel (im2col,
    /// [Cin·kh·kw, panel]) into its thread's scratch and multiplies it by W[Cout, Cin·kh·kw] with a
    /// single-threaded sgemm, so the panels of both threads run independently and stay in cache.
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Padding2D = .uniform(0)) -> Tensor {
        OpProfile.measure((weight.rank == 4 && weight.shape[2] == 1 ? "conv1x1" : "conv3x3") as StaticString) {
            precondition(rank == 4 && weight.rank == 4, "conv2d needs x [B,C,H,W] and weight [O,C,kh,kw]")
            let (batch, cin, h, w) = (shape[0], shape[1], shape[2], shape[3])
            let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
            precondition(weight.shape[1] == cin, "conv2d: weight \(weight.shape) does not fit input \(shape)")
            precondition(bias.map { $0.shape == [cout] } ?? true, "conv2d: bias must be [\(cout)]")
            let ho = (h + padding.top + padding.bottom - kh) / stride + 1
            let wo = (w + padding.left + padding.right - kw) / stride + 1
            precondition(ho > 0 && wo > 0, "conv2d: kernel \(kh)×\(kw) larger than padded input \(shape)")
            let geometry = ConvGeometry(cin: cin, h: h, w: w, kh: kh, kw: kw, stride: stride,
                                        padding: padding, ho: ho, wo: wo)
            var out = Tensor(uninitializedShape: [batch, cout, ho, wo])
            withUnsafePointer { x in
                weight.withUnsafePointer { wt in
                    out.withUnsafeMutablePointer { y in
                        let biasPointer = bias.map { $0.storage.pointer }
                        withExtendedLifetime(bias) {
                            geometry.run(x: x, weight: wt, bias: biasPointer.map { UnsafePointer($0) },
                                         out: y, batch: batch, cout: cout)
                        }
                    }
                }
            }
            return out
        }
    }
}

/// Shapes of one convolution and the im2col + sgemm schedule for it.
struct ConvGeometry {
    let cin, h, w, kh, kw, stride: Int
    let padding: Padding2D
    let ho, wo: Int

    var k: Int { cin * kh * kw }          // rows of the unfolded input
    var positions: Int { ho * wo }        // output pixels per image
    var isPointwise: Bool {
        kh == 1 && kw == 1 && stride == 1 && padding == .uniform(0)
    }

    func run(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
             out: UnsafeMutablePointer<Float>, batch: Int, cout: Int) {
        let pool = ComputePool.shared
        let n = positions
        let minimumPanel = 64
        if isPointwise || n / pool.preferredSplit < minimumPanel {
            runWholeImages(x: x, weight: weight, bias: bias, out: out, batch: batch, cout: cout)
            return
        }
        // Panels: at least one per thread, and unfolded panels of at most ~4 MB.
        let byMemory = (k * n * 4 + (4 << 20) - 1) / (4 << 20)
        let perImage = roundUp(max(pool.preferredSplit, byMemory), pool.preferredSplit)
        let panel = roundUp((n + perImage - 1) / perImage, 16)
        let panels = (n + panel - 1) / panel
        pool.parallelFor(batch * panels) { item, scratch in
            let image = item / panels
            let start = (item % panels) * panel
            let size = min(panel, n - start)
            let columns = scratch.floats(k * size)
            unfold(x + image * cin * h * w, into: columns, start: start, count: size)
            let y = out + image * cout * n + start
            fillBias(bias, y, rows: cout, count: size, stride: n)
            // [Cout, K] × [K, size] → [Cout, size] at row stride n.
            Gemm.sgemmSerial(weight, .normal, lda: k, columns, .normal, ldb: size, y, ldc: n,
                             m: cout, n: size, k: k, beta: bias == nil ? 0 : 1)
        }
    }

    /// Small maps (8×8 in SD's deepest level) or 1×1 convolutions: unfold the whole image once,
    /// then one pool-split product per image (split along Cout when the map is narrow).
    private func runWholeImages(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                out: UnsafeMutablePointer<Float>, batch: Int, cout: Int) {
        let n = positions
        let columns: UnsafeMutablePointer<Float>? = isPointwise ? nil : .allocate(capacity: k * n)
        defer { columns?.deallocate() }
        for image in 0..<batch {
            let source = x + image * cin * h * w
            if let columns {
                // Parallel over input channels: each unfolds its kh·kw rows.
                ComputePool.shared.parallelFor(cin) { c in
                    unfold(source, into: columns, start: 0, count: n, channels: c..<(c + 1))
                }
            }
            let y = out + image * cout * n
            fillBias(bias, y, rows: cout, count: n, stride: n)
            Gemm.sgemm(weight, .normal, lda: k, columns.map { UnsafePointer($0) } ?? source, .normal, ldb: n,
                       y, ldc: n, m: cout, n: n, k: k, beta: bias == nil ? 0 : 1)
        }
    }

    /// im2col for output positions start..<start+count: row (c·kh + ky)·kw + kx of `columns`
    /// (row stride `count`) holds input pixel (oy·s − top + ky, ox·s − left + kx) of channel c for
    /// each position (oy, ox), or 0 in the padding.
    func unfold(_ x: UnsafePointer<Float>, into columns: UnsafeMutablePointer<Float>, start: Int, count: Int,
                channels: Range<Int>? = nil) {
        let end = start + count
        for c in channels ?? 0..<cin {
            let plane = x + c * h * w
            for ky in 0..<kh {
                for kx in 0..<kw {
                    var dst = columns + ((c * kh + ky) * kw + kx) * count
                    var position = start
                    while position < end {
                        let oy = position / wo, ox0 = position % wo
                        let length = min(end - position, wo - ox0)
                        copyRow(plane, oy: oy, ox0: ox0, length: length, ky: ky, kx: kx, into: dst)
                        dst += length
                        position += length
                    }
                }
            }
        }
    }

    /// One run of `length` outputs of output row oy, starting at column ox0, for tap (ky, kx).
    @inline(__always)
    private func copyRow(_ plane: UnsafePointer<Float>, oy: Int, ox0: Int, length: Int, ky: Int, kx: Int,
                         into dst: UnsafeMutablePointer<Float>) {
        let iy = oy * stride - padding.top + ky
        guard iy >= 0 && iy < h else {
            dst.initialize(repeating: 0, count: length)
            return
        }
        let row = plane + iy * w
        if stride == 1 {
            // ix = ox − left + kx; valid ox are those with 0 ≤ ix < w.
            let shift = kx - padding.left
            let first = min(max(ox0, -shift), ox0 + length)
            let last = max(min(ox0 + length, w - shift), first)
            if first > ox0 { dst.initialize(repeating: 0, count: first - ox0) }
            if last > first { (dst + (first - ox0)).update(from: row + first + shift, count: last - first) }
            if ox0 + length > last { (dst + (last - ox0)).initialize(repeating: 0, count: ox0 + length - last) }
        } else {
            for j in 0..<length {
                let ix = (ox0 + j) * stride - padding.left + kx
                dst[j] = ix >= 0 && ix < w ? row[ix] : 0
            }
        }
    }

    private func fillBias(_ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, rows: Int, count: Int, stride: Int) {
        guard let bias else { return }
        for r in 0..<rows { (y + r * stride).initialize(repeating: bias[r], count: count) }
    }
}

@inline(__always)
func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
