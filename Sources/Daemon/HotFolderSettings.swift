import Foundation
import Wire

/// One `[[folder]]` of the configuration: where it is, how it is watched, and the options its jobs
/// get unless a job's own options file says otherwise.
struct HotFolderSettings: Equatable {
    /// Shown by `xattnctl list` and stored with its jobs; unique; defaults to the path's last part.
    var name: String
    var path: String
    /// Scan every `pollInterval` seconds instead of relying on inotify (network filesystems).
    var poll = false
    var pollInterval = 2.0
    /// Seconds a complete file must stay unchanged before it is taken.
    var settle = 1.0
    /// Seconds after which a file that is not part of a complete job goes to failed/.
    var unpairedTimeout = 300.0
    /// Seconds between full scans even when inotify is working (missed events are not lost).
    var scanInterval = 60.0
    /// Mode 3: every dropped image is a job with this fixed appearance (or structure).
    var appearance: String?
    var structure: String?
    var priority = 0
    var options = TransferParameters()

    var inbox: String { path + "/in" }
    var processing: String { path + "/processing" }
    var outbox: String { path + "/out" }
    var done: String { path + "/done" }
    var failed: String { path + "/failed" }

    /// Reads one `[[folder]]` table; unknown keys are errors.
    static func parse(_ table: [String: TOML.Value], at index: Int, file: String) throws -> HotFolderSettings {
        let at = "\(file): [[folder]] #\(index + 1)"
        func fail(_ message: String) -> DaemonSettings.Invalid { DaemonSettings.Invalid(description: "\(at): \(message)") }
        guard case let .string(path)? = table["path"], path.hasPrefix("/") else { throw fail("path must be an absolute path") }
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        var folder = HotFolderSettings(name: (trimmed as NSString).lastPathComponent, path: trimmed)
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            func string() throws -> String {
                guard case let .string(s) = value else { throw fail("\(key) must be a string") }
                return s
            }
            func seconds(_ range: ClosedRange<Double>) throws -> Double {
                let x: Double
                switch value {
                case let .integer(n): x = Double(n)
                case let .float(f): x = f
                default: throw fail("\(key) must be a number of seconds")
                }
                guard range.contains(x) else { throw fail("\(key) must be in \(range.lowerBound)…\(range.upperBound) seconds") }
                return x
            }
            func integer() throws -> Int {
                guard case let .integer(n) = value else { throw fail("\(key) must be a whole number") }
                return n
            }
            func number() throws -> Double {
                switch value {
                case let .integer(n): return Double(n)
                case let .float(f): return f
                default: throw fail("\(key) must be a number")
                }
            }
            func range() throws -> [Int] {
                guard case let .array(items) = value, items.count == 2, case let .integer(a) = items[0], case let .integer(b) = items[1] else {
                    throw fail("\(key) must be [start, end]")
                }
                return [a, b]
            }
            switch key {
            case "path": break
            case "name":
                folder.name = try string()
                guard !folder.name.isEmpty, folder.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                    throw fail("name may hold letters, digits, '-', '_' and '.' only")
                }
            case "poll":
                guard case let .bool(b) = value else { throw fail("poll must be true or false") }
                folder.poll = b
            case "poll_interval": folder.pollInterval = try seconds(0.1...3600)
            case "settle": folder.settle = try seconds(0...3600)
            case "unpaired_timeout": folder.unpairedTimeout = try seconds(1...604_800)
            case "scan_interval": folder.scanInterval = try seconds(1...86400)
            case "appearance", "structure":
                let image = try string()
                guard image.hasPrefix("/") else { throw fail("\(key) must be an absolute path") }
                if key == "appearance" { folder.appearance = image } else { folder.structure = image }
            case "priority": folder.priority = try integer()
            case "domain": folder.options.domain = try string()
            case "prompt": folder.options.prompt = try string()
            case "object_noun": folder.options.objectNoun = try string()
            case "seed":
                guard case let .integer(n) = value, n >= 0 else { throw fail("seed must be a whole number ≥ 0") }
                folder.options.seed = UInt64(n)
            case "timesteps": folder.options.timesteps = try integer()
            case "skip": folder.options.skip = try integer()
            case "masked_adain":
                guard case let .bool(b) = value else { throw fail("masked_adain must be true or false") }
                folder.options.maskedAdain = b
            case "swap_guidance": folder.options.swapGuidance = try number()
            case "contrast": folder.options.contrast = try number()
            case "cross_attn_range_0": folder.options.crossAttnRange0 = try range()
            case "cross_attn_range_1": folder.options.crossAttnRange1 = try range()
            case "adain_range": folder.options.adainRange = try range()
            default: throw fail("unknown setting '\(key)'")
            }
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
