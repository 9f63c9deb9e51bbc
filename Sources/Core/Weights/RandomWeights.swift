/// A source that makes up every tensor it is asked for, with the requested shape: full-size models
/// for benchmarks without weight files (speed does not depend on the values). Weights are uniform
/// in ±1/√fan-in so activations stay in range; 1-D tensors named *weight (norm scales) are near 1,
/// biases near 0.
public final class RandomWeights: TensorSource {
    private var state: UInt64
    /// Told every tensor made, by name (a benchmark writes them to a file to measure loading).
    public var onSynthesize: ((String, Tensor) -> Void)?

    public init(seed: UInt64 = 0x5EED) { state = seed | 1 }

    public var origin: String { "random weights" }
    public var names: [String] { [] }
    public func shape(of name: String) -> [Int]? { nil }
    public func load(_ name: String) throws -> Tensor { throw SafetensorsError.tensorNotFound(file: origin, tensor: name) }

    /// A tensor for `name` with `shape`.
    public func synthesize(_ name: String, _ shape: [Int]) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        let n = t.count
        let isScale = shape.count == 1 && name.hasSuffix("weight")
        let isBias = name.hasSuffix("bias")
        let fanIn = shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1
        let amplitude: Float = isScale || isBias ? 0.1 : 1 / Float(fanIn).squareRoot()
        let offset: Float = isScale ? 1 : 0
        var s = state
        t.withUnsafeMutablePointer { p in
            for i in 0..<n {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                p[i] = offset + amplitude * (Float(s >> 40) / Float(1 << 23) - 1)
            }
        }
        state = s
        onSynthesize?(name, t)
        return t
    }
}
