import Foundation
import Testing
@testable import Core

/// Winograd F(4×4, 3×3) against PyTorch's convolution (kernels.safetensors) and against the direct
/// product, including partial tiles, several images per chunk and tile rows split across chunks.
@Suite struct WinogradTests {
    func fixture(_ name: String) throws -> Tensor {
        let file = try #require(Fixtures.kernels, "Tests/Fixtures/kernels.safetensors is missing; run tools/reference/kernels.py")
        return try file.tensor(name)
    }

    /// The transforms multiply by up to 8 (Aᵀ) and 5 (Bᵀ) and divide the filter by 4, 6 and 24, so
    /// the sums carry terms larger than the result and round more than the direct product's
    /// (1e-5 in KernelParityTests). Measured (scaled error |a − e| / max(1, |e|)): 2.0e-5 against
    /// PyTorch on conv3x3_s1_panels, 1.1e-4 against the direct product on matchesTheDirectProduct's
    /// data; allowed 5e-4. The whole-model parity tests keep their 1e-3 of the output's scale.
    static let tolerance: Float = 5e-4

    @Test(arguments: ["conv3x3_s1_odd", "conv3x3_s1_panels"])
    func matchesPyTorch(name: String) throws {
        let y = try fixture("\(name).x").conv2d(weight: fixture("\(name).weight"), bias: fixture("\(name).bias"),
                                                stride: 1, padding: .uniform(1), algorithm: .winograd)
        let error = maxScaledError(y, try fixture("\(name).out"))
        print("winograd vs PyTorch, \(name): \(error)")
        #expect(error <= Self.tolerance)
    }

    /// Sizes that are not multiples of 4 (partial tiles at the right and bottom), several images.
    @Test func matchesTheDirectProduct() {
        let x = testTensor([3, 24, 35, 18], seed: 31), w = testTensor([20, 24, 3, 3], seed: 32), b = testTensor([20], seed: 33)
        let direct = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1), algorithm: .direct)
        let winograd = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1), algorithm: .winograd)
        let error = maxScaledError(winograd, direct)
        print("winograd vs direct, [3, 24, 35, 18]: \(error)")
        #expect(error <= Self.tolerance)
    }

    /// A chunk budget small enough that images are cut into runs of tile rows, one that packs two
    /// images per chunk, and one smaller than U, so the output channels go in blocks (4 + 2): the
    /// same result as one chunk for all.
    @Test func chunkingDoesNotChangeTheResult() {
        let x = testTensor([3, 8, 37, 21], seed: 34), w = testTensor([6, 8, 3, 3], seed: 35), b = testTensor([6], seed: 36)
        func run(_ bytes: Int) -> (Tensor, Int) {
            var plan = WinogradConvolution(batch: 3, cin: 8, cout: 6, h: 37, w: 21)
            plan.chunkBytes = bytes
            var out = Tensor(uninitializedShape: [3, 6, 37, 21])
            x.withUnsafePointer { xp in w.withUnsafePointer { wp in b.withUnsafePointer { bp in out.withUnsafeMutablePointer { op in
                plan.run(x: xp, weight: wp, bias: bp, out: op)
            } } } }
            return (out, plan.chunks().count)
        }
        let (whole, wholeChunks) = run(32 << 20)
        let (rows, rowChunks) = run(36 * 8 * 4 * 12)      // 12 tiles: two tile rows of 6 per chunk
        let (pairs, pairChunks) = run(36 * 8 * 4 * 120)   // two images of 60 tiles per chunk
        let (blocks, blockChunks) = run(36 * 8 * 4 * 4)   // U of 4 outputs per block; one tile row per chunk
        #expect(wholeChunks == 1 && rowChunks == 15 && pairChunks == 2 && blockChunks == 30)
        #expect(WinogradConvolution(batch: 3, cin: 8, cout: 6, h: 37, w: 21).outputBlock == 6)
        #expect(maxScaledError(blocks, whole) <= 1e-6)
        // The products see other widths (sgemm's edge kernels may sum in another order): rounding only.
        #expect(maxScaledError(rows, whole) <= 1e-6)
        #expect(maxScaledError(pairs, whole) <= 1e-6)
    }

    /// `automatic` takes Winograd only where it pays: 3×3, stride 1, padding 1, ≥ 64 tiles.
    @Test func automaticChoosesByShape() {
        #expect(WinogradConvolution.applies(kernel: 3, stride: 1, padding: .uniform(1), batch: 1, h: 64, w: 64))
        #expect(WinogradConvolution.applies(kernel: 3, stride: 1, padding: .uniform(1), batch: 1, h: 32, w: 32))
        #expect(WinogradConvolution.applies(kernel: 3, stride: 1, padding: .uniform(1), batch: 4, h: 16, w: 16))
        #expect(!WinogradConvolution.applies(kernel: 3, stride: 1, padding: .uniform(1), batch: 2, h: 16, w: 16))
        #expect(!WinogradConvolution.applies(kernel: 3, stride: 1, padding: .uniform(1), batch: 4, h: 8, w: 8))
        #expect(!WinogradConvolution.applies(kernel: 3, stride: 2, padding: .uniform(1), batch: 1, h: 64, w: 64))
        #expect(!WinogradConvolution.applies(kernel: 1, stride: 1, padding: .uniform(0), batch: 1, h: 64, w: 64))
    }
}
