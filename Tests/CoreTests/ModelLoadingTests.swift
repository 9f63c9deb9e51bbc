import Foundation
import Testing
import Core

/// Strict loading: the original single-file layout loads to identical outputs, and every defect
/// of a model on disk is a typed error naming the file and the tensor.
@Suite(.serialized) struct ModelLoadingTests {
    let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-model-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    struct NameRow: Decodable { let diffusers: String; let original: String; let original_shape: [Int] }

    /// Every tensor of the tiny folder under its original single-file name and shape, using the
    /// table written by tools/reference/sd_tiny.py (checked there against diffusers' converters),
    /// plus extras real SD 1.5 files carry.
    func writeSingleFile(to path: String) throws {
        let data = try #require(FileManager.default.contents(atPath: TinySD.expectedFolder + "/single_file_names.json"))
        let rows = try JSONDecoder().decode([NameRow].self, from: data)
        let files = [
            "unet": try SafetensorsFile(path: TinySD.folder + "/unet/diffusion_pytorch_model.fp16.safetensors"),
            "vae": try SafetensorsFile(path: TinySD.folder + "/vae/diffusion_pytorch_model.safetensors"),
            "text_encoder": try SafetensorsFile(path: TinySD.folder + "/text_encoder/model.safetensors"),
        ]
        var tensors: [(name: String, tensor: Tensor)] = []
        for row in rows {
            let parts = row.diffusers.split(separator: "/", maxSplits: 1).map(String.init)
            let file = try #require(files[parts[0]])
            tensors.append((row.original, try file.tensor(parts[1]).reshaped(row.original_shape)))
        }
        tensors.append(("betas", Tensor(shape: [1000], repeating: 0.01)))
        tensors.append(("model_ema.decay", Tensor(shape: [], repeating: 0.9999)))
        tensors.append(("cond_stage_model.transformer.text_model.embeddings.position_ids", Tensor(shape: [1, 77])))
        try SafetensorsWriter.write(tensors, to: path)
    }

    @Test func singleFileLoadsToIdenticalOutputs() throws {
        let folderModel = try TinySD.requireModel()
        let path = scratch.appendingPathComponent("tiny-sd-original.safetensors").path
        try writeSingleFile(to: path)
        // Configs and tokenizer from the diffusers folder, as a user would place them beside the file.
        let single = try StableDiffusionModel.load(from: path, companion: TinySD.folder)
        let latents = try #require(TinySD.expected).tensor("unet.latents")
        let context = try #require(TinySD.expected).tensor("text.out")
        let a = folderModel.unet(latents, timesteps: [500], context: context, freeU: .reference)
        let b = single.unet(latents, timesteps: [500], context: context, freeU: .reference)
        #expect(a.scalars == b.scalars)
        let z = try #require(TinySD.expected).tensor("vae.z")
        #expect(folderModel.vae.decode(z).scalars == single.vae.decode(z).scalars)
        let ids = folderModel.tokenizer.encode("A photo of a zebra").ids
        #expect(folderModel.textEncoder([ids]).scalars == single.textEncoder([ids]).scalars)
    }

