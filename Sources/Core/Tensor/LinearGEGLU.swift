import CKernels

extension Tensor {
    /// Rows (about) and output columns of each half per work item of `linearGEGLU`: both halves'
    /// product block, 256 × 2·128 floats (256 KiB), stays in L2 until the gate is applied.
    static let gegluItemRows = 256, gegluItemColumns = 128

    /// `linear(packed:bias:).geglu()` (the feed-forward's first layer, docs/PERFORMANCE.md,
    /// "Precision") without its [..., 2·half] intermediate, which at SD 1.5's first level is 42 MB per
    /// image: written, read back, and, above glibc's mmap threshold, page-faulted in on every call.
    /// x is packed once; each work item computes a block of rows for matching column ranges of the
    /// hidden and gate halves into its thread's scratch (the same kernel, operands and bias as the
    /// unfused product, so the same sums) and writes hidden · gelu(gate) to the output.
    /// Where half is not a whole number of B's 32-column panels, the two steps run unfused.
    public func linearGEGLU(packed weight: PackedBF16, bias: Tensor?) -> Tensor {
        let inFeatures = dim(-1), half = weight.lines / 2
        precondition(weight.side == .columns && weight.depth == inFeatures && weight.lines % 2 == 0,
                     "linearGEGLU: packed weight [\(weight.lines), \(weight.depth)] does not fit input \(shape)")
        precondition(bias.map { $0.shape == [weight.lines] } ?? true, "linearGEGLU: bias \(bias?.shape ?? []) ≠ [\(weight.lines)]")
        let columnWidth = BF16Gemm.width(weight.layout)
        guard half % columnWidth == 0 else { return linear(packed: weight, bias: bias).geglu() }
        return OpProfile.measure("linear+geglu") {
            let rows = count / max(inFeatures, 1)
            var out = Tensor(uninitializedShape: Array(shape.dropLast()) + [half])
            let kernel = BF16Gemm.Kernel(rawValue: weight.layout.kernel) ?? .portable
            let x = withUnsafePointer {
                PackedBF16(source: $0, lineStride: inFeatures, depthStride: 1, lines: rows, depth: inFeatures, side: .rows, kernel: kernel)
            }
            let rowWidth = BF16Gemm.width(x.layout)
            let rowPanels = max(1, Self.gegluItemRows / rowWidth), columnPanels = Self.gegluItemColumns / columnWidth
            let rowBlocks = (x.panels + rowPanels - 1) / rowPanels
            let halfPanels = half / columnWidth, chunks = (halfPanels + columnPanels - 1) / columnPanels
            out.withUnsafeMutablePointer { y in
                ComputePool.shared.parallelFor(rowBlocks * chunks) { item, scratch in
                    // Consecutive items share a row block, whose packed rows stay in L2.
                    let aPanels = (item / chunks * rowPanels)..<min(x.panels, (item / chunks + 1) * rowPanels)
                    let bPanels = (item % chunks * columnPanels)..<min(halfPanels, (item % chunks + 1) * columnPanels)
                    let firstRow = aPanels.lowerBound * rowWidth, blockRows = min(rows, aPanels.upperBound * rowWidth) - firstRow
                    let firstColumn = bPanels.lowerBound * columnWidth, columns = bPanels.count * columnWidth
                    let ldc = 2 * columns
                    let block = scratch.floats(blockRows * ldc)
                    if let bias {
                        bias.withUnsafePointer { b in
                            for r in 0..<blockRows {
                                (block + r * ldc).update(from: b + firstColumn, count: columns)
                                (block + r * ldc + columns).update(from: b + half + firstColumn, count: columns)
                            }
                        }
                    }
                    let gatePanels = (halfPanels + bPanels.lowerBound)..<(halfPanels + bPanels.upperBound)
                    BF16Gemm.multiplySerial(x.layout, weight.layout, aPanels: aPanels, bPanels: bPanels, block: block, ldc: ldc,
                                            accumulate: bias != nil)
                    BF16Gemm.multiplySerial(x.layout, weight.layout, aPanels: aPanels, bPanels: gatePanels, block: block + columns,
                                            ldc: ldc, accumulate: bias != nil)
                    for r in 0..<blockRows {
                        Self.gegluRow(hidden: block + r * ldc, gate: block + r * ldc + columns,
                                      out: y + (firstRow + r) * half + firstColumn, count: columns)
                    }
                }
            }
            withExtendedLifetime((x, weight)) {}
            return out
        }
    }
}
