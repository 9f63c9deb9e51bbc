import Service
import Core
import Foundation
import Wire

/// `xattnd transfer`: one transfer in the foreground, without the service (scripts, benchmarks,
/// checks). Progress on stderr, the image written atomically at the end.
enum TransferCommand {
    static let usage = """
        usage: xattnd transfer --model DIR_OR_FILE --structure S.png --appearance A.png --out OUT.png
          [--domain NOUN] [--prompt TEXT] [--object-noun NOUN] [--seed N] [--timesteps T] [--skip K]
          [--no-masked-adain] [--swap-guidance X] [--contrast X] [--cross-attn-range-0 A:B]
          [--cross-attn-range-1 A:B] [--adain-range A:B] [--noise FILE] [--dump FILE] [--no-cache]
          [--cache-dir DIR] [--tokenizer DIR]
        """

    static func run(_ raw: [String]) throws {
        let arguments = try Arguments(raw, valued: [
            "model", "structure", "appearance", "out", "domain", "prompt", "object-noun", "seed", "timesteps", "skip",
            "swap-guidance", "contrast", "cross-attn-range-0", "cross-attn-range-1", "adain-range", "noise", "dump",
            "cache-dir", "tokenizer",
        ], switches: ["no-masked-adain", "no-cache"])
        let options = try self.options(arguments)
        let out = try arguments.required("out")
        let (structurePath, appearancePath) = (try arguments.required("structure"), try arguments.required("appearance"))
        try options.validate()

        var clock = Date()
        func lap() -> Double { defer { clock = Date() }; return Date().timeIntervalSince(clock) }
        let model = try StableDiffusionModel.load(from: try arguments.required("model"), tokenizer: arguments.string("tokenizer"))
        let loadSeconds = lap()
        let schedule = try NoiseSchedule(config: try NoiseSchedule.Config(near: model.path))
        try options.validate(for: model, schedule: schedule)
        let size = model.unet.config.sampleSize * (1 << (model.vae.config.blockOutChannels.count - 1))
        let structure = ImagePreprocessing.modelInput(try readImage(structurePath), size: size)
        let appearance = ImagePreprocessing.modelInput(try readImage(appearancePath), size: size)
        let noise = try arguments.string("noise").map(readNoise)
        let cache = arguments.flag("no-cache") ? nil : try InversionCache(directory: arguments.string("cache-dir") ?? defaultCacheDirectory())

        let cancellation = TransferCancellation()
        Signals.onInterrupt { cancellation.cancel() }
        let pipeline = TransferPipeline(model: model, schedule: schedule)
        let result = try pipeline.run(structure: structure, appearance: appearance, options: options, noise: noise, cache: cache,
                                      cancellation: cancellation) { p in
            FileHandle.standardError.write(Data("\(p.phase.rawValue) \(p.step)/\(p.total)\n".utf8))
        }
        try writeAtomically(try PNGLibrary.encode(ImagePreprocessing.image(from: result.image)), to: out)
        if let dump = arguments.string("dump") { try writeDump(result, to: dump) }
        for warning in result.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        var report = "done: \(out)\nUNet passes (batch 1): \(result.unetPasses)\n" + String(format: "load model: %.2f s\n", loadSeconds)
        for phase in ["text", "encode", "invert structure", "invert appearance", "generate", "decode"] {
            report += String(format: "%@: %.2f s\n", phase, result.secondsPerPhase[phase] ?? 0)
        }
        FileHandle.standardError.write(Data(report.utf8))
    }

    static func options(_ a: Arguments) throws -> TransferOptions {
        var o = TransferOptions()
        if let domain = a.string("domain") { o.domain = domain }
        o.prompt = a.string("prompt")
        o.objectNoun = a.string("object-noun")
        if let seed = try a.parse("seed", as: "a whole number in 0…\(TransferParameters.maximumSeed)", {
            UInt64($0).flatMap { $0 <= TransferParameters.maximumSeed ? $0 : nil }
        }) { o.seed = seed }
        if let t = try a.parse("timesteps", as: "a whole number", { Int($0) }) { o.timesteps = t }
        if let k = try a.parse("skip", as: "a whole number", { Int($0) }) { o.skip = k }
        o.maskedAdaIN = !a.flag("no-masked-adain")
        if let x = try a.parse("swap-guidance", as: "a finite number", { Float($0).flatMap { $0.isFinite ? $0 : nil } }) { o.swapGuidanceScale = x }
        if let x = try a.parse("contrast", as: "a finite number", { Float($0).flatMap { $0.isFinite ? $0 : nil } }) { o.contrastStrength = x }
        if let r = try a.parse("cross-attn-range-0", as: "A:B", { StepRange(parsing: $0) }) { o.crossAttentionRange0 = r }
        if let r = try a.parse("cross-attn-range-1", as: "A:B", { StepRange(parsing: $0) }) { o.crossAttentionRange1 = r }
        if let r = try a.parse("adain-range", as: "A:B", { StepRange(parsing: $0) }) { o.adainRange = r }
        return o
    }

    static func readImage(_ path: String) throws -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Arguments.UsageError(description: "\(path): cannot read the file")
        }
        do { return try ImageDecoder.decode(data) } catch { throw Arguments.UsageError(description: "\(path): \(error)") }
    }

    static func readNoise(_ path: String) throws -> InjectedNoise {
        let file = try SafetensorsFile(path: path)
        return InjectedNoise(structure: try file.tensor("structure.inversion_noise"), appearance: try file.tensor("appearance.inversion_noise"))
    }

    static func defaultCacheDirectory() -> String {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CACHE_HOME"] ?? (environment["HOME"].map { $0 + "/.cache" } ?? "/tmp")
        return base + "/xattn/inversions"
    }

    static func writeAtomically(_ data: Data, to path: String) throws {
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// The latents, masks and inversions of the job (names as the issue specifies).
    static func writeDump(_ r: TransferResult, to path: String) throws {
        var tensors: [(name: String, tensor: Tensor)] = [
            ("output.latent", r.output), ("appearance.latent", r.appearance), ("structure.latent", r.structure),
            ("structure.x_skip", r.structureInversion.xSkip), ("appearance.x_skip", r.appearanceInversion.xSkip),
            ("structure.zs", r.structureInversion.zs), ("appearance.zs", r.appearanceInversion.zs),
        ]
        if let mask = r.structureMask { tensors.append(("structure.mask", mask)) }
        if let mask = r.appearanceMask { tensors.append(("appearance.mask", mask)) }
        try SafetensorsWriter.write(tensors, to: path)
    }
}
