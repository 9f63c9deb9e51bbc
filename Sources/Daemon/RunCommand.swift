import ArgumentParser
import Core
import Foundation
import Logging
import Service
import Wire

/// `xattnd run`: the service. Loads the model once, then serves the queue and the socket until
/// SIGTERM/SIGINT, which stop intake, stop the running job at its next pass, requeue it, and exit.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the service: the job queue, the socket, the hot folders.",
        discussion: "Flags override the configuration file (TOML; see systemd/xattnd.toml).")

    @Option(help: "The TOML configuration file.") var config: String?
    @Option(help: "The model: a diffusers folder or a single-file SD 1.5 checkpoint.") var model: String?
    @Option(help: "A tokenizer folder (vocab.json, merges.txt) for a single-file checkpoint.") var tokenizer: String?
    @Option(help: "The precision the model is loaded in: fp32 (exact), bf16 (AMX or AVX512-BF16 CPUs) or auto (bf16 where it is faster).")
    var precision: String?
    @Option(name: .customLong("state-dir"), help: "Where the job store and results live.") var stateDirectory: String?
    @Option(help: "The Unix socket to listen on.") var socket: String?
    @Option(help: "The group allowed to connect to the socket.") var socketGroup: String?
    @Option(help: "The group whose members are admins.") var adminGroup: String?
    @Option(help: "Queued jobs at most.") var queueLimit: Int?
    @Option(name: .customLong("max-frame-size"), help: "Largest request frame, in bytes.") var maximumFrameSize: Int?
    @Option(help: "Times a job is started before it is failed.") var maxAttempts: Int?
    @Option(help: "Seconds after which an idle connection is closed.") var idleTimeout: Int?
    @Option(help: "Connections served at once.") var maxConnections: Int?
    @Option(help: "Bytes held in unanswered requests, all connections together.") var maxBufferedBytes: Int?
    @Option(help: "Seconds a started frame may take to arrive.") var frameTimeout: Int?
    @Option(help: "owner: jobs are seen by their owner and the admins; all: by everyone.") var jobVisibility: String?
    @Option(help: "Bytes of images the job store may hold.") var storeMaxBytes: Int?
    @Option(name: .customLong("cache-dir"), help: "Where inverted latents are cached.") var cacheDirectory: String?
    @Flag(help: "Do not cache inverted latents.") var noCache = false
    @Option(help: "A PostgreSQL database (postgresql://… or a libpq connection string) that several nodes share as their queue, instead of the state directory's SQLite.")
    var database: String?
    @Option(help: "This node's name in a shared database (default: the host name).") var node: String?

    var overrides: SettingsOverrides {
        var o = SettingsOverrides()
        (o.model, o.tokenizer, o.stateDirectory, o.socket, o.socketGroup, o.adminGroup) = (model, tokenizer, stateDirectory, socket, socketGroup, adminGroup)
        (o.queueLimit, o.maximumFrameSize, o.maxAttempts, o.idleTimeout) = (queueLimit, maximumFrameSize, maxAttempts, idleTimeout)
        (o.maxConnections, o.maxBufferedBytes, o.frameTimeout, o.storeMaxBytes) = (maxConnections, maxBufferedBytes, frameTimeout, storeMaxBytes)
        (o.jobVisibility, o.cacheDirectory, o.noCache, o.precision) = (jobVisibility, cacheDirectory, noCache, precision)
        (o.database, o.node) = (database, node)
        return o
    }

    func run() throws {
        try CommandFailure.wrapping("run") {
            let service = ServiceStart(settings: try DaemonSettings.load(file: config, overrides: overrides), file: config, overrides: overrides)
            try service.run()
        }
    }
}
