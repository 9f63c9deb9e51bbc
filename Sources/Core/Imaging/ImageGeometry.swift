import Foundation
import Wire

/// Where an input image is cut and what size it becomes: the crop rectangle in the source's pixels
/// and the model input's size. Masks the user draws go through the same geometry.
public struct ImageGeometry: Equatable, Sendable {
    public var sourceWidth, sourceHeight: Int
    public var cropX, cropY, cropWidth, cropHeight: Int
    public var width, height: Int

    /// Pixels of one image the engine accepts by default: 1024² (about 4× SD 1.5's native square;
    /// the working memory estimate for it is in `TransferFootprint`).
    public static let defaultMaxPixels = 1024 * 1024

    /// The geometry of a `sourceWidth`×`sourceHeight` image for `size` on a model with `nativeSize`
    /// and `step`; sizes above `maxPixels` are refused with the working-memory estimate.
    public static func fitting(sourceWidth: Int, sourceHeight: Int, size: ImageSize, nativeSize: Int, step: Int,
                               maxPixels: Int = defaultMaxPixels) throws -> ImageGeometry {
        guard sourceWidth > 0, sourceHeight > 0 else { throw TransferError.invalidImage(detail: "the image has no pixels") }
        let (w, h): (Int, Int)
        switch size {
        case .native:
            (w, h) = (nativeSize, nativeSize)
        case let .fixed(fw, fh):
            guard fw % step == 0, fh % step == 0 else {
                throw TransferError.invalidOption(option: "size", reason: "\(fw)x\(fh): both sides must be multiples of \(step) for this model")
            }
            (w, h) = (fw, fh)
        case .auto:
            let scale = (Double(nativeSize * nativeSize) / Double(sourceWidth * sourceHeight)).squareRoot()
            func side(_ x: Int) -> Int { max(step, Int((Double(x) * scale / Double(step)).rounded()) * step) }
            (w, h) = (side(sourceWidth), side(sourceHeight))
        }
        guard w * h <= maxPixels else {
            let estimate = TransferFootprint.workingBytes(pixels: w * h, latentTokens: (w / 8) * (h / 8))
            throw TransferError.invalidOption(
                option: "size",
                reason: "\(w)x\(h) is \(w * h) pixels, above the \(maxPixels) allowed (max_pixels); it would need about \(TransferFootprint.describe(estimate)) of working memory beyond the model")
        }
        // The largest centred rectangle of the target's aspect; for a square, the side is the
        // shorter one and the longer side loses (long − short) / 2 pixels at its start (§2).
        var (cw, ch) = (sourceWidth, sourceHeight)
        if sourceWidth * h > sourceHeight * w {
            cw = min(sourceWidth, max(1, Int((Double(sourceHeight) * Double(w) / Double(h)).rounded())))
        } else if sourceWidth * h < sourceHeight * w {
            ch = min(sourceHeight, max(1, Int((Double(sourceWidth) * Double(h) / Double(w)).rounded())))
        }
        return ImageGeometry(sourceWidth: sourceWidth, sourceHeight: sourceHeight, cropX: (sourceWidth - cw) / 2, cropY: (sourceHeight - ch) / 2,
                             cropWidth: cw, cropHeight: ch, width: w, height: h)
    }

    /// "WxH" of the model input.
    public var sizeDescription: String { "\(width)x\(height)" }
}

/// Working memory of a transfer beyond the resident model, as an estimate for refusals: a fixed
/// part (scratch buffers, OpenBLAS, the text encoder's activations), activations that grow with the
/// pixels, and the self-segmentation's two [N, N] float maps of the latent's N tokens (quadratic).
/// An upper fit of peak RSS minus the resident model measured with `xattnd transfer` on the
/// SD 1.5-shaped model (docs/ALGORITHM.md §2, "Sizes": 1.25 GB at 512², 1.90 GB at 768²).
public enum TransferFootprint {
    public static func workingBytes(pixels: Int, latentTokens: Int) -> Int {
        (1 << 30) + 1024 * pixels + 2 * 4 * latentTokens * latentTokens
    }

    public static func describe(_ bytes: Int) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GB", Double(bytes) / Double(1 << 30)) : "\(bytes >> 20) MB"
    }
}

