import Foundation

/// The DDIM/DDPM noise schedule of SD 1.5 (ALGORITHM.md §4), computed in Float32 in the same order
/// as diffusers' `DDIMScheduler` with torch on the CPU, so that every coefficient matches the
/// reference to the bit or nearly.
public struct NoiseSchedule: Sendable {
    /// `scheduler/scheduler_config.json`: the fields the schedule depends on.
    public struct Config: Decodable, Equatable, Sendable {
        public var numTrainTimesteps = 1000
        public var betaStart: Double = 0.00085
        public var betaEnd: Double = 0.012
        public var betaSchedule = "scaled_linear"
        public var setAlphaToOne = false
        public var stepsOffset = 1

        enum CodingKeys: String, CodingKey {
            case numTrainTimesteps = "num_train_timesteps", betaStart = "beta_start", betaEnd = "beta_end"
            case betaSchedule = "beta_schedule", setAlphaToOne = "set_alpha_to_one", stepsOffset = "steps_offset"
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            numTrainTimesteps = try c.decode(.numTrainTimesteps, default: numTrainTimesteps)
            betaStart = try c.decode(.betaStart, default: betaStart)
            betaEnd = try c.decode(.betaEnd, default: betaEnd)
            betaSchedule = try c.decode(.betaSchedule, default: betaSchedule)
            setAlphaToOne = try c.decode(.setAlphaToOne, default: setAlphaToOne)
            stepsOffset = try c.decode(.stepsOffset, default: stepsOffset)
        }
    }

    public let config: Config
    /// ᾱ_t for t = 0 … numTrainTimesteps − 1.
    public let alphasCumprod: [Float]
    /// ᾱ used for the step before t = 0 ("set_alpha_to_one = false": ᾱ_0).
    public let finalAlphaCumprod: Float

    public init(config: Config = Config()) throws {
        guard config.betaSchedule == "scaled_linear" else {
            throw ModelLoadError.unsupportedConfig(path: "scheduler_config.json", detail: "beta_schedule \(config.betaSchedule)")
        }
        guard config.numTrainTimesteps >= 2 else {
            throw ModelLoadError.unsupportedConfig(path: "scheduler_config.json", detail: "num_train_timesteps \(config.numTrainTimesteps)")
        }
        self.config = config
        // β_t = linspace(√β_start, √β_end, N)[t]², with torch's symmetric Float32 linspace.
        let n = config.numTrainTimesteps
        let start = Float(config.betaStart.squareRoot()), end = Float(config.betaEnd.squareRoot())
        let step = (end - start) / Float(n - 1)
        var product = 1.0  // torch's CPU cumprod accumulates in double
        var cumulative: [Float] = []
        cumulative.reserveCapacity(n)
        for i in 0..<n {
            let root = i < n / 2 ? start + step * Float(i) : end - step * Float(n - i - 1)
            let beta = root * root
            product *= Double(1 - beta)
            cumulative.append(Float(product))
        }
        alphasCumprod = cumulative
        finalAlphaCumprod = config.setAlphaToOne ? 1 : cumulative[0]
    }

    /// DDIM "leading" timesteps for T steps, largest first: (T−1−j)·⌊N/T⌋ + offset (991 … 1 for T = 100).
    public func grid(steps: Int) -> [Int] {
        let ratio = config.numTrainTimesteps / steps
        return (0..<steps).map { j in (steps - 1 - j) * ratio + config.stepsOffset }
    }

    /// ᾱ at timestep t, and at the timestep one grid step earlier (t − ⌊N/T⌋, or the final ᾱ below 0).
    public func alphas(_ t: Int, steps: Int) -> (current: Float, previous: Float) {
        let prev = t - config.numTrainTimesteps / steps
        return (alphasCumprod[t], prev >= 0 ? alphasCumprod[prev] : finalAlphaCumprod)
    }

    /// var(t) = (1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev), as the reference's `get_variance`.
    public func variance(_ t: Int, steps: Int) -> Float {
        let (a, aPrev) = alphas(t, steps: steps)
        return ((1 - aPrev) / (1 - a)) * (1 - a / aPrev)
    }
}

extension NoiseSchedule.Config {
    /// The model's `scheduler/scheduler_config.json` (diffusers layout), or SD 1.5's defaults when
    /// there is none (a single-file checkpoint).
    public init(near modelPath: String) throws {
        guard let data = FileManager.default.contents(atPath: modelPath + "/scheduler/scheduler_config.json") else { self.init(); return }
        self = try JSONDecoder().decode(Self.self, from: data)
    }
}
