import CKernels

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
    /// `algorithm`: `.automatic` takes Winograd F(4×4, 3×3) where it pays (`ConvolutionAlgorithm`).
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Padding2D = .uniform(0),
                       algorithm: ConvolutionAlgorithm = .automatic) -> Tensor {
        precondition(weight.rank == 4, "conv2d needs weight [O,C,kh,kw]")
        let square = weight.shape[2] == weight.shape[3] ? weight.shape[2] : 0
        let winograd = rank == 4 && weight.shape[1] == shape[1] && (algorithm == .winograd
            ? WinogradConvolution.canRun(kernel: square, stride: stride, padding: padding)
            : algorithm == .automatic && WinogradConvolution.applies(kernel: square, stride: stride, padding: padding,
                                                                             batch: shape[0], h: shape[2], w: shape[3]))
        if winograd { return winogradConvolution(weight: weight, bias: bias) }
        return weight.withUnsafePointer { wt in
            convolve(.fp32(wt), weightShape: weight.shape, bias: bias, stride: stride, padding: padding)
        }
    }

    /// The same convolution with bf16 products (docs/PERFORMANCE.md, "Precision"): `packed` holds
    /// the [Cout, Cin·k·k] weight as the rows operand (`PackedBF16(rowsOf:)`); the unfolded input
    /// is packed per panel, and the accumulation is float.
    public func conv2d(packed: PackedBF16, kernel: Int, bias: Tensor?, stride: Int = 1, padding: Padding2D = .uniform(0)) -> Tensor {
        precondition(rank == 4 && packed.depth == shape[1] * kernel * kernel,
                     "conv2d: packed weight of depth \(packed.depth) does not fit input \(shape) with kernel \(kernel)")
        return withExtendedLifetime(packed) {
            convolve(.bf16(packed.layout), weightShape: [packed.lines, shape[1], kernel, kernel], bias: bias, stride: stride, padding: padding)
        }
    }

    private func winogradConvolution(weight: Tensor, bias: Tensor?) -> Tensor {
        OpProfile.measure("conv3x3") {
            let plan = WinogradConvolution(batch: shape[0], cin: shape[1], cout: weight.shape[0], h: shape[2], w: shape[3])
            precondition(bias.map { $0.shape == [plan.cout] } ?? true, "conv2d: bias must be [\(plan.cout)]")
            var out = Tensor(uninitializedShape: [plan.batch, plan.cout, plan.h, plan.w])
            withUnsafePointer { x in
                weight.withUnsafePointer { g in
                    out.withUnsafeMutablePointer { y in
                        let biasPointer = bias.map { UnsafePointer($0.storage.pointer) }
                        withExtendedLifetime(bias) { plan.run(x: x, weight: g, bias: biasPointer, out: y) }
                    }
                }
            }
            return out
        }
    }

    private func convolve(_ product: ConvGeometry.Product, weightShape: [Int], bias: Tensor?, stride: Int, padding: Padding2D) -> Tensor {
        OpProfile.measure((weightShape[2] == 1 ? "conv1x1" : "conv3x3") as StaticString) {
            precondition(rank == 4, "conv2d needs x [B,C,H,W]")
            let (batch, cin, h, w) = (shape[0], shape[1], shape[2], shape[3])
            let (cout, kh, kw) = (weightShape[0], weightShape[2], weightShape[3])
            precondition(weightShape[1] == cin, "conv2d: weight \(weightShape) does not fit input \(shape)")
            precondition(bias.map { $0.shape == [cout] } ?? true, "conv2d: bias must be [\(cout)]")
            let ho = (h + padding.top + padding.bottom - kh) / stride + 1
            let wo = (w + padding.left + padding.right - kw) / stride + 1
            precondition(ho > 0 && wo > 0, "conv2d: kernel \(kh)×\(kw) larger than padded input \(shape)")
            let geometry = ConvGeometry(cin: cin, h: h, w: w, kh: kh, kw: kw, stride: stride,
                                        padding: padding, ho: ho, wo: wo)
            var out = Tensor(uninitializedShape: [batch, cout, ho, wo])
            withUnsafePointer { x in
                out.withUnsafeMutablePointer { y in
                    let biasPointer = bias.map { $0.storage.pointer }
                    withExtendedLifetime(bias) {
                        geometry.run(x: x, product: product, bias: biasPointer.map { UnsafePointer($0) },
                                     out: y, batch: batch, cout: cout)
                    }
                }
            }
            return out
        }
    }
}

/// Shapes of one convolution and the im2col + sgemm schedule for it.
struct ConvGeometry {
    /// The weight side of the product: float [Cout, K] for sgemm, or packed bf16 rows.
    enum Product {
        case fp32(UnsafePointer<Float>)
        case bf16(xattn_bf16_packed)
    }

