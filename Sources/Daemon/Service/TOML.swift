import Foundation
import TOMLKit
import Wire

/// The configuration file's TOML (TOMLKit, on toml++), read into the service's one `JSONValue`, so
/// that a folder's transfer options decode as `TransferParameters` like every other options
/// (through `TOML.camelCase`, the snake_case key strategy). Dates and times are not settings: a
/// value of that kind is an error naming its key.
enum TOML {
    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    static func parse(_ text: String) throws -> [String: JSONValue] {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw ParseError(description: "line \(error.source.begin.line): \(error.description)")
        }
        guard case let .object(root) = try value(table, key: "") else { return [:] }
        return root
    }

    private static func value(_ value: TOMLValueConvertible, key: String) throws -> JSONValue {
        switch value.type {
        case .table:
            guard let table = value.table else { break }
            var members: [String: JSONValue] = [:]
            for name in table.keys {
                guard let member = table[name] else { continue }
                members[name] = try self.value(member, key: name)
            }
            return .object(members)
        case .array:
            guard let array = value.array else { break }
            return .array(try array.map { try self.value($0, key: key) })
        case .string: if let string = value.string { return .string(string) }
        case .int: if let int = value.int { return .integer(int) }
        case .double: if let double = value.double { return .number(double) }
        case .bool: if let bool = value.bool { return .bool(bool) }
        case .date, .time, .dateTime: throw ParseError(description: "\(key): dates and times are not settings")
        }
        throw ParseError(description: "\(key): a value TOMLKit could not read")
    }

    /// `cross_attn_range_0` → `crossAttnRange0`: a file's key as the wire's field.
    static func camelCase(_ key: String) -> String {
        let parts = key.split(separator: "_", omittingEmptySubsequences: false)
        return parts.enumerated().map { $0 == 0 ? String($1) : $1.prefix(1).uppercased() + $1.dropFirst() }.joined()
    }

    /// `crossAttnRange0` → `cross_attn_range_0`: a field as the file spells it.
    static func snakeCase(_ field: String) -> String {
        var result = "", previous: Character?
        for character in field {
            // A word starts at a capital, a number at its first digit.
            if character.isUppercase || (character.isNumber && previous.map { !$0.isNumber } ?? false) { result += "_" }
            result += character.lowercased()
            previous = character
        }
        return result
    }
}
