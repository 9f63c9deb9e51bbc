import Foundation

/// Pillow's default `Image.resize` (BICUBIC, a = −0.5, antialiased) on 8-bit RGB, bit for bit:
/// the same coefficients (support widened by the scale when shrinking, normalised, then fixed
/// point with 22 fraction bits), horizontal pass first into an 8-bit intermediate of only the rows
/// the vertical pass reads, rounding by +½ and clamping to 0…255 (Pillow's Resample.c).
public enum PillowResize {
    static let precisionBits = 32 - 8 - 2

    static func bicubic(_ value: Double) -> Double {
        let a = -0.5, x = abs(value)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// For each output index: the first input index, how many inputs, and their fixed-point weights.
    static func coefficients(inSize: Int, outSize: Int) -> (bounds: [(start: Int, count: Int)], weights: [[Int32]]) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 2.0 * filterScale
        var bounds: [(Int, Int)] = []
        var weights: [[Int32]] = []
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var k = (0..<max(xmax, 0)).map { x in bicubic((Double(x + xmin) - center + 0.5) / filterScale) }
            let total = k.reduce(0, +)
            if total != 0 { k = k.map { $0 / total } }
            let one = Double(1 << precisionBits)
            weights.append(k.map { Int32($0 < 0 ? -0.5 + $0 * one : 0.5 + $0 * one) })
            bounds.append((xmin, max(xmax, 0)))
        }
        return (bounds, weights)
    }

    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 { UInt8(clamping: max(0, min(255, v >> Int32(precisionBits)))) }

    public static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if image.width == width && image.height == height { return image }
        let horizontal = coefficients(inSize: image.width, outSize: width)
        var vertical = coefficients(inSize: image.height, outSize: height)
        var source = image
        if width != image.width {
            // Only the rows the vertical pass will read.
            let first = vertical.bounds.first?.start ?? 0
            let last = (vertical.bounds.last.map { $0.start + $0.count }) ?? image.height
            for i in vertical.bounds.indices { vertical.bounds[i].start -= first }
            var temp = [UInt8](repeating: 0, count: width * (last - first) * 3)
            for y in first..<last {
                for xx in 0..<width {
                    let (start, count) = horizontal.bounds[xx]
                    var sums: [Int32] = [1 << Int32(precisionBits - 1), 1 << Int32(precisionBits - 1), 1 << Int32(precisionBits - 1)]
                    for x in 0..<count {
                        let w = horizontal.weights[xx][x]
                        let p = (y * image.width + start + x) * 3
                        for c in 0..<3 { sums[c] &+= Int32(image.pixels[p + c]) &* w }
                    }
                    for c in 0..<3 { temp[((y - first) * width + xx) * 3 + c] = clip8(sums[c]) }
                }
            }
            source = RGBImage(width: width, height: last - first, pixels: temp)
        }
        if height == image.height { return source }  // no vertical pass needed (Pillow: need_vertical)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for yy in 0..<height {
            let (start, count) = vertical.bounds[yy]
            for x in 0..<width {
                var sums: [Int32] = [1 << Int32(precisionBits - 1), 1 << Int32(precisionBits - 1), 1 << Int32(precisionBits - 1)]
                for y in 0..<count {
                    let w = vertical.weights[yy][y]
                    let p = ((start + y) * width + x) * 3
                    for c in 0..<3 { sums[c] &+= Int32(source.pixels[p + c]) &* w }
                }
                for c in 0..<3 { out[(yy * width + x) * 3 + c] = clip8(sums[c]) }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}

/// ALGORITHM.md §2: images in and out of the model.
public enum ImagePreprocessing {
    /// The paper's input: centre-cropped to a square, resized to size×size (`ImageGeometry`, native).
    public static func modelInput(_ image: RGBImage, size: Int) -> Tensor {
        let square = ImageGeometry(sourceWidth: image.width, sourceHeight: image.height,
                                   cropX: (image.width - min(image.width, image.height)) / 2, cropY: (image.height - min(image.width, image.height)) / 2,
                                   cropWidth: min(image.width, image.height), cropHeight: min(image.width, image.height), width: size, height: size)
        return modelInput(image, geometry: square)
    }

    /// [3, H, W] in [−1, 1] → 8-bit RGB: round(clamp(x/2 + 0.5, 0, 1)·255), half to even as numpy.
    /// A NaN (a model whose activations overflowed: seen with random full-size weights after a few
    /// steps) becomes 0, instead of a trap that would take the service down with the job.
    public static func image(from tensor: Tensor) -> RGBImage {
        let (h, w) = (tensor.shape[1], tensor.shape[2])
        var pixels = [UInt8](repeating: 0, count: h * w * 3)
        tensor.withUnsafePointer { p in
            for i in 0..<(h * w) {
                for c in 0..<3 {
                    let x = p[c * h * w + i]
                    let v = x.isNaN ? 0 : min(max(x / 2 + 0.5, 0), 1) * 255
                    pixels[3 * i + c] = UInt8(v.rounded(.toNearestOrEven))
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }
}
