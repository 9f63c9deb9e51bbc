import Foundation
import Core

/// `xattn-bench load [--json] [--dir DIR]`: loading a full-size fp32 SD 1.5 model from files, as
/// the service does. The model (random weights in SD 1.5's shapes: loading does not depend on the
/// values) is written once as a diffusers folder to DIR, then loaded by a child process, which
/// reports its resident size after the load and its peak during it. The ratio peak / steady state
/// is the result: both come from the same load, whatever else the machine is doing.
enum LoadSuite {
    static let defaultFolder = NSTemporaryDirectory() + "xattn-bench-sd15-fp32"

    static func run(json: Bool, folder: String?, precision: Precision) throws {
        let folder = folder ?? defaultFolder
        let written = try writeModelIfMissing(folder)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = ["load", "--child", folder, "--precision", precision.rawValue]
        let pipe = Pipe()
        child.standardOutput = pipe
        try child.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        guard child.terminationStatus == 0,
              let report = try JSONSerialization.jsonObject(with: output) as? [String: Double],
              let peak = report["peak_rss_mb"], let steady = report["rss_mb"], let seconds = report["seconds"] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "the loading child failed: \(String(decoding: output, as: UTF8.self))"])
        }
        let fileMB = report["file_mb"] ?? 0
        if json {
            let object: [String: Any] = ["suite": "load", "precision": precision.rawValue, "folder": folder, "written_seconds": written ?? NSNull(), "file_mb": fileMB,
                                         "seconds": seconds, "rss_mb": steady, "peak_rss_mb": peak,
                                         "peak_over_steady_mb": peak - steady, "peak_to_steady": peak / steady]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "fp32 SD 1.5 from %@ (%.0f MB of files): loaded in %@ in %.1f s", folder, fileMB, precision.rawValue, seconds))
            print(String(format: "resident after the load %.0f MB, peak during it %.0f MB: +%.0f MB (%.2f×)", steady, peak, peak - steady, peak / steady))
        }
    }

    /// The child: loads the folder and reports sizes from /proc/self/status (VmRSS, VmHWM).
    static func child(_ folder: String, precision: Precision) throws {
        let start = Clock.now()
        let model = try StableDiffusionModel.load(from: folder, precision: precision)
        EngineSetup.releaseFreeMemory()  // as xattnd does after its load
        let seconds = Clock.now() - start
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Double {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return Double(line.split(separator: " ").dropFirst().first ?? "0").map { $0 / 1024 } ?? 0
        }
        let files = ["unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]
        let bytes = files.reduce(0) { $0 + (((try? FileManager.default.attributesOfItem(atPath: folder + "/" + $1))?[.size] as? NSNumber)?.intValue ?? 0) }
        withExtendedLifetime(model) {
            print("{\"seconds\": \(seconds), \"rss_mb\": \(field("VmRSS")), \"peak_rss_mb\": \(field("VmHWM")), \"file_mb\": \(Double(bytes) / 1048576)}")
        }
    }

    /// Writes unet/, vae/, text_encoder/ (fp32 safetensors, SD 1.5 configs) and the tokenizer of
    /// the test fixtures (CLIP's full vocabulary); returns the seconds it took, nil if present.
    static func writeModelIfMissing(_ folder: String) throws -> Double? {
        let done = folder + "/.complete"
        if FileManager.default.fileExists(atPath: done) { return nil }
        let start = Clock.now()
        let manager = FileManager.default
        for component in ["unet", "vae", "text_encoder", "tokenizer"] {
            try manager.createDirectory(atPath: folder + "/" + component, withIntermediateDirectories: true)
        }
        func build(_ component: String, _ file: String, _ make: (WeightReader) throws -> Void) throws {
            var tensors: [(name: String, tensor: Tensor)] = []
            let source = RandomWeights(seed: 7)
            source.onSynthesize = { tensors.append(($0, $1)) }
            try make(WeightReader(source: source, component: component))
            try SafetensorsWriter.write(tensors, to: folder + "/\(component)/\(file)")
            try Data("{}".utf8).write(to: URL(fileURLWithPath: folder + "/\(component)/config.json"))  // SD 1.5's defaults
        }
        try build("unet", "diffusion_pytorch_model.safetensors") { _ = try UNetModel(config: UNetConfig(), weights: $0, configPath: "SD 1.5") }
        try build("vae", "diffusion_pytorch_model.safetensors") { _ = try AutoencoderKL(config: VAEConfig(), weights: $0, configPath: "SD 1.5") }
        try build("text_encoder", "model.safetensors") { _ = try CLIPTextModel(config: CLIPTextConfig(), weights: $0, configPath: "SD 1.5") }
        let tokenizer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Fixtures/tiny-sd/tokenizer").path
        for name in ["vocab.json", "merges.txt"] {
            try? manager.removeItem(atPath: folder + "/tokenizer/" + name)
            try manager.copyItem(atPath: tokenizer + "/" + name, toPath: folder + "/tokenizer/" + name)
        }
        _ = manager.createFile(atPath: done, contents: nil)
        return Clock.now() - start
    }
}
