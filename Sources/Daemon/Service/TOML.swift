/// A strict reader for the part of TOML a configuration file needs: comments, `[table]` and
/// `[[array-of-tables]]` headers, `key = value` with basic and literal strings, integers (with
/// `_`), floats, booleans and one-line arrays of those. Anything else is an error with its line,
/// never a silent misreading.
enum TOML {
    indirect enum Value: Equatable {
        case string(String), integer(Int), float(Double), bool(Bool), array([Value]), table([String: Value])
    }

    struct ParseError: Error, CustomStringConvertible {
        let line: Int
        let message: String
        var description: String { "line \(line): \(message)" }
    }

    static func parse(_ text: String) throws -> [String: Value] {
        var root: [String: Value] = [:]
        var path: [String] = []  // current table ([] = root); arrays of tables use their last element
        var arrayTables: Set<String> = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = stripComment(String(rawLine)).trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("[[") {
                guard line.hasSuffix("]]") else { throw ParseError(line: number, message: "unterminated [[table]] header") }
                let name = try key(String(line.dropFirst(2).dropLast(2)), line: number)
                var list: [Value] = []
                if case let .array(existing)? = root[name] { list = existing } else if root[name] != nil {
                    throw ParseError(line: number, message: "'\(name)' is already defined")
                }
                list.append(.table([:]))
                root[name] = .array(list)
                arrayTables.insert(name)
                path = [name]
            } else if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw ParseError(line: number, message: "unterminated [table] header") }
                let name = try key(String(line.dropFirst().dropLast()), line: number)
                guard root[name] == nil else { throw ParseError(line: number, message: "table '\(name)' defined twice") }
                root[name] = .table([:])
                path = [name]
            } else {
                guard let equals = line.firstIndex(of: "=") else { throw ParseError(line: number, message: "expected key = value") }
                let name = try key(String(line[..<equals]).trimmingCharacters(in: .whitespaces), line: number)
                var cursor = Substring(line[line.index(after: equals)...]).drop(while: { $0 == " " || $0 == "\t" })
                let value = try parseValue(&cursor, line: number)
                guard cursor.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw ParseError(line: number, message: "unexpected text after the value: \(cursor)")
                }
                try insert(value, name: name, into: &root, path: path, arrayTables: arrayTables, line: number)
            }
        }
        return root
    }

    private static func insert(_ value: Value, name: String, into root: inout [String: Value], path: [String], arrayTables: Set<String>, line: Int) throws {
        guard let table = path.first else {
            guard root[name] == nil else { throw ParseError(line: line, message: "'\(name)' defined twice") }
            root[name] = value
            return
        }
        if arrayTables.contains(table), case var .array(list)? = root[table], case var .table(last)? = list.last {
            guard last[name] == nil else { throw ParseError(line: line, message: "'\(name)' defined twice") }
            last[name] = value
            list[list.count - 1] = .table(last)
            root[table] = .array(list)
        } else if case var .table(fields)? = root[table] {
            guard fields[name] == nil else { throw ParseError(line: line, message: "'\(name)' defined twice") }
            fields[name] = value
            root[table] = .table(fields)
        }
    }

    private static func key(_ text: String, line: Int) throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
            throw ParseError(line: line, message: "invalid key '\(trimmed)' (bare keys only: letters, digits, _ and -)")
        }
        return trimmed
    }

    /// Removes a # comment that is not inside a string.
    private static func stripComment(_ line: String) -> String {
        var quote: Character?
        var escaped = false
        for (i, c) in zip(line.indices, line) {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                return String(line[..<i])
            }
        }
        return line
    }

    private static func parseValue(_ s: inout Substring, line: Int) throws -> Value {
        guard let first = s.first else { throw ParseError(line: line, message: "missing value") }
        switch first {
        case "\"":
            s.removeFirst()
            var out = ""
            while let c = s.first {
                s.removeFirst()
                if c == "\"" { return .string(out) }
                if c == "\\" {
                    guard let e = s.first else { break }
                    s.removeFirst()
                    switch e {
                    case "\"": out.append("\""); case "\\": out.append("\\"); case "n": out.append("\n"); case "t": out.append("\t")
                    default: throw ParseError(line: line, message: "unsupported escape \\\(e)")
                    }
                } else {
                    out.append(c)
                }
            }
            throw ParseError(line: line, message: "unterminated string")
        case "'":
            s.removeFirst()
            guard let end = s.firstIndex(of: "'") else { throw ParseError(line: line, message: "unterminated string") }
            let text = String(s[..<end])
            s = s[s.index(after: end)...]
            return .string(text)
        case "[":
            s.removeFirst()
            var items: [Value] = []
            while true {
                s = s.drop(while: { $0 == " " || $0 == "\t" })
                if s.first == "]" { s.removeFirst(); return .array(items) }
                items.append(try parseValue(&s, line: line))
                s = s.drop(while: { $0 == " " || $0 == "\t" })
                if s.first == "," { s.removeFirst() } else if s.first != "]" { throw ParseError(line: line, message: "expected , or ] in array") }
            }
        default:
            let token = String(s.prefix(while: { !" \t,]".contains($0) }))
            s = s.dropFirst(token.count)
            if token == "true" { return .bool(true) }
            if token == "false" { return .bool(false) }
            let digits = token.replacingOccurrences(of: "_", with: "")
            if let n = Int(digits) { return .integer(n) }
            if let x = Double(digits), digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) { return .float(x) }
            throw ParseError(line: line, message: "unsupported value '\(token)'")
        }
    }
}

import Foundation
