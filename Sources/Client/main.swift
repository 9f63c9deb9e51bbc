import Wire

// xattnctl: the thin client. Commands arrive with the daemon's RPC (issue 5).
let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "--version", "version":
    print("xattnctl (protocol \(WireProtocol.version))")
default:
    print("usage: xattnctl --version")
}
