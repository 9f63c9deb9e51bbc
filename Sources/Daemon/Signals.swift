import Dispatch
import Foundation

/// SIGINT/SIGTERM handling through dispatch sources (no work in a signal handler).
enum Signals {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    /// Calls `action` on every SIGHUP (installed before READY=1: an untrapped SIGHUP would kill us).
    static func onHangup(_ action: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler(handler: action)
        source.resume()
        sources.append(source)
    }

    /// Calls `action` on the first SIGINT or SIGTERM (a second one ends the process as usual).
    static func onInterrupt(_ action: @escaping @Sendable () -> Void) {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                action()
                signal(number, SIG_DFL)
            }
            source.resume()
            sources.append(source)
        }
    }
}
