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
    /// costs O(H·W) per plane: one pass gathers the four coefficients from each row's plain sum and
    /// its sum against e^{2πi·x/W}, and the inverse is separable, so each element gets a per-row
    /// constant plus its column's cosine and sine weighted by a per-row complex number. On a side of
    /// length 1, −1 ≡ 0 and the frequency counts once. Sums in double, as before this form (whose
    /// four separate passes and per-element rotations cost 25 ns an element).
    static func fourierFilter(_ h: inout Tensor, scale: Float) {
        let (planes, height, width) = (h.shape[0] * h.shape[1], h.shape[2], h.shape[3])
        // e^{2πi·n/N} for the −1 frequency: the forward DFT multiplies by it, the inverse by its
        // conjugate. Frequency 0 is the constant 1.
        let rowCos = (0..<height).map { cos(2 * Double.pi * Double($0) / Double(height)) }
        let rowSin = (0..<height).map { sin(2 * Double.pi * Double($0) / Double(height)) }
        let colCos = (0..<width).map { cos(2 * Double.pi * Double($0) / Double(width)) }
        let colSin = (0..<width).map { sin(2 * Double.pi * Double($0) / Double(width)) }
        let tall = height > 1, wide = width > 1
        let factor = Double(scale - 1) / Double(height * width)
        h.withUnsafeMutablePointer { p in
            colCos.withUnsafeBufferPointer { cosX in colSin.withUnsafeBufferPointer { sinX in
                ComputePool.shared.parallelFor(planes) { plane in
                    let x = p + plane * height * width
                    // Forward: F[ky][kx] = Σ_y w_y(ky) Σ_x x[y, x]·w_x(kx), w(0) = 1, w(−1) = e^{+2πi n/N}.
                    var f00 = 0.0, f01 = (0.0, 0.0), f10 = (0.0, 0.0), f11 = (0.0, 0.0)
                    for y in 0..<height {
                        let row = x + y * width
                        var plain = 0.0, re = 0.0, im = 0.0
                        for c in 0..<width {
                            let v = Double(row[c])
                            plain += v; re += v * cosX[c]; im += v * sinX[c]
                        }
                        let (cy, sy) = (rowCos[y], rowSin[y])
                        f00 += plain
                        f01.0 += re; f01.1 += im
                        f10.0 += plain * cy; f10.1 += plain * sy
                        f11.0 += re * cy - im * sy; f11.1 += re * sy + im * cy
                    }
                    // Inverse: x[y, x] += factor · Re(Σ F[ky][kx] · conj(w_y(ky)) · conj(w_x(kx))).
                    for y in 0..<height {
                        let (cy, sy) = (rowCos[y], rowSin[y])
                        // The row's constant (kx = 0) and the complex weight of e^{−2πi x/W} (kx = −1).
                        var constant = f00, weight = wide ? f01 : (0.0, 0.0)
                        if tall {
                            constant += f10.0 * cy + f10.1 * sy
                            if wide { weight.0 += f11.0 * cy + f11.1 * sy; weight.1 += f11.1 * cy - f11.0 * sy }
                        }
                        let row = x + y * width
                        for c in 0..<width {
                            row[c] += Float(factor * (constant + weight.0 * cosX[c] + weight.1 * sinX[c]))
                        }
                    }
                }
            } }
        }
    }
}
