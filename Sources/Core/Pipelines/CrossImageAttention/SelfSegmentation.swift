/// The self-segmentation masks of ALGORITHM.md §9 (after Prompt Mixing): cluster the pixels by
/// their self-attention rows, then keep the clusters on which the object noun's cross-attention
/// is strong.
public enum SelfSegmentation {
    static let clusters = 5
    static let restarts = 10

    /// mask (1 = object) over the level-0 pixels [h·w].
    /// - selfAttention: head-averaged [N, N] at level 0 (N = h·w);
    /// - crossAttention: head-averaged [N₁, nouns] at level 1 ((h+1)/2 × (w+1)/2 pixels).
    public static func mask(selfAttention: UnsafePointer<Float>, crossAttention: UnsafePointer<Float>, nouns: Int,
                     height h: Int, width w: Int, random: inout SeededNormal) -> [Float] {
        let n = h * w
        // 1. k-means on the N attention rows → a label per pixel.
        let labels = KMeans(k: clusters, restarts: restarts).labels(selfAttention, n: n, d: n, random: &random)
        // 2. Each noun token's map, upsampled ×2 by repetition and normalised (m − |min m|) / max m.
        let w1 = (w + 1) / 2
        var maps: [[Float]] = []
        for j in 0..<nouns {
            var m = [Float](repeating: 0, count: n)
            for y in 0..<h { for x in 0..<w { m[y * w + x] = crossAttention[((y / 2) * w1 + x / 2) * nouns + j] } }
            let low = m.min() ?? 0, high = m.max() ?? 1
            maps.append(m.map { ($0 - abs(low)) / high })
        }
        // 3. Cluster score: mean of the map over its pixels, the best over noun tokens. Object
        // clusters score above 1.4 × the mean of the other clusters' scores (the best one excluded).
        var scores = [Float](repeating: 0, count: clusters)
        for c in 0..<clusters {
            let members = (0..<n).filter { labels[$0] == c }
            guard !members.isEmpty else { continue }
            scores[c] = maps.map { map in members.reduce(Float(0)) { $0 + map[$1] } / Float(members.count) }.max() ?? 0
        }
        var others = scores
        if let best = others.indices.max(by: { others[$0] < others[$1] }) { others.remove(at: best) }
        let mean = others.reduce(0, +) / Float(max(others.count, 1))
        let object = scores.map { $0 > 1.4 * mean }

        return labels.map { object[$0] ? 1 : 0 }
    }
}
