import CPNG
import Foundation

/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBImage: \(pixels.count) bytes for \(width)×\(height)")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }
}

/// Why an image could not be read or written.
public enum ImageError: Error, Equatable, CustomStringConvertible {
    case unreadable(detail: String)
    case unsupportedFormat(detail: String)
    case tooLarge(width: Int, height: Int)
    case writeFailed(detail: String)

    public var description: String {
        switch self {
        case let .unreadable(detail): return "cannot read the image: \(detail)"
        case let .unsupportedFormat(detail): return "unsupported image format: \(detail)"
        case let .tooLarge(width, height): return "image of \(width)×\(height) pixels is larger than the \(PNGLibrary.maximumPixels) pixels accepted"
        case let .writeFailed(detail): return "cannot write the image: \(detail)"
        }
    }
}

/// The libpng boundary (the only file that imports it), through libpng's simplified API, which
/// reports errors in a message instead of longjmp (which Swift cannot survive).
public enum PNGLibrary {
    /// Pixels accepted in one image (a decompression-bomb guard): 64 megapixels.
    public static let maximumPixels = 64 << 20

    /// The libpng version linked at run time, e.g. "1.6.39".
    public static var version: String {
        guard let text = png_get_libpng_ver(nil) else { return "unknown" }
        return String(cString: text)
    }

    static func isPNG(_ data: Data) -> Bool { data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) }

    /// Decodes any PNG (8/16-bit, gray, palette, alpha, interlaced) to 8-bit RGB. An alpha channel is
    /// dropped, not composited (ALGORITHM.md §2, as Pillow's convert("RGB")): the file is read as
    /// RGBA, which for 8-bit output is not premultiplied, and A is discarded.
    public static func decode(_ data: Data) throws -> RGBImage {
        guard isPNG(data) else { throw ImageError.unsupportedFormat(detail: "not a PNG file") }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let begun = data.withUnsafeBytes { bytes in
            png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count)
        }
        guard begun != 0 else { throw ImageError.unreadable(detail: message(&image)) }
        defer { png_image_free(&image) }
        let (width, height) = (Int(image.width), Int(image.height))
        guard width > 0, height > 0 else { throw ImageError.unreadable(detail: "the file declares an empty \(width)×\(height) image") }
        guard width * height <= maximumPixels else { throw ImageError.tooLarge(width: width, height: height) }
        if image.format & PNG_FORMAT_FLAG_LINEAR != 0 {
            return RGBImage(width: width, height: height, pixels: try readSixteenBit(&image, data: data))
        }
        image.format = PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA  // RGBA, 8 bits per channel
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        let finished = data.withUnsafeBytes { _ in
            rgba.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * 4), nil) }
        }
        guard finished != 0 else { throw ImageError.unreadable(detail: message(&image)) }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2]
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    /// A 16-bit file: asking the simplified API for 8-bit output would gamma-encode samples it
    /// takes as linear. Read them as they are (16-bit "linear"), undo the alpha premultiplication
    /// that format applies, and reduce each sample to 8 bits by rounding v / 257.
    private static func readSixteenBit(_ image: inout png_image, data: Data) throws -> [UInt8] {
        let (width, height) = (Int(image.width), Int(image.height))
        let hasAlpha = image.format & PNG_FORMAT_FLAG_ALPHA != 0
        let channels = hasAlpha ? 4 : 3
        image.format = PNG_FORMAT_FLAG_LINEAR | PNG_FORMAT_FLAG_COLOR | (hasAlpha ? PNG_FORMAT_FLAG_ALPHA : 0)
        var samples = [UInt16](repeating: 0, count: width * height * channels)
        let finished = data.withUnsafeBytes { _ in
            samples.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * channels), nil) }
        }
        guard finished != 0 else { throw ImageError.unreadable(detail: message(&image)) }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            let alpha = hasAlpha ? UInt32(samples[channels * i + 3]) : 65535
            for c in 0..<3 {
                let stored = UInt32(samples[channels * i + c])
                let value = alpha == 0 ? 0 : min(65535, (stored * 65535 + alpha / 2) / alpha)
                rgb[3 * i + c] = UInt8((value + 128) / 257)
            }
        }
        return rgb
    }

    /// Encodes 8-bit RGB as PNG.
    public static func encode(_ picture: RGBImage) throws -> Data {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(picture.width)
        image.height = UInt32(picture.height)
        image.format = PNG_FORMAT_FLAG_COLOR
        var size: Int = 0
        let stride = Int32(picture.width * 3)
        let probed = picture.pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }
        guard probed != 0, size > 0 else { throw ImageError.writeFailed(detail: message(&image)) }
        var out = Data(count: size)
        let written = out.withUnsafeMutableBytes { buffer in
            picture.pixels.withUnsafeBytes { png_image_write_to_memory(&image, buffer.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        guard written != 0 else { throw ImageError.writeFailed(detail: message(&image)) }
        return out.prefix(size)
    }

    private static func message(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}
