import Foundation

// xattn-bench SUITE [--json]: performance as ratios measured in one run (see each suite).
let arguments = Array(CommandLine.arguments.dropFirst())
let json = arguments.contains("--json")
switch arguments.first {
case "kernels":
    KernelSuite.run(json: json)
case "transfer":
    do {
        try TransferSuite.run(json: json)
    } catch {
        FileHandle.standardError.write(Data("xattn-bench: \(error)\n".utf8))
        exit(1)
    }
case "unet":
    do {
        try ModelSuite.run(json: json, quick: arguments.contains("--quick"))
    } catch {
        FileHandle.standardError.write(Data("xattn-bench: \(error)\n".utf8))
        exit(1)
    }
default:
    FileHandle.standardError.write(Data("usage: xattn-bench kernels|unet|transfer [--json] [--quick]\n".utf8))
    exit(2)
}
