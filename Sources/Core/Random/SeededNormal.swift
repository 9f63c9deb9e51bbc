/// The engine's one source of randomness: standard normal Float32 values from a seed.
///
/// Documented so that other implementations can reproduce it: xoshiro256** whose four state
/// words are the first four outputs of SplitMix64 started at `seed ^ (stream · 0x9E3779B97F4A7C15)`;
/// each pair of normals comes from two uniforms u1, u2 = (next() >> 11) · 2⁻⁵³ by Box–Muller,
/// r = √(−2·ln(1 − u1)), giving r·cos(2πu2) then r·sin(2πu2), computed in Double and rounded.
/// `stream` separates independent uses of one seed (the structure's and the appearance's draws).
public struct SeededNormal: Sendable {
    private var s0, s1, s2, s3: UInt64
    private var spare: Float?

    public init(seed: UInt64, stream: UInt64 = 0) {
        var x = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        (s0, s1, s2, s3) = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func nextUInt64() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(nextUInt64() >> 11) * 0x1p-53 }

    public mutating func nextNormal() -> Float {
        if let spare { self.spare = nil; return spare }
        let u1 = nextUniform(), u2 = nextUniform()
        let r = (-2 * _log(1 - u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spare = Float(r * _sin(angle))
        return Float(r * _cos(angle))
    }

    /// A tensor of `shape` filled in row-major order.
    public mutating func normalTensor(_ shape: [Int]) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        let n = t.count
        t.withUnsafeMutablePointer { p in for i in 0..<n { p[i] = nextNormal() } }
        return t
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) private func _log(_ x: Double) -> Double { log(x) }
@inline(__always) private func _sin(_ x: Double) -> Double { sin(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { cos(x) }
