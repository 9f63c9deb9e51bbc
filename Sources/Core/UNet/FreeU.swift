import Foundation

/// FreeU as the paper's reference applies it (ALGORITHM.md §7): before each up block, on the
/// backbone h entering it (not on the skips — a quirk of the reference, kept):
/// - h has the deepest width: channels [0, C/2) × b1, then the Fourier filter with scale s1;
/// - h has the second level's width: channels [0, C/2) × b2, then the filter with scale s2.
/// Two independent tests, as in the reference (its two `if`s), generalising its 1280/640.
public struct FreeU: Equatable, Sendable {
    public var b1: Float = 1.2, s1: Float = 0.9
    public var b2: Float = 1.4, s2: Float = 0.2

    public init() {}

    /// The values of the paper's reference for SD 1.5.
    public static let reference = FreeU()

    /// Applies both rules to h [B, C, H, W] given the UNet's deepest and second-level widths.
    func apply(_ h: inout Tensor, deepestWidth: Int, secondWidth: Int?) {
        OpProfile.measure("freeu") { applyRules(&h, deepestWidth: deepestWidth, secondWidth: secondWidth) }
    }

    private func applyRules(_ h: inout Tensor, deepestWidth: Int, secondWidth: Int?) {
        let c = h.shape[1]
        if c == deepestWidth {
            Self.scaleChannels(&h, upTo: c / 2, by: b1)
            Self.fourierFilter(&h, scale: s1)
        }
        if let secondWidth, c == secondWidth {
            Self.scaleChannels(&h, upTo: c / 2, by: b2)
            Self.fourierFilter(&h, scale: s2)
        }
    }

    static func scaleChannels(_ h: inout Tensor, upTo channels: Int, by factor: Float) {
        let (batch, c) = (h.shape[0], h.shape[1])
        let spatial = h.count / max(batch * c, 1)
        h.withUnsafeMutablePointer { p in
            for b in 0..<batch {
                let start = p + b * c * spatial
                mapVector(start, start, channels * spatial) { $0 * factor }
            }
        }
    }

    /// The reference's `Fourier_filter(x, threshold=1, scale)`: the 2-D DFT of each H×W plane has
    /// its coefficients (ky, kx) ∈ {0, −1} × {0, −1} multiplied by `scale`, then the inverse DFT's
    /// real part is kept. Equivalently h += (scale − 1)·Re(IDFT of those ≤ 4 coefficients), which
    /// costs O(H·W) per plane. On a side of length 1, −1 ≡ 0 and the frequency counts once.
    static func fourierFilter(_ h: inout Tensor, scale: Float) {
        let (planes, height, width) = (h.shape[0] * h.shape[1], h.shape[2], h.shape[3])
        // e^{2πi·n/N} for the −1 frequency: the forward DFT multiplies by it, the inverse by its
        // conjugate. Frequency 0 is the constant 1.
        let rowPhase = (0..<height).map { (cos(2 * Double.pi * Double($0) / Double(height)), sin(2 * Double.pi * Double($0) / Double(height))) }
        let colPhase = (0..<width).map { (cos(2 * Double.pi * Double($0) / Double(width)), sin(2 * Double.pi * Double($0) / Double(width))) }
        let rowFrequencies = height > 1 ? [0, -1] : [0]
        let colFrequencies = width > 1 ? [0, -1] : [0]
        let factor = Double(scale - 1) / Double(height * width)
        h.withUnsafeMutablePointer { p in
            ComputePool.shared.parallelFor(planes) { plane in
                let x = p + plane * height * width
                // Forward: F[ky][kx] = Σ_y Σ_x x[y, x]·w_y(ky)·w_x(kx), w(0) = 1, w(−1) = e^{+2πi n/N}.
                var coefficients: [(ky: Int, kx: Int, re: Double, im: Double)] = []
                for ky in rowFrequencies {
                    for kx in colFrequencies {
                        var re = 0.0, im = 0.0
                        for y in 0..<height {
                            var rowRe = 0.0, rowIm = 0.0
                            for c in 0..<width {
                                let v = Double(x[y * width + c])
                                if kx == 0 { rowRe += v } else { rowRe += v * colPhase[c].0; rowIm += v * colPhase[c].1 }
                            }
                            if ky == 0 { re += rowRe; im += rowIm } else {
                                let (cy, sy) = rowPhase[y]
                                re += rowRe * cy - rowIm * sy
                                im += rowRe * sy + rowIm * cy
                            }
                        }
                        coefficients.append((ky, kx, re, im))
                    }
                }
                // Inverse: x[y, x] += factor · Σ Re(F · conj(w_y) · conj(w_x)).
                for y in 0..<height {
                    for c in 0..<width {
                        var sum = 0.0
                        for f in coefficients {
                            var (re, im) = (f.re, f.im)
                            if f.ky != 0 { (re, im) = (re * rowPhase[y].0 + im * rowPhase[y].1, im * rowPhase[y].0 - re * rowPhase[y].1) }
                            if f.kx != 0 { (re, im) = (re * colPhase[c].0 + im * colPhase[c].1, im * colPhase[c].0 - re * colPhase[c].1) }
                            sum += re
                        }
                        x[y * width + c] += Float(factor * sum)
                    }
                }
            }
        }
    }
}
