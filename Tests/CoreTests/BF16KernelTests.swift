import Foundation
import Testing
@testable import Core
import CKernels

/// The bf16 products (Sources/Core/Kernels) against a float64 oracle, and the AVX512-BF16 kernel
/// against the portable one that forms the same sums.
@Suite struct BF16KernelTests {
    /// Odd sizes on purpose: partial panels on both sides, an odd depth, depth blocks of every kernel
    /// (AMX: two of XATTN_BF16_AMX_KC = 1536, the last partial; the vector kernel: seven of 256).
    static let (m, n, k) = (37, 70, 1601)

    static func bf16(_ x: Float) -> Double {
        Double(Float(bitPattern: UInt32(xattn_bf16_from_float_bits(x)) << 16))
    }

    /// float64 products of `a` [m, k] and `b` [k, n], and Σ|a||b| per element for the bound.
    static func oracle(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, round: Bool)
        -> (values: [Double], magnitudes: [Double]) {
        var values = [Double](repeating: 0, count: m * n), magnitudes = values
        for i in 0..<m { for j in 0..<n {
            var sum = 0.0, size = 0.0
            for d in 0..<k {
                let x = round ? bf16(a[i * k + d]) : Double(a[i * k + d])
                let y = round ? bf16(b[d * n + j]) : Double(b[d * n + j])
                sum += x * y; size += abs(x * y)
            }
            values[i * n + j] = sum; magnitudes[i * n + j] = size
        } }
        return (values, magnitudes)
    }

    /// The kernels this machine runs, the portable one always.
    static var kernels: [BF16Gemm.Kernel] {
        [.portable] + (BF16Gemm.vectorKernelIsSupported ? [.avx512] : []) + (BF16Gemm.kernel == .amx ? [.amx] : [])
    }

    static func product(_ a: Tensor, _ b: Tensor, kernel: BF16Gemm.Kernel = BF16Gemm.kernel, portable: Bool = false,
                        accumulateOnto start: [Float]? = nil, shape: [Int] = [m, n, k]) -> [Float] {
        let (m, n, k) = (shape[0], shape[1], shape[2])
        let packedA = a.withUnsafePointer { PackedBF16(source: $0, lineStride: k, depthStride: 1, lines: m, depth: k, side: .rows, kernel: kernel) }
        let packedB = b.withUnsafePointer { PackedBF16(source: $0, lineStride: 1, depthStride: n, lines: n, depth: k, side: .columns, kernel: kernel) }
        var c = start ?? [Float](repeating: .nan, count: m * n)
        c.withUnsafeMutableBufferPointer { c in
            if portable {
                BF16Gemm.multiplySerial(packedA.layout, packedB.layout, aPanels: 0..<packedA.panels, bPanels: 0..<packedB.panels,
                                        c: c.baseAddress!, ldc: n, accumulate: start != nil, portable: true)
            } else {
                BF16Gemm.multiply(packedA, packedB, c: c.baseAddress!, ldc: n, accumulate: start != nil)
            }
        }
        return c
    }

