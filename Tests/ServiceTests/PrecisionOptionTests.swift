import Core
import Foundation
import Testing
import Wire
@testable import Service

/// The `precision` option at the door: a job may say auto or the loaded model's precision; another
/// value is the user's error, named (the daemon holds one form of the weights).
@Suite struct PrecisionOptionTests {
    func admit(_ value: String?) throws -> TransferOptions {
        var parameters = TransferParameters()
        parameters.precision = value
        return try JobAdmission.options(parameters, engine: try HotFolderIntakeTests.engine.get())
    }

    func refusal(_ value: String) -> String? {
        do { _ = try admit(value); return nil } catch let error as WireError {
            guard case let .invalidOptions(message) = error else { return "not invalid_options: \(error)" }
            return message
        } catch { return "\(error)" }
    }

    @Test func autoAndTheModelsOwnPrecisionAreAccepted() throws {
        let model = try HotFolderIntakeTests.engine.get().model
        #expect(model.precision == .fp32)  // the tests load the tiny model as StableDiffusionModel.load's default
        #expect(try admit(nil).precision == nil)
        #expect(try admit("auto").precision == nil)
        #expect(try admit("fp32").precision == .fp32)
    }

    @Test func anotherPrecisionIsRefusedWithTheReason() {
        let message = refusal("bf16")
        #expect(message?.contains("precision") == true && message?.contains("loaded in fp32") == true, "\(message ?? "accepted")")
        let typo = refusal("fp16")
        #expect(typo?.contains("auto, fp32, bf16") == true, "\(typo ?? "accepted")")
    }

    /// The sidecar's options say what the job ran in, auto resolved.
    @Test func theSidecarNamesThePrecisionItRanIn() throws {
        let options = try admit("auto")
        #expect(JobConversion.parameters(options, ranIn: .bf16).precision == "bf16")
        #expect(JobConversion.parameters(options, ranIn: .fp32).precision == "fp32")
    }
}
