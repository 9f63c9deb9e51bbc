/// `vae/config.json` of a diffusers `AutoencoderKL` (SD's VAE).
public struct VAEConfig: Decodable, Equatable, Sendable {
    public var inChannels = 3
    public var outChannels = 3
    public var latentChannels = 4
    public var blockOutChannels = [128, 256, 512, 512]
    public var layersPerBlock = 2
    public var normNumGroups = 32
    public var scalingFactor: Float = 0.18215
    public var downBlockTypes: [String]?
    public var upBlockTypes: [String]?

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", latentChannels = "latent_channels"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", normNumGroups = "norm_num_groups"
        case scalingFactor = "scaling_factor", downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.decode(.inChannels, default: inChannels)
        outChannels = try c.decode(.outChannels, default: outChannels)
        latentChannels = try c.decode(.latentChannels, default: latentChannels)
        blockOutChannels = try c.decode(.blockOutChannels, default: blockOutChannels)
        layersPerBlock = try c.decode(.layersPerBlock, default: layersPerBlock)
        normNumGroups = try c.decode(.normNumGroups, default: normNumGroups)
        scalingFactor = try c.decode(.scalingFactor, default: scalingFactor)
        downBlockTypes = try c.decodeIfPresent([String].self, forKey: .downBlockTypes)
        upBlockTypes = try c.decodeIfPresent([String].self, forKey: .upBlockTypes)
    }

    /// Pixels per latent pixel along a side: 2^(levels − 1) (8 for SD).
    public var downsamplingFactor: Int { 1 << (blockOutChannels.count - 1) }

    func validate(path: String) throws {
        func fail(_ detail: String) -> ModelLoadError { .unsupportedConfig(path: path, detail: detail) }
        guard !blockOutChannels.isEmpty, blockOutChannels.allSatisfy({ $0 > 0 && $0 % normNumGroups == 0 }) else {
            throw fail("block_out_channels \(blockOutChannels) must be multiples of \(normNumGroups) groups")
        }
        if let types = downBlockTypes, types.contains(where: { $0 != "DownEncoderBlock2D" }) || types.count != blockOutChannels.count {
            throw fail("down_block_types \(types)")
        }
        if let types = upBlockTypes, types.contains(where: { $0 != "UpDecoderBlock2D" }) || types.count != blockOutChannels.count {
            throw fail("up_block_types \(types)")
        }
    }
}

/// The VAE's mid-block attention (diffusers `Attention` with one head, biased projections,
/// GroupNorm first, residual): over the H·W pixels as tokens.
struct VAEAttention: Sendable {
    let norm: GroupNormLayer
    let toQ, toK, toV, toOut: LinearLayer
    let precision: Precision

    init(_ w: WeightScope, channels: Int, groups: Int) throws {
        precision = w.precision
        norm = try GroupNormLayer(w.scope("group_norm"), channels: channels, groups: groups, eps: 1e-6)
        toQ = try LinearLayer(w.scope("to_q"), in: channels, out: channels)
        toK = try LinearLayer(w.scope("to_k"), in: channels, out: channels)
        toV = try LinearLayer(w.scope("to_v"), in: channels, out: channels)
        toOut = try LinearLayer(w.scope("to_out.0"), in: channels, out: channels)
    }

    /// [B, C, H, W] → same
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = norm(x).reshaped([b, c, h * w]).transposedLastTwo()  // [B, H·W, C]
        let attended = Attention.attention(q: toQ(tokens), k: toK(tokens), v: toV(tokens), heads: 1, precision: precision)
        var out = toOut(attended).transposedLastTwo().reshaped([b, c, h, w])
        out.add(x)
        return out
    }
}

/// resnet, attention, resnet at the deepest width (diffusers `UNetMidBlock2D`, no time embedding).
struct VAEMidBlock: Sendable {
    let resnet1, resnet2: ResnetBlock
    let attention: VAEAttention

    init(_ w: WeightScope, channels: Int, groups: Int) throws {
        resnet1 = try ResnetBlock(w.scope("resnets.0"), in: channels, out: channels, timeEmbedding: nil, groups: groups, eps: 1e-6)
        attention = try VAEAttention(w.scope("attentions.0"), channels: channels, groups: groups)
        resnet2 = try ResnetBlock(w.scope("resnets.1"), in: channels, out: channels, timeEmbedding: nil, groups: groups, eps: 1e-6)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { resnet2(attention(resnet1(x, timeEmbedding: nil)), timeEmbedding: nil) }
}

/// diffusers' `AutoencoderKL`: the encoder's posterior mean and the decoder. Scaling by
/// `scaling_factor` (ALGORITHM.md §3) is the caller's, as in diffusers.
public final class AutoencoderKL: Sendable {
    public let config: VAEConfig
    let encoderIn, encoderOut, quantConv, postQuantConv, decoderIn, decoderOut: Conv2DLayer
    let encoderDown: [(resnets: [ResnetBlock], downsample: Conv2DLayer?)]
    let decoderUp: [(resnets: [ResnetBlock], upsample: Conv2DLayer?)]
    let encoderMid, decoderMid: VAEMidBlock
    let encoderNormOut, decoderNormOut: GroupNormLayer