    /// Rounding each operand to bf16 (8 significant bits, unit roundoff u = 2⁻⁸) moves each product
    /// by at most (2u + u²)|a||b|; float accumulation over k terms adds at most k·2⁻²⁴·Σ|a||b|
    /// (the standard recursive-summation bound). So |C − C₆₄| ≤ (2⁻⁷ + 2⁻¹⁶ + k·2⁻²⁴)·Σ|a||b|.
    /// Against the oracle of the bf16-rounded operands only the accumulation term remains.
    /// For AMX the order of the sums inside a tile step is the hardware's, so only the bound holds.
    /// Shapes: the partial one above, and two where the AMX kernel walks A's panels in its outer loop
    /// (more rows than columns per call): split along B's panels on two or more threads (each call
    /// gets A's 7 panels and one of B's), and whole on one thread.
    @Test(arguments: kernels, [[m, n, k], [100, 300, 517], [300, 100, 517]])
    func matchesFloat64OracleWithinTheBound(kernel: BF16Gemm.Kernel, shape: [Int]) {
        let (m, n, k) = (shape[0], shape[1], shape[2])
        let a = testTensor([m, k], seed: 11), b = testTensor([k, n], seed: 12)
        let c = Self.product(a, b, kernel: kernel, shape: shape)
        let exact = Self.oracle(a.scalars, b.scalars, m: m, n: n, k: k, round: false)
        let rounded = Self.oracle(a.scalars, b.scalars, m: m, n: n, k: k, round: true)
        let summation = Double(k) * 0x1p-24
        var worstExact = 0.0, worstRounded = 0.0, worstSeen = 0.0
        for e in 0..<(m * n) {
            worstExact = max(worstExact, abs(Double(c[e]) - exact.values[e]) / exact.magnitudes[e])
            worstRounded = max(worstRounded, abs(Double(c[e]) - rounded.values[e]) / rounded.magnitudes[e])
            worstSeen = max(worstSeen, abs(rounded.values[e] - exact.values[e]) / exact.magnitudes[e])
        }
        #expect(worstExact <= 0x1p-7 + 0x1p-16 + summation, "error / Σ|a||b| = \(worstExact)")
        #expect(worstRounded <= summation, "accumulation error / Σ|a||b| = \(worstRounded)")
        // The bound is not vacuous: bf16 operands do move the result by a visible amount.
        #expect(worstSeen > 1e-4)
    }

    /// vdpbf16ps adds the odd pair's product, then the even one's, to the float accumulator; both
    /// products are exact in float, so the portable kernel reproduces it bit for bit on normal values.
    @Test(.enabled(if: BF16Gemm.vectorKernelIsSupported)) func avx512KernelEqualsPortableKernel() {
        let a = testTensor([Self.m, Self.k], seed: 13), b = testTensor([Self.k, Self.n], seed: 14)
        #expect(Self.product(a, b, kernel: .avx512) == Self.product(a, b, kernel: .avx512, portable: true))
    }

    /// The portable kernel reads AMX's layout (rows in 16×16-word tiles, pairs rounded up to 16, depth
    /// blocks of 1536) as well: the same sums, grouped by other blocks, so equal to rounding.
    @Test func portableKernelReadsEveryLayout() {
        let a = testTensor([Self.m, Self.k], seed: 13), b = testTensor([Self.k, Self.n], seed: 14)
        let reference = Self.product(a, b, kernel: .portable, portable: true)
        #expect(Self.product(a, b, kernel: .avx512, portable: true) == reference)
        let amx = Tensor(shape: [Self.m, Self.n], scalars: Self.product(a, b, kernel: .amx, portable: true))!
        // Grouped by other blocks: within rounding of 1601-term float sums (measured 1.1·10⁻⁵ scaled);
        // a word read from the wrong place moves an element by O(1).
        #expect(maxScaledError(amx, Tensor(shape: [Self.m, Self.n], scalars: reference)!) <= 1e-4)
    }

    /// `accumulate` adds to what C holds; every element is written (C started as NaN above).
    @Test func accumulateAddsToC() {
        let a = testTensor([Self.m, Self.k], seed: 15), b = testTensor([Self.k, Self.n], seed: 16)
        let start = testTensor([Self.m, Self.n], seed: 17).scalars
        let fresh = Self.product(a, b), added = Self.product(a, b, accumulateOnto: start)
        // C's start enters the tile's sums first, not last: equal within the rounding of 1601-term float
        // sums (measured 1.1·10⁻⁵ absolute on elements up to ~50); a start not added moves one by O(1).
        let worst = zip(zip(fresh, start), added).map { abs($0.0 + $0.1 - $1) / max(1, abs($1)) }.max() ?? .nan
        #expect(worst < 1e-4)
        #expect(!fresh.contains { $0.isNaN })
    }

