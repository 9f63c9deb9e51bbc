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

/// The N(0, I) draws of §5.1 for both images, each [T, 4, h, w]; row j is the draw for X[j].
/// Optionally also the self-segmentation masks ([h, w], 1 = object), which then replace the
/// k-means of §9: tests compare masked AdaIN with the reference's independently of k-means.
public struct InjectedNoise: Sendable {
    public var structure: Tensor
    public var appearance: Tensor
    public var masks: (structure: Tensor, appearance: Tensor)?

    public init(structure: Tensor, appearance: Tensor, masks: (structure: Tensor, appearance: Tensor)? = nil) {
        (self.structure, self.appearance, self.masks) = (structure, appearance, masks)
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

    /// Runs one transfer. structure, appearance: [3, H, W] in [−1, 1] at the model's size.
    public func run(
        structure: Tensor, appearance: Tensor, options: TransferOptions, noise: InjectedNoise? = nil,
        cache: InversionCache? = nil, cancellation: TransferCancellation? = nil,
        progress: @escaping (TransferProgress) -> Void = { _ in }
    ) throws -> TransferResult {
        try options.validate(for: model, schedule: schedule)
        var run = TransferRun(pipeline: self, options: options, cancellation: cancellation, progress: progress)
        return try run.execute(structure: structure, appearance: appearance, noise: noise, cache: cache)
    }
}
