import Foundation
import Testing
@testable import Core

/// FreeU's Fourier filter (ALGORITHM.md §7) against the reference's definition computed naively:
/// the full 2-D DFT of each plane, the coefficients at frequencies {0, −1} × {0, −1} (each once
/// where a side is 1 long) times `scale`, the inverse DFT's real part.
@Suite struct FourierFilterTests {
    static func naive(_ plane: [Float], height: Int, width: Int, scale: Double) -> [Double] {
        let n = height * width
        var re = [Double](repeating: 0, count: n), im = re
        for ky in 0..<height { for kx in 0..<width {
            var sr = 0.0, si = 0.0
            for y in 0..<height { for x in 0..<width {
                let angle = -2 * Double.pi * (Double(ky * y) / Double(height) + Double(kx * x) / Double(width))
                sr += Double(plane[y * width + x]) * cos(angle); si += Double(plane[y * width + x]) * sin(angle)
            } }
            let low = Set([0, height - 1]).contains(ky) && Set([0, width - 1]).contains(kx)
            re[ky * width + kx] = low ? sr * scale : sr; im[ky * width + kx] = low ? si * scale : si
        } }
        var out = [Double](repeating: 0, count: n)
        for y in 0..<height { for x in 0..<width {
            var sum = 0.0
            for ky in 0..<height { for kx in 0..<width {
                let angle = 2 * Double.pi * (Double(ky * y) / Double(height) + Double(kx * x) / Double(width))
                sum += re[ky * width + kx] * cos(angle) - im[ky * width + kx] * sin(angle)
            } }
            out[y * width + x] = sum / Double(n)
        } }
        return out
    }

    /// Two planes per shape; within 2·10⁻⁶ of the largest value (float storage of the result).
    @Test(arguments: [(5, 7), (8, 8), (1, 4), (4, 1), (1, 1), (2, 3)])
    func matchesTheDefinition(height: Int, width: Int) throws {
        let scale: Float = 0.2
        var h = testTensor([1, 2, height, width], seed: 61)
        let before = h.scalars
        FreeU.fourierFilter(&h, scale: scale)
        let after = h.scalars
        let plane = height * width
        for p in 0..<2 {
            let expected = Self.naive(Array(before[(p * plane)..<((p + 1) * plane)]), height: height, width: width, scale: Double(scale))
            let size = max(expected.map(abs).max() ?? 1, 1)
            for i in 0..<plane {
                #expect(abs(Double(after[p * plane + i]) - expected[i]) <= 2e-6 * size, "plane \(p) element \(i)")
            }
        }
    }
}