    /// Packing through strides, for every kernel's layout and both sides: a matrix stored
    /// [depth, lines] packs to the same words as stored [lines, depth] (the vector fast paths of
    /// each source order against each other and against the scalar one).
    @Test(arguments: [BF16Gemm.Kernel.portable, .avx512, .amx], [PackedBF16.Side.rows, .columns])
    func transposedSourcePacksTheSame(kernel: BF16Gemm.Kernel, side: PackedBF16.Side) {
        let (lines, k) = (Self.n, Self.k)
        let byDepth = testTensor([k, lines], seed: 18).scalars
        var byLine = [Float](repeating: 0, count: k * lines)
        for d in 0..<k { for j in 0..<lines { byLine[j * k + d] = byDepth[d * lines + j] } }
        func pack(_ values: [Float], lineStride: Int, depthStride: Int) -> [UInt32] {
            let packed = values.withUnsafeBufferPointer {
                PackedBF16(source: $0.baseAddress!, lineStride: lineStride, depthStride: depthStride, lines: lines, depth: k, side: side, kernel: kernel)
            }
            return Array(UnsafeBufferPointer(start: packed.layout.words, count: BF16Gemm.words(packed.layout)))
        }
        #expect(pack(byDepth, lineStride: 1, depthStride: lines) == pack(byLine, lineStride: k, depthStride: 1))
    }

    /// The softmax of scores stored by key, packed straight into B's columns (attention's rows no
    /// hook reads), against a float64 softmax packed by the ordinary packer, in both bf16 layouts:
    /// 37 query lines (a full panel and 5 lines of another, whose other lines must be zero words)
    /// and 1601 keys (odd: a zero odd half; past one AMX depth block of 1536 and six vector ones of
    /// 256). Each bf16 half within one bf16 unit in the last place (2⁻⁷ relative) of the float64
    /// value's rounding: the exponential's own error (≤ 2.2·10⁻⁷ relative) can move a value across a
    /// rounding boundary, nothing more; 1/Σ within 10⁻⁵ relative (measured ≤ 2·10⁻⁷).
    @Test(.enabled(if: BF16Gemm.vectorKernelIsSupported), arguments: [BF16Gemm.Kernel.avx512, .amx])
    func softmaxPackedByKeyMatchesFloat64(kernel: BF16Gemm.Kernel) throws {
        let (lines, keys, scale): (Int, Int, Float) = (37, 1601, 0.35)
        let byKey = testTensor([keys, lines], seed: 23).scalars.map { $0 * 9 }
        var expected = [Float](repeating: 0, count: keys * lines), sums = [Double](repeating: 0, count: lines)
        for l in 0..<lines {
            let top = (0..<keys).map { Double(byKey[$0 * lines + l]) }.max() ?? 0
            for j in 0..<keys {
                let e = Foundation.exp(Double(scale) * (Double(byKey[j * lines + l]) - top))
                expected[j * lines + l] = Float(e); sums[l] += e
            }
        }
        let reference = expected.withUnsafeBufferPointer {
            PackedBF16(source: $0.baseAddress!, lineStride: 1, depthStride: lines, lines: lines, depth: keys, side: .columns, kernel: kernel)
        }
        let packed = PackedBF16(lines: lines, depth: keys, side: .columns, kernel: kernel)
        var inverse = [Float](repeating: .nan, count: lines), layout = packed.layout
        #expect(xattn_softmax_pack_columns(byKey, lines, Int32(keys), scale, &layout, &inverse) == 1)
        func halves(_ word: UInt32) -> [Double] { [Self.bf16(Float(bitPattern: word << 16)), Self.bf16(Float(bitPattern: word & 0xFFFF_0000))] }
        var worst = 0.0, mismatched = 0
        for i in 0..<BF16Gemm.words(reference.layout) {
            for (got, want) in zip(halves(packed.layout.words[i]), halves(reference.layout.words[i])) {
                if want == 0 { if got != 0 { mismatched += 1 }; continue }
                worst = max(worst, abs(got - want) / want)
            }
        }
        #expect(mismatched == 0, "\(mismatched) values where zeros belong")
        #expect(worst <= 0x1p-7, "largest relative difference \(worst)")
        let worstSum = (0..<lines).map { abs(Double(inverse[$0]) * sums[$0] - 1) }.max() ?? .nan
        #expect(worstSum <= 1e-5, "1/Σ off by \(worstSum)")
    }

