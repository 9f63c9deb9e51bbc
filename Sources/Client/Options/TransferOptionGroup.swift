import ArgumentParser
import Foundation
import Wire

/// The transfer options as both command lines take them (`xattnctl submit`, `xattnd transfer`):
/// one spelling per option, read into `TransferParameters`, the one schema the wire, the sidecar,
/// a drop's `options.json` and a hot folder's table share. A value that does not parse, or is
/// outside what any model accepts, is a usage error naming the flag; what depends on the loaded
/// model (the first timestep used, the noun in the prompt) is checked by whoever has it.
public struct TransferOptionGroup: ParsableArguments {
    @Option(help: "The object class both images show (e.g. animal); it builds the prompt \"A photo of a DOMAIN\".")
    public var domain: String?

    @Option(help: "The whole prompt, instead of the one built from --domain.")
    public var prompt: String?

    @Option(help: "The word of the prompt whose cross-attention gives the masks (default: the domain).")
    public var objectNoun: String?

    @Option(help: "Seed of the run's noise, 0…\(TransferParameters.maximumSeed).")
    public var seed: UInt64?

    @Option(help: "DDIM steps T, \(TransferParameters.timestepBounds.lowerBound)…\(TransferParameters.timestepBounds.upperBound).")
    public var timesteps: Int?

    @Option(help: "Steps skipped at the start of denoising (K), \(TransferParameters.skipBounds.lowerBound)…\(TransferParameters.skipBounds.upperBound), below T.")
    public var skip: Int?

    @Flag(name: .customLong("no-masked-adain"), help: "AdaIN over the whole latent instead of within the objects' masks.")
    public var noMaskedAdain = false

    @Option(help: "Appearance guidance scale (a finite number).")
    public var swapGuidance: Double?

    @Option(help: "Attention contrasting strength (a finite number).")
    public var contrast: Double?

    @Option(name: .customLong("cross-attn-range-0"), help: "Steps A:B with cross-image attention in the decoder's first blocks.")
    public var crossAttnRange0: StepSpan?

    @Option(name: .customLong("cross-attn-range-1"), help: "Steps A:B with cross-image attention in the decoder's last blocks.")
    public var crossAttnRange1: StepSpan?

    @Option(name: .customLong("adain-range"), help: "Steps A:B with masked AdaIN.")
    public var adainRange: StepSpan?

    @Option(help: "Products in fp32 (exact), bf16 (AMX or AVX512-BF16 CPUs, faster) or auto (the loaded model's).")
    public var precision: PrecisionChoice?

    @Option(help: "What each image becomes: native (the model's square, 512x512 for SD 1.5, centre-cropped; default), WxH (cropped to that aspect, sides multiples of 64), or auto (each image's own aspect at about the native pixel count).")
    public var size: String?

    @Option(help: "Generation steps between previews (default: about ten per job).")
    public var previewEvery: Int?

    @Option(help: "Previews through linear (latent colours, no network; default) or vae (the decoder: one decode per preview).")
    public var previewDecoder: PreviewDecoderChoice?

    public init() {}

    public func validate() throws {
        if let seed, seed > TransferParameters.maximumSeed {
            throw ValidationError("--seed must be in 0…\(TransferParameters.maximumSeed), got \(seed)")
        }
        for (flag, value, bounds) in [("--timesteps", timesteps, TransferParameters.timestepBounds), ("--skip", skip, TransferParameters.skipBounds)] {
            if let value, !bounds.contains(value) { throw ValidationError("\(flag) must be in \(bounds.lowerBound)…\(bounds.upperBound), got \(value)") }
        }
        if let size, ImageSize(parsing: size) == nil {
            throw ValidationError("--size must be WxH (e.g. 512x768), auto or native, got '\(size)'")
        }
        if let previewEvery, previewEvery < 1 { throw ValidationError("--preview-every must be at least 1, got \(previewEvery)") }
        for (flag, value) in [("--swap-guidance", swapGuidance), ("--contrast", contrast)] {
            if let value, !value.isFinite { throw ValidationError("\(flag) must be a finite number, got \(value)") }
        }
    }

    /// The options given, absent ones left for the defaults (docs/ALGORITHM.md §1).
    public var parameters: TransferParameters {
        var p = TransferParameters()
        (p.domain, p.prompt, p.objectNoun, p.seed, p.timesteps, p.skip) = (domain, prompt, objectNoun, seed, timesteps, skip)
        p.maskedAdain = noMaskedAdain ? false : nil
        (p.swapGuidance, p.contrast) = (swapGuidance, contrast)
        (p.crossAttnRange0, p.crossAttnRange1, p.adainRange) = (crossAttnRange0?.pair, crossAttnRange1?.pair, adainRange?.pair)
        p.precision = precision?.rawValue
        (p.size, p.previewEvery, p.previewDecoder) = (size, previewEvery, previewDecoder?.rawValue)
        return p
    }
}

extension PrecisionChoice: ExpressibleByArgument {}

/// The `preview_decoder` values as the command lines take them.
public enum PreviewDecoderChoice: String, CaseIterable, ExpressibleByArgument, Sendable { case linear, vae }

/// `A:B`, a half-open range of denoising steps.
public struct StepSpan: ExpressibleByArgument, Sendable {
    public var start: Int
    public var end: Int
    public var pair: [Int] { [start, end] }

    public init?(argument: String) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        (start, end) = (a, b)
    }

}

/// A command line's error the way every xattn executable reports it: the tool's message and
/// usage on stderr, and exit status 2 for anything the user typed wrong (help, version and
/// completion scripts go to stdout with 0).
public enum CommandLineExit {
    public static func fail<Command: ParsableCommand>(_ command: Command.Type, _ error: Error) -> Never {
        let code = Command.exitCode(for: error)
        if code == .success { Command.exit(withError: error) }
        if code == .validationFailure {
            FileHandle.standardError.write(Data((Command.fullMessage(for: error) + "\n").utf8))
            exit(2)
        }
        Command.exit(withError: error)
    }
}
