import Foundation

/// A loaded Stable Diffusion 1.x model: the UNet, the VAE, the CLIP text encoder and its
/// tokenizer, immutable and shareable between jobs.
public final class StableDiffusionModel: Sendable {
    public let unet: UNetModel
    public let vae: AutoencoderKL
    public let textEncoder: CLIPTextModel
    public let tokenizer: CLIPTokenizer
    /// Where the weights came from (the folder or file given to `load`).
    public let path: String
    /// A content fingerprint of the weights and configs (hex SHA-256), independent of the path:
    /// results and caches name the model by it.
    public let identity: String
    /// The precision its products run in, fixed at load (the weights are held in that form).
    public let precision: Precision

    /// What names this model's computation for caches: the weights' identity, and the precision
    /// when it is not the exact one (fp32 entries keep the names they always had).
    public var computationIdentity: String { precision == .fp32 ? identity : identity + ":" + precision.rawValue }

    init(unet: UNetModel, vae: AutoencoderKL, textEncoder: CLIPTextModel, tokenizer: CLIPTokenizer, path: String, files: [SafetensorsFile],
         precision: Precision) {
        (self.unet, self.vae, self.textEncoder, self.tokenizer, self.path) = (unet, vae, textEncoder, tokenizer, path)
        self.precision = precision
        var hash = SHA256()
        hash.update("\(unet.config)\0\(vae.config)\0\(textEncoder.config)\0")
        for file in files { file.fingerprint(into: &hash) }
        identity = SHA256.hex(hash.finalize())
    }

    /// Loads a diffusers folder (unet/, vae/, text_encoder/, tokenizer/) or an original single-file
    /// `.safetensors` checkpoint. For a single file, configs come from `unet/config.json` etc. in
    /// `companion` (default: the file's folder) when present, else SD 1.5's; the tokenizer from
    /// `tokenizer` (default: `companion/tokenizer`). `precision` is the form the products' weights
    /// are held in (bf16: packed once here, the float copies dropped); bf16 needs
    /// `Precision.bf16IsSupported`. The VAE stays fp32 in every model: its large maps run Winograd
    /// in fp32, faster than its bf16 direct products (`xattn-bench unet`: decode 8.2 s fp32 against
    /// 12.5 s bf16 with AMX), and exact.
    public static func load(from path: String, companion: String? = nil, tokenizer tokenizerPath: String? = nil,
                            precision: Precision = .fp32) throws -> StableDiffusionModel {
        if precision == .bf16 && !Precision.bf16IsSupported {
            throw ModelLoadError.unsupportedPrecision(precision.rawValue)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelLoadError.missingFile(path: path, hint: "Give a diffusers model folder or a single-file .safetensors checkpoint.")
        }
        if isDirectory.boolValue { return try loadFolder(path, tokenizerPath: tokenizerPath, precision: precision) }
        return try loadSingleFile(path, companion: companion ?? (path as NSString).deletingLastPathComponent, tokenizerPath: tokenizerPath,
                                  precision: precision)
    }

    static func loadFolder(_ folder: String, tokenizerPath: String?, precision: Precision) throws -> StableDiffusionModel {
        let unetConfig: UNetConfig = try ModelFiles.config(folder + "/unet/config.json")
        let vaeConfig: VAEConfig = try ModelFiles.config(folder + "/vae/config.json")
        let textConfig: CLIPTextConfig = try ModelFiles.config(folder + "/text_encoder/config.json")
        let unetFile = try ModelFiles.weights(in: folder + "/unet", stem: "diffusion_pytorch_model")
        let vaeFile = try ModelFiles.weights(in: folder + "/vae", stem: "diffusion_pytorch_model")
        let textFile = try ModelFiles.weights(in: folder + "/text_encoder", stem: "model")
        let tokenizer = try CLIPTokenizer(folder: tokenizerPath ?? folder + "/tokenizer")
        try ModelConsistency(unetConfigPath: folder + "/unet/config.json", vaeConfigPath: folder + "/vae/config.json",
                             textConfigPath: folder + "/text_encoder/config.json", tokenizerPath: tokenizerPath ?? folder + "/tokenizer")
            .check(unet: unetConfig, vae: vaeConfig, text: textConfig, tokenizer: tokenizer)
        return StableDiffusionModel(
            unet: try UNetModel(config: unetConfig, weights: WeightReader(source: SafetensorsSource(file: unetFile), component: "unet", precision: precision),
                                configPath: folder + "/unet/config.json"),
            vae: try AutoencoderKL(config: vaeConfig, weights: WeightReader(source: SafetensorsSource(file: vaeFile), component: "vae", precision: .fp32),
                                   configPath: folder + "/vae/config.json"),
            textEncoder: try CLIPTextModel(config: textConfig,
                                           weights: WeightReader(source: SafetensorsSource(file: textFile), component: "text_encoder", precision: precision,
                                                                 ignorable: { $0.hasSuffix("embeddings.position_ids") }),
                                           configPath: folder + "/text_encoder/config.json"),
            tokenizer: tokenizer, path: folder, files: [unetFile, vaeFile, textFile], precision: precision)
    }

