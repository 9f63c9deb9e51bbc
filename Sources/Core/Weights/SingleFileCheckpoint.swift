/// The original single-file SD 1.x checkpoint (the LDM layout: `model.diffusion_model.*`,
/// `first_stage_model.*`, `cond_stage_model.transformer.*`) seen under diffusers' names. This is
/// the one place where names are translated; it is the inverse of diffusers' `convert_ldm_*`.
public enum SingleFileCheckpoint {
    public static let unetPrefix = "model.diffusion_model."
    public static let vaePrefix = "first_stage_model."
    public static let textPrefix = "cond_stage_model.transformer."

    /// Tensors real SD 1.x files carry that no component uses: the EMA copy, the DDPM schedule
    /// buffers of the training code, and CLIP's position_ids buffer.
    static func isIgnorable(_ name: String) -> Bool {
        if name.hasPrefix("model_ema.") || name.hasSuffix("embeddings.position_ids") { return true }
        return ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
                "posterior_mean_coef2", "logvar"].contains(name)
    }

    /// Names in the file that belong to no component and are not known extras (e.g. another
    /// model family's text encoder).
    public static func unknownNames(in file: SafetensorsFile) -> [String] {
        file.names.filter { name in
            !name.hasPrefix(unetPrefix) && !name.hasPrefix(vaePrefix) && !name.hasPrefix(textPrefix) && !isIgnorable(name)
        }
    }

    /// UNet: original name (without prefix) → diffusers name; nil when it has no counterpart.
    static func unetName(_ original: String, layersPerBlock: Int) -> String? {
        let p = original.split(separator: ".").map(String.init)
        let stride = layersPerBlock + 1
        func rest(_ from: Int) -> String { p[from...].joined(separator: ".") }
        func resnet(_ from: Int) -> String? {
            let names = ["in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                         "out_layers.0": "norm2", "out_layers.3": "conv2"]
            if p.count > from, p[from] == "skip_connection" { return "conv_shortcut." + rest(from + 1) }
            guard p.count > from + 2, let name = names[p[from] + "." + p[from + 1]] else { return nil }
            return name + "." + rest(from + 2)
        }
        guard p.count >= 2 else { return nil }
        switch p[0] {
        case "time_embed":
            guard let layer = ["0": "linear_1", "2": "linear_2"][p[1]] else { return nil }
            return "time_embedding.\(layer)." + rest(2)
        case "out":
            guard let layer = ["0": "conv_norm_out", "2": "conv_out"][p[1]] else { return nil }
            return "\(layer)." + rest(2)
        case "input_blocks":
            guard p.count >= 4, let n = Int(p[1]) else { return nil }
            if n == 0 { return p[2] == "0" ? "conv_in." + rest(3) : nil }
            let (i, j) = ((n - 1) / stride, (n - 1) % stride)
            if j == layersPerBlock {
                return p[2] == "0" && p[3] == "op" ? "down_blocks.\(i).downsamplers.0.conv." + rest(4) : nil
            }
            if p[2] == "0" { return resnet(3).map { "down_blocks.\(i).resnets.\(j).\($0)" } }
            return p[2] == "1" ? "down_blocks.\(i).attentions.\(j)." + rest(3) : nil
        case "middle_block":
            switch p[1] {
            case "0": return resnet(2).map { "mid_block.resnets.0.\($0)" }
            case "1": return "mid_block.attentions.0." + rest(2)
            case "2": return resnet(2).map { "mid_block.resnets.1.\($0)" }
            default: return nil
            }
        case "output_blocks":
            guard p.count >= 4, let n = Int(p[1]) else { return nil }
            let (i, j) = (n / stride, n % stride)
            if p[2] == "0" { return resnet(3).map { "up_blocks.\(i).resnets.\(j).\($0)" } }
            // The upsampler follows the last resnet: at .1 in blocks without attention, else .2.
            if p[3] == "conv" && (p[2] == "2" || p[2] == "1") { return "up_blocks.\(i).upsamplers.0.conv." + rest(4) }
            return p[2] == "1" ? "up_blocks.\(i).attentions.\(j)." + rest(3) : nil
        default:
            return nil
        }
    }

    /// VAE: original name (without prefix) → diffusers name, and whether the tensor is a 1×1
    /// convolution weight that diffusers stores as a Linear weight.
    static func vaeName(_ original: String, levels: Int) -> (name: String, squeeze: Bool)? {
        let p = original.split(separator: ".").map(String.init)
        func rest(_ from: Int) -> String { p[from...].joined(separator: ".") }
        if p.first == "quant_conv" || p.first == "post_quant_conv" { return (original, false) }
        guard p.count >= 3, p[0] == "encoder" || p[0] == "decoder" else { return nil }
        let coder = p[0]
        let resnetNames = ["norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"]
        switch p[1] {
        case "conv_in", "conv_out": return ("\(coder).\(rest(1))", false)
        case "norm_out": return ("\(coder).conv_norm_out.\(rest(2))", false)
        case "mid":
            if p[2].hasPrefix("block_"), let k = Int(p[2].dropFirst(6)), p.count >= 5, let inner = resnetNames[p[3]] {
                return ("\(coder).mid_block.resnets.\(k - 1).\(inner).\(rest(4))", false)
            }
            let attention = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
            guard p[2] == "attn_1", p.count >= 5, let inner = attention[p[3]] else { return nil }
            return ("\(coder).mid_block.attentions.0.\(inner).\(rest(4))", p[3] != "norm" && p[4] == "weight")
        case "down", "up":
            guard p.count >= 5, let k = Int(p[2]) else { return nil }
            let block = p[1] == "down" ? "down_blocks.\(k)" : "up_blocks.\(levels - 1 - k)"
            if p[3] == "block", p.count >= 6, let inner = resnetNames[p[5]] {
                return ("\(coder).\(block).resnets.\(p[4]).\(inner).\(rest(6))", false)
            }
            if p[3] == "downsample" || p[3] == "upsample" {
                return ("\(coder).\(block).\(p[3])rs.0.\(rest(4))", false)
            }
            return nil
        default:
            return nil
        }
    }
}

