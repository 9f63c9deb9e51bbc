/// The building blocks shared by the UNet, the VAE and CLIP, each holding its weights as loaded
/// (PyTorch layouts) under the checkpoint's own names.

/// The weight of a product in the precision chosen at load (docs/PERFORMANCE.md, "Precision"):
/// float as loaded, or packed bf16 with the float copy dropped (resident size about halves).
public enum ProductWeight: Sendable {
    case fp32(Tensor)
    case bf16(PackedBF16)
}

/// `nn.Conv2d` with bias. weight [out, in, k, k].
public struct Conv2DLayer: Sendable {
    public let weight: ProductWeight
    public let bias: Tensor?
    public let stride: Int
    public let padding: Padding2D
    /// [out, in, k, k]
    public let weightShape: [Int]

    public init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1,
                padding: Padding2D? = nil, bias: Bool = true) throws {
        weightShape = [outChannels, inChannels, kernel, kernel]
        let loaded = try w.take("weight", weightShape)
        weight = w.precision == .bf16 ? .bf16(PackedBF16(rowsOf: loaded)) : .fp32(loaded)
        self.bias = bias ? try w.take("bias", [outChannels]) : nil
        self.stride = stride
        self.padding = padding ?? .uniform(kernel / 2)
    }

    /// [B, in, H, W] → [B, out, H', W']
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch weight {
        case let .fp32(tensor):
            return x.conv2d(weight: tensor, bias: bias, stride: stride, padding: padding)
        case let .bf16(packed):
            return x.conv2d(packed: packed, kernel: weightShape[2], bias: bias, stride: stride, padding: padding)
        }
    }

    public var outChannels: Int { weightShape[0] }
}

/// `nn.Linear`. weight [out, in], optional bias [out].
public struct LinearLayer: Sendable {
    public let weight: ProductWeight
    public let bias: Tensor?

    public init(_ w: WeightScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        self.init(weight: try w.take("weight", [outFeatures, inFeatures]),
                  bias: bias ? try w.take("bias", [outFeatures]) : nil, precision: w.precision)
    }

    /// A 1×1 convolution [out, in, 1, 1] as the same product on tokens [..., in] (SD 1.x's
    /// transformer projections, which run on the transposed feature map).
    public init(pointwiseConvolution w: WeightScope, channels: Int) throws {
        self.init(weight: try w.take("weight", [channels, channels, 1, 1]).reshaped([channels, channels]),
                  bias: try w.take("bias", [channels]), precision: w.precision)
    }

    init(weight loaded: Tensor, bias: Tensor?, precision: Precision) {
        weight = precision == .bf16 ? .bf16(PackedBF16(transposedColumnsOf: loaded)) : .fp32(loaded)
        self.bias = bias
    }

    /// [..., in] → [..., out]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch weight {
        case let .fp32(tensor): return x.linear(weight: tensor, bias: bias)
        case let .bf16(packed): return x.linear(packed: packed, bias: bias)
        }
    }

    /// `self(x).geglu()`, [..., in] → [..., out / 2]: fused for bf16 weights (`linearGEGLU`); fp32
    /// keeps the reference's two steps.
    public func geglu(_ x: Tensor) -> Tensor {
        switch weight {
        case let .fp32(tensor): return x.linear(weight: tensor, bias: bias).geglu()
        case let .bf16(packed): return x.linearGEGLU(packed: packed, bias: bias)
        }
    }
}

/// `nn.GroupNorm` with affine parameters [C].
public struct GroupNormLayer: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let groups: Int
    public let eps: Float

    public init(_ w: WeightScope, channels: Int, groups: Int, eps: Float) throws {
        weight = try w.take("weight", [channels])
        bias = try w.take("bias", [channels])
        self.groups = groups
        self.eps = eps
    }

    /// [B, C, *] → same; with `silu`, SiLU fused into the same pass.
    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps, fusedSiLU: silu)
    }
}

/// `nn.LayerNorm` over the last dimension, affine parameters [D].
public struct LayerNormLayer: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ w: WeightScope, dim: Int, eps: Float) throws {
        weight = try w.take("weight", [dim])
        bias = try w.take("bias", [dim])
        self.eps = eps
    }

    /// [..., D] → same
    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}
