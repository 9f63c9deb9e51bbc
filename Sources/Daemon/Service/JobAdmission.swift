import Core
import Foundation
import Wire

/// The one gate a job passes before it is stored, for RPC submits and hot-folder drops alike:
/// options checked against the loaded model and its schedule, images decoded whole. Whatever it
/// lets through can run; whatever it refuses is the user's error, answered at once with its
/// reason (`invalid_options`, `invalid_image`), never later as a failed job or a crash.
package enum JobAdmission {
    /// What options are checked against once the model is loaded.
    package struct Engine {
        package let model: StableDiffusionModel
        package let schedule: NoiseSchedule

        package init(model: StableDiffusionModel, schedule: NoiseSchedule) { (self.model, self.schedule) = (model, schedule) }
    }

    /// The engine options of `parameters`, validated; against `engine` when there is one (jobs
    /// queued while the model loads are checked by the worker before they run).
    package static func options(_ parameters: TransferParameters, engine: Engine?) throws -> TransferOptions {
        do {
            let options = try JobConversion.options(parameters)
            if let engine { try options.validate(for: engine.model, schedule: engine.schedule) }
            return options
        } catch let error as TransferError {
            throw WireError.invalidOptions(error.description)
        }
    }

    /// Bytes of one image file, however it arrives (a larger frame size does not raise it).
    static let maximumFileBytes = 64 << 20

    /// The whole file decoded (a truncated PNG, a bad CRC, a JPEG header alone are refused here).
    @discardableResult
    static func image(_ data: Data, role: String) throws -> RGBImage {
        guard !data.isEmpty else { throw WireError.invalidImage("\(role): the file is empty") }
        guard data.count <= maximumFileBytes else {
            throw WireError.invalidImage("\(role): \(data.count) bytes, more than the \(maximumFileBytes) accepted")
        }
        decodeSlot.wait()
        defer { decodeSlot.signal() }
        do { return try ImageDecoder.decode(data) } catch { throw WireError.invalidImage("\(role): \(error)") }
    }

    /// One full decode at a time, for every connection, the hot folders and the worker: a 200 KB PNG
    /// may declare 67 million pixels (~470 MB decoded), and eight such submits at once took the
    /// daemon to 3.7 GB; memory must not grow with the number of clients.
    private static let decodeSlot = DispatchSemaphore(value: 1)
}