    public init(config: VAEConfig, weights: WeightReader, configPath: String) throws {
        try config.validate(path: configPath)
        self.config = config
        let w = weights.scope(""), widths = config.blockOutChannels, groups = config.normNumGroups
        let e = w.scope("encoder"), d = w.scope("decoder")
        encoderIn = try Conv2DLayer(e.scope("conv_in"), in: config.inChannels, out: widths[0], kernel: 3)
        var channels = widths[0]
        var down: [(resnets: [ResnetBlock], downsample: Conv2DLayer?)] = []
        for (i, width) in widths.enumerated() {
            let block = e.scope("down_blocks", i)
            let resnets = try (0..<config.layersPerBlock).map { j in
                try ResnetBlock(block.scope("resnets", j), in: j == 0 ? channels : width, out: width, timeEmbedding: nil, groups: groups, eps: 1e-6)
            }
            // Downsample2D with padding 0: the input is first padded by one on the right and bottom.
            let downsample = i < widths.count - 1
                ? try Conv2DLayer(block.scope("downsamplers.0.conv"), in: width, out: width, kernel: 3, stride: 2,
                                  padding: Padding2D(top: 0, left: 0, bottom: 1, right: 1)) : nil
            down.append((resnets, downsample))
            channels = width
        }
        encoderDown = down
        encoderMid = try VAEMidBlock(e.scope("mid_block"), channels: channels, groups: groups)
        encoderNormOut = try GroupNormLayer(e.scope("conv_norm_out"), channels: channels, groups: groups, eps: 1e-6)
        encoderOut = try Conv2DLayer(e.scope("conv_out"), in: channels, out: 2 * config.latentChannels, kernel: 3)
        quantConv = try Conv2DLayer(w.scope("quant_conv"), in: 2 * config.latentChannels, out: 2 * config.latentChannels, kernel: 1)

        postQuantConv = try Conv2DLayer(w.scope("post_quant_conv"), in: config.latentChannels, out: config.latentChannels, kernel: 1)
        let deepest = widths[widths.count - 1]
        decoderIn = try Conv2DLayer(d.scope("conv_in"), in: config.latentChannels, out: deepest, kernel: 3)
        decoderMid = try VAEMidBlock(d.scope("mid_block"), channels: deepest, groups: groups)
        channels = deepest
        var up: [(resnets: [ResnetBlock], upsample: Conv2DLayer?)] = []
        for (i, width) in widths.reversed().enumerated() {
            let block = d.scope("up_blocks", i)
            let resnets = try (0...config.layersPerBlock).map { j in
                try ResnetBlock(block.scope("resnets", j), in: j == 0 ? channels : width, out: width, timeEmbedding: nil, groups: groups, eps: 1e-6)
            }
            let upsample = i < widths.count - 1 ? try Conv2DLayer(block.scope("upsamplers.0.conv"), in: width, out: width, kernel: 3) : nil
            up.append((resnets, upsample))
            channels = width
        }
        decoderUp = up
        decoderNormOut = try GroupNormLayer(d.scope("conv_norm_out"), channels: widths[0], groups: groups, eps: 1e-6)
        decoderOut = try Conv2DLayer(d.scope("conv_out"), in: widths[0], out: config.outChannels, kernel: 3)
        try weights.finish()
    }

    /// image [B, 3, H, W] in [−1, 1] → the posterior mean [B, latent, H/f, W/f] (unscaled).
    public func encodeMean(_ image: Tensor) -> Tensor {
        var h = encoderIn(image)
        for block in encoderDown {
            for resnet in block.resnets { h = resnet(h, timeEmbedding: nil) }
            if let downsample = block.downsample { h = downsample(h) }
        }
        h = encoderOut(encoderNormOut(encoderMid(h), silu: true))
        // moments = quant_conv(h): [mean, logvar] along channels; the mean is the first half.
        return quantConv(h).channels(0..<config.latentChannels)
    }

    /// latent [B, latent, h, w] (unscaled) → image [B, 3, h·f, w·f], nominally in [−1, 1].
    public func decode(_ latent: Tensor) -> Tensor {
        var h = decoderMid(decoderIn(postQuantConv(latent)))
        for block in decoderUp {
            for resnet in block.resnets { h = resnet(h, timeEmbedding: nil) }
            if let upsample = block.upsample { h = upsample(h.upsampleNearest2x()) }
        }
        return decoderOut(decoderNormOut(h, silu: true))
    }
}
