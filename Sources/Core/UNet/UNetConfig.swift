import Foundation

/// `unet/config.json` of a diffusers `UNet2DConditionModel`, the subset SD 1.x/2.x use. Keys that
/// older configs lack take diffusers' defaults; options this model does not implement are refused
/// by `validate` with the option's name.
public struct UNetConfig: Decodable, Equatable, Sendable {
    public var inChannels = 4
    public var outChannels = 4
    public var blockOutChannels = [320, 640, 1280, 1280]
    public var layersPerBlock = 2
    public var downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    public var upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    public var crossAttentionDim = 768
    /// diffusers' historical quirk: for SD this is the number of heads, not the head size.
    public var attentionHeadDim: [Int] = [8]
    public var numAttentionHeads: [Int]?
    public var normNumGroups = 32
    public var normEps: Float = 1e-5
    public var flipSinToCos = true
    public var freqShift: Float = 0
    public var useLinearProjection = false
    public var transformerLayersPerBlock = 1
    public var downsamplePadding = 1
    public var sampleSize = 64
    var unsupported: [String: String] = [:]

    enum Keys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block", downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
        case midBlockType = "mid_block_type", crossAttentionDim = "cross_attention_dim"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case normNumGroups = "norm_num_groups", normEps = "norm_eps", flipSinToCos = "flip_sin_to_cos"
        case freqShift = "freq_shift", useLinearProjection = "use_linear_projection"
        case transformerLayersPerBlock = "transformer_layers_per_block", downsamplePadding = "downsample_padding"
        case sampleSize = "sample_size"
        // Options with a single supported value, checked in `validate`.
        case classEmbedType = "class_embed_type", additionEmbedType = "addition_embed_type"
        case timeEmbeddingType = "time_embedding_type", resnetTimeScaleShift = "resnet_time_scale_shift"
        case actFn = "act_fn", centerInputSample = "center_input_sample", onlyCrossAttention = "only_cross_attention"
        case dualCrossAttention = "dual_cross_attention", encoderHidDim = "encoder_hid_dim"
        case timeCondProjDim = "time_cond_proj_dim", timeEmbeddingDim = "time_embedding_dim"
        case convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel", midBlockScaleFactor = "mid_block_scale_factor"
        case resnetOutScaleFactor = "resnet_out_scale_factor", timestepPostAct = "timestep_post_act"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        inChannels = try c.decode(.inChannels, default: inChannels)
        outChannels = try c.decode(.outChannels, default: outChannels)
        blockOutChannels = try c.decode(.blockOutChannels, default: blockOutChannels)
        layersPerBlock = try c.decode(.layersPerBlock, default: layersPerBlock)
        downBlockTypes = try c.decode(.downBlockTypes, default: downBlockTypes)
        upBlockTypes = try c.decode(.upBlockTypes, default: upBlockTypes)
        if c.contains(.midBlockType) { midBlockType = try c.decodeIfPresent(String.self, forKey: .midBlockType) }
        crossAttentionDim = try c.decode(.crossAttentionDim, default: crossAttentionDim)
        attentionHeadDim = try Self.intOrList(c, .attentionHeadDim) ?? attentionHeadDim
        numAttentionHeads = try Self.intOrList(c, .numAttentionHeads)
        normNumGroups = try c.decode(.normNumGroups, default: normNumGroups)
        normEps = try c.decode(.normEps, default: normEps)
        flipSinToCos = try c.decode(.flipSinToCos, default: flipSinToCos)
        freqShift = try c.decode(.freqShift, default: freqShift)
        useLinearProjection = try c.decode(.useLinearProjection, default: useLinearProjection)
        transformerLayersPerBlock = try Self.intOrList(c, .transformerLayersPerBlock).map { list in
            guard Set(list).count == 1, let first = list.first else {
                throw DecodingError.dataCorruptedError(forKey: .transformerLayersPerBlock, in: c,
                                                       debugDescription: "per-block transformer depths are not supported")
            }
            return first
        } ?? transformerLayersPerBlock
        downsamplePadding = try c.decode(.downsamplePadding, default: downsamplePadding)
        sampleSize = try c.decode(.sampleSize, default: sampleSize)

