import CTurboJPEG
import Foundation

/// The libjpeg-turbo boundary (the only file that imports it), through the TurboJPEG API, which
/// reports errors by return value (libjpeg's own API longjmps, which Swift cannot survive). Decodes
/// with libjpeg's defaults — accurate integer DCT, fancy upsampling — as Pillow does.
public enum JPEGLibrary {
    static func isJPEG(_ data: Data) -> Bool { data.starts(with: [0xFF, 0xD8, 0xFF]) }

    public static func decode(_ data: Data) throws -> RGBImage {
        guard isJPEG(data) else { throw ImageError.unsupportedFormat(detail: "not a JPEG file") }
        guard let handle = tjInitDecompress() else { throw ImageError.unreadable(detail: "cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = data.withUnsafeBytes { raw in
            tjDecompressHeader3(handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(raw.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw ImageError.unreadable(detail: message(handle)) }
        guard width > 0, height > 0 else { throw ImageError.unreadable(detail: "no frame header (\(width)×\(height)): not a complete JPEG file") }
        guard Int(width) * Int(height) <= PNGLibrary.maximumPixels else {
            throw ImageError.tooLarge(width: Int(width), height: Int(height))
        }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        let status = data.withUnsafeBytes { raw in
            pixels.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(raw.count), out.baseAddress,
                              width, 0, height, Int32(TJPF_RGB.rawValue), Int32(TJFLAG_ACCURATEDCT))
            }
        }
        // A warning about stray bytes still leaves the whole image (Pillow accepts those files too);
        // an error does not, and neither does a file that ends early (libjpeg fills the missing rows
        // with grey and warns "Premature end of JPEG file"; Pillow refuses it as truncated): a
        // half-written file must never become a job's input.
        if status != 0 {
            let detail = message(handle)
            guard tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue), !detail.contains("Premature end") else {
                throw ImageError.unreadable(detail: detail)
            }
        }
        return RGBImage(width: Int(width), height: Int(height), pixels: pixels)
    }

    private static func message(_ handle: tjhandle) -> String {
        tjGetErrorStr2(handle).map { String(cString: $0) } ?? "invalid JPEG data"
    }
}

/// PNG or JPEG, by content.
public enum ImageDecoder {
    /// Whether `data` starts like a file `decode` reads (a cheap check before queueing it).
    public static func isSupported(_ data: Data) -> Bool { JPEGLibrary.isJPEG(data) || PNGLibrary.isPNG(data) }

    public static func decode(_ data: Data) throws -> RGBImage {
        if JPEGLibrary.isJPEG(data) { return try JPEGLibrary.decode(data) }
        if PNGLibrary.isPNG(data) { return try PNGLibrary.decode(data) }
        throw ImageError.unsupportedFormat(detail: "neither PNG nor JPEG")
    }
}
