import Foundation

/// Decodes a `JSONValue` straight into a `Decodable` type, without encoding it back to bytes.
/// Its errors carry the coding path and say what did not fit ("seed: -1 does not fit UInt64");
/// Foundation's JSONDecoder reports a number out of a field's range as "The given data was not
/// valid JSON", with no path. It also spares a 32 MiB submit a second pass over its base64.
struct JSONValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(fields) = value else { throw Self.mismatch([String: JSONValue].self, value, codingPath) }
        return KeyedDecodingContainer(Keyed<Key>(fields: fields, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case let .array(items) = value else { throw Self.mismatch([JSONValue].self, value, codingPath) }
        return Unkeyed(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { Single(value: value, codingPath: codingPath) }

    /// One value as `T`: scalars directly, anything else through its own `init(from:)`.
    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, at path: [CodingKey]) throws -> T {
        let scalar: Any
        switch type {
        case is Bool.Type:
            guard case let .bool(b) = value else { throw mismatch(type, value, path) }
            scalar = b
        case is String.Type:
            guard case let .string(s) = value else { throw mismatch(type, value, path) }
            scalar = s
        case is Double.Type: scalar = try number(value, path)
        case is Float.Type: scalar = Float(try number(value, path))
        case let integer as any FixedWidthInteger.Type: scalar = try Self.integer(integer, value, path)
        default: return try T(from: JSONValueDecoder(value: value, codingPath: path))
        }
        // Always succeeds: `scalar` was made as T's own type above.
        guard let result = scalar as? T else { throw mismatch(type, value, path) }
        return result
    }

    private static func number(_ value: JSONValue, _ path: [CodingKey]) throws -> Double {
        switch value {
        case let .integer(n): return Double(n)
        case let .number(d): return d
        default: throw mismatch(Double.self, value, path)
        }
    }

    private static func integer<I: FixedWidthInteger>(_ type: I.Type, _ value: JSONValue, _ path: [CodingKey]) throws -> I {
        let exact: I?
        switch value {
        case let .integer(n): exact = I(exactly: n)
        case let .number(d): exact = d.isFinite ? I(exactly: d) : nil
        default: throw mismatch(type, value, path)
        }
        guard let exact else {
            throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "\(value.brief) is not a whole number in \(I.min)…\(I.max)"))
        }
        return exact
    }

    static func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: [CodingKey]) -> DecodingError {
        .typeMismatch(type, .init(codingPath: path, debugDescription: "found \(value.brief)"))
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let fields: [String: JSONValue]
        let codingPath: [CodingKey]
        var allKeys: [Key] { fields.keys.compactMap { Key(stringValue: $0) } }
        func contains(_ key: Key) -> Bool { fields[key.stringValue] != nil }

        private func value(_ key: Key) throws -> JSONValue {
            guard let value = fields[key.stringValue] else {
                throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
            }
            return value
        }

        func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let value = try value(key)
            if value == .null { throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [key], debugDescription: "null")) }
            return try JSONValueDecoder.decode(type, from: value, at: codingPath + [key])
        }
        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            try JSONValueDecoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
            try JSONValueDecoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
        }
        func superDecoder() throws -> Decoder { JSONValueDecoder(value: .object(fields), codingPath: codingPath) }
        func superDecoder(forKey key: Key) throws -> Decoder { JSONValueDecoder(value: try value(key), codingPath: codingPath + [key]) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let items: [JSONValue]
        let codingPath: [CodingKey]
        var currentIndex = 0
        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        init(items: [JSONValue], codingPath: [CodingKey]) { (self.items, self.codingPath) = (items, codingPath) }

        private var key: CodingKey { IndexKey(index: currentIndex) }

        private mutating func next<T>(_ type: T.Type) throws -> JSONValue {
            guard !isAtEnd else { throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [key], debugDescription: "the array ended")) }
            defer { currentIndex += 1 }
            return items[currentIndex]
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, items[currentIndex] == .null else { return false }
            currentIndex += 1
            return true
        }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let path = codingPath + [key]
            return try JSONValueDecoder.decode(type, from: try next(type), at: path)
        }
        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
            let path = codingPath + [key]
            return try JSONValueDecoder(value: try next(type), codingPath: path).container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
            let path = codingPath + [key]
            return try JSONValueDecoder(value: try next([JSONValue].self), codingPath: path).unkeyedContainer()
        }
        mutating func superDecoder() throws -> Decoder {
            let path = codingPath + [key]
            return JSONValueDecoder(value: try next(JSONValue.self), codingPath: path)
        }
    }

    struct Single: SingleValueDecodingContainer {
        let value: JSONValue
        let codingPath: [CodingKey]
        func decodeNil() -> Bool { value == .null }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONValueDecoder.decode(type, from: value, at: codingPath) }
    }

    struct IndexKey: CodingKey {
        let index: Int
        init(index: Int) { self.index = index }
        init?(stringValue: String) { nil }
        init?(intValue: Int) { index = intValue }
        var stringValue: String { "[\(index)]" }
        var intValue: Int? { index }
    }
}

extension JSONValue {
    /// A short rendering for error messages (never a whole 32 MiB string).
    var brief: String {
        switch self {
        case let .integer(n): return "\(n)"
        case let .number(d): return "\(d)"
        case let .bool(b): return "\(b)"
        case let .string(s): return s.count > 40 ? "a string of \(s.count) characters" : "\"\(s)\""
        case .null: return "null"
        case let .array(a): return "an array of \(a.count)"
        case .object: return "an object"
        }
    }
}
