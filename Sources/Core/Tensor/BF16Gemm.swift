import CKernels

/// The arithmetic of the engine's products (docs/PERFORMANCE.md, "Precision"). `fp32` is exact to
/// the reference; `bf16` rounds both operands of every GEMM, convolution and attention product to
/// bfloat16 and accumulates in float (AMX tiles or vdpbf16ps); everything outside the products
/// stays float.
public enum Precision: String, Sendable, Codable, CaseIterable {
    case fp32, bf16

    /// Whether this CPU runs the bf16 kernels (AMX or AVX512-BF16, probed once by CPUID).
    public static var bf16IsSupported: Bool { BF16Gemm.kernel != .portable }

    /// The fastest precision this CPU runs: bf16 where its products beat float ones (AMX, or
    /// AVX512-BF16 on AMD), fp32 elsewhere (docs/PERFORMANCE.md, "Precision").
    public static var fastest: Precision { xattn_bf16_is_faster() != 0 ? .bf16 : .fp32 }
}

/// One operand of bf16 products in the kernels' packed layout (xattn_kernels.h): the rows of A
/// (`.rows`, panels of 14, or 16 for AMX) or the columns of B (`.columns`, panels of 32), pairs of
/// the shared depth in 32-bit words. Owns its memory; weights are packed once at load.
public final class PackedBF16: @unchecked Sendable {
    public enum Side: Sendable {
        case rows, columns
        var code: Int32 { self == .rows ? Int32(XATTN_BF16_ROWS) : Int32(XATTN_BF16_COLUMNS) }
    }

    let layout: xattn_bf16_packed
    public let side: Side
    public var lines: Int { Int(layout.lines) }
    public var depth: Int { Int(layout.depth) }
    var panels: Int { BF16Gemm.panels(layout) }
    /// Resident bytes.
    public var byteCount: Int { BF16Gemm.words(layout) * 4 }

    /// Room for an operand, packed later by `pack`, in the layout of `kernel` (default: the one
    /// this CPU runs).
    public init(lines: Int, depth: Int, side: Side, kernel: BF16Gemm.Kernel = BF16Gemm.kernel) {
        var shape = BF16Gemm.layout(lines: lines, depth: depth, side: side, kernel: kernel, words: nil)
        shape.words = UnsafeMutablePointer<UInt32>.allocate(capacity: max(BF16Gemm.words(shape), 1))
        layout = shape
        self.side = side
    }

    /// Packs element (line l, depth d) = source[l·lineStride + d·depthStride].
    public convenience init(source: UnsafePointer<Float>, lineStride: Int, depthStride: Int, lines: Int, depth: Int,
                            side: Side, kernel: BF16Gemm.Kernel = BF16Gemm.kernel, pool: ComputePool = .shared) {
        self.init(lines: lines, depth: depth, side: side, kernel: kernel)
        pack(source, lineStride: lineStride, depthStride: depthStride, pool: pool)
    }

    /// (Re)fills every line from `source`, laid out as in `init(source:…)`.
    public func pack(_ source: UnsafePointer<Float>, lineStride: Int, depthStride: Int, pool: ComputePool = .shared) {
        BF16Gemm.pack(source, lineStride: lineStride, depthStride: depthStride, into: layout, pool: pool)
    }

    /// A weight in PyTorch's [out, in, …] layout as the A operand of `W · X` (convolutions): rows
    /// are output channels, depth is everything else.
    public convenience init(rowsOf weight: Tensor) {
        let rows = weight.dim(0), depth = weight.count / max(weight.dim(0), 1)
        self.init(source: weight.storage.pointer, lineStride: depth, depthStride: 1, lines: rows, depth: depth, side: .rows)
        withExtendedLifetime(weight) {}
    }

    /// A [out, in] weight as the B operand of `X · Wᵀ` (linear layers): columns are outputs.
    public convenience init(transposedColumnsOf weight: Tensor) {
        let outputs = weight.dim(0), inputs = weight.dim(1)
        self.init(source: weight.storage.pointer, lineStride: inputs, depthStride: 1, lines: outputs, depth: inputs, side: .columns)
        withExtendedLifetime(weight) {}
    }

    deinit { layout.words?.deallocate() }
}

/// bf16 GEMM on packed operands, split over the compute pool.
public enum BF16Gemm {
    /// The kernels (xattn_kernels.h): AMX tiles, AVX512-BF16 vectors, portable C (tests).
    public enum Kernel: Int32, Sendable {
        case portable = 0, avx512 = 1, amx = 2
        public var name: String { self == .amx ? "AMX" : self == .avx512 ? "AVX512-BF16" : "portable" }
    }

    /// The fastest kernel this CPU and OS run (`.portable`: none; bf16 is then not offered).
    public static var kernel: Kernel { Kernel(rawValue: xattn_bf16_kernel()) ?? .portable }