    /// Round to nearest, ties to even, as vcvtne2ps2bf16; NaN stays NaN.
    @Test func conversionRoundsToNearestEven() {
        #expect(xattn_bf16_from_float_bits(1.0) == 0x3F80)
        #expect(xattn_bf16_from_float_bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)   // tie → even
        #expect(xattn_bf16_from_float_bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)   // tie → even
        #expect(xattn_bf16_from_float_bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(Float(bitPattern: UInt32(xattn_bf16_from_float_bits(.nan)) << 16).isNaN)
    }
}

/// The kernels' conversion, through Core's module (the C module is Core's implementation detail).
func xattn_bf16_from_float_bits(_ x: Float) -> UInt16 { BF16Gemm.roundToBF16(x) }

/// The convolution's fused unfold-and-pack (bf16_unfold.c) against unfolding into floats first and
/// packing those: the products must agree bit for bit (the same packed words, the same kernel).
@Suite struct BF16UnfoldTests {
    /// im2col of one image [cin, h, w] → [cin·kh·kw, ho·wo].
    static func unfolded(_ x: [Float], cin: Int, h: Int, w: Int, k: Int, stride: Int, padding: Padding2D) -> (matrix: [Float], ho: Int, wo: Int) {
        let ho = (h + padding.top + padding.bottom - k) / stride + 1, wo = (w + padding.left + padding.right - k) / stride + 1
        var m = [Float](repeating: 0, count: cin * k * k * ho * wo)
        for c in 0..<cin { for ky in 0..<k { for kx in 0..<k { for oy in 0..<ho { for ox in 0..<wo {
            let iy = oy * stride - padding.top + ky, ix = ox * stride - padding.left + kx
            let row = (c * k + ky) * k + kx
            m[row * ho * wo + oy * wo + ox] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[(c * h + iy) * w + ix] : 0
        } } } } }
        return (m, ho, wo)
    }