    static func loadSingleFile(_ path: String, companion: String, tokenizerPath: String?, precision: Precision) throws -> StableDiffusionModel {
        try ModelFiles.refusePickle(path)
        let file = try SafetensorsFile(path: path)
        let unknown = SingleFileCheckpoint.unknownNames(in: file)
        guard unknown.isEmpty else {
            throw ModelLoadError.unexpectedTensors(component: "checkpoint (not an SD 1.x single file?)", names: unknown.sorted(), file: path)
        }
        let unetConfig: UNetConfig = try ModelFiles.optionalConfig(companion + "/unet/config.json") ?? UNetConfig()
        let vaeConfig: VAEConfig = try ModelFiles.optionalConfig(companion + "/vae/config.json") ?? VAEConfig()
        let textConfig: CLIPTextConfig = try ModelFiles.optionalConfig(companion + "/text_encoder/config.json") ?? CLIPTextConfig()
        let tokenizerFolder = tokenizerPath ?? companion + "/tokenizer"
        guard FileManager.default.fileExists(atPath: tokenizerFolder + "/vocab.json") else {
            throw ModelLoadError.missingFile(path: tokenizerFolder, hint: "A single-file checkpoint has no tokenizer: put CLIP's tokenizer/ folder (vocab.json, merges.txt) beside the file, or give its path.")
        }
        let tokenizer = try CLIPTokenizer(folder: tokenizerFolder)
        func configPath(_ component: String) -> String {
            let companionConfig = companion + "/\(component)/config.json"
            return FileManager.default.fileExists(atPath: companionConfig) ? companionConfig : path + " (SD 1.5's \(component) configuration)"
        }
        try ModelConsistency(unetConfigPath: configPath("unet"), vaeConfigPath: configPath("vae"),
                             textConfigPath: configPath("text_encoder"), tokenizerPath: tokenizerFolder)
            .check(unet: unetConfig, vae: vaeConfig, text: textConfig, tokenizer: tokenizer)
        let unetSource = SingleFileComponentSource(file: file, component: .unet(layersPerBlock: unetConfig.layersPerBlock))
        let vaeSource = SingleFileComponentSource(file: file, component: .vae(levels: vaeConfig.blockOutChannels.count))
        let textSource = SingleFileComponentSource(file: file, component: .textEncoder)
        return StableDiffusionModel(
            unet: try UNetModel(config: unetConfig, weights: WeightReader(source: unetSource, component: "unet", precision: precision), configPath: path),
            vae: try AutoencoderKL(config: vaeConfig, weights: WeightReader(source: vaeSource, component: "vae", precision: .fp32), configPath: path),
            textEncoder: try CLIPTextModel(config: textConfig, weights: WeightReader(source: textSource, component: "text_encoder", precision: precision), configPath: path),
            tokenizer: tokenizer, path: path, files: [file], precision: precision)
    }
}

/// Finding and reading a model's files.
enum ModelFiles {
    /// Decodes a JSON config, with errors naming the file.
    static func config<T: Decodable>(_ path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelLoadError.missingFile(path: path, hint: "The model folder needs this config (diffusers layout).")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw ModelLoadError.invalidConfig(path: path, detail: "\(error)")
        }
    }

    static func optionalConfig<T: Decodable>(_ path: String) throws -> T? {
        FileManager.default.fileExists(atPath: path) ? try config(path) as T : nil
    }

    /// `stem.safetensors`, else the `stem.fp16.safetensors` variant; pickles are refused by name.
    static func weights(in folder: String, stem: String) throws -> SafetensorsFile {
        let manager = FileManager.default
        for candidate in ["\(stem).safetensors", "\(stem).fp16.safetensors"] where manager.fileExists(atPath: folder + "/" + candidate) {
            return try SafetensorsFile(path: folder + "/" + candidate)
        }
        for pickle in ["\(stem).bin", "\(stem).fp16.bin", "\(stem).ckpt"] where manager.fileExists(atPath: folder + "/" + pickle) {
            throw ModelLoadError.pickleRefused(path: folder + "/" + pickle)
        }
        throw ModelLoadError.missingFile(path: folder + "/\(stem).safetensors", hint: "Expected \(stem).safetensors or \(stem).fp16.safetensors.")
    }

    static func refusePickle(_ path: String) throws {
        let lowered = path.lowercased()
        if [".ckpt", ".bin", ".pt", ".pth", ".pkl"].contains(where: lowered.hasSuffix) {
            throw ModelLoadError.pickleRefused(path: path)
        }
    }
}
