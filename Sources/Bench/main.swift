import Core
import Foundation

// xattn-bench SUITE [--json] [--quick]: performance as ratios measured in one run (see each suite).
let usage = """
    usage: xattn-bench kernels|unet|transfer|sizes|load [--json] [--quick]
      kernels   each kernel at SD 1.5 sizes, GFLOP/s and the ratio to the sgemm peak of the same run
      unet      the full-size SD 1.5 UNet, VAE and text encoder on random weights (--quick: fewer rounds;
                --precision fp32|bf16: that precision alone, without bf16's deviation from fp32)
      transfer  one inversion and one generation step, VAE encode/decode, a default job's projection
      sizes     a UNet pass at 512x512, 512x768 and 768x768 (ratios in one run), and a preview's cost
      load      peak against steady resident size while loading a full-size fp32 SD 1.5 from files
                (--dir DIR: where the model is written once, default $TMPDIR/xattn-bench-sd15-fp32;
                --precision fp32|bf16: the form it is loaded in, default fp32)
      --json    one JSON object on stdout instead of a table
    """
// The engine is set up first, while this is the only thread: choosing OpenBLAS's kernel may set the environment.
if let error = EngineSetup.prepare() {
    FileHandle.standardError.write(Data("xattn-bench: \(error)\n".utf8))
    exit(1)
}
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains(where: { ["-h", "--help", "help"].contains($0) }) {
    print(usage)
    exit(0)
}
/// Every flag must be one the suite takes: a typo must not start a benchmark that runs for minutes.
let known: [String: Set<String>] = ["kernels": ["--json"], "transfer": ["--json"], "sizes": ["--json"], "unet": ["--json", "--quick", "--precision"], "load": ["--json", "--dir", "--precision"]]
/// Flags that take a value (the value follows the flag).
let valued: Set<String> = ["--dir", "--child", "--precision"]
guard let suite = arguments.first, let flags = known[suite] else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}
var values: [String: String] = [:]
var rest = arguments.dropFirst()
while let argument = rest.popFirst() {
    if valued.contains(argument), suite == "load" || (suite == "unet" && argument == "--precision"), let value = rest.popFirst() {
        values[argument] = value
    } else if !flags.contains(argument) || valued.contains(argument) {
        FileHandle.standardError.write(Data("xattn-bench \(suite): unknown argument '\(argument)' (or a value missing)\n\(usage)\n".utf8))
        exit(2)
    }
}
let json = arguments.contains("--json")
do {
    switch suite {
    case "kernels": KernelSuite.run(json: json)
    case "transfer": try TransferSuite.run(json: json)
    case "sizes": try SizeSuite.run(json: json)
    case "load":
        // The measured child is this program again (`--child DIR`, internal).
        guard let precision = Precision(rawValue: values["--precision"] ?? "fp32") else {
            FileHandle.standardError.write(Data("xattn-bench: --precision must be fp32 or bf16\n".utf8))
            exit(2)
        }
        if let folder = values["--child"] {
            try LoadSuite.child(folder, precision: precision)
        } else {
            try LoadSuite.run(json: json, folder: values["--dir"], precision: precision)
        }
    default:
        let only = values["--precision"].map(Precision.init(rawValue:))
        if let only, only == nil || (only == .bf16 && !Precision.bf16IsSupported) {
            FileHandle.standardError.write(Data("xattn-bench: --precision must be fp32 or bf16 (bf16 where this CPU runs it)\n".utf8))
            exit(2)
        }
        try ModelSuite.run(json: json, quick: arguments.contains("--quick"), only: only ?? nil)
    }
} catch {
    FileHandle.standardError.write(Data("xattn-bench: \(error)\n".utf8))
    exit(1)
}
