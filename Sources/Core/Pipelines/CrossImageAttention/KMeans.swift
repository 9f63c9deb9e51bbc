/// k-means as scikit-learn's `KMeans(n_clusters: k, n_init: restarts)` runs it: greedy k-means++
/// seeding (2 + ⌊ln k⌋ candidates per centre), Lloyd iterations until the labels stop changing or
/// the centres move less than 1e-4 × the mean feature variance (at most 300), and the restart with
/// the lowest inertia. Distances are ‖x‖² − 2·x·c + ‖c‖² with the products through sgemm.
struct KMeans {
    let k: Int
    let restarts: Int
    var maxIterations = 300
    var tolerance = 1e-4

    /// Labels for the `n` rows of `data` ([n, d]).
    func labels(_ data: UnsafePointer<Float>, n: Int, d: Int, random: inout SeededNormal) -> [Int] {
        let norms = (0..<n).map { i in (0..<d).reduce(0.0) { $0 + Double(data[i * d + $1]) * Double(data[i * d + $1]) } }
        let threshold = tolerance * meanVariance(data, n: n, d: d)
        var best: (labels: [Int], inertia: Double)?
        for _ in 0..<restarts {
            var centres = seed(data, n: n, d: d, norms: norms, random: &random)
            var labels = [Int](repeating: -1, count: n)
            var inertia = 0.0
            for _ in 0..<maxIterations {
                let (assigned, total) = assign(data, n: n, d: d, norms: norms, centres: centres)
                inertia = total
                let moved = update(&centres, data, n: n, d: d, labels: assigned, norms: norms)
                let stable = assigned == labels
                labels = assigned
                if stable || moved <= threshold { break }
            }
            let (finalLabels, finalInertia) = assign(data, n: n, d: d, norms: norms, centres: centres)
            inertia = finalInertia
            if best.map({ inertia < $0.inertia }) ?? true { best = (finalLabels, inertia) }
        }
        return best?.labels ?? [Int](repeating: 0, count: n)
    }

    private func meanVariance(_ x: UnsafePointer<Float>, n: Int, d: Int) -> Double {
        var total = 0.0
        for j in 0..<d {
            var sum = 0.0, squares = 0.0
            for i in 0..<n { let v = Double(x[i * d + j]); sum += v; squares += v * v }
            let mean = sum / Double(n)
            total += squares / Double(n) - mean * mean
        }
        return total / Double(d)
    }

    /// Squared distances [n, m] from every row to each of m candidate rows ([m, d]).
    private func distances(_ x: UnsafePointer<Float>, n: Int, d: Int, norms: [Double], to centres: [Float], m: Int) -> [Double] {
        var products = [Float](repeating: 0, count: n * m)
        centres.withUnsafeBufferPointer { c in
            products.withUnsafeMutableBufferPointer { p in
                // [n, d] × [m, d]ᵀ → [n, m]
                Gemm.sgemm(x, .normal, lda: d, c.baseAddress!, .transposed, ldb: d, p.baseAddress!, ldc: m, m: n, n: m, k: d)
            }
        }
        let centreNorms = (0..<m).map { j in (0..<d).reduce(0.0) { $0 + Double(centres[j * d + $1]) * Double(centres[j * d + $1]) } }
        var result = [Double](repeating: 0, count: n * m)
        for i in 0..<n { for j in 0..<m { result[i * m + j] = max(0, norms[i] - 2 * Double(products[i * m + j]) + centreNorms[j]) } }
        return result
    }

    private func seed(_ x: UnsafePointer<Float>, n: Int, d: Int, norms: [Double], random: inout SeededNormal) -> [Float] {
        func row(_ i: Int) -> [Float] { Array(UnsafeBufferPointer(start: x + i * d, count: d)) }
        var centres = row(Int(random.nextUniform() * Double(n)) % n)
        var closest = distances(x, n: n, d: d, norms: norms, to: centres, m: 1)
        var potential = closest.reduce(0, +)
        let trials = 2 + Int(log(Double(k)))
        for _ in 1..<k {
            var prefix = [Double](repeating: 0, count: n)
            var running = 0.0
            for i in 0..<n { running += closest[i]; prefix[i] = running }
            let candidates = (0..<trials).map { _ -> Int in
                let target = random.nextUniform() * potential
                var lo = 0, hi = n - 1
                while lo < hi { let mid = (lo + hi) / 2; if prefix[mid] < target { lo = mid + 1 } else { hi = mid } }
                return lo
            }
            let candidateRows = candidates.flatMap(row)
            let dist = distances(x, n: n, d: d, norms: norms, to: candidateRows, m: trials)
            var bestTrial = 0, bestPotential = Double.infinity, bestClosest = closest
            for t in 0..<trials {
                var newClosest = closest
                var total = 0.0
                for i in 0..<n { newClosest[i] = min(closest[i], dist[i * trials + t]); total += newClosest[i] }
                if total < bestPotential { (bestTrial, bestPotential, bestClosest) = (t, total, newClosest) }
            }
            centres += row(candidates[bestTrial])
            closest = bestClosest
            potential = bestPotential
        }
        return centres
    }

    private func assign(_ x: UnsafePointer<Float>, n: Int, d: Int, norms: [Double], centres: [Float]) -> ([Int], Double) {
        let dist = distances(x, n: n, d: d, norms: norms, to: centres, m: k)
        var labels = [Int](repeating: 0, count: n)
        var inertia = 0.0
        for i in 0..<n {
            var best = 0
            for j in 1..<k where dist[i * k + j] < dist[i * k + best] { best = j }
            labels[i] = best
            inertia += dist[i * k + best]
        }
        return (labels, inertia)
    }

    /// New centres as the means of their rows (an empty cluster takes the row farthest from its
    /// centre, as scikit-learn relocates); returns the total squared centre shift.
    private func update(_ centres: inout [Float], _ x: UnsafePointer<Float>, n: Int, d: Int, labels: [Int], norms: [Double]) -> Double {
        var sums = [Double](repeating: 0, count: k * d)
        var counts = [Int](repeating: 0, count: k)
        for i in 0..<n {
            counts[labels[i]] += 1
            for j in 0..<d { sums[labels[i] * d + j] += Double(x[i * d + j]) }
        }
        var shift = 0.0
        for c in 0..<k {
            let far = counts[c] > 0 ? nil : farthestRow(x, n: n, d: d, norms: norms, centres: centres, labels: labels)
            for j in 0..<d {
                let value: Float
                if let far {
                    value = x[far * d + j]
                } else {
                    value = Float(sums[c * d + j] / Double(counts[c]))
                }
                let delta = Double(value - centres[c * d + j])
                shift += delta * delta
                centres[c * d + j] = value
            }
        }
        return shift
    }

    private func farthestRow(_ x: UnsafePointer<Float>, n: Int, d: Int, norms: [Double], centres: [Float], labels: [Int]) -> Int {
        let dist = distances(x, n: n, d: d, norms: norms, to: centres, m: k)
        var far = 0
        for i in 0..<n where dist[i * k + labels[i]] > dist[far * k + labels[far]] { far = i }
        return far
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
