/// The UNet's down, mid and up blocks (diffusers' CrossAttnDownBlock2D / DownBlock2D,
/// UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D).

/// Level of a block's feature map: how many times it has been halved (0 = the latent's size).
private func site(_ stage: AttentionSite.Stage, block: Int, level: Int, transformer: Int) -> AttentionSite {
    AttentionSite(stage: stage, block: block, level: level, kind: .selfAttention, transformer: transformer)
}

struct DownBlock: Sendable {
    let index: Int
    let resnets: [ResnetBlock]
    let attentions: [Transformer2D]
    let downsampler: Conv2DLayer?

    init(_ w: WeightScope, config: UNetConfig, index: Int, in inChannels: Int, out: Int, attention: Bool, downsample: Bool) throws {
        self.index = index
        resnets = try (0..<config.layersPerBlock).map { j in
            try ResnetBlock(w.scope("resnets", j), in: j == 0 ? inChannels : out, out: out,
                            timeEmbedding: config.timeEmbeddingWidth, groups: config.normNumGroups, eps: config.normEps)
        }
        attentions = attention ? try (0..<config.layersPerBlock).map { j in
            try Transformer2D(w.scope("attentions", j), channels: out, contextDim: config.crossAttentionDim,
                              heads: config.heads(level: index), layers: config.transformerLayersPerBlock,
                              groups: config.normNumGroups, linearProjection: config.useLinearProjection)
        } : []
        // Downsample2D: 3×3 convolution, stride 2, padding `downsample_padding`.
        downsampler = downsample ? try Conv2DLayer(w.scope("downsamplers.0.conv"), in: out, out: out, kernel: 3, stride: 2,
                                                   padding: .uniform(config.downsamplePadding)) : nil
    }

    /// [B, in, H, W] → [B, out, H/2, W/2]; appends each resnet(+attention) output and the
    /// downsampled map to `skips`.
    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor, processor: AttentionProcessor, skips: inout [Tensor]) -> Tensor {
        var h = x
        for (j, resnet) in resnets.enumerated() {
            h = resnet(h, timeEmbedding: temb)
            if !attentions.isEmpty {
                h = attentions[j](h, context: context, processor: processor, site: site(.down, block: index, level: index, transformer: j))
            }
            skips.append(h)
        }
        if let downsampler {
            h = downsampler(h)
            skips.append(h)
        }
        return h
    }
}

struct MidBlock: Sendable {
    let level: Int
    let resnet1, resnet2: ResnetBlock
    let attention: Transformer2D

    init(_ w: WeightScope, config: UNetConfig, channels: Int) throws {
        level = config.levels - 1
        resnet1 = try ResnetBlock(w.scope("resnets.0"), in: channels, out: channels, timeEmbedding: config.timeEmbeddingWidth,
                                  groups: config.normNumGroups, eps: config.normEps)
        attention = try Transformer2D(w.scope("attentions.0"), channels: channels, contextDim: config.crossAttentionDim,
                                      heads: config.heads(level: config.levels - 1), layers: config.transformerLayersPerBlock,
                                      groups: config.normNumGroups, linearProjection: config.useLinearProjection)
        resnet2 = try ResnetBlock(w.scope("resnets.1"), in: channels, out: channels, timeEmbedding: config.timeEmbeddingWidth,
                                  groups: config.normNumGroups, eps: config.normEps)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor, processor: AttentionProcessor) -> Tensor {
        var h = resnet1(x, timeEmbedding: temb)
        h = attention(h, context: context, processor: processor, site: site(.mid, block: 0, level: level, transformer: 0))
        return resnet2(h, timeEmbedding: temb)
    }
}

struct UpBlock: Sendable {
    let index: Int
    let level: Int
    let resnets: [ResnetBlock]
    let attentions: [Transformer2D]
    let upsampler: Conv2DLayer?

    /// `previous`: width of the map entering the block; `skip`: width of the last skip it takes
    /// (the level below's), as diffusers' `prev_output_channel` / `input_channel`.
    init(_ w: WeightScope, config: UNetConfig, index: Int, previous: Int, out: Int, skip: Int, attention: Bool, upsample: Bool) throws {
        self.index = index
        level = config.levels - 1 - index
        let count = config.layersPerBlock + 1
        resnets = try (0..<count).map { j in
            let skipChannels = j == count - 1 ? skip : out
            let inChannels = (j == 0 ? previous : out) + skipChannels
            return try ResnetBlock(w.scope("resnets", j), in: inChannels, out: out, timeEmbedding: config.timeEmbeddingWidth,
                                   groups: config.normNumGroups, eps: config.normEps)
        }
        attentions = attention ? try (0..<count).map { j in
            try Transformer2D(w.scope("attentions", j), channels: out, contextDim: config.crossAttentionDim,
                              heads: config.heads(level: config.levels - 1 - index), layers: config.transformerLayersPerBlock,
                              groups: config.normNumGroups, linearProjection: config.useLinearProjection)
        } : []
        upsampler = upsample ? try Conv2DLayer(w.scope("upsamplers.0.conv"), in: out, out: out, kernel: 3) : nil
    }

    /// Takes its skips from the end of `skips`; upsamples to the size of the next skip (2× unless
    /// the latent size is not a multiple of the UNet's total downsampling).
    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor, processor: AttentionProcessor, skips: inout [Tensor]) -> Tensor {
        var h = x
        for (j, resnet) in resnets.enumerated() {
            guard let skip = skips.popLast() else { preconditionFailure("UNet skip stack exhausted") }
            h = resnet(Tensor.concatChannels([h, skip]), timeEmbedding: temb)
            if !attentions.isEmpty {
                h = attentions[j](h, context: context, processor: processor, site: site(.up, block: index, level: level, transformer: j))
            }
        }
        if let upsampler {
            let target = skips.last.map { ($0.shape[2], $0.shape[3]) } ?? (2 * h.shape[2], 2 * h.shape[3])
            h = upsampler(h.upsampleNearest(height: target.0, width: target.1))
        }
        return h
    }
}
