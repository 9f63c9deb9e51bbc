/// A small command-line reader: `--name value` options, `--flag` switches, clear errors.
package struct Arguments {
    package struct UsageError: Error, CustomStringConvertible {
        package let description: String
        package init(description: String) { self.description = description }
    }

    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// `valued`: options that take a value; `switches`: options that do not.
    package init(_ arguments: [String], valued: Set<String>, switches: Set<String>) throws {
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            guard argument.hasPrefix("--") else { throw UsageError(description: "unexpected argument '\(argument)'") }
            let name = String(argument.dropFirst(2))
            if switches.contains(name) {
                flags.insert(name)
                i += 1
            } else if valued.contains(name) {
                guard i + 1 < arguments.count else { throw UsageError(description: "--\(name) needs a value") }
                guard values[name] == nil else { throw UsageError(description: "--\(name) given twice") }
                values[name] = arguments[i + 1]
                i += 2
            } else {
                throw UsageError(description: "unknown option --\(name)")
            }
        }
    }

    package func string(_ name: String) -> String? { values[name] }

    package func required(_ name: String) throws -> String {
        guard let value = values[name] else { throw UsageError(description: "--\(name) is required") }
        return value
    }

    package func flag(_ name: String) -> Bool { flags.contains(name) }

    package func parse<T>(_ name: String, as kind: String, _ convert: (String) -> T?) throws -> T? {
        guard let text = values[name] else { return nil }
        guard let value = convert(text) else { throw UsageError(description: "--\(name) must be \(kind), got '\(text)'") }
        return value
    }
}
