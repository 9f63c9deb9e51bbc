import Foundation

/// The state of one transfer job: options, counters, timings. A run is a sequence of named steps.
struct TransferRun {
    let pipeline: TransferPipeline
    let options: TransferOptions
    let cancellation: TransferCancellation?
    let progress: (TransferProgress) -> Void
    var passes = 0
    var seconds: [String: Double] = [:]
    var warnings: [String] = []
    var preview: ((PreviewPoint) -> Void)?

    init(pipeline: TransferPipeline, options: TransferOptions, cancellation: TransferCancellation?,
         progress: @escaping (TransferProgress) -> Void) {
        (self.pipeline, self.options, self.cancellation, self.progress) = (pipeline, options, cancellation, progress)
    }

    var model: StableDiffusionModel { pipeline.model }
    var scaling: Float { model.vae.config.scalingFactor }

    /// Noise streams of `SeededNormal`: one per image, one for k-means.
    static let structureStream: UInt64 = 1, appearanceStream: UInt64 = 2, clusteringStream: UInt64 = 3

    func checkCancelled() throws {
        if cancellation?.isCancelled == true { throw TransferError.cancelled }
    }

    mutating func timed<T>(_ phase: String, _ body: (inout TransferRun) throws -> T) rethrows -> T {
        let start = Date()
        defer { seconds[phase, default: 0] += Date().timeIntervalSince(start) }
        return try body(&self)
    }

    mutating func execute(structure: Tensor, appearance: Tensor, noise: InjectedNoise?, masks: ObjectMasks,
                          cache: InversionCache?) throws -> TransferResult {
        let prompt = options.resolvedPrompt
        let (cond, uncond, nounPositions) = try timed("text") { run in try run.encodeText(prompt) }
        let (x0S, x0A) = try timed("encode") { run in try run.encodeImages(structure, appearance) }
        let structureInversion = try timed("invert structure") { run in
            try run.invert(x0S, image: structure, phase: .invertStructure, stream: Self.structureStream,
                           injected: noise?.structure, cache: cache, uncond: uncond, cond: cond)
        }
        let appearanceInversion = try timed("invert appearance") { run in
            try run.invert(x0A, image: appearance, phase: .invertAppearance, stream: Self.appearanceStream,
                           injected: noise?.appearance, cache: cache, uncond: uncond, cond: cond)
        }
        var generation = try timed("generate") { run in
            try run.generate(structure: structureInversion, appearance: appearanceInversion, cond: cond, nounPositions: nounPositions,
                             givenMasks: masks)
        }
        let image = try timed("decode") { run -> Tensor in
            try run.checkCancelled()
            run.progress(TransferProgress(phase: .decode, step: 0, total: 1))
            let decoded = run.model.vae.decode(generation.output.scaled(by: 1 / run.scaling).reshaped([1] + generation.output.shape))
            run.progress(TransferProgress(phase: .decode, step: 1, total: 1))
            return decoded.reshaped(Array(decoded.shape.dropFirst()))
        }
        warnings += generation.warnings
        generation.warnings = []
        return TransferResult(
            image: image, output: generation.output, appearance: generation.appearance, structure: generation.structure,
            structureMask: generation.structureMask, appearanceMask: generation.appearanceMask,
            structureInversion: structureInversion, appearanceInversion: appearanceInversion,
            unetPasses: passes, secondsPerPhase: seconds, warnings: warnings)
    }

    /// cond = E(prompt), uncond = E("") ([1, 77, D]), and the prompt positions of the object noun's
    /// tokens (for the masks).
    mutating func encodeText(_ prompt: String) throws -> (Tensor, Tensor, [Int]) {
        try checkCancelled()
        let tokenizer = model.tokenizer
        let (ids, truncated) = tokenizer.encode(prompt)
        if truncated { warnings.append("the prompt is longer than \(tokenizer.maxLength - 2) tokens and was truncated") }
        let embeddings = model.textEncoder([ids, tokenizer.encode("").ids])
        let item = Array(embeddings.shape.dropFirst())
        let cond = embeddings.item(0).reshaped([1] + item), uncond = embeddings.item(1).reshaped([1] + item)
        let positions = options.maskedAdaIN ? try options.objectNounPositions(tokenizer: tokenizer) : []
        return (cond, uncond, positions)
    }

    /// §3: latents = posterior mean × scaling factor, [1, 4, h, w] each.
    mutating func encodeImages(_ structure: Tensor, _ appearance: Tensor) throws -> (Tensor, Tensor) {
        var latents: [Tensor] = []
        for (i, image) in [structure, appearance].enumerated() {
            try checkCancelled()
            progress(TransferProgress(phase: .encode, step: i, total: 2))
            latents.append(model.vae.encodeMean(image.reshaped([1] + image.shape)).scaled(by: scaling))
        }
        progress(TransferProgress(phase: .encode, step: 2, total: 2))
        return (latents[0], latents[1])
    }

    /// §5 for one image, or its cached result.
    mutating func invert(_ x0: Tensor, image: Tensor, phase: TransferProgress.Phase, stream: UInt64, injected: Tensor?,
                         cache: InversionCache?, uncond: Tensor, cond: Tensor) throws -> InversionResult {
        let latentShape = Array(x0.shape.dropFirst())
        if let injected, injected.shape != [options.timesteps] + latentShape {
            throw TransferError.invalidNoise(detail: "expected [\(options.timesteps)] + \(latentShape), got \(injected.shape)")
        }
        let key = injected == nil ? cache.map { _ in
            InversionCache.key(image: image, prompt: options.resolvedPrompt, options: options, stream: stream, model: model.computationIdentity)
        } : nil
        if let cache, let key,
           let hit = cache.load(key, xSkipShape: latentShape, zsShape: [options.timesteps - options.skip] + latentShape) { return hit }
        var inversion = EditFriendlyInversion(unet: model.unet, schedule: pipeline.schedule, timesteps: options.timesteps,
                                              skip: options.skip, guidance: options.inversionGuidanceScale)
        if let observe = pipeline.processorObserver { inversion.processor = observe(PlainAttention()) }
        var random = SeededNormal(seed: options.seed, stream: stream)
        let total = inversion.passes / 2
        var done = 0
        let report = progress
        let cancel = cancellation
        let result = try inversion.invert(x0: x0, noise: { j in
            injected?.item(j) ?? random.normalTensor(latentShape)
        }, uncond: uncond, cond: cond, onPass: {
            done += 1
            report(TransferProgress(phase: phase, step: done, total: total))
            if cancel?.isCancelled == true { throw TransferError.cancelled }
        })
        passes += inversion.passes
        if let cache, let key { try cache.store(key, result) }
        return result
    }
}
