import Foundation

/// Where a transfer is, reported between UNet passes.
public struct TransferProgress: Sendable, Equatable {
    public enum Phase: String, Sendable { case encode, invertStructure = "invert structure", invertAppearance = "invert appearance", generate, decode }
    public var phase: Phase
    public var step: Int
    public var total: Int
}

/// Set from any thread; the pipeline checks it between UNet passes and stops with
/// `TransferError.cancelled`, leaving nothing half-written.
public final class TransferCancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    public init() {}
    public func cancel() { lock.lock(); flag = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}

/// The N(0, I) draws of §5.1 for both images, each [T, 4, h, w] at its image's latent size; row
/// j is the draw for X[j].
public struct InjectedNoise: Sendable {
    public var structure: Tensor
    public var appearance: Tensor

    public init(structure: Tensor, appearance: Tensor) {
        (self.structure, self.appearance) = (structure, appearance)
    }
}

/// Object masks the user gives, [h, w] at the image's latent size, 1 = object, 0 elsewhere
/// (`ObjectMask.prepare` makes one from a drawn image). Each replaces §9's self-segmentation for its
/// image; the other image's mask is still computed.
public struct ObjectMasks: Sendable {
    public var structure: Tensor?
    public var appearance: Tensor?

    public init(structure: Tensor? = nil, appearance: Tensor? = nil) { (self.structure, self.appearance) = (structure, appearance) }

    var complete: Bool { structure != nil && appearance != nil }
    public var isEmpty: Bool { structure == nil && appearance == nil }

    /// Each given mask has its image's latent size, holds only 0 and 1, and is neither empty nor
    /// full (either would make masked AdaIN the plain one, or undefined).
    func validate(structureLatent: [Int], appearanceLatent: [Int], options: TransferOptions) throws {
        for (name, mask, latent) in [("structure-mask", structure, structureLatent), ("appearance-mask", appearance, appearanceLatent)] {
            guard let mask else { continue }
            guard options.maskedAdaIN else {
                throw TransferError.invalidOption(option: name, reason: "a mask is used by masked AdaIN, which these options turn off")
            }
            guard mask.shape == Array(latent.suffix(2)) else {
                throw TransferError.invalidOption(option: name, reason: "has shape \(mask.shape), the image's latent is \(Array(latent.suffix(2)))")
            }
            let ones = mask.scalars.reduce(0) { $0 + ($1 == 1 ? 1 : 0) }
            guard mask.scalars.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw TransferError.invalidOption(option: name, reason: "holds values other than 0 and 1") }
            guard ones >= 2 else { throw TransferError.invalidOption(option: name, reason: "marks \(ones) latent pixel(s) as the object: it is empty") }
            guard ones < mask.count else { throw TransferError.invalidOption(option: name, reason: "marks the whole image as the object: use masked-adain false for that") }
        }
    }
}

/// Everything a transfer produced.
public struct TransferResult: Sendable {
    /// The output image [3, H, W] in [−1, 1] (decode of O).
    public var image: Tensor
    /// Final latents [4, h, w].
    public var output, appearance, structure: Tensor
    /// Self-segmentation masks [h, w] (1 = object) when masked AdaIN ran.
    public var structureMask, appearanceMask: Tensor?
    public var structureInversion, appearanceInversion: InversionResult
    /// UNet passes of batch 1 made (a batch of b counts b).
    public var unetPasses: Int
    public var secondsPerPhase: [String: Double]
    /// Things the user should know (prompt truncated, empty mask fell back to plain AdaIN, …).
    public var warnings: [String]
}

/// Cross-image attention appearance transfer (ALGORITHM.md §5–§9) on a loaded SD 1.5 model.
public final class TransferPipeline {
    public let model: StableDiffusionModel
    public let schedule: NoiseSchedule
    /// Wraps every attention processor the pipeline uses (tests count passes through it).
    public var processorObserver: ((AttentionProcessor) -> AttentionProcessor)?

    public init(model: StableDiffusionModel, schedule: NoiseSchedule) {
        (self.model, self.schedule) = (model, schedule)
    }

    /// Runs one transfer. structure, appearance: [3, H, W] in [−1, 1], each side a multiple of
    /// `model.sizeStep`; the two may differ in size, and the output has the structure's.
    /// `preview` is told the output's predicted clean latent after every generation step.
    public func run(
        structure: Tensor, appearance: Tensor, options: TransferOptions, noise: InjectedNoise? = nil,
        masks: ObjectMasks = ObjectMasks(), cache: InversionCache? = nil, cancellation: TransferCancellation? = nil,
        progress: @escaping (TransferProgress) -> Void = { _ in },
        preview: ((PreviewPoint) -> Void)? = nil
    ) throws -> TransferResult {
        try options.validate(for: model, schedule: schedule)
        for (name, image) in [("structure", structure), ("appearance", appearance)] {
            guard image.rank == 3, image.shape[0] == 3, model.accepts(height: image.shape[1], width: image.shape[2]) else {
                throw TransferError.invalidImage(detail: "\(name) is \(image.shape); the model takes [3, H, W] with H and W multiples of \(model.sizeStep)")
            }
        }
        try masks.validate(structureLatent: model.latentShape(height: structure.shape[1], width: structure.shape[2]),
                           appearanceLatent: model.latentShape(height: appearance.shape[1], width: appearance.shape[2]), options: options)
        var run = TransferRun(pipeline: self, options: options, cancellation: cancellation, progress: progress)
        run.preview = preview
        return try run.execute(structure: structure, appearance: appearance, noise: noise, masks: masks, cache: cache)
    }
}