        // Each option below has one value this model implements (SD 1.x/2.x's); record others.
        func isSet(_ key: Keys) -> Bool { c.contains(key) && (try? c.decodeNil(forKey: key)) == false }
        func expectNull(_ key: Keys) {
            if isSet(key) { unsupported[key.rawValue] = "set" }
        }
        func expect<T: Decodable & Equatable>(_ key: Keys, _ supported: T) {
            guard isSet(key) else { return }
            let found = try? c.decode(T.self, forKey: key)
            if found != supported { unsupported[key.rawValue] = found.map { "\($0)" } ?? "an unexpected value" }
        }
        for key in [Keys.classEmbedType, .additionEmbedType, .encoderHidDim, .timeCondProjDim, .timeEmbeddingDim, .timestepPostAct] {
            expectNull(key)
        }
        expect(.timeEmbeddingType, "positional")
        expect(.resnetTimeScaleShift, "default")
        expect(.actFn, "silu")
        expect(.centerInputSample, false)
        expect(.dualCrossAttention, false)
        expect(.onlyCrossAttention, false)
        expect(.convInKernel, 3)
        expect(.convOutKernel, 3)
        expect(.midBlockScaleFactor, Float(1))
        expect(.resnetOutScaleFactor, Float(1))
    }

    private static func intOrList(_ c: KeyedDecodingContainer<Keys>, _ key: Keys) throws -> [Int]? {
        guard c.contains(key), try !c.decodeNil(forKey: key) else { return nil }
        if let single = try? c.decode(Int.self, forKey: key) { return [single] }
        return try c.decode([Int].self, forKey: key)
    }

    /// Heads of the transformers in down block i (diffusers: num_attention_heads, else the
    /// misnamed attention_head_dim).
    func heads(level i: Int) -> Int {
        let list = numAttentionHeads ?? attentionHeadDim
        return list.count == 1 ? list[0] : list[i]
    }

    var levels: Int { blockOutChannels.count }
    var timeEmbeddingWidth: Int { blockOutChannels[0] * 4 }

    /// Refuses configurations this implementation would compute wrongly.
    func validate(path: String) throws {
        func fail(_ detail: String) -> ModelLoadError { .unsupportedConfig(path: path, detail: detail) }
        if let (key, value) = unsupported.sorted(by: { $0.key < $1.key }).first {
            throw fail("\(key) = \(value)")
        }
        guard levels >= 1, downBlockTypes.count == levels, upBlockTypes.count == levels else {
            throw fail("block_out_channels, down_block_types and up_block_types must have the same length")
        }
        for type in downBlockTypes where !["CrossAttnDownBlock2D", "DownBlock2D"].contains(type) {
            throw fail("down block type \(type)")
        }
        for type in upBlockTypes where !["CrossAttnUpBlock2D", "UpBlock2D"].contains(type) {
            throw fail("up block type \(type)")
        }
        if let midBlockType, midBlockType != "UNetMidBlock2DCrossAttn" { throw fail("mid_block_type \(midBlockType)") }
        let list = numAttentionHeads ?? attentionHeadDim
        guard list.count == 1 || list.count == levels else { throw fail("attention heads list of length \(list.count)") }
        for (i, width) in blockOutChannels.enumerated() {
            guard width > 0, width % normNumGroups == 0 else { throw fail("width \(width) not divisible by \(normNumGroups) groups") }
            guard heads(level: i) > 0, width % heads(level: i) == 0 else { throw fail("width \(width) not divisible by \(heads(level: i)) heads") }
        }
        guard layersPerBlock >= 1, transformerLayersPerBlock >= 1 else { throw fail("layers_per_block must be ≥ 1") }
    }
}
