import Foundation
import Logging

/// Logs to the journal (structured fields) when systemd connected our output to it, else stderr.
enum DaemonLogging {
    static func logger() -> Logger {
        let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in
            journal ? JournalLogHandler(label: label) as LogHandler : StreamLogHandler.standardError(label: label)
        }
        var logger = Logger(label: "xattnd")
        logger.logLevel = .info
        return logger
    }
}

/// swift-log → sd_journal_sendv: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and every metadata key as an
/// upper-case XATTN_ field (XATTN_JOB for "job"); journald drops lower-case field names.
struct JournalLogHandler: LogHandler {
    let label: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        let priority: Int
        switch level {
        case .trace, .debug: priority = 7
        case .info: priority = 6
        case .notice: priority = 5
        case .warning: priority = 4
        case .error: priority = 3
        case .critical: priority = 2
        }
        var fields = ["MESSAGE=\(message)", "PRIORITY=\(priority)", "SYSLOG_IDENTIFIER=xattnd"]
        for (key, value) in metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) {
            let name = "XATTN_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
            fields.append("\(name)=\(value)")
        }
        Systemd.journal(fields)
    }
}
