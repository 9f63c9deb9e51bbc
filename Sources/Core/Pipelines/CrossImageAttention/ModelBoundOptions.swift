import Foundation

/// What `TransferOptions.validate()` cannot know alone: whether the options fit a loaded model's
/// tokenizer and noise schedule. Every check here would otherwise be an out-of-range index deep in
/// a job (a trap in the service), so it runs before any work, at every boundary that takes options.
extension TransferOptions {
    public func validate(for model: StableDiffusionModel, schedule: NoiseSchedule) throws {
        try validate()
        try validate(schedule: schedule)
        if let precision, precision != model.precision {
            throw TransferError.invalidOption(
                option: "precision",
                reason: "'\(precision.rawValue)' asked, but the model is loaded in \(model.precision.rawValue); use 'auto', or load the model in \(precision.rawValue) (xattnd's `precision` setting)")
        }
        if maskedAdaIN { _ = try objectNounPositions(tokenizer: model.tokenizer) }
    }

    /// ALGORITHM.md §4: the grid index K is the first one used (by inversion and generation), and its
    /// timestep must be one the schedule has; T above the schedule's length would make its stride 0.
    func validate(schedule: NoiseSchedule) throws {
        let n = schedule.config.numTrainTimesteps
        guard timesteps <= n else {
            throw TransferError.invalidOption(option: "timesteps", reason: "must be at most the schedule's \(n) training steps, got \(timesteps)")
        }
        let first = schedule.grid(steps: timesteps)[skip]
        guard first < n else {
            let largest = (1...n).last { t in (t - 1) * (n / t) + schedule.config.stepsOffset < n } ?? 1
            throw TransferError.invalidOption(
                option: "timesteps",
                reason: "with skip \(skip), \(timesteps) steps start at timestep \(first), beyond the schedule's last (\(n - 1)); use at most \(largest) timesteps, or skip ≥ 1")
        }
    }

    /// ALGORITHM.md §9: the prompt positions of the object noun's tokens, whose cross-attention
    /// locates the object for masked AdaIN. The noun must occur in the prompt as the text encoder
    /// sees it (after truncation to the tokenizer's length).
    func objectNounPositions(tokenizer: CLIPTokenizer) throws -> [Int] {
        let prompt = resolvedPrompt, noun = resolvedObjectNoun
        let ids = tokenizer.encode(prompt).ids
        let nounIDs = tokenizer.tokenize(noun)
        guard !nounIDs.isEmpty, nounIDs.count <= ids.count else {
            throw nounIDs.isEmpty
                ? TransferError.invalidOption(option: "object-noun", reason: "'\(noun)' has no tokens")
                : TransferError.invalidOption(option: "object-noun", reason: "'\(noun.prefix(60))…' is \(nounIDs.count) tokens, longer than the \(tokenizer.maxLength - 2) a prompt holds")
        }
        guard let start = (0...(ids.count - nounIDs.count)).first(where: { ids[$0..<($0 + nounIDs.count)].elementsEqual(nounIDs) }) else {
            throw TransferError.objectNounNotInPrompt(noun: noun, prompt: prompt)
        }
        return Array(start..<(start + nounIDs.count))
    }
}
