import Foundation

// xattn-bench SUITE [--json]: performance as ratios measured in one run (see each suite).
let arguments = Array(CommandLine.arguments.dropFirst())
let json = arguments.contains("--json")
switch arguments.first {
case "kernels":
    KernelSuite.run(json: json)
default:
    FileHandle.standardError.write(Data("usage: xattn-bench kernels [--json]\n".utf8))
    exit(2)
}
