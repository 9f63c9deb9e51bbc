import Foundation

/// What the generation loop hands back.
struct GenerationOutcome {
    var output, appearance, structure: Tensor
    var structureMask, appearanceMask: Tensor?
    var warnings: [String] = []
}

extension TransferRun {
    /// ALGORITHM.md §6: O, A, S denoised together from X_S[K], X_A[K], X_S[K], each with its own
    /// noise maps (O with the structure's), all with the cond embedding. A's latent may differ in
    /// size from S's (and O's): then A runs in a pass of its own before the others (§8, "Two sizes").
    mutating func generate(structure: InversionResult, appearance: InversionResult, cond: Tensor, nounPositions: [Int],
                           givenMasks: ObjectMasks = ObjectMasks()) throws -> GenerationOutcome {
        let schedule = pipeline.schedule
        let (n, skip, steps) = (options.generationSteps, options.skip, options.timesteps)
        let grid = schedule.grid(steps: steps)
        var s = structure.xSkip, a = appearance.xSkip, o = s
        let sizeS = (h: s.shape[1], w: s.shape[2]), sizeA = (h: a.shape[1], w: a.shape[2])
        let apart = s.shape != a.shape
        // O stays bit-for-bit S until a layer swaps or AdaIN runs: until then O needs no pass.
        var oIsS = true
        var counter = 0
        var outcome = GenerationOutcome(output: o, appearance: a, structure: s)
        var masks: (structure: [Float], appearance: [Float])?
        // §6.2: s_i = linspace(g, max(g/2, 1), n)[i]
        let g = Double(options.swapGuidanceScale), last = max(g / 2, 1)
        let strengths = (0..<n).map { i in Float(n == 1 ? g : g + (last - g) * Double(i) / Double(n - 1)) }

        for i in 0..<n {
            try checkCancelled()
            let t = grid[skip + i]
            let batch: GenerationBatch = options.swapsAt(counter: counter) ? .quad : (oIsS ? .pair : .triple)
            // §9: the masks use the attention of the step whose counter is adainRange.start − 1
            // (not recorded when the user gave both masks).
            let recorder = options.maskedAdaIN && i == options.adainRange.start && !givenMasks.complete
                ? AttentionRecorder(unet: model.unet.config, appearance: sizeA, structure: sizeS, nounPositions: nounPositions) : nil

            // §6.1: one pass over [A, S], [O, A, S] or [O-swap, A, S, O-plain].
            let latents: [GenerationRole: Tensor] = [.output: o, .appearance: a, .structure: s, .outputPlain: o]
            let e = try pass(batch.roles, latents: latents, apart: apart, t: t, cond: cond, counter: counter,
                             swapping: batch == .quad, recorder: recorder)
            let eA = e[.appearance]!, eS = e[.structure]!
            var eO: Tensor?
            switch batch {
            case .pair: eO = nil
            case .triple: eO = e[.output]
            case .quad:
                // §6.2 swap guidance: e = e_plain + s_i·(e_swap − e_plain) in the reference's steps.
                let (swap, plain) = (e[.output]!, e[.outputPlain]!)
                if options.swapGuidanceSteps.contains(i) && options.swapGuidanceScale > 1 {
                    eO = Self.guidance(plain: plain, swap: swap, strength: strengths[i])
                } else {
                    eO = swap
                }
            }

            // §6.3: a DDPM step per branch with its noise map Z[K + i].
            let (alpha, alphaPrev) = schedule.alphas(t, steps: steps)
            let variance = schedule.variance(t, steps: steps)
            let zS = structure.zs.item(i), zA = appearance.zs.item(i)
            a = DDPMStep.step(a, eA, z: zA, alpha: alpha, alphaPrevious: alphaPrev, variance: variance)
            s = DDPMStep.step(s, eS, z: zS, alpha: alpha, alphaPrevious: alphaPrev, variance: variance)
            let previousO = o
            if let eO {
                o = DDPMStep.step(o, eO, z: zS, alpha: alpha, alphaPrevious: alphaPrev, variance: variance)
                oIsS = false
            } else {
                o = s
            }

            // §6.4: counter, masks at the start of the AdaIN range, then AdaIN.
            counter = i
            if options.maskedAdaIN && i == options.adainRange.start {
                let computed = recorder.map { computeMasks($0) }
                masks = (givenMasks.structure?.scalars ?? computed?.structure ?? [], givenMasks.appearance?.scalars ?? computed?.appearance ?? [])
                outcome.appearanceMask = Tensor(shape: [sizeA.h, sizeA.w], scalars: masks?.appearance ?? [])
                outcome.structureMask = Tensor(shape: [sizeS.h, sizeS.w], scalars: masks?.structure ?? [])
            }
            if options.adainRange.contains(i) {
                o = adain(o, a, masks: masks, warnings: &outcome.warnings)
                oIsS = false
            }
            progress(TransferProgress(phase: .generate, step: i + 1, total: n))
            preview?(PreviewPoint(step: i + 1, total: n, latent: previousO, noise: eO ?? eS, alpha: alpha))
        }
        (outcome.output, outcome.appearance, outcome.structure) = (o, a, s)
        return outcome
    }

