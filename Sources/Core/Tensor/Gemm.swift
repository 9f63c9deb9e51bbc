import CKernels

/// Matrix multiply through OpenBLAS `cblas_sgemm` (opened at run time by CKernels' openblas.c,
/// which first picks its kernel for this CPU): the only file that calls BLAS.
///
/// OpenBLAS is set to one thread: parallelism comes from `ComputePool`, which cuts a product into
/// row or column panels and runs one single-threaded sgemm per panel. One set of threads for the
/// whole engine means no oversubscription, and no idle OpenBLAS threads spinning while the pool runs
/// norms and softmax.
public enum Gemm {
    /// Whether an operand is read as stored or transposed.
    public enum Layout: Sendable { case normal, transposed }

    private static let configureOnce: Void = {
        if let error = xattn_blas_open() {
            // No BLAS, no products: an installation error every job would meet; say what is missing.
            preconditionFailure("xattn: \(String(cString: error))")
        }
    }()

    /// Opens OpenBLAS now; nil when ready, else why not. `EngineSetup.prepare()` calls it, first
    /// thing in every executable, before any other thread exists (opening may set
    /// OPENBLAS_CORETYPE in the environment).
    public static func prepare() -> String? { xattn_blas_open().map { String(cString: $0) } }

    /// The kernel OpenBLAS runs ("Haswell", "SkylakeX", "Prescott", …).
    public static var kernelName: String { String(cString: xattn_blas_corename()) }

    /// The kernel xattn asks OpenBLAS for on this CPU, nil when OpenBLAS chooses.
    public static var kernelChosenForThisCPU: String? { xattn_blas_core_for_cpu().map { String(cString: $0) } }

