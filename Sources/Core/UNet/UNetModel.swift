/// diffusers' `UNet2DConditionModel` for SD 1.x/2.x, built by loops over its config. Immutable
/// once loaded: everything a forward pass varies (attention processor, FreeU) is an argument.
public final class UNetModel: Sendable {
    public let config: UNetConfig
    let timeLinear1, timeLinear2: LinearLayer
    let convIn, convOut: Conv2DLayer
    let normOut: GroupNormLayer
    let down: [DownBlock]
    let mid: MidBlock?
    let up: [UpBlock]

    /// Loads every tensor under its diffusers name with its expected shape, then fails if the
    /// source holds tensors the model did not take.
    public init(config: UNetConfig, weights: WeightReader, configPath: String) throws {
        try config.validate(path: configPath)
        self.config = config
        let w = weights.scope("")
        let widths = config.blockOutChannels, temb = config.timeEmbeddingWidth
        let groups = config.normNumGroups, eps = config.normEps
        timeLinear1 = try LinearLayer(w.scope("time_embedding.linear_1"), in: widths[0], out: temb)
        timeLinear2 = try LinearLayer(w.scope("time_embedding.linear_2"), in: temb, out: temb)
        convIn = try Conv2DLayer(w.scope("conv_in"), in: config.inChannels, out: widths[0], kernel: 3)

        var downBlocks: [DownBlock] = []
        var channels = widths[0]
        for (i, width) in widths.enumerated() {
            downBlocks.append(try DownBlock(
                w.scope("down_blocks", i), config: config, index: i, in: channels, out: width,
                attention: config.downBlockTypes[i] == "CrossAttnDownBlock2D", downsample: i < widths.count - 1))
            channels = width
        }
        down = downBlocks
        mid = config.midBlockType == nil ? nil : try MidBlock(w.scope("mid_block"), config: config, channels: channels)

        var upBlocks: [UpBlock] = []
        let reversed = Array(widths.reversed())
        for (i, width) in reversed.enumerated() {
            let skipWidth = reversed[min(i + 1, widths.count - 1)]
            upBlocks.append(try UpBlock(
                w.scope("up_blocks", i), config: config, index: i, previous: channels, out: width, skip: skipWidth,
                attention: config.upBlockTypes[i] == "CrossAttnUpBlock2D", upsample: i < widths.count - 1))
            channels = width
        }
        up = upBlocks
        normOut = try GroupNormLayer(w.scope("conv_norm_out"), channels: widths[0], groups: groups, eps: eps)
        convOut = try Conv2DLayer(w.scope("conv_out"), in: widths[0], out: config.outChannels, kernel: 3)
        try weights.finish()
    }

    /// One denoising evaluation: sample [B, in, h, w], one timestep per batch item (or one for
    /// all), context [B, M, cross_attention_dim] → the predicted noise [B, out, h, w].
    /// `freeU` nil runs the plain diffusers UNet; `FreeU.reference` runs the paper's.
    public func callAsFunction(
        _ sample: Tensor, timesteps: [Float], context: Tensor,
        processor: AttentionProcessor = PlainAttention(), freeU: FreeU? = nil
    ) -> Tensor {
        let batch = sample.shape[0]
        precondition(timesteps.count == batch || timesteps.count == 1, "one timestep per batch item, or one for all")
        precondition(context.rank == 3 && context.shape[0] == batch, "context must be [B, M, D], got \(context.shape)")
        // 1. time: sinusoidal embedding → linear → SiLU → linear; every resnet then applies SiLU
        // before its own projection, so it is applied once here.
        let steps = timesteps.count == batch ? timesteps : Array(repeating: timesteps[0], count: batch)
        let sinusoid = Tensor.timestepEmbedding(timesteps: steps, dim: config.blockOutChannels[0],
                                                flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
        let temb = timeLinear2(timeLinear1(sinusoid).silu()).silu()

        // 2. down, keeping every intermediate for the skips.
        var h = convIn(sample)
        var skips = [h]
        for block in down {
            h = block(h, temb: temb, context: context, processor: processor, skips: &skips)
        }
        // 3. mid
        if let mid { h = mid(h, temb: temb, context: context, processor: processor) }
        // 4. up, with FreeU on the backbone entering each block (ALGORITHM.md §7).
        let widths = config.blockOutChannels
        for block in up {
            if let freeU { freeU.apply(&h, deepestWidth: widths[widths.count - 1], secondWidth: widths.count > 1 ? widths[1] : nil) }
            h = block(h, temb: temb, context: context, processor: processor, skips: &skips)
        }
        // 5. out
        return convOut(normOut(h, silu: true))
    }
}
