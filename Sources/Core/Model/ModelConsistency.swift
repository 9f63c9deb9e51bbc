import Foundation

/// The components of a model must fit one another: each is loaded strictly on its own, but a
/// tokenizer from one model and a text encoder from another load fine and fail at the first job.
/// These checks run at load so that such a model is refused with both files named.
struct ModelConsistency {
    /// Where each component's configuration came from (shown in errors).
    var unetConfigPath: String
    var vaeConfigPath: String
    var textConfigPath: String
    var tokenizerPath: String

    func check(unet: UNetConfig, vae: VAEConfig, text: CLIPTextConfig, tokenizer: CLIPTokenizer) throws {
        func fail(_ first: String, _ second: String, _ detail: String) -> ModelLoadError {
            .inconsistent(first: first, second: second, detail: detail)
        }
        // Token ids index the text encoder's embedding table (ALGORITHM.md §2).
        if let largest = tokenizer.vocabulary.values.max(), largest >= text.vocabSize {
            throw fail(tokenizerPath + "/vocab.json", textConfigPath,
                       "the tokenizer has token id \(largest), the text encoder's vocab_size is \(text.vocabSize)")
        }
        if let smallest = tokenizer.vocabulary.values.min(), smallest < 0 {
            throw fail(tokenizerPath + "/vocab.json", textConfigPath, "the tokenizer has a negative token id \(smallest)")
        }
        if tokenizer.maxLength > text.maxPositionEmbeddings {
            throw fail(tokenizerPath, textConfigPath,
                       "prompts are \(tokenizer.maxLength) tokens, the text encoder has \(text.maxPositionEmbeddings) positions")
        }
        // The UNet's cross-attention reads the text encoder's hidden states.
        if unet.crossAttentionDim != text.hiddenSize {
            throw fail(unetConfigPath, textConfigPath,
                       "the UNet's cross_attention_dim is \(unet.crossAttentionDim), the text encoder's hidden_size is \(text.hiddenSize)")
        }
        // The UNet denoises the VAE's latents and predicts noise of the same shape.
        if unet.inChannels != vae.latentChannels || unet.outChannels != vae.latentChannels {
            throw fail(unetConfigPath, vaeConfigPath,
                       "the UNet takes \(unet.inChannels) and gives \(unet.outChannels) channels, the VAE's latents have \(vae.latentChannels)")
        }
        if vae.inChannels != 3 || vae.outChannels != 3 {
            throw fail(vaeConfigPath, vaeConfigPath, "the VAE must encode and decode RGB (3 channels), has \(vae.inChannels) → \(vae.outChannels)")
        }
    }
}
