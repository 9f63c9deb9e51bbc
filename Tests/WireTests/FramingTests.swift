import Foundation
import Testing
import Wire

/// The frame decoder under every chunk size, against an oracle (the frames as sent).
@Suite struct FramingTests {
    let payloads: [Data] = [Data("{\"a\":1}".utf8), Data(repeating: 0x41, count: 300), Data("x".utf8), Data(repeating: 7, count: 1025)]

    var stream: Data { payloads.reduce(Data()) { $0 + FrameEncoder.frame($1) } }

    @Test func everyChunkSize() throws {
        let bytes = stream
        for chunk in 1...bytes.count {
            var decoder = FrameDecoder(maximumFrameSize: 4096)
            var frames: [Data] = []
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + chunk)
                frames += try decoder.feed(bytes.subdata(in: offset..<end))
                offset = end
            }
            #expect(frames == payloads, "chunk size \(chunk)")
            #expect(decoder.bufferedByteCount == 0)
        }
    }

    @Test func lengthIsBigEndian() {
        #expect(Array(FrameEncoder.frame(Data(repeating: 0, count: 258)).prefix(4)) == [0, 0, 1, 2])
    }

    /// An oversize frame is refused from its 4-byte prefix alone: nothing of it is buffered.
    @Test func oversizeRefusedBeforeBuffering() {
        var decoder = FrameDecoder(maximumFrameSize: 1000)
        #expect(throws: FramingError.frameTooLarge(length: 1001, maximum: 1000)) { try decoder.feed(Data([0, 0, 0x03, 0xE9])) }
        #expect(decoder.bufferedByteCount == 0)
        // The stream is unusable afterwards.
        #expect(throws: FramingError.frameTooLarge(length: 1001, maximum: 1000)) { try decoder.feed(Data("{}".utf8)) }
    }

    @Test func zeroLengthFrame() {
        var decoder = FrameDecoder()
        #expect(throws: FramingError.emptyFrame) { try decoder.feed(Data([0, 0, 0, 0])) }
    }

    @Test func truncatedFrameWaits() throws {
        var decoder = FrameDecoder()
        let frame = FrameEncoder.frame(Data("{\"jsonrpc\":\"2.0\"}".utf8))
        #expect(try decoder.feed(frame.prefix(frame.count - 1)).isEmpty)
        #expect(decoder.bufferedByteCount == frame.count - 1)
    }
}

/// JSON-RPC 2.0 parsing: each malformed message gets the error the spec names.
@Suite struct RPCMessageTests {
    func failure(_ text: String) -> RPCFailure? {
        do { _ = try RPCMessage.decode(Data(text.utf8)); return nil } catch { return error as? RPCFailure }
    }

    @Test func decodesEveryKind() throws {
        #expect(try RPCMessage.decode(Data(#"{"jsonrpc":"2.0","id":"a","method":"job.get","params":{"job":"x"}}"#.utf8))
                == .request(id: .string("a"), method: "job.get", params: .object(["job": .string("x")])))
        #expect(try RPCMessage.decode(Data(#"{"jsonrpc":"2.0","method":"daemon.heartbeat"}"#.utf8)) == .notification(method: "daemon.heartbeat", params: nil))
        #expect(try RPCMessage.decode(Data(#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#.utf8)) == .response(id: .number(3), result: .object(["ok": .bool(true)])))
    }

    @Test func malformedMessages() {
        #expect(failure("{not json")?.error.reason == "parse_error")
        #expect((try? RPCMessage.decode(Data([0xFF, 0xFE, 0x7B]))) == nil)
        #expect(failure("[1,2]")?.error.reason == "invalid_request")
        #expect(failure(#"{"id":4,"method":"x"}"#) == RPCFailure(id: .number(4), error: WireError.invalidRequest("jsonrpc must be \"2.0\"").object))
        #expect(failure(#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#)?.error.reason == "invalid_request")
        #expect(failure(#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#)?.error.reason == "invalid_request")
        #expect(failure(#"{"jsonrpc":"2.0","id":1,"method":""}"#)?.error.reason == "invalid_request")
        #expect(failure(#"{"jsonrpc":"2.0","id":1}"#)?.error.reason == "invalid_request")
    }

    @Test func encodesAndDecodesBack() throws {
        let messages: [RPCMessage] = [
            .request(id: .number(1), method: "daemon.hello", params: try JSONValue(encoding: HelloParams(protocolVersions: [1]))),
            .notification(method: "daemon.heartbeat", params: .object(["time": .string("2026-11-26T23:00:00Z")])),
            .response(id: .string("q"), result: .object(["ok": .bool(true)])),
            .error(id: nil, error: WireError.parseError("bad").object),
        ]
        for message in messages { #expect(try RPCMessage.decode(try message.encoded()) == message) }
        let text = String(decoding: try RPCMessage.error(id: nil, error: WireError.shuttingDown.object).encoded(), as: UTF8.self)
        #expect(text.contains("\"id\":null"))
    }
}
