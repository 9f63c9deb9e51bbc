import Service
import Core
import Wire
import Foundation

// xattnd: `run` (the service), `transfer` (one job in the foreground), `check-config`, `doctor`.
let arguments = Array(CommandLine.arguments.dropFirst())

/// Runs a subcommand; its error goes to stderr (with the usage for a usage error) and sets the exit code.
func subcommand(_ name: String, usage: String, exitCode: (Error) -> Int32 = { $0 is Arguments.UsageError ? 2 : 1 }, _ body: ([String]) throws -> Void) {
    if arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
        print(usage)
        exit(0)
    }
    do {
        try body(Array(arguments.dropFirst()))
    } catch {
        FileHandle.standardError.write(Data("xattnd \(name): \(error)\n".utf8))
        if error is Arguments.UsageError { FileHandle.standardError.write(Data((usage + "\n").utf8)) }
        exit(exitCode(error))
    }
}

switch arguments.first {
case "--version", "version":
    print("xattnd (protocol \(WireProtocol.version))")
case "run":
    subcommand("run", usage: RunCommand.usage, RunCommand.run)
case "check-config":
    // Parses and validates a configuration file as `run` would, without starting anything.
    guard arguments.count == 2 else {
        FileHandle.standardError.write(Data("usage: xattnd check-config FILE\n".utf8))
        exit(2)
    }
    do {
        let settings = try DaemonSettings.load(file: arguments[1], flags: try Arguments([], valued: [], switches: []))
        print("\(arguments[1]): valid (model \(settings.model ?? "?"), socket \(settings.socket), queue limit \(settings.queueLimit), \(settings.folders.count) hot folder\(settings.folders.count == 1 ? "" : "s"))")
    } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        exit(1)
    }
case "transfer":
    // Exit 2 for the user's errors (a flag's value, an option the model refuses), 130 for Ctrl-C.
    subcommand("transfer", usage: TransferCommand.usage, exitCode: { error in
        switch error {
        case TransferError.cancelled: return 130
        case TransferError.invalidOption, TransferError.objectNounNotInPrompt, is Arguments.UsageError: return 2
        default: return 1
        }
    }, TransferCommand.run)
case "doctor":
    print("compute threads: \(ComputePool.shared.threadCount)")
    print("blas: \(Gemm.backendDescription)")
    print("libpng: \(PNGLibrary.version)")
    print("inotify: \(InotifyWatcher(onEvent: { _ in }).isAvailable ? "available" : "unavailable (hot folders will poll)")")
    print("systemd notify socket: \(Systemd.notify("STATUS=doctor") ? "present" : "absent")")
default:
    FileHandle.standardError.write(Data("usage: xattnd run … | transfer … | check-config FILE | doctor | --version\n".utf8))
    exit(2)
}
