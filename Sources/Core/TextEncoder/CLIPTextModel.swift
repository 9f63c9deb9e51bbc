/// `text_encoder/config.json` of transformers' `CLIPTextModel`.
public struct CLIPTextConfig: Decodable, Equatable, Sendable {
    public var vocabSize = 49408
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var maxPositionEmbeddings = 77
    public var layerNormEps: Float = 1e-5
    public var hiddenAct = "quick_gelu"

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decode(.vocabSize, default: vocabSize)
        hiddenSize = try c.decode(.hiddenSize, default: hiddenSize)
        intermediateSize = try c.decode(.intermediateSize, default: intermediateSize)
        numHiddenLayers = try c.decode(.numHiddenLayers, default: numHiddenLayers)
        numAttentionHeads = try c.decode(.numAttentionHeads, default: numAttentionHeads)
        maxPositionEmbeddings = try c.decode(.maxPositionEmbeddings, default: maxPositionEmbeddings)
        layerNormEps = try c.decode(.layerNormEps, default: layerNormEps)
        hiddenAct = try c.decode(.hiddenAct, default: hiddenAct)
    }

    func validate(path: String) throws {
        func fail(_ detail: String) -> ModelLoadError { .unsupportedConfig(path: path, detail: detail) }
        guard ["quick_gelu", "gelu"].contains(hiddenAct) else { throw fail("hidden_act \(hiddenAct)") }
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw fail("hidden_size \(hiddenSize) not divisible by \(numAttentionHeads) heads")
        }
        guard maxPositionEmbeddings > 0, vocabSize > 0 else { throw fail("empty vocabulary or positions") }
    }
}

/// One pre-LayerNorm encoder layer: causal self-attention (biased q/k/v/out projections) and an
/// MLP (fc1, quick-GELU, fc2), each with a residual.
struct CLIPEncoderLayer: Sendable {
    let norm1, norm2: LayerNormLayer
    let q, k, v, out, fc1, fc2: LinearLayer
    let heads: Int
    let quickGelu: Bool
    let precision: Precision

    init(_ w: WeightScope, config: CLIPTextConfig) throws {
        precision = w.precision
        let d = config.hiddenSize
        norm1 = try LayerNormLayer(w.scope("layer_norm1"), dim: d, eps: config.layerNormEps)
        q = try LinearLayer(w.scope("self_attn.q_proj"), in: d, out: d)
        k = try LinearLayer(w.scope("self_attn.k_proj"), in: d, out: d)
        v = try LinearLayer(w.scope("self_attn.v_proj"), in: d, out: d)
        out = try LinearLayer(w.scope("self_attn.out_proj"), in: d, out: d)
        norm2 = try LayerNormLayer(w.scope("layer_norm2"), dim: d, eps: config.layerNormEps)
        fc1 = try LinearLayer(w.scope("mlp.fc1"), in: d, out: config.intermediateSize)
        fc2 = try LinearLayer(w.scope("mlp.fc2"), in: config.intermediateSize, out: d)
        heads = config.numAttentionHeads
        quickGelu = config.hiddenAct == "quick_gelu"
    }

    /// [B, N, D] → [B, N, D]
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        let n = norm1(h)
        h.add(out(Attention.attention(q: q(n), k: k(n), v: v(n), heads: heads, causal: true, precision: precision)))
        let hidden = fc1(norm2(h))
        h.add(fc2(quickGelu ? hidden.quickGelu() : hidden.gelu()))
        return h
    }
}

/// transformers' `CLIPTextModel` → `last_hidden_state`: token plus position embeddings, the
/// encoder layers with a causal mask, and the final LayerNorm.
public final class CLIPTextModel: Sendable {
    public let config: CLIPTextConfig
    let tokenEmbedding, positionEmbedding: Tensor
    let layers: [CLIPEncoderLayer]
    let finalNorm: LayerNormLayer

    public init(config: CLIPTextConfig, weights: WeightReader, configPath: String) throws {
        try config.validate(path: configPath)
        self.config = config
        let w = weights.scope("text_model")
        tokenEmbedding = try w.take("embeddings.token_embedding.weight", [config.vocabSize, config.hiddenSize])
        positionEmbedding = try w.take("embeddings.position_embedding.weight", [config.maxPositionEmbeddings, config.hiddenSize])
        layers = try (0..<config.numHiddenLayers).map { try CLIPEncoderLayer(w.scope("encoder.layers", $0), config: config) }
        finalNorm = try LayerNormLayer(w.scope("final_layer_norm"), dim: config.hiddenSize, eps: config.layerNormEps)
        try weights.finish()
    }

    /// Token ids (one sequence per batch item, each at most max_position_embeddings long, ids
    /// below the vocabulary size) → [B, N, hidden].
    public func callAsFunction(_ batch: [[Int]]) -> Tensor {
        let n = batch.first?.count ?? 0
        precondition(batch.allSatisfy { $0.count == n } && n <= config.maxPositionEmbeddings, "token sequences must have equal length ≤ \(config.maxPositionEmbeddings)")
        var rows: [Tensor] = []
        let positions = positionEmbedding.gatherRows(Array(0..<n))
        for ids in batch {
            var embedded = tokenEmbedding.gatherRows(ids)
            embedded.add(positions)
            rows.append(embedded)
        }
        var h = Tensor.stack(rows)
        for layer in layers { h = layer(h) }
        return finalNorm(h)
    }
}

extension Tensor {
    /// Tensors of one shape stacked along a new leading dimension: [S] × n → [n, S].
    public static func stack(_ tensors: [Tensor]) -> Tensor {
        guard let first = tensors.first else { return Tensor(shape: [0]) }
        var out = Tensor(uninitializedShape: [tensors.count] + first.shape)
        out.withUnsafeMutablePointer { dst in
            for (i, t) in tensors.enumerated() {
                precondition(t.shape == first.shape, "stack: \(t.shape) ≠ \(first.shape)")
                t.withUnsafePointer { (dst + i * first.count).update(from: $0, count: first.count) }
            }
        }
        return out
    }
}
