import CKernels

/// Which way a convolution is computed. `automatic` takes Winograd F(4×4, 3×3) for stride-1,
/// padding-1 3×3 convolutions whose products get at least 64 tiles (a 32×32 map, or four 16×16
/// ones; docs/PERFORMANCE.md, "Winograd"), the direct im2col product otherwise.
public enum ConvolutionAlgorithm: Sendable { case automatic, direct, winograd }

/// Winograd F(4×4, 3×3) over the compute pool. Per call: the filters' transform U (36 matrices
/// [Cout, Cin], computed here: holding them would take 4× the weights' memory), then for chunks of
/// tiles (≤ 32 MB of transformed data each): the inputs' transform V (36 × [Cin, tiles]), 36
/// products M = U·V, and the output transform with the bias — by blocks of output channels when
/// U is larger than a chunk (`outputBlock`).
struct WinogradConvolution {
    let batch, cin, cout, h, w: Int
    /// Bytes of transformed data (V or M) per chunk.
    var chunkBytes = 32 << 20
    var tileRows: Int { (h + 3) / 4 }
    var tilesPerRow: Int { (w + 3) / 4 }

    /// Fewer tiles make 36 narrow products that read all of U for little work: measured in one
    /// `xattn-bench kernels` run, 1280 channels at 8×8 (4 tiles) take 2–3× the direct product's
    /// time, at 16×16 (16 tiles) 0.6–0.95×, 640 channels at 32×32 (64 tiles) 0.5×.
    static func applies(kernel: Int, stride: Int, padding: Padding2D, batch: Int, h: Int, w: Int) -> Bool {
        kernel == 3 && stride == 1 && padding == .uniform(1) && batch * ((h + 3) / 4) * ((w + 3) / 4) >= 64
    }

    static func canRun(kernel: Int, stride: Int, padding: Padding2D) -> Bool {
        kernel == 3 && stride == 1 && padding == .uniform(1)
    }

    /// A run of tile rows of one image, its columns starting at `column` in the chunk.
    struct Segment { let image, firstRow, endRow, column: Int }

    /// Chunks of whole images when an image's tiles fit the budget (so small maps still give the
    /// products wide operands), else of tile rows of one image.
    func chunks() -> [[Segment]] {
        let budgetTiles = max(tilesPerRow, chunkBytes / (36 * max(cin, cout) * 4))
        let perImage = tileRows * tilesPerRow
        var result: [[Segment]] = []
        if perImage <= budgetTiles {
            let imagesPerChunk = max(1, budgetTiles / perImage)
            for first in stride(from: 0, to: batch, by: imagesPerChunk) {
                result.append((first..<min(batch, first + imagesPerChunk)).enumerated().map { index, image in
                    Segment(image: image, firstRow: 0, endRow: tileRows, column: index * perImage)
                })
            }
        } else {
            let rowsPerChunk = max(1, budgetTiles / tilesPerRow)
            for image in 0..<batch {
                for first in stride(from: 0, to: tileRows, by: rowsPerChunk) {
                    result.append([Segment(image: image, firstRow: first, endRow: min(tileRows, first + rowsPerChunk), column: 0)])
                }
            }
        }
        return result
    }

    /// Output channels per pass of the products: all of them when their transformed filters U fit the
    /// chunk budget (U is then computed once per call), else as many as fit (U is computed per
    /// chunk and block). A bounded U stays below glibc's mmap threshold, so it is reused from the
    /// heap instead of page-faulted in anew (1280 channels: 236 MB whole, 32 MB per block).
    var outputBlock: Int { max(1, min(cout, chunkBytes / (36 * cin * 4))) }

    func run(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>) {
        let pool = ComputePool.shared
        let block = outputBlock
        let u = UnsafeMutablePointer<Float>.allocate(capacity: 36 * block * cin)
        defer { u.deallocate() }
        if block == cout { transformWeights(weight, outputs: 0..<cout, into: u) }
        let chunks = chunks()
        let widest = chunks.map { $0.reduce(0) { $0 + ($1.endRow - $1.firstRow) * tilesPerRow } }.max() ?? 0
        let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * widest)
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * block * widest)
        defer { v.deallocate(); m.deallocate() }
        let scratchFloats = 60 * (tilesPerRow + 2)
        for chunk in chunks {
            let n = chunk.reduce(0) { $0 + ($1.endRow - $1.firstRow) * tilesPerRow }
            pool.parallelFor(chunk.count * cin) { item, scratch in
                let segment = chunk[item / cin], c = item % cin
                xattn_winograd_input(x + (segment.image * cin + c) * h * w, Int32(h), Int32(w), Int32(segment.firstRow),
                                     Int32(segment.endRow), v + c * n + segment.column, cin * n, scratch.floats(scratchFloats))
            }
            for first in stride(from: 0, to: cout, by: block) {
                let rows = min(block, cout - first)
                if block < cout { transformWeights(weight, outputs: first..<(first + rows), into: u) }
                pool.parallelFor(36) { xi in
                    Gemm.sgemmSerial(u + xi * rows * cin, .normal, lda: cin, v + xi * cin * n, .normal, ldb: n,
                                     m + xi * rows * n, ldc: n, m: rows, n: n, k: cin)
                }
                pool.parallelFor(chunk.count * rows) { item, scratch in
                    let segment = chunk[item / rows], o = item % rows
                    xattn_winograd_output(m + o * n + segment.column, rows * n, Int32(h), Int32(w), Int32(segment.firstRow),
                                          Int32(segment.endRow), bias?[first + o] ?? 0,
                                          out + (segment.image * cout + first + o) * h * w, scratch.floats(scratchFloats))
                }
            }
        }
    }

    /// U of output channels `outputs` (all input channels): 36 matrices [outputs.count, cin], one
    /// after another.
    private func transformWeights(_ weight: UnsafePointer<Float>, outputs: Range<Int>, into u: UnsafeMutablePointer<Float>) {
        let pool = ComputePool.shared
        let pairs = outputs.count * cin
        let source = weight + outputs.lowerBound * cin * 9
        let pieces = min(pairs, 8 * pool.preferredSplit)
        pool.parallelFor(pieces) { piece in
            let first = piece * pairs / pieces, end = (piece + 1) * pairs / pieces
            xattn_winograd_weights(source + first * 9, Int32(end - first), u + first, pairs)
        }
    }
}
