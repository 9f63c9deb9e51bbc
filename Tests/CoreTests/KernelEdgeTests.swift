import Foundation
import Testing
import Core

/// Properties of our own kernels that need no reference numbers: layouts agree, threads do not
/// change results, scratch stays bounded.
@Suite struct KernelEdgeTests {
    /// [B, N, H·d] → [B, H, N, d].
    func headsFirst(_ x: Tensor, heads: Int) -> Tensor {
        let (b, n, width) = (x.shape[0], x.shape[1], x.shape[2])
        let d = width / heads
        let s = x.scalars
        var out = [Float](repeating: 0, count: s.count)
        for bi in 0..<b { for t in 0..<n { for h in 0..<heads { for i in 0..<d {
            out[((bi * heads + h) * n + t) * d + i] = s[(bi * n + t) * width + h * d + i]
        } } } }
        return Tensor(shape: [b, heads, n, d], scalars: out)!
    }

    @Test func projectionLayoutMatchesHeadsFirst() {
        let q = testTensor([2, 45, 24], seed: 1), k = testTensor([2, 30, 24], seed: 2), v = testTensor([2, 30, 24], seed: 3)
        let packed = Attention.attention(q: q, k: k, v: v, heads: 3)
        let reference = Attention.attentionHeadsFirst(q: headsFirst(q, heads: 3), k: headsFirst(k, heads: 3), v: headsFirst(v, heads: 3))
        expectClose(headsFirst(packed, heads: 3), reference, tolerance: 0)
    }

    /// Batch item 0 attending to item 1's keys and values equals a run where item 1's keys and
    /// values were copied into item 0's place.
    @Test func keysAndValuesFromAnotherItem() {
        let q = testTensor([2, 20, 16], seed: 4), k = testTensor([2, 33, 16], seed: 5), v = testTensor([2, 33, 16], seed: 6)
        let crossed = Attention.attention(q: q, k: k, v: v, heads: 2, keyValueSource: [1, 1])
        let ks = k.scalars, vs = v.scalars, half = ks.count / 2
        let k2 = Tensor(shape: k.shape, scalars: Array(ks[half...]) + Array(ks[half...]))!
        let v2 = Tensor(shape: v.shape, scalars: Array(vs[half...]) + Array(vs[half...]))!
        expectClose(crossed, Attention.attention(q: q, k: k2, v: v2, heads: 2), tolerance: 0)
    }

    /// The hook sees only the items it asks for, every row once per head, each row summing to 1.
    @Test func hookSeesChosenItemsOnly() {
        let q = testTensor([3, 300, 16], seed: 7), k = testTensor([3, 70, 16], seed: 8)
        let lock = NSLock()
        var rowsSeen = [Int: Int]()
        var worstSum: Float = 0
        let hook = AttentionProbabilityHook(appliesTo: { $0 == 1 }) { block in
            var local: Float = 0
            for r in 0..<block.rowCount {
                let sum = (0..<block.keyCount).reduce(Float(0)) { $0 + block.rows[r * block.keyCount + $1] }
                local = max(local, abs(sum - 1))
            }
            lock.lock(); rowsSeen[block.batch, default: 0] += block.rowCount; worstSum = max(worstSum, local); lock.unlock()
        }
        _ = Attention.attention(q: q, k: k, v: k, heads: 2, hook: hook)
        #expect(rowsSeen == [1: 600])
        #expect(worstSum < 1e-5)
    }

    /// A product split over threads agrees with one sgemm call to rounding (OpenBLAS's edge tiles
    /// round differently, so not bit for bit) and is identical from run to run: the panels depend on
    /// the thread count only, never on which thread takes which.
    @Test func gemmSplitIsDeterministic() {
        for (m, n, k) in [(300, 700, 50), (700, 300, 64), (64, 2000, 33)] {
            let a = testTensor([m, k], seed: 9), b = testTensor([k, n], seed: 10)
            var serial = Tensor(shape: [m, n]), split = Tensor(shape: [m, n]), again = Tensor(shape: [m, n])
            a.withUnsafePointer { ap in b.withUnsafePointer { bp in
                serial.withUnsafeMutablePointer { Gemm.sgemmSerial(ap, .normal, lda: k, bp, .normal, ldb: n, $0, ldc: n, m: m, n: n, k: k) }
                split.withUnsafeMutablePointer { Gemm.sgemm(ap, .normal, lda: k, bp, .normal, ldb: n, $0, ldc: n, m: m, n: n, k: k) }
                again.withUnsafeMutablePointer { Gemm.sgemm(ap, .normal, lda: k, bp, .normal, ldb: n, $0, ldc: n, m: m, n: n, k: k) }
            } }
            // Sums of ≤ 64 products of values in [-1, 1): float32 reordering error well under 1e-5.
            expectClose(split, serial, tolerance: 1e-5)
            let identical = split.scalars == again.scalars
            #expect(identical, "m \(m) n \(n) k \(k): two runs differ")
        }
    }

    /// [B, A, N] → [B, N, A] element for element: sides that are and are not multiples of the 16×16
    /// register blocks (transpose.c) and of the 32-row work items, one and several batch items.
    @Test(arguments: [[1, 320, 64], [2, 37, 53], [3, 16, 16], [1, 1, 70], [2, 70, 1], [1, 33, 17]])
    func transposeMovesEveryElement(shape: [Int]) {
        let x = testTensor(shape, seed: 31)
        let (b, a, n) = (shape[0], shape[1], shape[2])
        let t = x.transposedLastTwo()
        #expect(t.shape == [b, n, a])
        let s = x.scalars, u = t.scalars
        var wrong = 0
        for bi in 0..<b { for r in 0..<a { for c in 0..<n where u[(bi * n + c) * a + r] != s[(bi * a + r) * n + c] { wrong += 1 } } }
        #expect(wrong == 0)
    }

    @Test func concatAndSliceChannels() {
        let a = testTensor([2, 3, 4, 5], seed: 11), b = testTensor([2, 5, 4, 5], seed: 12)
        let joined = Tensor.concatChannels([a, b])
        #expect(joined.shape == [2, 8, 4, 5])
        #expect(joined.channels(0..<3).scalars == a.scalars)
        #expect(joined.channels(3..<8).scalars == b.scalars)
    }

    @Test func residualAddAndScale() {
        let a = testTensor([3, 17], seed: 13), b = testTensor([3, 17], seed: 14)
        let sum = (a + b).scalars, expected = zip(a.scalars, b.scalars).map { $0 + $1 }
        #expect(sum == expected)
        #expect(a.scaled(by: 2).scalars == a.scalars.map { $0 * 2 })
    }

    @Test func copyOnWriteKeepsValueSemantics() {
        let a = testTensor([4, 4], seed: 15)
        var b = a
        b.add(a)
        #expect(a.scalars != b.scalars)
        #expect(b.scalars == a.scalars.map { $0 + $0 })
    }

    /// Every index runs exactly once, also when items call the pool again (nested) and when
    /// several threads call it at the same time.
    @Test func poolRunsEveryItemOnce() async {
        let pool = ComputePool.shared
        await withTaskGroup(of: [Int].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let lock = NSLock()
                    var counts = [Int](repeating: 0, count: 97)
                    pool.parallelFor(97) { i in
                        pool.parallelFor(3) { _ in lock.lock(); counts[i] += 1; lock.unlock() }
                    }
                    return counts
                }
            }
            for await counts in group { #expect(counts.allSatisfy { $0 == 3 }) }
        }
    }
}
