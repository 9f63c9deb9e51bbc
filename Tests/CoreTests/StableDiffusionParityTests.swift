import Foundation
import Testing
import Core

/// The tiny SD model against diffusers 0.19.3 / transformers 4.30.2 on the same weights and
/// inputs (Tests/Fixtures/tiny-sd-expected, from tools/reference/sd_tiny.py). Tolerances are the
/// largest error relative to the output's scale (max |a − e| / max |e|); the issue asks ≤ 1e-4.
/// Observed on x86-64 (AVX2 build): text 5.4e-7, UNet ≤ 1.5e-6 (with and without FreeU), VAE
/// ≤ 2.9e-6 — float32 reordering only; 1e-5 is allowed everywhere.
@Suite(.serialized) struct StableDiffusionParityTests {
    func expected(_ name: String) throws -> Tensor {
        try #require(TinySD.expected, "missing \(TinySD.expectedFolder)").tensor(name)
    }

    struct TokenCase: Decodable { let prompt: String; let ids: [Int] }
    struct TokenFile: Decodable { let cases: [TokenCase] }

    @Test func tokenizerMatchesTransformers() throws {
        let data = try #require(FileManager.default.contents(atPath: TinySD.expectedFolder + "/tokens.json"))
        let file = try JSONDecoder().decode(TokenFile.self, from: data)
        let tokenizer = try CLIPTokenizer(folder: TinySD.folder + "/tokenizer")
        for item in file.cases {
            #expect(tokenizer.encode(item.prompt).ids == item.ids, "prompt: \(item.prompt)")
        }
        let longest = file.cases.last?.prompt ?? ""
        let encoded = tokenizer.encode(longest)
        #expect(encoded.truncated)
        #expect(!tokenizer.encode("A photo of a zebra").truncated)
    }

    @Test func textEncoder() throws {
        let model = try TinySD.requireModel()
        let ids = try expected("text.ids").scalars.map { Int($0) }
        let out = model.textEncoder([Array(ids[0..<77]), Array(ids[77..<154])])
        expectScaledClose(out, try expected("text.out"), tolerance: 1e-5)
    }

    @Test(arguments: [1, 500, 981])
    func unet(timestep: Int) throws {
        let model = try TinySD.requireModel()
        let latents = try expected("unet.latents"), context = try expected("text.out")
        let plain = model.unet(latents, timesteps: [Float(timestep)], context: context)
        expectScaledClose(plain, try expected("unet.t\(timestep).plain"), tolerance: 1e-5)
        let freeU = model.unet(latents, timesteps: [Float(timestep)], context: context, freeU: .reference)
        expectScaledClose(freeU, try expected("unet.t\(timestep).freeu"), tolerance: 1e-5)
    }

    @Test func vae() throws {
        let model = try TinySD.requireModel()
        expectScaledClose(model.vae.encodeMean(try expected("vae.image")), try expected("vae.mean"), tolerance: 1e-5)
        expectScaledClose(model.vae.decode(try expected("vae.z")), try expected("vae.decoded"), tolerance: 1e-5)
    }
}
