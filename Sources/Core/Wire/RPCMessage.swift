import Foundation

/// A JSON-RPC 2.0 id: a number or a string (never fractional; null only in error replies to
/// messages whose id could not be read).
public enum RPCID: Codable, Hashable, Sendable {
    case number(Int)
    case string(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .number(n) } else { self = .string(try c.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .number(n): try c.encode(n)
        case let .string(s): try c.encode(s)
        }
    }
}

/// The error object of a JSON-RPC error response. Application errors carry a stable `reason`
/// string in `data` (protocol/README.md lists them).
public struct RPCErrorObject: Codable, Equatable, Sendable, Error {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        (self.code, self.message, self.data) = (code, message, data)
    }

    /// The stable reason of an application error, if any.
    public var reason: String? {
        if case let .object(fields)? = data, case let .string(reason)? = fields["reason"] { return reason }
        return nil
    }
}

/// One JSON-RPC 2.0 message: a request (has id and method), a notification (method, no id), a
/// response (id and result) or an error (id, possibly null, and error).
public enum RPCMessage: Equatable, Sendable {
    case request(id: RPCID, method: String, params: JSONValue?)
    case notification(method: String, params: JSONValue?)
    case response(id: RPCID, result: JSONValue)
    case error(id: RPCID?, error: RPCErrorObject)

    /// Parses one frame's payload. Malformed input throws the JSON-RPC error to send back: parse
    /// error (−32700) for invalid UTF-8 or JSON, invalid request (−32600) for JSON that is not a
    /// JSON-RPC 2.0 message; `id` is whatever could be read.
    public static func decode(_ payload: Data) throws -> RPCMessage {
        guard String(data: payload, encoding: .utf8) != nil else {
            throw RPCFailure(id: nil, error: WireError.parseError("the frame is not valid UTF-8").object)
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: payload)
        } catch {
            throw RPCFailure(id: nil, error: WireError.parseError("the frame is not valid JSON").object)
        }
        guard case let .object(fields) = value else {
            throw RPCFailure(id: nil, error: WireError.invalidRequest("a message must be a JSON object").object)
        }
        let id: RPCID?
        switch fields["id"] {
        case nil, .null?: id = nil
        case let .integer(n)?: id = .number(n)
        case let .string(s)?: id = .string(s)
        default: throw RPCFailure(id: nil, error: WireError.invalidRequest("id must be an integer or a string").object)
        }
        guard fields["jsonrpc"] == .string("2.0") else {
            throw RPCFailure(id: id, error: WireError.invalidRequest("jsonrpc must be \"2.0\"").object)
        }
        let params = fields["params"]
        if let params, !params.isStructured {
            throw RPCFailure(id: id, error: WireError.invalidRequest("params must be an object or an array").object)
        }
        if let method = fields["method"] {
            guard case let .string(name) = method, !name.isEmpty else {
                throw RPCFailure(id: id, error: WireError.invalidRequest("method must be a non-empty string").object)
            }
            if let id { return .request(id: id, method: name, params: params) }
            return .notification(method: name, params: params)
        }
        if let result = fields["result"], let id { return .response(id: id, result: result) }
        if let errorValue = fields["error"], let error = try? errorValue.decode(RPCErrorObject.self) { return .error(id: id, error: error) }
        throw RPCFailure(id: id, error: WireError.invalidRequest("neither a request, a notification nor a response").object)
    }

    /// The message as a frame payload (keys sorted, so equal messages give equal bytes).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(Envelope(message: self))
    }

    /// The JSON-RPC 2.0 object of a message; an error reply to an unreadable id says "id": null.
    private struct Envelope: Encodable {
        let message: RPCMessage
        enum Keys: String, CodingKey { case jsonrpc, id, method, params, result, error }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode("2.0", forKey: .jsonrpc)
            switch message {
            case let .request(id, method, params):
                try c.encode(id, forKey: .id); try c.encode(method, forKey: .method); try c.encodeIfPresent(params, forKey: .params)
            case let .notification(method, params):
                try c.encode(method, forKey: .method); try c.encodeIfPresent(params, forKey: .params)
            case let .response(id, result):
                try c.encode(id, forKey: .id); try c.encode(result, forKey: .result)
            case let .error(id, error):
                if let id { try c.encode(id, forKey: .id) } else { try c.encodeNil(forKey: .id) }
                try c.encode(error, forKey: .error)
            }
        }
    }
}

/// A message that could not be accepted, with the error reply to send.
public struct RPCFailure: Error, Equatable {
    public let id: RPCID?
    public let error: RPCErrorObject

    public init(id: RPCID?, error: RPCErrorObject) { (self.id, self.error) = (id, error) }
}

extension JSONValue {
    var isStructured: Bool {
        switch self {
        case .object, .array: return true
        default: return false
        }
    }
}
