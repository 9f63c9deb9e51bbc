import Foundation

/// Any JSON value, decoded strictly (integers stay integers). Used for JSON-RPC ids, params and
/// results before they are decoded into the method's own types.
public enum JSONValue: Codable, Equatable, Sendable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case integer(Int)
    case number(Double)
    case bool(Bool)
    case null

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(Int.self) { self = .integer(v) }
        else if let v = try? c.decode(Double.self) { self = .number(v) }
        else if let v = try? c.decode(String.self) { self = .string(v) }
        else if let v = try? c.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .object(v): try c.encode(v)
        case let .array(v): try c.encode(v)
        case let .string(v): try c.encode(v)
        case let .integer(v): try c.encode(v)
        case let .number(v): try c.encode(v)
        case let .bool(v): try c.encode(v)
        case .null: try c.encodeNil()
        }
    }

    /// This value as `T` (params into a method's own type); errors name the field.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONValueDecoder.decode(T.self, from: self, at: [])
    }

    /// The JSON form of any encodable value.
    public init<T: Encodable>(encoding value: T) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }
}

/// A decoding error said the way a person who sent the JSON can act on: where, and what was
/// expected ("seed: expected a whole number 0…18446744073709551615"), never Foundation's "The
/// given data was not valid JSON" for a number that is valid JSON but out of range.
public enum DecodingProblem {
    /// The failing field's dotted path and what it should have been.
    public static func describe(_ error: Error) -> (path: [String], text: String) {
        guard let error = error as? DecodingError else { return ([], "\(error)") }
        func path(_ context: DecodingError.Context) -> [String] {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        }
        func found(_ context: DecodingError.Context) -> String { context.debugDescription.isEmpty ? "" : ", \(context.debugDescription)" }
        func place(_ keys: [String]) -> String { keys.isEmpty ? "the value" : keys.joined(separator: ".") }
        switch error {
        case let .typeMismatch(type, context), let .valueNotFound(type, context):
            return (path(context), "\(place(path(context))): expected \(expected(type))\(found(context))")
        case let .keyNotFound(key, context):
            return (path(context) + [key.stringValue], "\(place(path(context) + [key.stringValue])) is missing")
        case let .dataCorrupted(context):
            return (path(context), "\(place(path(context))): \(context.debugDescription)")
        @unknown default:
            return ([], "\(error)")
        }
    }

    static func expected(_ type: Any.Type) -> String {
        switch type {
        case is UInt64.Type: return "a whole number 0…\(UInt64.max)"
        case is Int.Type, is Int64.Type: return "a whole number \(Int.min)…\(Int.max)"
        case is Double.Type, is Float.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        default: return "\(type)"
        }
    }
}

/// Literals, so that params and expected values read as JSON does.
extension JSONValue: ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByStringLiteral,
                     ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByNilLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(Dictionary(elements, uniquingKeysWith: { $1 })) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }

    /// An object's member (nil for a missing key or a value that is not an object).
    public subscript(key: String) -> JSONValue? {
        if case let .object(members) = self { members[key] } else { nil }
    }
}
