/// What `xattnd run`'s flags set; nil leaves the configuration file's value (or the default).
/// Checked against the same bounds as the file's keys (DaemonSettings.Bounds).
package struct SettingsOverrides: Equatable, Sendable {
    package var model, tokenizer, precision, stateDirectory, socket, socketGroup, adminGroup, cacheDirectory, jobVisibility: String?
    package var database, node: String?
    package var queueLimit, maximumFrameSize, maxAttempts, idleTimeout, maxConnections, maxBufferedBytes, frameTimeout, storeMaxBytes: Int?
    package var noCache = false

    package init() {}
}

/// A mistake in what the user typed or configured (exit status 2), as opposed to a failure.
package struct UsageError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
