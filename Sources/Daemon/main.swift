import Core
import Wire
import Foundation

// xattnd: the service. For now: `doctor`, which checks the C libraries and the compute setup.
let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--version", "version":
    print("xattnd (protocol \(WireProtocol.version))")
case "run":
    do {
        try RunCommand.run(Array(arguments.dropFirst()))
    } catch {
        FileHandle.standardError.write(Data("xattnd run: \(error)\n".utf8))
        if error is Arguments.UsageError { FileHandle.standardError.write(Data((RunCommand.usage + "\n").utf8)) }
        exit(1)
    }
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
    do {
        try TransferCommand.run(Array(arguments.dropFirst()))
    } catch {
        FileHandle.standardError.write(Data("xattnd transfer: \(error)\n".utf8))
        if error is Arguments.UsageError { FileHandle.standardError.write(Data((TransferCommand.usage + "\n").utf8)) }
        exit(error as? TransferError == .cancelled ? 130 : 1)
    }
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
