import Testing
import Wire

@Suite struct WireTests {
    @Test func protocolConstants() {
        #expect(WireProtocol.version >= 1)
        #expect(WireProtocol.defaultMaximumFrameSize == 32 * 1024 * 1024)
    }
}
