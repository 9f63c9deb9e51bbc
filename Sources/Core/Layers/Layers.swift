/// The building blocks shared by the UNet, the VAE and CLIP, each holding its weights as loaded
/// (PyTorch layouts) under the checkpoint's own names.

/// `nn.Conv2d` with bias. weight [out, in, k, k].
public struct Conv2DLayer: Sendable {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Padding2D

    public init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1,
                padding: Padding2D? = nil, bias: Bool = true) throws {
        weight = try w.take("weight", [outChannels, inChannels, kernel, kernel])
        self.bias = bias ? try w.take("bias", [outChannels]) : nil
        self.stride = stride
        self.padding = padding ?? .uniform(kernel / 2)
    }

    /// [B, in, H, W] → [B, out, H', W']
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
    }

    public var outChannels: Int { weight.shape[0] }
}

/// `nn.Linear`. weight [out, in], optional bias [out].
public struct LinearLayer: Sendable {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ w: WeightScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        weight = try w.take("weight", [outFeatures, inFeatures])
        self.bias = bias ? try w.take("bias", [outFeatures]) : nil
    }

    /// [..., in] → [..., out]
    public func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }
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
