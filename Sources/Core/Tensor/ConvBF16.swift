import CKernels

extension ConvGeometry {
    /// Output positions per work item of a bf16 convolution: 256 × an AMX depth block of 1536 packs
    /// into 768 KiB, which is still in L2 when it is multiplied; fewer positions per item would read
    /// the weights (up to 59 MB in SD 1.5's deepest convolutions) once more per item. (512 was
    /// tried with the 1536-deep blocks: no difference this machine's noise let through.)
    static let bf16PositionsPerItem = 256

    /// The most an image's whole unfolded input may take, packed, for `runBF16PackedOnce` (SD 1.5 at
    /// 512²: 12 MB at 16×16 × 2560 channels).
    static let bf16PackedOnceLimit = 32 << 20

    /// A bf16 convolution (not 1×1) one depth block at a time (docs/PERFORMANCE.md, "Precision").
    /// A work item is a run of output positions of one image; for each depth block it unfolds and
    /// packs its positions' part of that block straight into the packed layout and adds the product
    /// with the weight's same block to its part of the output. Each item streams the weight once;
    /// the packed block never leaves L2. When there are fewer runs than twice the threads (SD 1.5's
    /// 16×16 and 8×8 maps), `runBF16PackedOnce` instead.
    func runBF16ByDepthBlocks(x: UnsafePointer<Float>, weight: xattn_bf16_packed, bias: UnsafePointer<Float>?,
                              out: UnsafeMutablePointer<Float>, batch: Int, cout: Int, pool: ComputePool = .shared) {
        let n = positions
        let chunk = min(n, Self.bf16PositionsPerItem)
        let runsPerImage = (n + chunk - 1) / chunk
        let packedOnceBytes = n * k * 2
        guard batch * runsPerImage >= 2 * pool.preferredSplit || packedOnceBytes > Self.bf16PackedOnceLimit else {
            runBF16PackedOnce(x: x, weight: weight, bias: bias, out: out, batch: batch, cout: cout, pool: pool)
            return
        }
        let weightBlocks = Self.depthBlocks(weight), blockDepth = Int(xattn_bf16_block_depth(weight.kernel))
        let kernel = BF16Gemm.Kernel(rawValue: weight.kernel) ?? .portable
        pool.parallelFor(batch * runsPerImage) { run, scratch in
            let image = run / runsPerImage, start = (run % runsPerImage) * chunk
            let size = min(chunk, n - start)
            let y = out + image * cout * n + start
            fillBias(bias, y, rows: cout, count: size, stride: n)
            var geometry = unfoldGeometry(x, image: image)
            let words = scratch.words(BF16Gemm.words(lines: size, depth: min(k, blockDepth), side: .columns, kernel: kernel))
            let unfolded = scratch.floats(xattn_bf16_unfold_scratch(Int32(size)))
            for (block, a) in weightBlocks.enumerated() {
                var b = BF16Gemm.layout(lines: size, depth: Int(a.depth), side: .columns, kernel: kernel, words: words)
                xattn_bf16_pack_unfolded(&geometry, Int32(start), Int32(block * blockDepth), unfolded, &b)
                BF16Gemm.multiplySerial(a, b, aPanels: 0..<BF16Gemm.panels(a), bPanels: 0..<BF16Gemm.panels(b), c: y, ldc: n,
                                        accumulate: block > 0 || bias != nil)
            }
        }
    }

    /// Small maps: each image's unfolded input is packed once (all of it, at most
    /// `bf16PackedOnceLimit`), its depth blocks in parallel; then work items split the output channels and walk the
    /// blocks, each reading its weight rows once. Splitting channels in the depth-block schedule
    /// instead would pack the same positions once per part (measured 30–40 % slower at 16×16 and 8×8).
    private func runBF16PackedOnce(x: UnsafePointer<Float>, weight: xattn_bf16_packed, bias: UnsafePointer<Float>?,
                                   out: UnsafeMutablePointer<Float>, batch: Int, cout: Int, pool: ComputePool) {
        let n = positions
        let kernel = BF16Gemm.Kernel(rawValue: weight.kernel) ?? .portable
        let columns = PackedBF16(lines: n, depth: k, side: .columns, kernel: kernel)
        let weightBlocks = Self.depthBlocks(weight), columnBlocks = Self.depthBlocks(columns.layout)
        let blockDepth = Int(xattn_bf16_block_depth(weight.kernel))
        let rowPanels = BF16Gemm.panels(weight), rowWidth = BF16Gemm.width(weight)
        // Parts of whole panels, none empty (5 panels in 4 parts: 2, 2, 1 — three parts).
        let panelsPerPart = (rowPanels + 2 * pool.preferredSplit - 1) / (2 * pool.preferredSplit)
        let parts = (rowPanels + panelsPerPart - 1) / panelsPerPart
        for image in 0..<batch {
            pool.parallelFor(columnBlocks.count) { block, scratch in
                var geometry = unfoldGeometry(x, image: image)
                var part = columnBlocks[block]
                xattn_bf16_pack_unfolded(&geometry, 0, Int32(block * blockDepth), scratch.floats(xattn_bf16_unfold_scratch(Int32(n))), &part)
            }
            let y = out + image * cout * n
            pool.parallelFor(parts) { part, _ in
                let panels = (part * panelsPerPart)..<min(rowPanels, (part + 1) * panelsPerPart)
                let firstRow = panels.lowerBound * rowWidth, rows = min(cout, panels.upperBound * rowWidth) - firstRow
                if let bias { fillBias(bias + firstRow, y + firstRow * n, rows: rows, count: n, stride: n) }
                for (block, (a, b)) in zip(weightBlocks, columnBlocks).enumerated() {
                    BF16Gemm.multiplySerial(a, b, aPanels: panels, bPanels: 0..<BF16Gemm.panels(b), c: y, ldc: n,
                                            accumulate: block > 0 || bias != nil)
                }
            }
        }
        withExtendedLifetime(columns) {}
    }

    /// A packed operand's depth blocks, each as an operand of its own (its words inside `packed`'s).
    private static func depthBlocks(_ packed: xattn_bf16_packed) -> [xattn_bf16_packed] {
        var whole = packed
        return (0..<xattn_bf16_depth_blocks(&whole)).map { xattn_bf16_depth_block(&whole, $0) }
    }

    /// The kernels' description of image `image`'s input for unfolding.
    private func unfoldGeometry(_ x: UnsafePointer<Float>, image: Int) -> xattn_conv_geometry {
        xattn_conv_geometry(image: x + image * cin * h * w, channels: Int32(cin), height: Int32(h), width: Int32(w),
                            kernel_h: Int32(kh), kernel_w: Int32(kw), stride: Int32(stride),
                            pad_top: Int32(padding.top), pad_left: Int32(padding.left), out_width: Int32(wo))
    }
}
