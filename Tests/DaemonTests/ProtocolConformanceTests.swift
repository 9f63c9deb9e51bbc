import Foundation
import Testing
import Wire

/// Every request example of protocol/README.md, sent to a real daemon: the reply decodes as the
/// method's documented result, or is an error whose reason the spec lists.
@Suite(.serialized) struct ProtocolConformanceTests {
    static let examples = DaemonHarness.repository.appendingPathComponent("protocol/examples")
    static let reasons: Set<String> = ["parse_error", "invalid_request", "method_not_found", "invalid_params", "internal_error", "queue_full",
                                       "job_not_found", "invalid_image", "permission_denied", "shutting_down", "model_not_ready",
                                       "frame_too_large", "unsupported_protocol", "invalid_options", "invalid_state", "overloaded"]

    @Test func everyRequestExampleGetsADocumentedReply() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let raw = try MalformedFrameTests.Raw(daemon.socket)
        raw.send(MalformedFrameTests.hello)
        _ = raw.receive()
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.examples.path).filter { $0.hasSuffix(".request.json") }.sorted()
        #expect(names.count == RPCMethod.allCases.count)
        for name in names {
            let data = try #require(FileManager.default.contents(atPath: Self.examples.appendingPathComponent(name).path))
            raw.send(FrameEncoder.frame(data))
            let method = String(name.dropLast(".request.json".count))
            switch raw.receive() {
            case let .response(_, result)?:
                try #require(RPCMethod(rawValue: method), "\(name): unknown method").validateResult(result)
            case let .error(_, error)?:
                #expect(Self.reasons.contains(error.reason ?? ""), "\(name): \(error)")
            default:
                Issue.record("\(name): no reply")
            }
        }
    }
}