    /// Whether the AVX512-BF16 kernel runs here (also where AMX is preferred to it).
    public static var vectorKernelIsSupported: Bool { xattn_cpu_has_avx512_bf16() != 0 }

    /// The bits of `x` rounded to bfloat16 as the kernels round it (nearest, ties to even).
    public static func roundToBF16(_ x: Float) -> UInt16 { xattn_bf16_from_float(x) }

    static func words(_ layout: xattn_bf16_packed) -> Int {
        var layout = layout
        return xattn_bf16_packed_words(&layout)
    }

    static func words(lines: Int, depth: Int, side: PackedBF16.Side, kernel: Kernel = kernel) -> Int {
        words(layout(lines: lines, depth: depth, side: side, kernel: kernel, words: nil))
    }

    static func width(_ layout: xattn_bf16_packed) -> Int { Int(xattn_bf16_width(layout.kernel, layout.side)) }

    static func panels(_ layout: xattn_bf16_packed) -> Int { (Int(layout.lines) + width(layout) - 1) / width(layout) }

    /// A layout over caller-owned memory (a thread's scratch), for operands packed per call.
    static func layout(lines: Int, depth: Int, side: PackedBF16.Side, kernel: Kernel = kernel,
                       words: UnsafeMutablePointer<UInt32>?) -> xattn_bf16_packed {
        xattn_bf16_packed(lines: Int32(lines), depth: Int32(depth), side: side.code, kernel: kernel.rawValue, words: words)
    }

    /// Packs all of `layout`'s lines, in parallel over panels when there is enough of it.
    static func pack(_ source: UnsafePointer<Float>, lineStride: Int, depthStride: Int, into layout: xattn_bf16_packed,
                     pool: ComputePool = .shared) {
        let lines = Int(layout.lines), width = width(layout)
        let panels = (lines + width - 1) / width
        let parts = lines * Int(layout.depth) < 1 << 16 ? 1 : min(panels, 4 * pool.preferredSplit)
        let chunk = (panels + max(parts, 1) - 1) / max(parts, 1)
        pool.parallelFor((panels + max(chunk, 1) - 1) / max(chunk, 1)) { part in
            var target = layout
            let first = part * chunk * width, end = min(lines, (part + 1) * chunk * width)
            xattn_bf16_pack(source, lineStride, depthStride, &target, Int32(first), Int32(end))
        }
    }

    /// C = A·B (or C += A·B) on the calling thread, for A's panels `aPanels` and B's `bPanels`; `c` is
    /// C's origin (element [0, 0]).
    @inline(__always)
    static func multiplySerial(_ a: xattn_bf16_packed, _ b: xattn_bf16_packed, aPanels: Range<Int>, bPanels: Range<Int>,
                               c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, portable: Bool = false) {
        multiplySerial(a, b, aPanels: aPanels, bPanels: bPanels,
                       block: c + aPanels.lowerBound * width(a) * ldc + bPanels.lowerBound * width(b),
                       ldc: ldc, accumulate: accumulate, portable: portable)
    }

    /// `multiplySerial` where `block` points at the block's first element, C[aPanels.lowerBound·width]
    /// [bPanels.lowerBound·width] (a buffer that holds only this block).
    @inline(__always)
    static func multiplySerial(_ a: xattn_bf16_packed, _ b: xattn_bf16_packed, aPanels: Range<Int>, bPanels: Range<Int>,
                               block c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, portable: Bool = false) {
        precondition(a.depth == b.depth && a.kernel == b.kernel,
                     "bf16 product: depths \(a.depth), \(b.depth) or layouts \(a.kernel), \(b.kernel) differ")
        var a = a, b = b
        func lines(_ p: xattn_bf16_packed, _ r: Range<Int>) -> Int {
            max(0, min(Int(p.lines), r.upperBound * width(p)) - r.lowerBound * width(p))
        }
        OpProfile.addFlops(lines(a, aPanels), lines(b, bPanels), Int(a.depth))
        let kernel = portable ? xattn_bf16_gemm_portable : xattn_bf16_gemm
        kernel(&a, &b, Int32(aPanels.lowerBound), Int32(aPanels.upperBound),
               Int32(bPanels.lowerBound), Int32(bPanels.upperBound), c, ldc, accumulate ? 1 : 0)
    }

    /// C[m, n] (=|+=) A·B with A's lines the rows and B's lines the columns, split over the pool
    /// along the side with more panels. On a CPU without AVX512-BF16 the portable kernel computes
    /// the same sums, slowly (tests; the engine picks fp32 there).
    public static func multiply(_ a: PackedBF16, _ b: PackedBF16, c: UnsafeMutablePointer<Float>, ldc: Int,
                                accumulate: Bool, pool: ComputePool = .shared) {
        multiply(a.layout, b.layout, c: c, ldc: ldc, accumulate: accumulate, pool: pool)
        withExtendedLifetime((a, b)) {}
    }

