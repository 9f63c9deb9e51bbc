/// diffusers' `ResnetBlock2D` (time-scale-shift "default", output scale 1):
/// h = conv1(silu(norm1(x))) [+ time_emb_proj(silu(temb))], h = conv2(silu(norm2(h))),
/// out = shortcut(x) + h, where the shortcut is a 1×1 convolution when the width changes.
public struct ResnetBlock: Sendable {
    let norm1, norm2: GroupNormLayer
    let conv1, conv2: Conv2DLayer
    let timeProjection: LinearLayer?
    let shortcut: Conv2DLayer?

    /// `shortcutName` is "conv_shortcut" in diffusers for both the UNet and the VAE.
    public init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, timeEmbedding: Int?,
                groups: Int, eps: Float) throws {
        norm1 = try GroupNormLayer(w.scope("norm1"), channels: inChannels, groups: groups, eps: eps)
        conv1 = try Conv2DLayer(w.scope("conv1"), in: inChannels, out: outChannels, kernel: 3)
        timeProjection = try timeEmbedding.map { try LinearLayer(w.scope("time_emb_proj"), in: $0, out: outChannels) }
        norm2 = try GroupNormLayer(w.scope("norm2"), channels: outChannels, groups: groups, eps: eps)
        conv2 = try Conv2DLayer(w.scope("conv2"), in: outChannels, out: outChannels, kernel: 3)
        shortcut = inChannels == outChannels ? nil
            : try Conv2DLayer(w.scope("conv_shortcut"), in: inChannels, out: outChannels, kernel: 1)
    }

    /// x: [B, in, H, W]; temb: [B, T] already passed through SiLU (shared by all blocks) → [B, out, H, W]
    public func callAsFunction(_ x: Tensor, timeEmbedding activated: Tensor?) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let timeProjection, let activated {
            h.addPerChannel(timeProjection(activated))  // [B, out] broadcast over H, W
        }
        h = conv2(norm2(h, silu: true))
        h.add(shortcut.map { $0(x) } ?? x)
        return h
    }
}
