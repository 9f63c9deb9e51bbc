import Testing
import Wire

@Suite struct WireTests {
    @Test func protocolConstants() {
        #expect(WireProtocol.version == 1)
        #expect(WireProtocol.defaultMaximumFrameSize == 32 * 1024 * 1024)
    }

    @Test func reasonsAreUniqueAndCodesInRange() {
        let errors: [WireError] = [.parseError(""), .invalidRequest(""), .methodNotFound(""), .invalidParams(""), .internalError(""),
                                   .queueFull(limit: 1), .jobNotFound(""), .invalidImage(""), .permissionDenied(""), .shuttingDown,
                                   .modelNotReady(""), .frameTooLarge(length: 2, maximum: 1), .unsupportedProtocol(requested: [], supported: 1...1),
                                   .invalidOptions(""), .invalidState("")]
        #expect(Set(errors.map(\.reason)).count == errors.count)
        #expect(Set(errors.map(\.code)).count == errors.count)
        for error in errors where !(-32768 ... -32600).contains(error.code) && error.code != -32700 {
            #expect((-32099 ... -32000).contains(error.code))
        }
    }
}
