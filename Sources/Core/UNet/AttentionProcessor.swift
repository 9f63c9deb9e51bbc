/// Where in the UNet an attention call happens. Cross-image attention (ALGORITHM.md §8) chooses
/// its layers by these values, never by token counts.
public struct AttentionSite: Hashable, Sendable, CustomStringConvertible {
    public enum Stage: String, Sendable { case down, mid, up }
    public enum Kind: String, Sendable { case selfAttention = "self", crossAttention = "cross" }

    public var stage: Stage
    /// Index of the down or up block (0 for the mid block).
    public var block: Int
    /// Resolution level: how many times the feature map has been halved relative to the latent
    /// (0 = the latent's own resolution; the downsampling factor is 2^level).
    public var level: Int
    public var kind: Kind
    /// Index of the transformer (`attentions.N`) within its block.
    public var transformer: Int
    /// Index of the transformer block (`transformer_blocks.N`) within that transformer.
    public var layer: Int

    public init(stage: Stage, block: Int, level: Int, kind: Kind, transformer: Int, layer: Int = 0) {
        (self.stage, self.block, self.level, self.kind, self.transformer, self.layer) = (stage, block, level, kind, transformer, layer)
    }

    public var downsamplingFactor: Int { 1 << level }

    public var description: String {
        "\(stage)[\(block)].attentions[\(transformer)].transformer_blocks[\(layer)].\(kind == .selfAttention ? "attn1" : "attn2") (level \(level))"
    }
}

/// Computes attention from projected queries, keys and values. The UNet calls it for every
/// attention layer with the layer's site; the model itself stays immutable and shared, and a
/// processor is a value passed per forward call (the seam cross-image attention plugs into).
public protocol AttentionProcessor {
    /// q: [B, Nq, H·d]; k, v: [B, Nk, H·d] → [B, Nq, H·d] (before the output projection), its
    /// products in `precision`.
    func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, site: AttentionSite, precision: Precision) -> Tensor
}

/// softmax(Q·Kᵀ/√d)·V per head: what diffusers computes by default.
public struct PlainAttention: AttentionProcessor {
    public init() {}

    public func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, site: AttentionSite, precision: Precision) -> Tensor {
        Attention.attention(q: q, k: k, v: v, heads: heads, precision: precision)
    }
}
