import Dispatch
import Foundation

/// SIGINT/SIGTERM handling through dispatch sources (no work in a signal handler).
enum Signals {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

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
