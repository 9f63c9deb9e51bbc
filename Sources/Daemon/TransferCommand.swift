import ArgumentParser
import CommandLineOptions
import Core
import Foundation
import Service
import Wire

/// `xattnd transfer`: one transfer in the foreground, without the service (scripts, benchmarks,
/// checks). Progress on stderr, the image written atomically at the end.
struct Transfer: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one transfer in the foreground, without the service.")

    @Option(help: "The model: a diffusers folder or a single-file SD 1.5 checkpoint.") var model: String
    @Option(help: "The structure image (PNG or JPEG).") var structure: String
    @Option(help: "The appearance image (PNG or JPEG).") var appearance: String
    @Option(help: "Where to write the result (PNG).") var out: String
    @OptionGroup(title: "Transfer options") var options: TransferOptionGroup
    @Option(help: "Injected inversion noise (safetensors; parity checks).") var noise: String?
    @Option(help: "Also write intermediate tensors here (safetensors).") var dump: String?
    @Option(name: .customLong("cache-dir"), help: "Where inverted latents are cached.") var cacheDirectory: String?
    @Flag(help: "Do not cache inverted latents.") var noCache = false
    @Option(help: "A tokenizer folder for a single-file checkpoint.") var tokenizer: String?
    @Option(help: "The structure's object mask (PNG or JPEG, white = object, the image's aspect): replaces its self-segmentation.")
    var structureMask: String?
    @Option(help: "The appearance's object mask (PNG or JPEG, white = object, the image's aspect): replaces its self-segmentation.")
    var appearanceMask: String?
    @Option(help: "Rewrite this PNG with a preview of the output every --preview-every generation steps.") var preview: String?
    @Option(help: "Pixels of one model input at most (--size auto or WxH).") var maxPixels: Int = ImageGeometry.defaultMaxPixels

    func run() throws {
        try CommandFailure.wrapping("transfer") { try transfer() }
    }

    private func transfer() throws {
        // One schema: the flags become TransferParameters, read as every job's are.
        let options = try JobConversion.options(self.options.parameters)
        var clock = Date()
        func lap() -> Double { defer { clock = Date() }; return Date().timeIntervalSince(clock) }
        if let error = EngineSetup.prepare() { throw UsageError(error) }
        // One run, one form of the weights: the precision asked for, or the fastest this CPU has.
        let model = try StableDiffusionModel.load(from: self.model, tokenizer: tokenizer,
                                                  precision: options.precision ?? Precision.fastest)
        let loadSeconds = lap()
        let schedule = try NoiseSchedule(config: try NoiseSchedule.Config(near: model.path))
        try options.validate(for: model, schedule: schedule)
        let inputs = try TransferInputs.prepare(structure: try Self.readImage(self.structure), appearance: try Self.readImage(self.appearance),
                                                structureMask: try structureMask.map(Self.readImage), appearanceMask: try appearanceMask.map(Self.readImage),
                                                options: options, model: model, maxPixels: maxPixels)
        guard let structure = inputs.structure, let appearance = inputs.appearance else { throw UsageError("the images were not prepared") }
        let noise = try self.noise.map(Self.readNoise)
        let cache = noCache ? nil : try InversionCache(directory: cacheDirectory ?? Self.defaultCacheDirectory())

        let cancellation = TransferCancellation()
        Signals.onInterrupt { cancellation.cancel() }
        let pipeline = TransferPipeline(model: model, schedule: schedule)
        let previewEvery = options.resolvedPreviewEvery, previewFile = preview
        let result = try pipeline.run(structure: structure, appearance: appearance, options: options, noise: noise, masks: inputs.masks,
                                      cache: cache, cancellation: cancellation, progress: { p in
            FileHandle.standardError.write(Data("\(p.phase.rawValue) \(p.step)/\(p.total)\n".utf8))
        }, preview: previewFile.map { file in { point in
            guard LatentPreview.isDue(step: point.step, total: point.total, every: previewEvery),
                  let png = try? PNGLibrary.encode(LatentPreview.image(point, decoder: options.previewDecoder, model: model)) else { return }
            do { try Self.writeAtomically(png, to: file) } catch {
                FileHandle.standardError.write(Data("warning: preview \(file): \(error)\n".utf8))
            }
        } })
        try Self.writeAtomically(try PNGLibrary.encode(ImagePreprocessing.image(from: result.image)), to: out)
        if let dump { try Self.writeDump(result, to: dump) }
        for warning in result.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        var report = "done: \(out)\nUNet passes (batch 1): \(result.unetPasses)\n" + String(format: "load model: %.2f s\n", loadSeconds)
        for phase in ["text", "encode", "invert structure", "invert appearance", "generate", "decode"] {
            report += String(format: "%@: %.2f s\n", phase, result.secondsPerPhase[phase] ?? 0)
        }
        FileHandle.standardError.write(Data(report.utf8))
    }

    static func readImage(_ path: String) throws -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UsageError("\(path): cannot read the file")
        }
        do { return try ImageDecoder.decode(data) } catch { throw UsageError("\(path): \(error)") }
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