    /// `alongA`: split A's panels among the items (nil: the side with more panels).
    static func multiply(_ a: xattn_bf16_packed, _ b: xattn_bf16_packed, c: UnsafeMutablePointer<Float>, ldc: Int,
                         accumulate: Bool, alongA: Bool? = nil, pool: ComputePool = .shared) {
        let aPanels = panels(a), bPanels = panels(b)
        let flops = Int(a.lines) * Int(b.lines) * Int(a.depth)
        let threads = pool.preferredSplit
        if threads == 1 || flops < 1_000_000 {
            multiplySerial(a, b, aPanels: 0..<aPanels, bPanels: 0..<bPanels, c: c, ldc: ldc, accumulate: accumulate)
            return
        }
        // A few chunks per thread, for balance; chunks are whole panels.
        let alongA = alongA ?? (aPanels >= bPanels)
        let panels = alongA ? aPanels : bPanels
        let chunk = max(1, panels / (threads * 3))
        pool.parallelFor((panels + chunk - 1) / chunk) { part in
            let range = (part * chunk)..<min(panels, (part + 1) * chunk)
            multiplySerial(a, b, aPanels: alongA ? range : 0..<aPanels, bPanels: alongA ? 0..<bPanels : range,
                           c: c, ldc: ldc, accumulate: accumulate)
        }
    }
}

extension BF16Gemm {
    /// C[lines, n] (=|+=) A·B where A's lines come as floats (element (l, d) at
    /// source[l·lineStride + d·depthStride]) and are packed here, B is packed. Work items of at most
    /// 20 panels of lines, each packing its own lines into its thread's scratch and reading all of B; or, when
    /// that would read B more than reading A once per item along B would read A (few lines, or a wide
    /// B: the feed-forward layers' 2560–10240 outputs), A packed once and the items split along B.
    /// Both counts are per unit of depth: items × B's lines against B's lines + items × A's lines.
    static func multiply(rowsOf source: UnsafePointer<Float>, lineStride: Int, depthStride: Int, lines: Int,
                         _ b: xattn_bf16_packed, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                         pool: ComputePool = .shared) {
        let depth = Int(b.depth), width = Int(xattn_bf16_width(b.kernel, PackedBF16.Side.rows.code))
        let aPanels = (lines + width - 1) / width
        let threads = pool.preferredSplit
        let chunk = min(20, max(1, aPanels / (3 * threads)))
        let itemsAlongA = (aPanels + chunk - 1) / chunk
        let readsAlongA = itemsAlongA * Int(b.lines), readsAlongB = Int(b.lines) + 3 * threads * lines
        guard aPanels >= 4 * threads, readsAlongA <= readsAlongB else {
            let a = PackedBF16(source: source, lineStride: lineStride, depthStride: depthStride, lines: lines, depth: depth,
                               side: .rows, kernel: Kernel(rawValue: b.kernel) ?? .portable, pool: pool)
            multiply(a.layout, b, c: c, ldc: ldc, accumulate: accumulate, alongA: false, pool: pool)
            withExtendedLifetime(a) {}
            return
        }
        pool.parallelFor(itemsAlongA) { part, scratch in
            let first = part * chunk * width
            let count = min(lines - first, chunk * width)
            let kernel = Kernel(rawValue: b.kernel) ?? .portable
            var a = layout(lines: count, depth: depth, side: .rows, kernel: kernel,
                           words: scratch.words(words(lines: count, depth: depth, side: .rows, kernel: kernel)))
            xattn_bf16_pack(source + first * lineStride, lineStride, depthStride, &a, 0, Int32(count))
            multiplySerial(a, b, aPanels: 0..<panels(a), bPanels: 0..<panels(b), c: c + first * ldc, ldc: ldc, accumulate: accumulate)
        }
    }
}

extension Tensor {
    /// `linear(weight:bias:)` with bf16 products: `packed` holds Wᵀ as the columns operand
    /// (`PackedBF16(transposedColumnsOf:)`); x is packed per work item; accumulation is float.
    public func linear(packed weight: PackedBF16, bias: Tensor?) -> Tensor {
        let inFeatures = dim(-1), outFeatures = weight.lines
        precondition(weight.side == .columns && weight.depth == inFeatures,
                     "linear: packed weight [\(outFeatures), \(weight.depth)] does not fit input \(shape)")
        return withExtendedLifetime(weight) {
            linearProduct(outFeatures: outFeatures, bias: bias) { x, c, rows, accumulate in
                BF16Gemm.multiply(rowsOf: x, lineStride: inFeatures, depthStride: 1, lines: rows, weight.layout,
                                  c: c, ldc: outFeatures, accumulate: accumulate)
            }
        }
    }
}
