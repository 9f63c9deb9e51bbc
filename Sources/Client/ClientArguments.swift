import Foundation
import Wire

/// One command's arguments, read strictly before anything is sent: every option must be one the
/// command takes, every value must parse, and each problem is a usage error (exit 2) that names the
/// flag. (Read leniently, `--seed abc` used to queue a job with the default seed.)
struct ClientArguments {
    private(set) var positionals: [String] = []
    private var values: [String: String] = [:]
    private var switches: Set<String> = []

    init(_ arguments: [String], valued: Set<String> = [], switches known: Set<String> = [], positionals count: ClosedRange<Int>,
         usage: String) throws {
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--" { positionals += arguments[(i + 1)...]; break }
            guard argument.hasPrefix("--") else { positionals.append(argument); i += 1; continue }
            let name = String(argument.dropFirst(2))
            if known.contains(name) {
                switches.insert(name)
                i += 1
            } else if valued.contains(name) {
                guard i + 1 < arguments.count else { throw Self.usage("--\(name) needs a value") }
                guard values[name] == nil else { throw Self.usage("--\(name) given twice") }
                values[name] = arguments[i + 1]
                i += 2
            } else {
                throw Self.usage("unknown option --\(name)")
            }
        }
        guard count.contains(positionals.count) else { throw Self.usage(usage) }
    }

    static func usage(_ text: String) -> ClientError { ClientError(kind: .usage, description: text) }

    func string(_ name: String) -> String? { values[name] }
    func flag(_ name: String) -> Bool { switches.contains(name) }

    /// The value of `--name` converted, nil when absent; a value that does not convert is an error
    /// saying what the flag takes.
    func parse<T>(_ name: String, as kind: String, _ convert: (String) -> T?) throws -> T? {
        guard let text = values[name] else { return nil }
        guard let value = convert(text) else { throw Self.usage("--\(name) must be \(kind), got '\(text)'") }
        return value
    }

    /// `--name A:B` as [A, B].
    func range(_ name: String) throws -> [Int]? {
        try parse(name, as: "A:B (two whole numbers)") { text in
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
            return [a, b]
        }
    }

    /// `--name N` as a whole number in `bounds`.
    func integer(_ name: String, in bounds: ClosedRange<Int>) throws -> Int? {
        try parse(name, as: "a whole number in \(bounds.lowerBound)…\(bounds.upperBound)") { Int($0).flatMap { bounds.contains($0) ? $0 : nil } }
    }

    /// `--name X` as a finite number.
    func number(_ name: String) throws -> Double? {
        try parse(name, as: "a number") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
    }
}
