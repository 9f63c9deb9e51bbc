import ArgumentParser
import CommandLineOptions
import Foundation
import Wire

/// `xattnctl`: its commands, their arguments and help (swift-argument-parser), each running
/// through `Commands` on one connection.
struct Xattnctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xattnctl",
        abstract: "Submit, follow and manage xattnd's appearance-transfer jobs.",
        discussion: """
            The socket is --socket, else $XATTN_SOCKET, else /run/xattnd.sock.
            Exit codes: 0 done, 1 failed, 2 usage (or an option the daemon refuses), 3 daemon not reachable, \
            4 try later (queue full, or the shared job database unreachable), 5 job failed or cancelled.
            """,
        version: "xattnctl (protocol \(WireProtocol.version))",
        subcommands: [Submit.self, Status.self, List.self, Watch.self, Cancel.self, Retry.self, Result.self,
                      Pause.self, Resume.self, Reload.self, Info.self])

    /// Also accepted before the command's name (`xattnctl --json status`).
    @OptionGroup var global: GlobalOptions
}

/// Options every command takes, before or after its name.
struct GlobalOptions: ParsableArguments {
    @Option(help: "The daemon's socket (default: $XATTN_SOCKET, else /run/xattnd.sock).")
    var socket: String?

    @Flag(help: "Print the daemon's answers as JSON.")
    var json = false

    /// Connects and says hello.
    func commands() throws -> Commands {
        let path = socket ?? ProcessInfo.processInfo.environment["XATTN_SOCKET"] ?? "/run/xattnd.sock"
        let commands = Commands(connection: try Connection(path: path), json: json)
        try commands.hello()
        return commands
    }
}

/// A command that names one job.
struct JobArgument: ParsableArguments {
    @Argument(help: "The job's id (j-…).")
    var job: String
}

struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue a transfer of APPEARANCE's look onto STRUCTURE's shape.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The structure image (PNG or JPEG).") var structure: String
    @Argument(help: "The appearance image (PNG or JPEG).") var appearance: String
    @OptionGroup(title: "Transfer options") var options: TransferOptionGroup
    @Option(help: "Higher runs first, \(TransferParameters.priorities.lowerBound)…\(TransferParameters.priorities.upperBound) (default 0).")
    var priority: Int?
    @Option(name: .customLong("key"), help: "Idempotency key: submitting it again returns the job it first created.")
    var idempotencyKey: String?
    @Option(help: "The structure's object mask (PNG or JPEG, white = object, the image's aspect): replaces its self-segmentation.")
    var structureMask: String?
    @Option(help: "The appearance's object mask (PNG or JPEG, white = object, the image's aspect): replaces its self-segmentation.")
    var appearanceMask: String?
    @Flag(help: "Follow the job to its end.") var wait = false
    @Option(help: "Wait, then write the result image here.") var out: String?
    @Option(help: "With --wait or --out: rewrite this PNG with each preview of the output as the job runs.") var preview: String?

    func validate() throws {
        if preview != nil && !wait && out == nil { throw ValidationError("--preview needs --wait or --out") }
        if let priority, !TransferParameters.priorities.contains(priority) {
            throw ValidationError("--priority must be in \(TransferParameters.priorities.lowerBound)…\(TransferParameters.priorities.upperBound), got \(priority)")
        }
    }

    func run() throws {
        func file(_ path: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ClientError(kind: .usage, description: "\(path): cannot read the file")
            }
            return data.base64EncodedString()
        }
        let request = SubmitParams(structure: try file(structure), appearance: try file(appearance), options: options.parameters,
                                   priority: priority, idempotencyKey: idempotencyKey,
                                   structureMask: try structureMask.map(file), appearanceMask: try appearanceMask.map(file))
        throw ExitCode(try global.commands().submit(request, wait: wait, out: out, preview: preview))
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The daemon's state, or one job's.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A job's id (default: the daemon).") var job: String?
    func run() throws { throw ExitCode(try global.commands().run(.status(job: job))) }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Jobs, newest first (yours, or every job for an admin).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "At most this many, 1…1000.") var limit = 100
    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be in 1…1000, got \(limit)") }
    }
    func run() throws { throw ExitCode(try global.commands().run(.list(limit: limit))) }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Follow a job's progress to its end.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: JobArgument
    @Option(help: "Rewrite this PNG with each preview of the output as the job runs.") var preview: String?
    func run() throws { throw ExitCode(try global.commands().run(.watch(job: target.job, preview: preview))) }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: JobArgument
    func run() throws { throw ExitCode(try global.commands().run(.cancel(job: target.job))) }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue a failed or cancelled job again.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: JobArgument
    func run() throws { throw ExitCode(try global.commands().run(.retry(job: target.job))) }
}

struct Result: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a succeeded job's image.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: JobArgument
    @Option(help: "Where to write the PNG.") var out: String
    func run() throws { throw ExitCode(try global.commands().run(.result(job: target.job, out: out))) }
}

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop starting jobs (admins).")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ExitCode(try global.commands().run(.admin(.pause))) }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start jobs again (admins).")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ExitCode(try global.commands().run(.admin(.resume))) }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read the daemon's configuration (admins).")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ExitCode(try global.commands().run(.admin(.reload))) }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The loaded model.")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ExitCode(try global.commands().run(.info)) }
}