extension ImagePreprocessing {
    /// `geometry`'s crop of `image`.
    public static func crop(_ image: RGBImage, _ geometry: ImageGeometry) -> RGBImage {
        let (cw, ch) = (geometry.cropWidth, geometry.cropHeight)
        if cw == image.width && ch == image.height { return image }
        var pixels = [UInt8](repeating: 0, count: cw * ch * 3)
        for y in 0..<ch {
            let src = ((geometry.cropY + y) * image.width + geometry.cropX) * 3
            for i in 0..<(cw * 3) { pixels[y * cw * 3 + i] = image.pixels[src + i] }
        }
        return RGBImage(width: cw, height: ch, pixels: pixels)
    }

    /// Crop, resize (Pillow bicubic), map x / 127.5 − 1 → [3, H, W].
    public static func modelInput(_ image: RGBImage, geometry: ImageGeometry) -> Tensor {
        let (w, h) = (geometry.width, geometry.height)
        let resized = PillowResize.resize(crop(image, geometry), width: w, height: h)
        var t = Tensor(uninitializedShape: [3, h, w])
        t.withUnsafeMutablePointer { p in
            for i in 0..<(w * h) {
                for c in 0..<3 { p[c * w * h + i] = Float(resized.pixels[3 * i + c]) / 127.5 - 1 }
            }
        }
        return t
    }
}

/// A mask the user draws (white = object) made into an `ObjectMasks` entry.
public enum ObjectMask {
    /// Relative difference of aspect ratios tolerated between a mask and its image (a mask saved
    /// at another resolution rounds its sides).
    static let aspectTolerance = 0.01

    /// The mask cut with its image's crop (scaled to the mask's resolution when it has another),
    /// resized to the latent's h×w (Pillow bicubic, which averages when shrinking), its luminance
    /// thresholded at one half: 1 = object. Refused when the aspect differs from the image's, or
    /// when the result is empty or full.
    public static func prepare(_ mask: RGBImage, image geometry: ImageGeometry, latentHeight: Int, latentWidth: Int, role: String) throws -> Tensor {
        let option = "\(role)-mask"
        let imageAspect = Double(geometry.sourceWidth) / Double(geometry.sourceHeight)
        let maskAspect = Double(mask.width) / Double(mask.height)
        guard abs(maskAspect / imageAspect - 1) <= aspectTolerance else {
            throw TransferError.invalidOption(option: option, reason: "is \(mask.width)×\(mask.height), its image \(geometry.sourceWidth)×\(geometry.sourceHeight): the aspect ratios differ")
        }
        let sx = Double(mask.width) / Double(geometry.sourceWidth), sy = Double(mask.height) / Double(geometry.sourceHeight)
        func scaled(_ v: Int, _ s: Double) -> Int { Int((Double(v) * s).rounded()) }
        var crop = geometry
        (crop.cropX, crop.cropY) = (scaled(geometry.cropX, sx), scaled(geometry.cropY, sy))
        crop.cropWidth = max(1, min(mask.width - crop.cropX, scaled(geometry.cropWidth, sx)))
        crop.cropHeight = max(1, min(mask.height - crop.cropY, scaled(geometry.cropHeight, sy)))
        var gray = mask
        for i in 0..<(mask.width * mask.height) {
            let p = 3 * i
            let luma = (299 * Int(mask.pixels[p]) + 587 * Int(mask.pixels[p + 1]) + 114 * Int(mask.pixels[p + 2]) + 500) / 1000
            (gray.pixels[p], gray.pixels[p + 1], gray.pixels[p + 2]) = (UInt8(luma), UInt8(luma), UInt8(luma))
        }
        let small = PillowResize.resize(ImagePreprocessing.crop(gray, crop), width: latentWidth, height: latentHeight)
        let values = (0..<(latentWidth * latentHeight)).map { Float(small.pixels[3 * $0] >= 128 ? 1 : 0) }
        let ones = Int(values.reduce(0, +))
        guard ones >= 2 else { throw TransferError.invalidOption(option: option, reason: "marks no object (white = object) inside the image's crop") }
        guard ones < values.count else { throw TransferError.invalidOption(option: option, reason: "marks the whole image as the object; without masked AdaIN's mask that is plain AdaIN (masked-adain false)") }
        return Tensor(shape: [latentHeight, latentWidth], scalars: values) ?? Tensor(shape: [latentHeight, latentWidth])
    }
}
