import Core
import Foundation
import Wire

extension PrecisionChoice {
    /// The engine's precision: auto is the fastest this CPU runs.
    package var resolved: Precision {
        switch self {
        case .auto: return Precision.fastest
        case .fp32: return .fp32
        case .bf16: return .bf16
        }
    }
}

/// Between the wire's job types and the engine's.
package enum JobConversion {
    /// ISO 8601 in UTC ("2026-11-26T22:57:50Z"). A format style is a value, safe on every thread
    /// (one shared ISO8601DateFormatter, a class, was used from the event loop, the connection
    /// queues, the worker and the hot-folder queue at once).
    package static func timestamp(_ date: Date) -> String { date.formatted(.iso8601) }

    static func info(_ r: JobRecord, progress: JobProgress? = nil) -> JobInfo {
        let parameters = (try? JSONDecoder().decode(TransferParameters.self, from: Data(r.parameters.utf8))) ?? TransferParameters()
        let error = r.error.flatMap { try? JSONDecoder().decode(RPCErrorObject.self, from: Data($0.utf8)) }
        return JobInfo(id: r.id, state: r.jobState, priority: r.priority, owner: UInt32(clamping: r.owner), source: r.source,
                       folder: r.folder, attempts: r.attempts, createdAt: timestamp(r.createdAt),
                       startedAt: r.startedAt.map(timestamp), finishedAt: r.finishedAt.map(timestamp),
                       progress: progress, error: error, options: parameters)
    }

    /// Wire parameters → engine options, validated (the error names the option).
    package static func options(_ p: TransferParameters) throws -> TransferOptions {
        var o = TransferOptions()
        if let v = p.domain { o.domain = v }
        o.prompt = p.prompt
        o.objectNoun = p.objectNoun
        if let v = p.seed {
            guard v <= TransferParameters.maximumSeed else { throw TransferError.invalidOption(option: "seed", reason: "must be in 0…\(TransferParameters.maximumSeed), got \(v)") }
            o.seed = v
        }
        if let v = p.timesteps { o.timesteps = v }
        if let v = p.skip { o.skip = v }
        if let v = p.maskedAdain { o.maskedAdaIN = v }
        if let v = p.swapGuidance { o.swapGuidanceScale = Float(v) }
        if let v = p.contrast { o.contrastStrength = Float(v) }
        func range(_ pair: [Int]?, _ name: String) throws -> StepRange? {
            guard let pair else { return nil }
            guard pair.count == 2 else { throw TransferError.invalidOption(option: name, reason: "must be [start, end]") }
            return StepRange(pair[0], pair[1])
        }
        if let r = try range(p.crossAttnRange0, "cross-attn-range-0") { o.crossAttentionRange0 = r }
        if let r = try range(p.crossAttnRange1, "cross-attn-range-1") { o.crossAttentionRange1 = r }
        if let r = try range(p.adainRange, "adain-range") { o.adainRange = r }
        if let v = p.precision {
            guard let choice = PrecisionChoice(rawValue: v) else {
                throw TransferError.invalidOption(option: "precision", reason: "must be one of \(PrecisionChoice.allCases.map(\.rawValue).joined(separator: ", ")), got '\(v)'")
            }
            o.precision = choice == .auto ? nil : Precision(rawValue: choice.rawValue)
        }
        if let v = p.size {
            guard let size = ImageSize(parsing: v) else {
                throw TransferError.invalidOption(option: "size", reason: "must be WxH (e.g. 512x768), auto or native, got '\(v)'")
            }
            o.size = size
        }
        o.previewEvery = p.previewEvery
        if let v = p.previewDecoder {
            guard let decoder = PreviewDecoder(rawValue: v) else {
                throw TransferError.invalidOption(option: "preview-decoder", reason: "must be one of \(PreviewDecoder.allCases.map(\.rawValue).joined(separator: ", ")), got '\(v)'")
            }
            o.previewDecoder = decoder
        }
        try o.validate()
        return o
    }

    /// Engine options → the wire's shape, every option filled in (what the job actually ran with,
    /// `precision` the model's when the job said auto):
    /// the sidecar speaks the same dialect as `job.submit` and `options.json`.
    static func parameters(_ o: TransferOptions, ranIn precision: Precision) -> TransferParameters {
        var p = TransferParameters()
        (p.domain, p.prompt, p.objectNoun, p.seed) = (o.domain, o.resolvedPrompt, o.resolvedObjectNoun, o.seed)
        (p.timesteps, p.skip, p.maskedAdain) = (o.timesteps, o.skip, o.maskedAdaIN)
        (p.swapGuidance, p.contrast) = (Double(o.swapGuidanceScale), Double(o.contrastStrength))
        p.crossAttnRange0 = [o.crossAttentionRange0.start, o.crossAttentionRange0.end]
        p.crossAttnRange1 = [o.crossAttentionRange1.start, o.crossAttentionRange1.end]
        p.adainRange = [o.adainRange.start, o.adainRange.end]
        p.precision = precision.rawValue
        (p.size, p.previewEvery, p.previewDecoder) = (o.size.description, o.resolvedPreviewEvery, o.previewDecoder.rawValue)
        return p
    }
}