    /// Row-major `C = alpha · op(A) · op(B) + beta · C` on the calling thread only.
    /// op(A): [m, k] (A stored [m, k] with row stride lda, or [k, m] when transposed);
    /// op(B): [k, n]; C: [m, n] with row stride ldc.
    public static func sgemmSerial(
        _ a: UnsafePointer<Float>, _ layoutA: Layout, lda: Int,
        _ b: UnsafePointer<Float>, _ layoutB: Layout, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        _ = configureOnce
        guard m > 0, n > 0 else { return }
        OpProfile.addFlops(m, n, k)
        guard k > 0 else {
            // BLAS leaves C untouched when k == 0 only for beta == 1; make it C = beta · C always.
            for row in 0..<m { for col in 0..<n { c[row * ldc + col] *= beta } }
            return
        }
        xattn_sgemm(layoutA == .normal ? 0 : 1, layoutB == .normal ? 0 : 1,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `sgemmSerial` split over the compute pool: along n (column panels) when n is the larger
    /// side, along m (row panels) otherwise. The panels depend only on the pool's thread count, so
    /// results repeat bit for bit from run to run; they differ from an unsplit call by rounding
    /// (OpenBLAS's edge tiles sum in another order).
    public static func sgemm(
        _ a: UnsafePointer<Float>, _ layoutA: Layout, lda: Int,
        _ b: UnsafePointer<Float>, _ layoutB: Layout, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0,
        pool: ComputePool = .shared
    ) {
        let parts = pool.preferredSplit
        // Below ~4 MFLOP the panel handoff costs more than it saves.
        if parts == 1 || m * n * k < 2_000_000 || (m < 32 && n < 32) {
            sgemmSerial(a, layoutA, lda: lda, b, layoutB, ldb: ldb, c, ldc: ldc,
                        m: m, n: n, k: k, alpha: alpha, beta: beta)
            return
        }
        let splitColumns = n >= m
        let extent = splitColumns ? n : m
        // Panels are multiples of 16 so that the kernel's register tiles stay full.
        let panel = ((extent + parts - 1) / parts + 15) / 16 * 16
        let panelCount = (extent + panel - 1) / panel
        pool.parallelFor(panelCount) { p in
            let start = p * panel
            let size = min(panel, extent - start)
            if splitColumns {
                let bPanel = layoutB == .normal ? b + start : b + start * ldb
                sgemmSerial(a, layoutA, lda: lda, bPanel, layoutB, ldb: ldb, c + start, ldc: ldc,
                            m: m, n: size, k: k, alpha: alpha, beta: beta)
            } else {
                let aPanel = layoutA == .normal ? a + start * lda : a + start
                sgemmSerial(aPanel, layoutA, lda: lda, b, layoutB, ldb: ldb, c + start * ldc, ldc: ldc,
                            m: size, n: n, k: k, alpha: alpha, beta: beta)
            }
        }
    }

    /// OpenBLAS's own multithreaded sgemm with `threads` threads (benchmark comparison only; the
    /// engine never calls it). Restores single-threaded mode before returning.
    public static func sgemmOpenBLASThreaded(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, threads: Int
    ) {
        _ = configureOnce
        xattn_blas_set_threads(Int32(threads))
        xattn_sgemm(0, 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
        xattn_blas_set_threads(1)
    }

    /// The OpenBLAS build's self-description and its kernel, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH …;
    /// kernel Haswell".
    public static var backendDescription: String { String(cString: xattn_blas_description()) }
}

extension Tensor {
    /// Matrix product of the last two dimensions, broadcasting nothing: [..., m, k] × [..., k, n]
    /// → [..., m, n] with equal leading dimensions (batched), or [..., m, k] × [k, n] (shared B).
    public func matmul(_ other: Tensor) -> Tensor {
        OpProfile.measure("matmul") {
            precondition(rank >= 2 && other.rank >= 2, "matmul needs rank ≥ 2: \(shape) × \(other.shape)")
            let m = dim(-2), k = dim(-1), n = other.dim(-1)
            precondition(other.dim(-2) == k, "matmul inner dimensions differ: \(shape) × \(other.shape)")
            let batch = count / max(m * k, 1)
            let sharedB = other.rank == 2
            precondition(sharedB || other.count / max(k * n, 1) == batch,
                         "matmul batch dimensions differ: \(shape) × \(other.shape)")
            var out = Tensor(uninitializedShape: Array(shape.dropLast()) + [n])
            withUnsafePointer { a in
                other.withUnsafePointer { b in
                    out.withUnsafeMutablePointer { c in
                        if sharedB {
                            // All batch rows at once: one [batch·m, k] × [k, n] product.
                            Gemm.sgemm(a, .normal, lda: k, b, .normal, ldb: n, c, ldc: n,
                                       m: batch * m, n: n, k: k)
                        } else {
                            for i in 0..<batch {
                                Gemm.sgemm(a + i * m * k, .normal, lda: k, b + i * k * n, .normal, ldb: n,
                                           c + i * m * n, ldc: n, m: m, n: n, k: k)
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    /// PyTorch `nn.Linear`: `x · Wᵀ + b` over the last dimension.
    /// x: [..., in], weight: [out, in] (PyTorch layout, not transposed on load), bias: [out] → [..., out].
    public func linear(weight: Tensor, bias: Tensor?) -> Tensor {
        let inFeatures = dim(-1), outFeatures = weight.dim(0)
        precondition(weight.shape == [outFeatures, inFeatures], "linear weight \(weight.shape) does not fit input \(shape)")
        return linearProduct(outFeatures: outFeatures, bias: bias) { x, c, rows, accumulate in
            weight.withUnsafePointer { w in
                // [rows, in] × [out, in]ᵀ → [rows, out]
                Gemm.sgemm(x, .normal, lda: inFeatures, w, .transposed, ldb: inFeatures,
                           c, ldc: outFeatures, m: rows, n: outFeatures, k: inFeatures, beta: accumulate ? 1 : 0)
            }
        }
    }

    /// The frame both linear layers share: [..., in] → [..., out], C holding the bias rows first
    /// (if any); `product(x, c, rows, accumulate)` adds (or writes) x · Wᵀ.
    func linearProduct(outFeatures: Int, bias: Tensor?,
                       _ product: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Bool) -> Void) -> Tensor {
        OpProfile.measure("linear") {
            let rows = count / max(dim(-1), 1)
            var out = Tensor(uninitializedShape: Array(shape.dropLast()) + [outFeatures])
            out.withUnsafeMutablePointer { c in
                if let bias {
                    precondition(bias.shape == [outFeatures], "linear bias \(bias.shape) ≠ [\(outFeatures)]")
                    // Split over the pool: one thread filled 5 MB per layer at SD 1.5's first level.
                    bias.withUnsafePointer { b in
                        parallelRanges(rows, grain: max(1, (1 << 15) / max(outFeatures, 1))) { range in
                            for r in range { (c + r * outFeatures).update(from: b, count: outFeatures) }
                        }
                    }
                }
                withUnsafePointer { x in product(x, c, rows, bias != nil) }
            }
            return out
        }
    }
}
