import Core
import Foundation
import Logging
import Testing
@testable import Service
import Wire

/// Sizes, drawn masks and previews through the RPC methods, in-process with the tiny model
/// (native 128×128, sides in steps of 64).
@Suite(.serialized) struct ImageOptionTests {
    let scratch: Scratch
    let store: any JobStore
    let events = EventHub()
    let service: RPCService
    let worker: Worker

    init() throws {
        scratch = try Scratch()
        store = try scratch.store()
        service = RPCService(store: store, events: events, limits: ServiceLimits(), resultsDirectory: scratch.path + "/results",
                             loading: ModelStatus(state: "loading", path: Fixtures.model, identity: nil, loadSeconds: nil, error: nil))
        let model = try StableDiffusionModel.load(from: Fixtures.model)
        worker = Worker(store: store, events: events, model: model, schedule: try NoiseSchedule(config: try NoiseSchedule.Config(near: Fixtures.model)),
                        resultsDirectory: scratch.path + "/results", cache: nil, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        service.attach(ServiceBackend(worker: worker, model: ModelStatus(state: "ready", path: Fixtures.model, identity: model.identity,
                                                                         loadSeconds: 0.1, error: nil), reload: {}, folders: nil))
    }

    /// A width×height PNG, white where `white(x, y)`, else black (a mask) or a dark gradient.
    static func png(_ width: Int, _ height: Int, mask: Bool = true, white: (Int, Int) -> Bool) throws -> Data {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let v: [UInt8] = white(x, y) ? [255, 255, 255] : (mask ? [0, 0, 0] : [UInt8(x % 100), UInt8(y % 100), 40])
                for c in 0..<3 { pixels[(y * width + x) * 3 + c] = v[c] }
            }
        }
        return try PNGLibrary.encode(RGBImage(width: width, height: height, pixels: pixels))
    }

    func submit(_ connection: RecordingConnection, structure: Data = Fixtures.structure, options: TransferParameters,
                structureMask: Data? = nil, appearanceMask: Data? = nil) -> Result<JSONValue, RPCErrorObject> {
        let params = SubmitParams(structure: structure.base64EncodedString(), appearance: Fixtures.appearance.base64EncodedString(), options: options,
                                  structureMask: structureMask?.base64EncodedString(), appearanceMask: appearanceMask?.base64EncodedString())
        return connection.call("job.submit", (try? JSONValue(encoding: params)) ?? .null)
    }

    func refusal(_ result: Result<JSONValue, RPCErrorObject>) -> (reason: String, message: String)? {
        guard case let .failure(error) = result, case let .string(reason)? = error.data?["reason"] else { return nil }
        return (reason, error.message)
    }

    /// Masks and sizes that cannot be used are the submitter's error, at once, with the reason.
    @Test func refusesUnusableMasksAndSizes() throws {
        let connection = RecordingConnection(service)
        let (w, h) = (200, 160)  // the demo images' size
        let empty = try Self.png(w, h) { _, _ in false }, full = try Self.png(w, h) { _, _ in true }
        let square = try Self.png(100, 100) { x, _ in x < 50 }
        let cases: [(String, Result<JSONValue, RPCErrorObject>, String)] = [
            ("empty mask", submit(connection, options: Fixtures.quick, structureMask: empty), "structure-mask"),
            ("full mask", submit(connection, options: Fixtures.quick, appearanceMask: full), "appearance-mask"),
            ("mask of another aspect", submit(connection, options: Fixtures.quick, structureMask: square), "aspect"),
            ("size off the step", submit(connection, options: { var p = Fixtures.quick; p.size = "100x100"; return p }()), "multiples of 64"),
            ("size beyond max pixels", submit(connection, options: { var p = Fixtures.quick; p.size = "4096x4096"; return p }()), "working memory"),
            ("size that is not one", submit(connection, options: { var p = Fixtures.quick; p.size = "big"; return p }()), "WxH"),
            ("mask without masked AdaIN", submit(connection, options: { var p = Fixtures.quick; p.maskedAdain = false; return p }(),
                                                 structureMask: try Self.png(w, h) { x, _ in x < 100 }), "masked AdaIN"),
        ]
        for (name, result, words) in cases {
            guard let refused = refusal(result) else { Issue.record("\(name) was accepted"); continue }
            #expect(refused.reason == "invalid_options", "\(name): \(refused)")
            #expect(refused.message.contains(words), "\(name): \(refused.message)")
        }
        let garbled = SubmitParams(structure: Fixtures.structure.base64EncodedString(), appearance: Fixtures.appearance.base64EncodedString(),
                                   options: Fixtures.quick, structureMask: "not base64!")
        #expect(refusal(connection.call("job.submit", try JSONValue(encoding: garbled)))?.reason == "invalid_params")
        #expect(try store.list(states: nil, limit: 10).jobs.isEmpty, "nothing refused was queued")
    }

    /// A portrait structure with `size: auto` and a drawn mask, a landscape appearance: the job
    /// runs at two sizes, the output has the structure's, the sidecar says where each image was cut
    /// and which mask was given, and a watch with previews gets one every `preview_every` steps.
    @Test func runsAtTheSizeAskedWithMasksAndPreviews() throws {
        let connection = RecordingConnection(service)
        // 120×240 at about 128² pixels: 64×192 (latent 8×24); the 200×160 appearance: 128×128.
        let portrait = try Self.png(120, 240, mask: false) { x, y in (x - 60) * (x - 60) + (y - 140) * (y - 140) < 40 * 40 }
        let mask = try Self.png(60, 120) { x, y in (x - 30) * (x - 30) + (y - 70) * (y - 70) < 20 * 20 }
        var options = Fixtures.quick
        options.size = "auto"
        let job = try refusalFree(submit(connection, structure: portrait, options: options, structureMask: mask)).decode(SubmitResult.self).job
        _ = try connection.value("job.watch", try JSONValue(encoding: WatchParams(job: job.id, previews: true)), as: JobInfo.self)
        let quiet = RecordingConnection(service)
        _ = try quiet.value("job.watch", ["job": .string(job.id)], as: JobInfo.self)
        worker.start()
        defer { worker.shutdown() }
        let deadline = Date() + 120
        while connection.session.isWatching && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }

        let states = connection.notifications.filter { $0.method == "job.state" }.compactMap { try? $0.params.decode(StateNotification.self).job }
        #expect(states.last?.state == .succeeded, "\(states.last?.error?.message ?? "")")
        // 14 generation steps (T 20, K 6): every 2nd by default, the last included.
        let previews = connection.notifications.filter { $0.method == "job.preview" }.compactMap { try? $0.params.decode(JobPreview.self) }
        #expect(previews.map(\.step) == [2, 4, 6, 8, 10, 12, 14] && previews.allSatisfy { $0.total == 14 && $0.job == job.id })
        let firstPreview = try #require(previews.first)
        let first = try ImageDecoder.decode(try #require(Data(base64Encoded: firstPreview.png)))
        #expect(first.width == 8 && first.height == 24, "a linear preview is the latent's size")
        #expect(!quiet.notifications.contains { $0.method == "job.preview" }, "previews only to watches that asked")
        #expect(try connection.value("job.preview", ["job": .string(job.id)], as: JobPreviewResult.self).preview == nil, "an ended job has no preview")

        let result = try connection.value("job.result", ["job": .string(job.id)], as: JobResult.self)
        let image = try ImageDecoder.decode(try #require(Data(base64Encoded: result.png)))
        #expect(image.width == 64 && image.height == 192, "the output has the structure's size")
        let sidecar = try JSONDecoder().decode(JSONValue.self, from: try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/results/\(job.id).json")))
        #expect(sidecar["geometry"]?["structure"]?["size"] == "64x192")
        #expect(sidecar["geometry"]?["appearance"]?["size"] == "128x128")
        #expect(sidecar["geometry"]?["appearance"]?["crop"] == [20, 0, 160, 160])
        #expect(sidecar["masks"]?["structure"]?["source"] == "given")
        if case let .string(hash)? = sidecar["masks"]?["structure"]?["sha256"] { #expect(hash.count == 64) } else { Issue.record("no mask hash") }
        #expect(sidecar["masks"]?["appearance"]?["source"] == "self-segmentation")
        #expect(sidecar["options"]?["size"] == "auto" && sidecar["options"]?["previewEvery"] == 2)
    }

    func refusalFree(_ result: Result<JSONValue, RPCErrorObject>) throws -> JSONValue {
        if case let .failure(error) = result { Issue.record("refused: \(error.message)") }
        return try result.get()
    }
}