    let cin, h, w, kh, kw, stride: Int
    let padding: Padding2D
    let ho, wo: Int

    var k: Int { cin * kh * kw }          // rows of the unfolded input
    var positions: Int { ho * wo }        // output pixels per image
    var isPointwise: Bool {
        kh == 1 && kw == 1 && stride == 1 && padding == .uniform(0)
    }

    func run(x: UnsafePointer<Float>, product: Product, bias: UnsafePointer<Float>?,
             out: UnsafeMutablePointer<Float>, batch: Int, cout: Int) {
        let pool = ComputePool.shared
        let n = positions
        let minimumPanel = 64
        if case let .bf16(weight) = product, !isPointwise {
            runBF16ByDepthBlocks(x: x, weight: weight, bias: bias, out: out, batch: batch, cout: cout)
            return
        }
        let packsPanels: Bool
        if case .bf16 = product { packsPanels = true } else { packsPanels = false }
        // sgemm reads a pointwise input in place; bf16 packs it per panel.
        if (isPointwise && !packsPanels) || n / pool.preferredSplit < minimumPanel {
            runWholeImages(x: x, product: product, bias: bias, out: out, batch: batch, cout: cout)
            return
        }
        // Panels: at least one per thread, and unfolded panels of at most ~4 MB; multiples of 32
        // keep both kernels' register tiles full.
        let byMemory = (k * n * 4 + (4 << 20) - 1) / (4 << 20)
        let perImage = roundUp(max(pool.preferredSplit, byMemory), pool.preferredSplit)
        let panel = roundUp((n + perImage - 1) / perImage, 32)
        let panels = (n + panel - 1) / panel
        pool.parallelFor(batch * panels) { item, scratch in
            let image = item / panels
            let start = (item % panels) * panel
            let size = min(panel, n - start)
            let source = x + image * cin * h * w
            let y = out + image * cout * n + start
            fillBias(bias, y, rows: cout, count: size, stride: n)
            let columns: UnsafePointer<Float>, ldb: Int
            if isPointwise {
                (columns, ldb) = (source + start, n)
            } else {
                let unfolded = scratch.floats(k * size)
                unfold(source, into: unfolded, start: start, count: size)
                (columns, ldb) = (UnsafePointer(unfolded), size)
            }
            multiply(product, columns, ldb: ldb, size: size, into: y, ldc: n, cout: cout, accumulate: bias != nil, scratch: scratch)
        }
    }

    /// y[Cout, size] (=|+=) W · columns[K, size] on this thread.
    private func multiply(_ product: Product, _ columns: UnsafePointer<Float>, ldb: Int, size: Int,
                          into y: UnsafeMutablePointer<Float>, ldc: Int, cout: Int, accumulate: Bool, scratch: WorkerScratch) {
        switch product {
        case let .fp32(weight):
            Gemm.sgemmSerial(weight, .normal, lda: k, columns, .normal, ldb: ldb, y, ldc: ldc,
                             m: cout, n: size, k: k, beta: accumulate ? 1 : 0)
        case let .bf16(weight):
            var packed = BF16Gemm.layout(lines: size, depth: k, side: .columns,
                                         words: scratch.words(BF16Gemm.words(lines: size, depth: k, side: .columns)))
            xattn_bf16_pack(columns, 1, ldb, &packed, 0, Int32(size))
            BF16Gemm.multiplySerial(weight, packed, aPanels: 0..<BF16Gemm.panels(weight), bPanels: 0..<BF16Gemm.panels(packed),
                                    c: y, ldc: ldc, accumulate: accumulate)
        }
    }

    /// Small maps (8×8 in SD's deepest level) or 1×1 convolutions: unfold the whole image once,
    /// then one pool-split product per image (split along Cout when the map is narrow).
    private func runWholeImages(x: UnsafePointer<Float>, product: Product, bias: UnsafePointer<Float>?,
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
            let input = columns.map { UnsafePointer($0) } ?? source
            switch product {
            case let .fp32(weight):
                Gemm.sgemm(weight, .normal, lda: k, input, .normal, ldb: n,
                           y, ldc: n, m: cout, n: n, k: k, beta: bias == nil ? 0 : 1)
            case let .bf16(weight):
                let packed = PackedBF16(source: input, lineStride: 1, depthStride: n, lines: n, depth: k, side: .columns)
                BF16Gemm.multiply(weight, packed.layout, c: y, ldc: n, accumulate: bias != nil)
                withExtendedLifetime(packed) {}
            }
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

    func fillBias(_ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, rows: Int, count: Int, stride: Int) {
        guard let bias else { return }
        for r in 0..<rows { (y + r * stride).initialize(repeating: bias[r], count: count) }
    }
}

@inline(__always)
func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
