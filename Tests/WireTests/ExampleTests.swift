import Foundation
import Testing
import Wire

/// protocol/examples: every file decodes as a JSON-RPC message and its params or result as the
/// method's type; every method and notification has examples.
@Suite struct ExampleTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("protocol/examples")

    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
    }

    func message(_ name: String) throws -> RPCMessage {
        try RPCMessage.decode(try #require(FileManager.default.contents(atPath: Self.folder.appendingPathComponent(name).path)))
    }

    @Test func everyMethodAndNotificationHasExamples() {
        let names = Set(Self.names)
        for method in RPCMethod.allCases {
            #expect(names.contains("\(method.rawValue).request.json"), "no request example for \(method.rawValue)")
            #expect(names.contains("\(method.rawValue).response.json"), "no response example for \(method.rawValue)")
        }
        for notification in RPCNotificationName.allCases {
            #expect(names.contains("\(notification.rawValue).notification.json"))
        }
    }

    @Test(arguments: ExampleTests.names)
    func decodes(name: String) throws {
        let decoded = try message(name)
        let stem = String(name.dropLast(".json".count))
        if stem.hasPrefix("error.") {
            guard case let .error(_, error) = decoded else { Issue.record("\(name) is not an error"); return }
            #expect(error.reason == String(stem.dropFirst("error.".count)))
            #expect((-32768...(-32000)).contains(error.code))
            return
        }
        let kind = stem.split(separator: ".").last.map(String.init) ?? ""
        let method = String(stem.dropLast(kind.count + 1))
        switch (decoded, kind) {
        case let (.request(_, name, params), "request"):
            #expect(name == method)
            try decodeParams(method, params ?? .object([:]))
        case let (.response(_, result), "response"):
            try decodeResult(method, result)
        case let (.notification(name, params), "notification"):
            #expect(name == method)
            try decodeNotification(method, try #require(params))
        default:
            Issue.record("\(name): a \(kind) file holds \(decoded)")
        }
    }

    func decodeParams(_ method: String, _ params: JSONValue) throws {
        try #require(RPCMethod(rawValue: method), "unknown method \(method)").validateParams(params)
    }

    func decodeResult(_ method: String, _ result: JSONValue) throws {
        try #require(RPCMethod(rawValue: method), "unknown method \(method)").validateResult(result)
    }

    func decodeNotification(_ name: String, _ params: JSONValue) throws {
        switch RPCNotificationName(rawValue: name) {
        case .progress: _ = try params.decode(ProgressNotification.self)
        case .state: _ = try params.decode(StateNotification.self)
        case .heartbeat: _ = try params.decode(Heartbeat.self)
        case .preview: _ = try params.decode(JobPreview.self)
        case nil: Issue.record("unknown notification \(name)")
        }
    }

    /// The error examples are what WireError produces (code, reason and data).
    @Test func errorExamplesMatchWireError() throws {
        let cases: [(String, WireError)] = [
            ("error.queue_full.json", .queueFull(limit: 100)), ("error.shutting_down.json", .shuttingDown),
            ("error.frame_too_large.json", .frameTooLarge(length: 40_000_000, maximum: 33_554_432)),
            ("error.unsupported_protocol.json", .unsupportedProtocol(requested: [2], supported: 1...1)),
            ("error.job_not_found.json", .jobNotFound("j-0000")),
        ]
        for (file, error) in cases {
            guard case let .error(_, object) = try message(file) else { Issue.record("\(file) is not an error"); continue }
            #expect(object == error.object, "\(file)")
        }
    }

    /// The rule for absent values (protocol/README.md): every field the daemon sends is present,
    /// `null` when it does not apply. Each response and notification example is exactly what the
    /// types encode once decoded, so an example that omits a field, or a type that omits one,
    /// fails here.
    @Test(arguments: ExampleTests.names.filter { $0.hasSuffix(".response.json") || $0.hasSuffix(".notification.json") })
    func examplesShowEveryField(name: String) throws {
        let stem = String(name.dropLast(".json".count))
        let kind = stem.split(separator: ".").last.map(String.init) ?? ""
        let method = String(stem.dropLast(kind.count + 1))
        let (value, reencoded): (JSONValue, JSONValue)
        switch try message(name) {
        case let .response(_, result):
            value = result
            reencoded = try #require(RPCMethod(rawValue: method)).canonicalResult(result)
        case let .notification(_, params?):
            value = params
            switch RPCNotificationName(rawValue: method) {
            case .progress: reencoded = try JSONValue(encoding: try params.decode(ProgressNotification.self))
            case .state: reencoded = try JSONValue(encoding: try params.decode(StateNotification.self))
            case .heartbeat: reencoded = try JSONValue(encoding: try params.decode(Heartbeat.self))
            case .preview: reencoded = try JSONValue(encoding: try params.decode(JobPreview.self))
            case nil: Issue.record("unknown notification \(method)"); return
            }
        default:
            Issue.record("\(name) is neither a response nor a notification with params"); return
        }
        #expect(value == reencoded, "\(name)")
    }
}
