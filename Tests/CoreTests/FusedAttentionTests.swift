import Foundation
import Testing
@testable import Core
import CKernels

/// The fused float attention kernel (Sources/Core/Kernels/attention_f32.c) against a float64
/// oracle, and through `Attention` against the unfused path (sgemm, row softmax, sgemm) that hooked
/// rows still take. On a CPU without AVX-512 the kernel declines and these tests check nothing.
@Suite struct FusedAttentionTests {
    /// float64 softmax(scale·q·kᵀ)·v for rows of q [rows, d], k and v [keys, d], all with row stride `ld`.
    static func oracle(_ q: [Float], _ k: [Float], _ v: [Float], ld: Int, rows: Int, keys: Int, d: Int, scale: Double) -> [Double] {
        var out = [Double](repeating: 0, count: rows * d)
        var weights = [Double](repeating: 0, count: keys)
        for i in 0..<rows {
            var top = -Double.infinity
            for j in 0..<keys {
                var dot = 0.0
                for c in 0..<d { dot += Double(q[i * ld + c]) * Double(k[j * ld + c]) }
                weights[j] = dot * scale
                top = max(top, weights[j])
            }
            var total = 0.0
            for j in 0..<keys { weights[j] = Foundation.exp(weights[j] - top); total += weights[j] }
            for j in 0..<keys { for c in 0..<d { out[i * d + c] += weights[j] / total * Double(v[j * ld + c]) } }
        }
        return out
    }

    /// Shapes that end in partial groups of 32 rows, partial steps of 12 keys and partial blocks of
    /// 96, more rows than one call's 128, heads of SD 1.5 (40, 80, 160) and odd widths (1, 7, 13: the
    /// values step's tail); the operands sit in wider rows, as heads do. `growing` makes later keys
    /// larger so each row's maximum moves from block to block (the rescaling is exercised). Bound:
    /// relative L2 error 1e-5 (measured ≤ 2.5·10⁻⁶: float sums over ≤ 1000 keys, the exponential's
    /// 2.2·10⁻⁷, Q pre-scaled by scale·log₂e).
    @Test(arguments: [(1, 1, 1, false), (37, 77, 40, false), (130, 97, 7, true), (150, 700, 80, true),
                      (33, 13, 160, false), (200, 300, 13, true)])
    func matchesFloat64(rows: Int, keys: Int, d: Int, growing: Bool) throws {
        guard xattn_cpu_has_avx512() != 0 else { return }
        let ld = d + 5, scale = 1 / Double(d).squareRoot()
        let q = testTensor([rows, ld], seed: 31).scalars.map { $0 * 3 }
        var k = testTensor([keys, ld], seed: 32).scalars.map { $0 * 3 }
        if growing { for j in 0..<keys { for c in 0..<ld { k[j * ld + c] *= 1 + 4 * Float(j) / Float(keys) } } }
        let v = testTensor([keys, ld], seed: 33).scalars
        var out = [Float](repeating: .nan, count: rows * ld)
        var scratch = [Float](repeating: 0, count: xattn_attention_f32_scratch(Int32(d)))
        let ran = xattn_attention_f32(q, ld, k, ld, v, ld, &out, ld, Int32(rows), Int32(keys), Int32(d), Float(scale), &scratch)
        #expect(ran == 1)
        let expected = Self.oracle(q, k, v, ld: ld, rows: rows, keys: keys, d: d, scale: scale)
        var error = 0.0, size = 0.0
        for i in 0..<rows { for c in 0..<d {
            error += pow(Double(out[i * ld + c]) - expected[i * d + c], 2)
            size += expected[i * d + c] * expected[i * d + c]
        } }
        #expect((error / size).squareRoot() <= 1e-5, "relative L2 \((error / size).squareRoot())")
        // Columns past d belong to the caller (the next head).
        #expect((0..<rows).allSatisfy { i in (d..<ld).allSatisfy { out[i * ld + $0].isNaN } }, "wrote outside its head")
    }

    /// Rows no hook reads (fused) against the same rows forced through the unfused path by a hook that
    /// changes nothing: three items, heads of 40, one item reading another's keys and values; within
    /// 1e-5 scaled (two float computations of the same sums; measured ≤ 1.1·10⁻⁶).
    @Test func fusedAgreesWithUnfused() {
        let q = testTensor([3, 300, 80], seed: 34), k = testTensor([2, 250, 80], seed: 35), v = testTensor([2, 250, 80], seed: 36)
        let source = [0, 1, 1]
        let fused = Attention.attention(q: q, k: k, v: v, heads: 2, keyValueSource: source)
        let passThrough = AttentionProbabilityHook(appliesTo: { _ in true }) { _ in }
        let unfused = Attention.attention(q: q, k: k, v: v, heads: 2, keyValueSource: source, hook: passThrough)
        expectClose(fused, unfused, tolerance: 1e-5)
    }
}