    /// The fused unfold-and-pack against packing the float im2col, word for word, in every kernel's
    /// layout: a part of the positions (from 17, 70 lines: a partial panel), a depth of 1629 (seven
    /// vector-kernel blocks, the last with 47 pairs: a partial group of unfolded pairs; two AMX
    /// blocks, the last likewise), packed whole and one depth block at a time into each block's own operand (as the
    /// convolution does).
    @Test(arguments: [BF16Gemm.Kernel.portable, .avx512, .amx])
    func unfoldedPackingMatchesEveryLayout(kernel: BF16Gemm.Kernel) {
        let (cin, h, w, first, lines) = (181, 12, 11, 17, 70)
        var state: UInt64 = 99
        func random() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 500 }
        let x = (0..<(cin * h * w)).map { _ in random() }
        let (matrix, _, wo) = Self.unfolded(x, cin: cin, h: h, w: w, k: 3, stride: 1, padding: .uniform(1))
        let n = h * w, depth = cin * 9
        let expected = matrix.withUnsafeBufferPointer {
            PackedBF16(source: $0.baseAddress! + first, lineStride: 1, depthStride: n, lines: lines, depth: depth, side: .columns, kernel: kernel)
        }
        let whole = PackedBF16(lines: lines, depth: depth, side: .columns, kernel: kernel)
        let byBlocks = PackedBF16(lines: lines, depth: depth, side: .columns, kernel: kernel)
        var scratch = [Float](repeating: .nan, count: xattn_bf16_unfold_scratch(Int32(lines)))
        var blocks: Int32 = 0
        x.withUnsafeBufferPointer { image in
            var geometry = xattn_conv_geometry(image: image.baseAddress!, channels: Int32(cin), height: Int32(h), width: Int32(w),
                                               kernel_h: 3, kernel_w: 3, stride: 1, pad_top: 1, pad_left: 1, out_width: Int32(wo))
            var layout = whole.layout
            xattn_bf16_pack_unfolded(&geometry, Int32(first), 0, &scratch, &layout)
            var target = byBlocks.layout
            blocks = xattn_bf16_depth_blocks(&target)
            for block in 0..<blocks {
                var part = xattn_bf16_depth_block(&target, block)
                xattn_bf16_pack_unfolded(&geometry, Int32(first), block * xattn_bf16_block_depth(kernel.rawValue), &scratch, &part)
            }
        }
        #expect(blocks == (kernel == .amx ? 2 : 7))
        let count = BF16Gemm.words(expected.layout)
        for packed in [whole, byBlocks] {
            let differing = (0..<count).filter { packed.layout.words[$0] != expected.layout.words[$0] }
            #expect(differing.isEmpty, "\(differing.count) of \(count) words differ, the first at \(differing.first ?? 0)")
        }
    }

    /// A 3×3 convolution as the UNet's (stride 1, padding 1) and its downsampler's (stride 2, padding
    /// right and bottom only), odd channel counts, through both schedules (ConvBF16.swift): a map of
    /// 18 runs of 256 positions (depth blocks per run, up to 9 threads), and small maps packed once
    /// whose work items split the output channels (150 of them, over 350 input channels: three AMX blocks; and 70: five
    /// panels in either layout, which four parts of two panels would leave one part empty).
    @Test(arguments: [(5, 72, 64, 1, Padding2D.uniform(1), 19), (5, 24, 26, 1, Padding2D.uniform(1), 19),
                      (7, 40, 38, 2, Padding2D(top: 0, left: 0, bottom: 1, right: 1), 19), (350, 9, 7, 1, Padding2D.uniform(1), 150),
                      (9, 8, 8, 1, Padding2D.uniform(1), 70)])
    func fusedPackingEqualsUnfoldThenPack(cin: Int, h: Int, w: Int, stride: Int, padding: Padding2D, cout: Int) throws {
        var state: UInt64 = 12345
        func random() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 500 }
        let x = (0..<(cin * h * w)).map { _ in random() }, weights = (0..<(cout * cin * 9)).map { _ in random() }
        let input = try #require(Tensor(shape: [1, cin, h, w], scalars: x)), weight = try #require(Tensor(shape: [cout, cin, 3, 3], scalars: weights))
        let fused = input.conv2d(packed: PackedBF16(rowsOf: weight), kernel: 3, bias: nil, stride: stride, padding: padding)

        let (matrix, ho, wo) = Self.unfolded(x, cin: cin, h: h, w: w, k: 3, stride: stride, padding: padding)
        let n = ho * wo, depth = cin * 9
        let rows = PackedBF16(rowsOf: try #require(Tensor(shape: [cout, depth], scalars: weights)))
        let columns = matrix.withUnsafeBufferPointer { PackedBF16(source: $0.baseAddress!, lineStride: 1, depthStride: n, lines: n, depth: depth, side: .columns) }
        var expected = [Float](repeating: .nan, count: cout * n)
        expected.withUnsafeMutableBufferPointer { BF16Gemm.multiply(rows.layout, columns.layout, c: $0.baseAddress!, ldc: n, accumulate: false) }
        #expect(fused.shape == [1, cout, ho, wo])
        #expect(fused.scalars == expected, "largest difference \(zip(fused.scalars, expected).map { abs($0 - $1) }.max() ?? 0)")
    }
}
