import Foundation
import Testing
import Core

/// The tiny SD 1.5-topology model and the outputs diffusers 0.19.3 computed with it
/// (tools/reference/sd_tiny.py), loaded once for all tests.
enum TinySD {
    static let folder = Fixtures.path("tiny-sd")
    static let expectedFolder = Fixtures.path("tiny-sd-expected")
    static let model: StableDiffusionModel? = try? StableDiffusionModel.load(from: folder)
    static let expected: SafetensorsFile? = try? SafetensorsFile(path: expectedFolder + "/expected.safetensors")

    static func requireModel() throws -> StableDiffusionModel {
        do { return try StableDiffusionModel.load(from: folder) } catch { Issue.record("loading \(folder): \(error)"); throw error }
    }
}

/// max |a − e| / max |e|: the error relative to the output's scale (the issue's criterion).
func errorRelativeToScale(_ actual: Tensor, _ expected: Tensor) -> Float {
    let a = actual.scalars, e = expected.scalars
    let scale = e.reduce(Float(0)) { max($0, abs($1)) }
    var worst: Float = 0
    for i in 0..<min(a.count, e.count) {
        let d = abs(a[i] - e[i])
        if !(d <= worst) { worst = d.isNaN ? .infinity : d }
    }
    return worst / max(scale, .leastNormalMagnitude)
}

func expectScaledClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.shape == expected.shape, sourceLocation: sourceLocation)
    let error = errorRelativeToScale(actual, expected)
    #expect(error <= tolerance, "error \(error) of the output's scale > \(tolerance)", sourceLocation: sourceLocation)
}
