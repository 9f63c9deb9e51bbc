import ArgumentParser
import CommandLineOptions
import Foundation
import Wire

// xattnctl: the thin client of xattnd (links Wire only, never the engine). The command line is
// read whole before connecting: a usage error never reaches the daemon and exits 2 even when it
// is not running.
do {
    var command = try Xattnctl.parseAsRoot()
    try command.run()
} catch let error as ClientError {
    FileHandle.standardError.write(Data("xattnctl: \(error.description)\n".utf8))
    exit(error.kind.rawValue)
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    CommandLineExit.fail(Xattnctl.self, error)
}
