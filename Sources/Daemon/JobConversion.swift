import Core
import Foundation
import Wire

/// Between the wire's job types and the engine's.
enum JobConversion {
    static let formatter: ISO8601DateFormatter = ISO8601DateFormatter()

    static func info(_ r: JobRecord, progress: JobProgress? = nil) -> JobInfo {
        let parameters = (try? JSONDecoder().decode(TransferParameters.self, from: Data(r.parameters.utf8))) ?? TransferParameters()
        let error = r.error.flatMap { try? JSONDecoder().decode(RPCErrorObject.self, from: Data($0.utf8)) }
        return JobInfo(id: r.id, state: r.jobState, priority: r.priority, owner: UInt32(clamping: r.owner), source: r.source,
                       folder: r.folder, attempts: r.attempts, createdAt: formatter.string(from: r.createdAt),
                       startedAt: r.startedAt.map(formatter.string), finishedAt: r.finishedAt.map(formatter.string),
                       progress: progress, error: error, options: parameters)
    }

    /// Wire parameters → engine options, validated (the error names the option).
    static func options(_ p: TransferParameters) throws -> TransferOptions {
        var o = TransferOptions()
        if let v = p.domain { o.domain = v }
        o.prompt = p.prompt
        o.objectNoun = p.objectNoun
        if let v = p.seed { o.seed = v }
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
        try o.validate()
        return o
    }
}
