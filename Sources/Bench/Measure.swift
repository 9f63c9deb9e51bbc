import Foundation
import Core

/// One benchmark row. `gflops` and `ratioToPeak` are absent for memory-bound kernels, which report
/// effective bandwidth instead.
struct BenchResult {
    var name: String
    var shape: String
    var seconds: Double
    var gflops: Double?
    var ratioToPeak: Double?
    var gigabytesPerSecond: Double?

    var json: [String: Any] {
        var row: [String: Any] = ["name": name, "shape": shape, "seconds": seconds,
                                  "gflops": gflops.map { $0 as Any } ?? NSNull(),
                                  "ratio_to_peak": ratioToPeak.map { $0 as Any } ?? NSNull()]
        if let gigabytesPerSecond { row["gbytes_per_second"] = gigabytesPerSecond }
        return row
    }
}

enum Clock {
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Best (minimum) wall time of `body` over at least `minimumRuns` runs and `minimumSeconds`,
    /// after one warm-up run. The minimum is the least noisy estimate on a shared machine, and the
    /// peak that results are divided by is taken the same way in the same run.
    static func best(minimumRuns: Int = 3, minimumSeconds: Double = 0.5, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity
        var runs = 0
        let start = now()
        while runs < minimumRuns || now() - start < minimumSeconds {
            let t0 = now()
            body()
            best = min(best, now() - t0)
            runs += 1
        }
        return best
    }
}

/// Pseudo-random values in [-1, 1): speed does not depend on them, but denormals and zeros would.
func benchTensor(_ shape: [Int], seed: UInt64 = 1) -> Tensor {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var t = Tensor(uninitializedShape: shape)
    let n = t.count
    t.withUnsafeMutablePointer { p in
        for i in 0..<n {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            p[i] = Float(state >> 40) / Float(1 << 23) - 1
        }
    }
    return t
}

func printJSON(_ object: [String: Any]) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
       let text = String(data: data, encoding: .utf8) {
        print(text)
    }
}
