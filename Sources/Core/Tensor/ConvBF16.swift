import CKernels

extension ConvGeometry {
    /// Output positions per work item of a bf16 convolution: 256 × a depth block of 512 packs into
    /// 256 KiB, which is still in L2 when it is multiplied; fewer positions per item would read the
    /// weights (up to 59 MB in SD 1.5's deepest convolutions) once more per item.
    static let bf16PositionsPerItem = 256

    /// A bf16 convolution (not 1×1) one depth block at a time (docs/PERFORMANCE.md, "Precision").
    /// A work item is a run of output positions of one image and a range of the weight's row panels
    /// (output channels); for each depth block it unfolds and packs its positions' part of that block
    /// straight into the packed layout and adds the product with the weight's same block to its part
    /// of the output. Each item streams its weight rows once; the packed block never leaves L2.
    /// When an image has fewer runs than twice the threads (16×16 and 8×8 maps), the output channels
    /// are split too, and each part packs the same positions again (cheap beside the product).
    func runBF16ByDepthBlocks(x: UnsafePointer<Float>, weight: xattn_bf16_packed, bias: UnsafePointer<Float>?,
                              out: UnsafeMutablePointer<Float>, batch: Int, cout: Int, pool: ComputePool = .shared) {
        let n = positions
        let chunk = min(n, Self.bf16PositionsPerItem)
        let runs = batch * ((n + chunk - 1) / chunk)
        let rowPanels = BF16Gemm.panels(weight)
        let wanted = 2 * pool.preferredSplit
        let parts = runs >= wanted ? 1 : min((wanted + runs - 1) / runs, max(1, rowPanels / 4))
        let panelsPerPart = (rowPanels + parts - 1) / parts
        let rowWidth = BF16Gemm.width(weight)
        var whole = weight
        let blocks = Int(xattn_bf16_depth_blocks(&whole)), blockDepth = Int(xattn_bf16_block_depth(weight.kernel))
        let kernel = BF16Gemm.Kernel(rawValue: weight.kernel) ?? .portable
        pool.parallelFor(runs * parts) { item, scratch in
            let part = item % parts, run = item / parts
            let image = run / ((n + chunk - 1) / chunk), start = (run % ((n + chunk - 1) / chunk)) * chunk
            let size = min(chunk, n - start)
            let panels = (part * panelsPerPart)..<min(rowPanels, (part + 1) * panelsPerPart)
            guard !panels.isEmpty else { return }
            let firstRow = panels.lowerBound * rowWidth, rows = min(cout, panels.upperBound * rowWidth) - firstRow
            let y = out + image * cout * n + start
            if let bias { fillBias(bias + firstRow, y + firstRow * n, rows: rows, count: size, stride: n) }
            var geometry = xattn_conv_geometry(image: x + image * cin * h * w, channels: Int32(cin), height: Int32(h), width: Int32(w),
                                               kernel_h: Int32(kh), kernel_w: Int32(kw), stride: Int32(stride),
                                               pad_top: Int32(padding.top), pad_left: Int32(padding.left), out_width: Int32(wo))
            let words = scratch.words(BF16Gemm.words(lines: size, depth: min(k, blockDepth), side: .columns, kernel: kernel))
            let unfolded = scratch.floats(xattn_bf16_unfold_scratch(Int32(size)))
            for block in 0..<blocks {
                let a = xattn_bf16_depth_block(&whole, Int32(block))
                var b = BF16Gemm.layout(lines: size, depth: Int(a.depth), side: .columns, kernel: kernel, words: words)
                xattn_bf16_pack_unfolded(&geometry, Int32(start), Int32(block * blockDepth), unfolded, &b)
                BF16Gemm.multiplySerial(a, b, aPanels: panels, bPanels: 0..<BF16Gemm.panels(b), c: y, ldc: n,
                                        accumulate: block > 0 || bias != nil)
            }
        }
    }
}
