import Foundation
import Wire

/// One `[[folder]]` of the configuration: where it is, how it is watched, and the options its jobs
/// get unless a job's own options file says otherwise.
package struct HotFolderSettings: Equatable {
    /// Shown by `xattnctl list` and stored with its jobs; unique; defaults to the path's last part.
    package var name: String
    package var path: String
    /// Scan every `pollInterval` seconds instead of relying on inotify (network filesystems).
    package var poll = false
    var pollInterval = 2.0
    /// Seconds a complete file must stay unchanged before it is taken; nil: the mode's default.
    var settle: Double?
    /// With inotify a file is taken after its writer closed it; polling sees only size and time,
    /// so a writer that pauses longer than this is taken half-written (and refused as a truncated
    /// image): the polling default covers the pauses of a copy over a network share.
    static let defaultSettle = 1.0, defaultPollingSettle = 10.0

    func settle(polling: Bool) -> Double { settle ?? (polling ? Self.defaultPollingSettle : Self.defaultSettle) }
    /// Seconds after which a file that is not part of a complete job goes to failed/.
    var unpairedTimeout = 300.0
    /// Seconds between full scans even when inotify is working (missed events are not lost).
    var scanInterval = 60.0
    /// Mode 3: every dropped image is a job with this fixed appearance (or structure).
    var appearance: String?
    var structure: String?
    var priority = 0
    /// Keep processing/NAME.preview.png current while the drop's job runs (removed at its end).
    var previews = false
    package var options = TransferParameters()

    package var inbox: String { path + "/in" }
    var processing: String { path + "/processing" }
    var outbox: String { path + "/out" }
    var done: String { path + "/done" }
    var failed: String { path + "/failed" }

    /// Reads one `[[folder]]` table; unknown keys are errors.
    static func parse(_ table: [String: JSONValue], at index: Int, file: String) throws -> HotFolderSettings {
        let at = "\(file): [[folder]] #\(index + 1)"
        func fail(_ message: String) -> DaemonSettings.Invalid { DaemonSettings.Invalid(description: "\(at): \(message)") }
        guard case let .string(path)? = table["path"], path.hasPrefix("/") else { throw fail("path must be an absolute path") }
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        var folder = HotFolderSettings(name: (trimmed as NSString).lastPathComponent, path: trimmed)
        var options: [String: JSONValue] = [:]
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            let field = ConfigField(key: key, value: value, context: at)
            switch key {
            case "path": break
            case "name":
                folder.name = try field.string()
                guard !folder.name.isEmpty, folder.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                    throw field.invalid("may hold letters, digits, '-', '_' and '.' only")
                }
            case "poll": folder.poll = try field.bool()
            case "poll_interval": folder.pollInterval = try field.number(0.1...3600, unit: "seconds")
            case "settle": folder.settle = try field.number(0...3600, unit: "seconds")
            case "unpaired_timeout": folder.unpairedTimeout = try field.number(1...604_800, unit: "seconds")
            case "scan_interval": folder.scanInterval = try field.number(1...86400, unit: "seconds")
            case "appearance", "structure":
                let image = try field.string()
                guard image.hasPrefix("/") else { throw field.invalid("must be an absolute path") }
                if key == "appearance" { folder.appearance = image } else { folder.structure = image }
            case "priority": folder.priority = try field.integer(TransferParameters.priorities)
            case "previews": folder.previews = try field.bool()
            default:
                // The transfer options, in the file's snake_case: the wire's fields, one schema.
                let name = TOML.camelCase(key)
                guard TransferParameters.CodingKeys(rawValue: name) != nil, TOML.snakeCase(name) == key else { throw field.unknown }
                options[name] = value
            }
        }
        do { folder.options = try JSONValue.object(options).decode(TransferParameters.self) } catch {
            let problem = DecodingProblem.describe(error)
            let place = problem.path.joined(separator: ".")
            throw fail(problem.path.isEmpty || !problem.text.hasPrefix(place) ? problem.text
                       : TOML.snakeCase(problem.path[0]) + problem.text.dropFirst(problem.path[0].count))
        }
        if folder.appearance != nil && folder.structure != nil { throw fail("give a fixed appearance or a fixed structure, not both") }
        do { _ = try JobConversion.options(folder.options) } catch { throw fail("\(error)") }
        return folder
    }

    /// Names unique, paths distinct and not nested in one another.
    static func validate(_ folders: [HotFolderSettings]) throws {
        for (i, a) in folders.enumerated() {
            for b in folders[(i + 1)...] {
                if a.name == b.name { throw DaemonSettings.Invalid(description: "two hot folders are named '\(a.name)'") }
                if a.path == b.path || a.path.hasPrefix(b.path + "/") || b.path.hasPrefix(a.path + "/") {
                    throw DaemonSettings.Invalid(description: "hot folders \(a.path) and \(b.path) overlap")
                }
            }
        }
    }
}
