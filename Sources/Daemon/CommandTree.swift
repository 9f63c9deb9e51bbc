import ArgumentParser
import CommandLineOptions
import Core
import Foundation
import Service
import Wire

/// xattnd's command line (swift-argument-parser).
struct Xattnd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xattnd",
        abstract: "The xattn appearance-transfer service and its tools.",
        discussion: "Exit codes: 0 done, 1 failed, 2 usage or configuration error, 130 interrupted (transfer).",
        version: "xattnd (protocol \(WireProtocol.version))",
        subcommands: [Run.self, Transfer.self, CheckConfig.self, Doctor.self])
}

/// An error of a subcommand's work (after parsing), with the exit status it means.
struct CommandFailure: Error {
    let command: String
    let underlying: Error

    /// 2 for what the user typed or configured, 130 for an interrupted transfer, else 1.
    var exitCode: Int32 {
        switch underlying {
        case TransferError.cancelled: return 130
        case TransferError.invalidOption, TransferError.objectNounNotInPrompt, is UsageError, is DaemonSettings.Invalid: return 2
        default: return 1
        }
    }

    /// Runs `body`, wrapping what it throws.
    static func wrapping(_ command: String, _ body: () throws -> Void) throws {
        do { try body() } catch { throw CommandFailure(command: command, underlying: error) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Parse and validate a configuration file as `run` would, without starting anything.")
    @Argument(help: "The TOML configuration file.") var file: String

    func run() throws {
        try CommandFailure.wrapping("check-config") {
            let settings = try DaemonSettings.load(file: file)
            print("\(file): valid (model \(settings.model ?? "?"), socket \(settings.socket), queue limit \(settings.queueLimit), \(settings.folders.count) hot folder\(settings.folders.count == 1 ? "" : "s"))")
        }
    }
}

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What this machine gives the engine and the service.")

    func run() throws {
        print("compute threads: \(ComputePool.shared.threadCount)")
        print("blas: \(Gemm.backendDescription)")
        print("bf16 products: \(Precision.bf16IsSupported ? BF16Gemm.kernel.name : "none"); precision auto means \(Precision.fastest.rawValue)")
        print("libpng: \(PNGLibrary.version)")
        print("inotify: \(InotifyWatcher(onEvent: { _ in }).isAvailable ? "available" : "unavailable (hot folders will poll)")")
        print("systemd notify socket: \(Systemd.notify("STATUS=doctor") ? "present" : "absent")")
    }
}