    @Test func singleFileWithoutTokenizerSaysWhere() throws {
        let path = scratch.appendingPathComponent("lonely.safetensors").path
        try writeSingleFile(to: path)
        #expect {
            try StableDiffusionModel.load(from: path)
        } throws: { error in
            guard case let ModelLoadError.missingFile(missing, hint)? = error as? ModelLoadError else { return false }
            return missing == scratch.path + "/tokenizer" && hint.contains("tokenizer")
        }
    }

    @Test func pickleCheckpointsAreRefused() throws {
        let path = scratch.appendingPathComponent("model.ckpt").path
        _ = FileManager.default.createFile(atPath: path, contents: Data("not read".utf8))
        #expect(throws: ModelLoadError.pickleRefused(path: path)) { try StableDiffusionModel.load(from: path) }
    }

    /// A copy of the tiny folder whose VAE weights are `edit`ed (the other parts are links).
    func folderWithVAE(_ name: String, _ edit: (inout [(name: String, tensor: Tensor)]) -> Void) throws -> String {
        let folder = scratch.appendingPathComponent(name)
        let manager = FileManager.default
        try manager.createDirectory(at: folder.appendingPathComponent("vae"), withIntermediateDirectories: true)
        for part in ["unet", "text_encoder", "tokenizer"] {
            try manager.createSymbolicLink(atPath: folder.appendingPathComponent(part).path, withDestinationPath: TinySD.folder + "/" + part)
        }
        try manager.copyItem(atPath: TinySD.folder + "/vae/config.json", toPath: folder.appendingPathComponent("vae/config.json").path)
        let source = try SafetensorsFile(path: TinySD.folder + "/vae/diffusion_pytorch_model.safetensors")
        var tensors = try source.names.map { (name: $0, tensor: try source.tensor($0)) }
        edit(&tensors)
        try SafetensorsWriter.write(tensors, to: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors").path)
        return folder.path
    }

    @Test func missingTensorIsNamed() throws {
        let folder = try folderWithVAE("missing") { $0.removeAll { $0.name == "decoder.conv_in.bias" } }
        #expect(throws: ModelLoadError.missingTensor(component: "vae", name: "decoder.conv_in.bias",
                                                    file: folder + "/vae/diffusion_pytorch_model.safetensors")) {
            try StableDiffusionModel.load(from: folder)
        }
    }

    @Test func extraTensorIsNamed() throws {
        let folder = try folderWithVAE("extra") { $0.append(("decoder.surprise.weight", Tensor(shape: [2]))) }
        #expect(throws: ModelLoadError.unexpectedTensors(component: "vae", names: ["decoder.surprise.weight"],
                                                        file: folder + "/vae/diffusion_pytorch_model.safetensors")) {
            try StableDiffusionModel.load(from: folder)
        }
    }

    @Test func misShapedTensorIsNamed() throws {
        let folder = try folderWithVAE("shape") { tensors in
            if let i = tensors.firstIndex(where: { $0.name == "quant_conv.bias" }) { tensors[i].tensor = Tensor(shape: [7]) }
        }
        #expect(throws: ModelLoadError.shapeMismatch(component: "vae", name: "quant_conv.bias", expected: [8], found: [7],
                                                    file: folder + "/vae/diffusion_pytorch_model.safetensors")) {
            try StableDiffusionModel.load(from: folder)
        }
    }

    @Test func truncatedWeightFileIsASafetensorsError() throws {
        let folder = try folderWithVAE("truncated") { _ in }
        let path = folder + "/vae/diffusion_pytorch_model.safetensors"
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 4096)
        try handle.close()
        #expect { try StableDiffusionModel.load(from: folder) } throws: { error in
            guard let error = error as? SafetensorsError else { return false }
            return error.description.hasPrefix(path)
        }
    }

    @Test func unsupportedConfigIsRefused() throws {
        var config = UNetConfig()
        config.downBlockTypes[0] = "SimpleCrossAttnDownBlock2D"
        let weights = WeightReader(source: SafetensorsSource(file: try SafetensorsFile(path: TinySD.folder + "/vae/diffusion_pytorch_model.safetensors")), component: "unet")
        #expect(throws: ModelLoadError.unsupportedConfig(path: "config.json", detail: "down block type SimpleCrossAttnDownBlock2D")) {
            try UNetModel(config: config, weights: weights, configPath: "config.json")
        }
    }
    /// A copy of the tiny model made of links to its files, with `file` (relative) holding `contents`.
    func tinyModel(_ name: String, replacing file: String, with contents: (Data) throws -> Data) throws -> String {
        let folder = scratch.appendingPathComponent(name).path
        let manager = FileManager.default
        for component in try manager.contentsOfDirectory(atPath: TinySD.folder) {
            try manager.createDirectory(atPath: folder + "/" + component, withIntermediateDirectories: true)
            for entry in try manager.contentsOfDirectory(atPath: TinySD.folder + "/" + component) where "\(component)/\(entry)" != file {
                try manager.createSymbolicLink(atPath: "\(folder)/\(component)/\(entry)", withDestinationPath: "\(TinySD.folder)/\(component)/\(entry)")
            }
        }
        let original = try #require(manager.contents(atPath: TinySD.folder + "/" + file))
        #expect(manager.createFile(atPath: folder + "/" + file, contents: try contents(original)))
        return folder
    }

    func editedJSON(_ data: Data, _ edit: (inout [String: Any]) -> Void) throws -> Data {
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        edit(&object)
        return try JSONSerialization.data(withJSONObject: object)
    }

    /// Components that load on their own but do not fit together are refused at load, naming both
    /// files (before: the model loaded and the first job trapped on an out-of-range index).
    @Test func tokenizerBeyondTheTextEncodersVocabularyIsRefused() throws {
        let folder = try tinyModel("vocab", replacing: "tokenizer/vocab.json") { data in
            try editedJSON(data) { $0["zebra</w>"] = 49408 }
        }
        #expect { try StableDiffusionModel.load(from: folder) } throws: { error in
            guard case let .inconsistent(first, second, detail) = error as? ModelLoadError else { return false }
            return first == folder + "/tokenizer/vocab.json" && second == folder + "/text_encoder/config.json" && detail.contains("49408")
        }
    }

    @Test func crossAttentionWidthMustMatchTheTextEncoder() throws {
        let folder = try tinyModel("width", replacing: "unet/config.json") { data in
            try editedJSON(data) { $0["cross_attention_dim"] = 48 }
        }
        #expect { try StableDiffusionModel.load(from: folder) } throws: { error in
            guard case let .inconsistent(first, second, detail) = error as? ModelLoadError else { return false }
            return first == folder + "/unet/config.json" && second == folder + "/text_encoder/config.json" && detail.contains("48")
        }
    }

    @Test func unetChannelsMustMatchTheLatents() throws {
        let folder = try tinyModel("channels", replacing: "vae/config.json") { data in
            try editedJSON(data) { $0["latent_channels"] = 8 }
        }
        #expect { try StableDiffusionModel.load(from: folder) } throws: { error in
            guard case let .inconsistent(first, second, _) = error as? ModelLoadError else { return false }
            return first == folder + "/unet/config.json" && second == folder + "/vae/config.json"
        }
    }
}
