import CKernels

/// Layout changes and broadcasts between feature maps ([B, C, H, W]) and token sequences
/// ([B, N, C]), plus gathers.
extension Tensor {
    /// [B, A, N] → [B, N, A] (for a feature map: [B, C, H·W] → [B, H·W, C]). Blocked so both sides
    /// stream through cache.
    public func transposedLastTwo() -> Tensor {
        OpProfile.measure("transpose") {
            precondition(rank >= 2, "transposedLastTwo needs rank ≥ 2, got \(shape)")
            let a = dim(-2), n = dim(-1)
            let batch = count / max(a * n, 1)
            var out = Tensor(uninitializedShape: Array(shape.dropLast(2)) + [n, a])
            let tile = 32
            let rowTiles = (a + tile - 1) / tile
            withUnsafePointer { src in
                out.withUnsafeMutablePointer { dst in
                    ComputePool.shared.parallelFor(batch * rowTiles) { item in
                        let b = item / rowTiles, r0 = (item % rowTiles) * tile, r1 = min(a, r0 + tile)
                        let s = src + b * a * n, d = dst + b * a * n
                        // 16×16 blocks in AVX-512 registers (transpose.c), else one float at a time.
                        if xattn_transpose_f32(s, Int32(a), Int32(n), d, Int32(r0), Int32(r1)) != 0 { return }
                        var c0 = 0
                        while c0 < n {
                            let c1 = min(n, c0 + tile)
                            for r in r0..<r1 {
                                for c in c0..<c1 { d[c * a + r] = s[r * n + c] }
                            }
                            c0 = c1
                        }
                    }
                }
            }
            return out
        }
    }

    /// x [B, C, *] += v[b, c] broadcast over the spatial positions; v: [B, C].
    public mutating func addPerChannel(_ v: Tensor) {
        OpProfile.measure("add") {
            precondition(rank >= 2 && v.shape == [shape[0], shape[1]], "addPerChannel: \(v.shape) does not fit \(shape)")
            let planes = shape[0] * shape[1], spatial = count / max(planes, 1)
            v.withUnsafePointer { b in
                withUnsafeMutablePointer { p in
                    parallelRanges(planes, grain: max(1, 32768 / max(spatial, 1))) { range in
                        for plane in range {
                            let x = p + plane * spatial, add = b[plane]
                            mapVector(x, x, spatial) { $0 + add }
                        }
                    }
                }
            }
        }
    }

    /// Item `index` of the leading dimension: [B, *] → [*] (a copy).
    public func item(_ index: Int) -> Tensor {
        precondition(rank >= 1 && index >= 0 && index < shape[0], "item \(index) of \(shape)")
        let size = count / max(shape[0], 1)
        var out = Tensor(uninitializedShape: Array(shape.dropFirst()))
        withUnsafePointer { src in out.withUnsafeMutablePointer { $0.update(from: src + index * size, count: size) } }
        return out
    }

    /// Items `range` of the leading dimension: [B, *] → [range.count, *] (a copy).
    public func items(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "items \(range) of \(shape)")
        let size = count / max(shape[0], 1)
        var out = Tensor(uninitializedShape: [range.count] + shape.dropFirst())
        withUnsafePointer { src in out.withUnsafeMutablePointer { $0.update(from: src + range.lowerBound * size, count: range.count * size) } }
        return out
    }

    /// Tensors [Bᵢ, *] with one item shape, end to end: [ΣBᵢ, *].
    public static func concatenatingItems(_ parts: [Tensor]) -> Tensor {
        let itemShape = Array(parts[0].shape.dropFirst())
        precondition(parts.allSatisfy { Array($0.shape.dropFirst()) == itemShape }, "concatenatingItems: item shapes differ")
        var out = Tensor(uninitializedShape: [parts.reduce(0) { $0 + $1.shape[0] }] + itemShape)
        out.withUnsafeMutablePointer { dst in
            var offset = 0
            for part in parts {
                part.withUnsafePointer { (dst + offset).update(from: $0, count: part.count) }
                offset += part.count
            }
        }
        return out
    }

    /// Rows of a [V, D] table: ids → [ids.count, D] (token embeddings).
    public func gatherRows(_ ids: [Int]) -> Tensor {
        let width = dim(-1)
        var out = Tensor(uninitializedShape: [ids.count, width])
        withUnsafePointer { table in
            out.withUnsafeMutablePointer { dst in
                for (row, id) in ids.enumerated() {
                    precondition(id >= 0 && id < shape[0], "gatherRows: id \(id) outside [0, \(shape[0]))")
                    (dst + row * width).update(from: table + id * width, count: width)
                }
            }
        }
        return out
    }

    /// PyTorch's `F.interpolate(mode="nearest", size=(h, w))`: out[y, x] = in[⌊y·H/h⌋, ⌊x·W/w⌋]
    /// with the scale computed in Float32 as PyTorch does. [B, C, H, W] → [B, C, h, w].
    public func upsampleNearest(height: Int, width: Int) -> Tensor {
        precondition(rank == 4, "upsampleNearest needs [B, C, H, W], got \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        if height == 2 * h && width == 2 * w { return upsampleNearest2x() }
        let scaleY = Float(h) / Float(height), scaleX = Float(w) / Float(width)
        let sourceRows = (0..<height).map { min(Int(Float($0) * scaleY), h - 1) }
        let sourceCols = (0..<width).map { min(Int(Float($0) * scaleX), w - 1) }
        var out = Tensor(uninitializedShape: [shape[0], shape[1], height, width])
        withUnsafePointer { src in
            out.withUnsafeMutablePointer { dst in
                parallelRanges(planes, grain: 1) { range in
                    for plane in range {
                        let s = src + plane * h * w, d = dst + plane * height * width
                        for y in 0..<height {
                            let row = s + sourceRows[y] * w
                            for x in 0..<width { d[y * width + x] = row[sourceCols[x]] }
                        }
                    }
                }
            }
        }
        return out
    }
}
