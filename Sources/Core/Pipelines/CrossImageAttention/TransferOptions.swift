import Foundation
import Wire

/// A half-open range of step (or counter) indices, start..<end.
public struct StepRange: Equatable, Codable, Sendable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    public init(_ start: Int, _ end: Int) { (self.start, self.end) = (start, end) }

    public func contains(_ i: Int) -> Bool { start <= i && i < end }
    public var description: String { "\(start):\(end)" }

    /// Parses "A:B".
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        self.init(a, b)
    }
}

/// Every option of ALGORITHM.md §1 with its default.
public struct TransferOptions: Equatable, Codable, Sendable {
    /// Noun for the prompt and the masks ("animal", "building", …).
    public var domain = "object"
    /// Used for inversion and generation; nil means "A photo of a {domain}".
    public var prompt: String?
    /// The prompt word whose cross-attention locates the object; nil means the domain.
    public var objectNoun: String?
    public var seed: UInt64 = 42
    /// T: the DDIM grid size.
    public var timesteps = 100
    /// K: generation starts at grid index K.
    public var skip = 32
    public var maskedAdaIN = true
    /// Counter range in which level 0 (the latent's resolution) swaps keys and values (§8).
    public var crossAttentionRange0 = StepRange(10, 90)
    /// The same for level 1 (half the latent's resolution).
    public var crossAttentionRange1 = StepRange(10, 70)
    /// Steps after which AdaIN is applied (§6.4, §9).
    public var adainRange = StepRange(20, 100)
    public var swapGuidanceScale: Float = 3.5
    public var contrastStrength: Float = 1.67
    public var inversionGuidanceScale: Float = 3.5
    /// The products' precision the job asks for; nil (auto) takes the loaded model's. The model's
    /// weights are held in one form, so a job asking for another is refused by
    /// `validate(for:schedule:)` (docs/PERFORMANCE.md, "Precision").
    public var precision: Precision?
    /// What each image becomes before the VAE (docs/ALGORITHM.md §2, "Sizes").
    public var size = ImageSize.native
    /// Generation steps between previews; nil: `LatentPreview.defaultInterval` (about ten per job).
    public var previewEvery: Int?
    public var previewDecoder = PreviewDecoder.linear

    public init() {}

    /// The preview interval this job uses.
    public var resolvedPreviewEvery: Int { previewEvery ?? LatentPreview.defaultInterval(generationSteps: generationSteps) }

    public var resolvedPrompt: String { prompt ?? "A photo of a \(domain)" }
    public var resolvedObjectNoun: String { objectNoun ?? domain }
    /// Generation steps n = T − K.
    public var generationSteps: Int { timesteps - skip }

    /// The steps in which swap guidance applies, inclusive at both ends as in the reference's
    /// pipeline: from the earliest range start to the latest range end.
    var swapGuidanceSteps: ClosedRange<Int> {
        min(crossAttentionRange0.start, crossAttentionRange1.start)...max(crossAttentionRange0.end, crossAttentionRange1.end)
    }

    /// Whether any layer swaps keys and values at counter value c.
    func swapsAt(counter c: Int) -> Bool { crossAttentionRange0.contains(c) || crossAttentionRange1.contains(c) }

    /// Checks every option; the error names the option and the accepted values.
    public func validate() throws {
        func fail(_ option: String, _ reason: String) -> TransferError { .invalidOption(option: option, reason: reason) }
        guard !domain.trimmingCharacters(in: .whitespaces).isEmpty else { throw fail("domain", "must not be empty") }
        let bounds = TransferParameters.timestepBounds
        guard bounds.contains(timesteps) else { throw fail("timesteps", "must be in \(bounds.lowerBound)…\(bounds.upperBound), got \(timesteps)") }
        guard skip >= 0 && skip < timesteps else { throw fail("skip", "must be in 0…\(timesteps - 1) (below timesteps), got \(skip)") }
        for (name, range) in [("cross-attn-range-0", crossAttentionRange0), ("cross-attn-range-1", crossAttentionRange1), ("adain-range", adainRange)] {
            guard range.start >= 0 && range.start <= range.end else { throw fail(name, "must be A:B with 0 ≤ A ≤ B, got \(range)") }
            // A non-empty range that starts after the last step would silently do nothing;
            // an empty range (A:A) is the way to switch a mechanism off.
            guard range.start == range.end || range.start < generationSteps else {
                throw fail(name, "starts at \(range.start), after the last of the \(generationSteps) generation steps (timesteps − skip); use \(range.start):\(range.start) to turn it off")
            }
        }
        if maskedAdaIN && adainRange.start < 1 && adainRange.end > 0 {
            throw fail("adain-range", "must start at step 1 or later with masked AdaIN (the masks use the previous step's attention)")
        }
        guard swapGuidanceScale.isFinite && swapGuidanceScale >= 0 else { throw fail("swap-guidance", "must be a finite number ≥ 0") }
        guard contrastStrength.isFinite && contrastStrength >= 0 else { throw fail("contrast", "must be a finite number ≥ 0") }
        guard inversionGuidanceScale.isFinite else { throw fail("inversion-guidance", "must be finite") }
        if let previewEvery, previewEvery < 1 { throw fail("preview-every", "must be at least 1, got \(previewEvery)") }
    }
}

/// Why a transfer did not produce an image.
public enum TransferError: Error, Equatable, CustomStringConvertible {
    case invalidOption(option: String, reason: String)
    case objectNounNotInPrompt(noun: String, prompt: String)
    case cancelled
    case invalidNoise(detail: String)
    case invalidImage(detail: String)

    public var description: String {
        switch self {
        case let .invalidOption(option, reason): return "invalid --\(option): \(reason)"
        case let .objectNounNotInPrompt(noun, prompt): return "the object noun '\(noun)' does not occur in the prompt '\(prompt)' (masked AdaIN needs its cross-attention)"
        case .cancelled: return "cancelled"
        case let .invalidNoise(detail): return "noise file: \(detail)"
        case let .invalidImage(detail): return "image: \(detail)"
        }
    }
}
