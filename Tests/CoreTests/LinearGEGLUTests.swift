import Foundation
import Testing
@testable import Core

/// The fused feed-forward input layer (`Tensor.linearGEGLU`) against the two steps it replaces,
/// and the gate (geglu.c on AVX-512, the Swift loop elsewhere) against float64.
@Suite struct LinearGEGLUTests {
    /// hidden · ½g(1 + erf(g/√2)) for gates across erf's range (and past it, where 1 + erf(x)
    /// cancels to 0 for negative g), 37 values (two vectors and a partial one): within
    /// |h|·(|g|/2·2·10⁻⁷ + 10⁻⁶·(1 + |g|)), the formula's 1.5·10⁻⁷ in erf and float rounding.
    @Test func gateMatchesFloat64() {
        let gates = (0..<37).map { Float($0 - 18) * 0.37 }, hidden = (0..<37).map { Float($0 % 5) - 1.5 }
        var out = [Float](repeating: .nan, count: 37)
        Tensor.gegluRow(hidden: hidden, gate: gates, out: &out, count: 37)
        for i in 0..<37 {
            let g = Double(gates[i]), h = Double(hidden[i])
            let expected = h * 0.5 * g * (1 + erf(g / 2.0.squareRoot()))
            let bound = abs(h) * (abs(g) / 2 * 2e-7 + 1e-6 * (1 + abs(g)))
            #expect(abs(Double(out[i]) - expected) <= bound, "g \(g): \(out[i]) against \(expected)")
        }
    }

    /// Bit for bit the unfused `linear(packed:bias:).geglu()`: the same kernel sums the same packed
    /// operands and bias, and the same row function applies the gate. Shapes: 300 rows (blocks of 256
    /// rows and a partial one, partial panels of 16 or 14), halves of 96 and 160 columns (a partial
    /// chunk of panels; one whole chunk and one of a single panel), with and without bias, leading
    /// batch dimensions; and a half of 40 columns, not a whole number of panels: the unfused way.
    @Test(arguments: [([300, 70], 96, true), ([2, 150, 70], 160, false), ([3, 50, 33], 40, true), ([1, 7, 64], 128, true)])
    func equalsLinearThenGEGLU(shape: [Int], half: Int, withBias: Bool) throws {
        let inFeatures = shape[shape.count - 1]
        let x = testTensor(shape, seed: 41), w = testTensor([2 * half, inFeatures], seed: 42)
        let bias = withBias ? testTensor([2 * half], seed: 43) : nil
        let packed = PackedBF16(transposedColumnsOf: w)
        let fused = x.linearGEGLU(packed: packed, bias: bias)
        let unfused = x.linear(packed: packed, bias: bias).geglu()
        #expect(fused.shape == Array(shape.dropLast()) + [half])
        #expect(fused.scalars == unfused.scalars)
        // Not vacuous: the result is the float computation's, to bf16's rounding of the operands
        // (measured ≤ 0.4 % relative L2 here; 2 % allows for any kernel's summation order).
        let float = x.linear(weight: w, bias: bias).geglu()
        let difference = zip(fused.scalars, float.scalars).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        let norm = float.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(norm > 0 && (difference / norm).squareRoot() < 0.02, "relative L2 \((difference / norm).squareRoot())")
    }
}
