import Service
import Foundation
import Logging

/// Logs to the journal (structured fields) when systemd connected our output to it, else stderr.
enum DaemonLogging {
    static func logger() -> Logger {
        let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in
            EscapingLogHandler(journal ? JournalLogHandler(label: label) as LogHandler : StreamLogHandler.standardError(label: label))
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

    func log(event: LogEvent) {
        let priority: Int
        switch event.level {
        case .trace, .debug: priority = 7
        case .info: priority = 6
        case .notice: priority = 5
        case .warning: priority = 4
        case .error: priority = 3
        case .critical: priority = 2
        }
        var fields = ["MESSAGE=\(event.message)", "PRIORITY=\(priority)", "SYSLOG_IDENTIFIER=xattnd"]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            let name = "XATTN_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
            fields.append("\(name)=\(value)")
        }
        Systemd.journal(fields)
    }
}

/// Control characters in a message or a metadata value (a file name may hold a newline) are
/// written as escapes (`\n`, `\u{1B}`; a backslash as `\\`), so that one log record is one line
/// of stderr and one journal field's value never looks like two.
struct EscapingLogHandler: LogHandler {
    var wrapped: LogHandler

    init(_ wrapped: LogHandler) { self.wrapped = wrapped }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue.mapValues(Self.escape) }
    }
    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue.map(Self.escape) }
    }

    func log(event: LogEvent) {
        var escaped = event
        escaped.message = "\(Self.escape(event.message.description))"
        escaped.metadata = event.metadata?.mapValues(Self.escape)
        wrapped.log(event: escaped)
    }

    static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case let .string(text): return .string(escape(text))
        case let .stringConvertible(convertible): return .string(escape(convertible.description))
        case let .array(values): return .array(values.map(escape))
        case let .dictionary(values): return .dictionary(values.mapValues(escape))
        }
    }

    static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += String(format: "\\u{%02X}", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
