/// diffusers' `Attention` (the UNet's attn1/attn2): q, k, v projections without bias, the
/// attention itself delegated to a processor, and `to_out.0` with bias.
public struct AttentionLayer: Sendable {
    let toQ, toK, toV, toOut: LinearLayer
    public let heads: Int
    /// The products' precision, chosen at load with the weights'.
    public let precision: Precision

    public init(_ w: WeightScope, queryDim: Int, contextDim: Int, heads: Int, headDim: Int) throws {
        let inner = heads * headDim
        toQ = try LinearLayer(w.scope("to_q"), in: queryDim, out: inner, bias: false)
        toK = try LinearLayer(w.scope("to_k"), in: contextDim, out: inner, bias: false)
        toV = try LinearLayer(w.scope("to_v"), in: contextDim, out: inner, bias: false)
        toOut = try LinearLayer(w.scope("to_out.0"), in: inner, out: queryDim)
        self.heads = heads
        precision = w.precision
    }

    /// x: [B, N, C]; context: [B, M, Cctx] (nil: self-attention) → [B, N, C]
    public func callAsFunction(_ x: Tensor, context: Tensor?, processor: AttentionProcessor, site: AttentionSite) -> Tensor {
        let source = context ?? x
        let attended = processor.attend(q: toQ(x), k: toK(source), v: toV(source), heads: heads, site: site, precision: precision)
        return toOut(attended)
    }
}

/// diffusers' `BasicTransformerBlock` as SD 1.5 uses it: pre-LayerNorm self-attention,
/// cross-attention on the text context, and a GEGLU feed-forward, each with a residual.
struct TransformerBlock: Sendable {
    let norm1, norm2, norm3: LayerNormLayer
    let attn1, attn2: AttentionLayer
    let ffIn, ffOut: LinearLayer

    init(_ w: WeightScope, dim: Int, contextDim: Int, heads: Int, headDim: Int) throws {
        norm1 = try LayerNormLayer(w.scope("norm1"), dim: dim, eps: 1e-5)
        attn1 = try AttentionLayer(w.scope("attn1"), queryDim: dim, contextDim: dim, heads: heads, headDim: headDim)
        norm2 = try LayerNormLayer(w.scope("norm2"), dim: dim, eps: 1e-5)
        attn2 = try AttentionLayer(w.scope("attn2"), queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm3 = try LayerNormLayer(w.scope("norm3"), dim: dim, eps: 1e-5)
        // FeedForward(dim, mult 4, GEGLU): net.0.proj [8·dim, dim], net.2 [dim, 4·dim].
        ffIn = try LinearLayer(w.scope("ff.net.0.proj"), in: dim, out: 8 * dim)
        ffOut = try LinearLayer(w.scope("ff.net.2"), in: 4 * dim, out: dim)
    }

    /// x: [B, N, C] → [B, N, C]
    func callAsFunction(_ x: Tensor, context: Tensor, processor: AttentionProcessor, site: AttentionSite) -> Tensor {
        var selfSite = site, crossSite = site
        selfSite.kind = .selfAttention
        crossSite.kind = .crossAttention
        var h = x
        h.add(attn1(norm1(h), context: nil, processor: processor, site: selfSite))
        h.add(attn2(norm2(h), context: context, processor: processor, site: crossSite))
        h.add(ffOut(ffIn.geglu(norm3(h))))
        return h
    }
}

/// diffusers' `Transformer2DModel` on a feature map: GroupNorm (eps 1e-6), projection in (1×1
/// conv, or Linear with `use_linear_projection`), transformer blocks over the H·W tokens,
/// projection out, residual.
struct Transformer2D: Sendable {
    let norm: GroupNormLayer
    /// The 1×1 convolution of SD 1.x, or the Linear of SD 2.x: the same product on [B, H·W, C].
    let projIn, projOut: LinearLayer
    let blocks: [TransformerBlock]

    static func projection(_ w: WeightScope, channels: Int, linear: Bool) throws -> LinearLayer {
        linear ? try LinearLayer(w, in: channels, out: channels) : try LinearLayer(pointwiseConvolution: w, channels: channels)
    }

    init(_ w: WeightScope, channels: Int, contextDim: Int, heads: Int, layers: Int, groups: Int, linearProjection: Bool) throws {
        norm = try GroupNormLayer(w.scope("norm"), channels: channels, groups: groups, eps: 1e-6)
        projIn = try Self.projection(w.scope("proj_in"), channels: channels, linear: linearProjection)
        blocks = try (0..<layers).map {
            try TransformerBlock(w.scope("transformer_blocks", $0), dim: channels, contextDim: contextDim,
                                 heads: heads, headDim: channels / heads)
        }
        projOut = try Self.projection(w.scope("proj_out"), channels: channels, linear: linearProjection)
    }

    /// x: [B, C, H, W]; context: [B, M, Cctx] → [B, C, H, W]
    func callAsFunction(_ x: Tensor, context: Tensor, processor: AttentionProcessor, site: AttentionSite) -> Tensor {
        let (b, c, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        // [B, C, H, W] → [B, H·W, C]; a 1×1 conv commutes with the transpose, so both projections
        // run as products on tokens.
        var h = projIn(norm(x).reshaped([b, c, height * width]).transposedLastTwo())
        for (index, block) in blocks.enumerated() {
            var blockSite = site
            blockSite.layer = index
            h = block(h, context: context, processor: processor, site: blockSite)
        }
        // [B, H·W, C] → [B, C, H, W]
        var out = projOut(h).transposedLastTwo().reshaped([b, c, height, width])
        out.add(x)
        return out
    }
}
