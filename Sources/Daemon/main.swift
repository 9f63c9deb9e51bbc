import ArgumentParser
import CommandLineOptions
import Core
import Foundation
import Service
import Wire

// xattnd: `run` (the service), `transfer` (one job in the foreground), `check-config`, `doctor`.
// The engine is set up first, while this is the only thread: choosing OpenBLAS's kernel may set the environment.
_ = EngineSetup.prepare()
do {
    var command = try Xattnd.parseAsRoot()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch let error as CommandFailure {
    FileHandle.standardError.write(Data("xattnd \(error.command): \(error.underlying)\n".utf8))
    exit(error.exitCode)
} catch {
    CommandLineExit.fail(Xattnd.self, error)
}
