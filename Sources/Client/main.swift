import Foundation
import Wire

// xattnctl: the thin client of xattnd (links Wire only, never the engine).
var arguments = Array(CommandLine.arguments.dropFirst())
var socketOption: String?
if let i = arguments.firstIndex(of: "--socket"), i + 1 < arguments.count {
    socketOption = arguments[i + 1]
    arguments.removeSubrange(i...(i + 1))
}
let socketPath = socketOption ?? ProcessInfo.processInfo.environment["XATTN_SOCKET"] ?? "/run/xattnd.sock"
let json = arguments.contains("--json")
arguments.removeAll { $0 == "--json" }
guard let command = arguments.first, !arguments.contains(where: { ["-h", "--help", "help"].contains($0) }) else {
    print(Commands.usage)
    exit(arguments.isEmpty ? 2 : 0)
}
if command == "--version" || command == "version" {
    print("xattnctl (protocol \(WireProtocol.version))")
    exit(0)
}
do {
    let parsed = try Commands.parse(command, Array(arguments.dropFirst()))
    let commands = Commands(connection: try Connection(path: socketPath), json: json)
    try commands.hello()
    exit(try commands.run(parsed))
} catch let error as ClientError {
    FileHandle.standardError.write(Data("xattnctl: \(error.description)\n".utf8))
    if error.kind == .usage && error.showsUsage { FileHandle.standardError.write(Data((Commands.usage + "\n").utf8)) }
    exit(error.kind.rawValue)
} catch {
    FileHandle.standardError.write(Data("xattnctl: \(error)\n".utf8))
    exit(1)
}
