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

    /// Options decode strictly wherever they appear (here inside job.submit's params): a misspelt
    /// key is invalid_options naming it; every known key still decodes and round-trips.
    @Test func optionsRefuseUnknownKeys() throws {
        let typo: JSONValue = .object(["structure": .string(""), "appearance": .string(""), "options": .object(["seeds": .integer(7)])])
        #expect { try typo.decode(SubmitParams.self) } throws: { error in
            guard let wire = error as? WireError, case let .invalidOptions(message) = wire else { return false }
            return message.contains("'seeds'")
        }
        var all = TransferParameters()
        (all.domain, all.prompt, all.objectNoun, all.seed, all.timesteps, all.skip) = ("cat", "a cat", "cat", 7, 50, 12)
        (all.maskedAdain, all.swapGuidance, all.contrast) = (false, 2.5, 1.5)
        (all.crossAttnRange0, all.crossAttnRange1, all.adainRange) = ([1, 2], [3, 4], [5, 6])
        #expect(try JSONValue(encoding: all).decode(TransferParameters.self) == all)
    }
}