/// One component of a single-file checkpoint under diffusers names. Tensors whose original name
/// has no diffusers counterpart are offered under "(unmapped) NAME", so the strict loader reports
/// them as unused instead of dropping them silently.
public final class SingleFileComponentSource: TensorSource {
    let file: SafetensorsFile
    /// diffusers name → (original name, shape seen in diffusers layout)
    let table: [String: (original: String, shape: [Int])]

    public enum Component { case unet(layersPerBlock: Int), vae(levels: Int), textEncoder }

    public init(file: SafetensorsFile, component: Component) {
        self.file = file
        var table: [String: (String, [Int])] = [:]
        let prefix: String
        switch component {
        case .unet: prefix = SingleFileCheckpoint.unetPrefix
        case .vae: prefix = SingleFileCheckpoint.vaePrefix
        case .textEncoder: prefix = SingleFileCheckpoint.textPrefix
        }
        for original in file.names where original.hasPrefix(prefix) && !SingleFileCheckpoint.isIgnorable(original) {
            let local = String(original.dropFirst(prefix.count))
            guard let shape = file.entries[original]?.shape else { continue }
            switch component {
            case let .unet(layers):
                table[SingleFileCheckpoint.unetName(local, layersPerBlock: layers) ?? "(unmapped) \(original)"] = (original, shape)
            case let .vae(levels):
                if let (name, squeeze) = SingleFileCheckpoint.vaeName(local, levels: levels) {
                    table[name] = (original, squeeze && shape.count == 4 ? Array(shape.prefix(2)) : shape)
                } else {
                    table["(unmapped) \(original)"] = (original, shape)
                }
            case .textEncoder:
                // Older exports omit the "text_model." level.
                table[local.hasPrefix("text_model.") ? local : "text_model." + local] = (original, shape)
            }
        }
        self.table = table
    }

    public var origin: String { file.path }
    public var names: [String] { Array(table.keys) }
    public func shape(of name: String) -> [Int]? { table[name]?.shape }

    public func load(_ name: String) throws -> Tensor {
        guard let entry = table[name] else { throw SafetensorsError.tensorNotFound(file: file.path, tensor: name) }
        return try file.tensor(entry.original).reshaped(entry.shape)
    }
}
