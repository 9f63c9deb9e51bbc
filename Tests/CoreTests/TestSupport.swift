import Foundation
import Testing
import Core

/// Paths of committed fixtures (Tests/Fixtures), found from this source file so that tests need no
/// resource bundle and run from any working directory.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// tools/reference/kernels.py output, opened once.
    static let kernels: SafetensorsFile? = try? SafetensorsFile(path: path("kernels.safetensors"))
}

/// The largest element error, measured as |a − e| / max(1, |e|): absolute near zero, relative for
/// large values, which is how float32 rounding error behaves.
func maxScaledError(_ actual: Tensor, _ expected: Tensor) -> Float {
    let a = actual.scalars, e = expected.scalars
    var worst: Float = 0
    for i in 0..<min(a.count, e.count) {
        let error = abs(a[i] - e[i]) / max(1, abs(e[i]))
        if !(error <= worst) { worst = error.isNaN ? .infinity : error }
    }
    return worst
}

/// Expects the same shape and every element within `tolerance` (scaled as in `maxScaledError`).
func expectClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.shape == expected.shape, sourceLocation: sourceLocation)
    let error = maxScaledError(actual, expected)
    #expect(error <= tolerance, "max scaled error \(error) > \(tolerance)", sourceLocation: sourceLocation)
}

/// Deterministic pseudo-random values in [-1, 1) for tests that compare two computations of ours.
func testTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    let n = shape.reduce(1, *)
    var values = [Float](repeating: 0, count: n)
    for i in 0..<n {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        values[i] = Float(state >> 40) / Float(1 << 23) - 1
    }
    return Tensor(shape: shape, scalars: values) ?? Tensor(shape: shape)
}