    /// One generation step's UNet evaluation of the items `roles`, each item's ε by role. When A
    /// has another size (`apart`), A runs first in a batch of its own and the others take the keys
    /// and values it kept; otherwise all in one batch.
    mutating func pass(_ roles: [GenerationRole], latents: [GenerationRole: Tensor], apart: Bool, t: Int, cond: Tensor, counter: Int,
                       swapping: Bool, recorder: AttentionRecorder?) throws -> [GenerationRole: Tensor] {
        let groups = apart ? [[GenerationRole.appearance], roles.filter { $0 != .appearance }] : [roles]
        let kept = AppearanceKeysValues()
        var e: [GenerationRole: Tensor] = [:]
        for group in groups {
            var processor: AttentionProcessor = CrossImageProcessor(options: options, counter: counter, roles: group, swapping: swapping,
                                                                    recorder: recorder, appearance: kept)
            if let observe = pipeline.processorObserver { processor = observe(processor) }
            let items = group.compactMap { latents[$0] }
            let context = Tensor.stack(Array(repeating: cond.item(0), count: items.count))  // [b, 77, D]
            let out = model.unet(Tensor.stack(items), timesteps: [Float(t)], context: context, processor: processor, freeU: .reference)
            passes += items.count
            for (index, role) in group.enumerated() { e[role] = out.item(index) }
        }
        return e
    }

    static func guidance(plain: Tensor, swap: Tensor, strength: Float) -> Tensor {
        var out = Tensor(uninitializedShape: plain.shape)
        plain.withUnsafePointer { p in
            swap.withUnsafePointer { q in
                out.withUnsafeMutablePointer { o in for i in 0..<plain.count { o[i] = p[i] + strength * (q[i] - p[i]) } }
            }
        }
        return out
    }

    func computeMasks(_ recorder: AttentionRecorder) -> (structure: [Float], appearance: [Float]) {
        // k-means draws: one generator for the job, appearance first (the reference's order).
        var random = SeededNormal(seed: options.seed, stream: Self.clusteringStream)
        let nouns = recorder.nounPositions.count
        let masks = (0..<2).map { item in
            SelfSegmentation.mask(selfAttention: recorder.selfAttention[item], crossAttention: recorder.crossAttention[item], nouns: nouns,
                                  height: recorder.latentSizes[item].h, width: recorder.latentSizes[item].w, random: &random)
        }
        return (masks[1], masks[0])
    }

    /// §9: masked AdaIN when the masks exist and each has two pixels or more; otherwise plain AdaIN
    /// (the reference would produce NaN), reported once.
    func adain(_ o: Tensor, _ a: Tensor, masks: (structure: [Float], appearance: [Float])?, warnings: inout [String]) -> Tensor {
        guard options.maskedAdaIN, let masks else { return AdaIN.plain(o, a) }
        if let result = AdaIN.masked(o, a, structureMask: masks.structure, appearanceMask: masks.appearance) { return result }
        let note = "a self-segmentation mask has fewer than two pixels; plain AdaIN was used instead"
        if !warnings.contains(note) { warnings.append(note) }
        return AdaIN.plain(o, a)
    }
}
