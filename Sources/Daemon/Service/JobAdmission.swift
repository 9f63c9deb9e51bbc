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
        /// Pixels of one model input at most (`max_pixels`).
        package var maxPixels: Int

        package init(model: StableDiffusionModel, schedule: NoiseSchedule, maxPixels: Int = ImageGeometry.defaultMaxPixels) {
            (self.model, self.schedule, self.maxPixels) = (model, schedule, maxPixels)
        }
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

    /// A job's files and options checked together, as a submit or a drop brings them: the options,
    /// every file decoded whole, and, once the model is loaded, the sizes the `size` option makes
    /// and the masks through their images' geometry (an empty, full or mis-shaped mask is the
    /// user's error now). `images`: the model inputs too (the worker's call).
    @discardableResult
    package static func admit(_ inputs: JobInputs, parameters: TransferParameters, engine: Engine?,
                              images: Bool = false) throws -> (options: TransferOptions, prepared: TransferInputs?) {
        let structure = try image(inputs.structure, role: "structure")
        let appearance = try image(inputs.appearance, role: "appearance")
        let structureMask = try inputs.structureMask.map { try image($0, role: "structure mask") }
        let appearanceMask = try inputs.appearanceMask.map { try image($0, role: "appearance mask") }
        let options = try self.options(parameters, engine: engine)
        guard let engine else { return (options, nil) }
        do {
            let prepared = try TransferInputs.prepare(structure: structure, appearance: appearance, structureMask: structureMask,
                                                      appearanceMask: appearanceMask, options: options, model: engine.model,
                                                      maxPixels: engine.maxPixels, images: images)
            return (options, prepared)
        } catch let error as TransferError {
            if case let .invalidImage(detail) = error { throw WireError.invalidImage(detail) }
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
