import Foundation
import Testing
import Core

/// Decoding and resizing as the reference stack does (Pillow 9.5.0, tools/reference/imaging.py).
@Suite struct ImagingTests {
    static let folder = Fixtures.path("images")

    func expected(_ name: String) throws -> [UInt8] {
        try SafetensorsFile(path: Self.folder + "/expected.safetensors").tensor(name).scalars.map { UInt8($0) }
    }

    func image(_ name: String) throws -> RGBImage {
        let t = try SafetensorsFile(path: Self.folder + "/expected.safetensors").tensor(name)
        return RGBImage(width: t.shape[1], height: t.shape[0], pixels: t.scalars.map { UInt8($0) })
    }

    /// Pillow's convert("RGB") exactly, alpha dropped rather than composited.
    @Test(arguments: ["rgb", "rgba", "gray", "gray_alpha", "palette", "palette_transparent", "interlaced"])
    func decodesLikePillow(name: String) throws {
        let data = try #require(FileManager.default.contents(atPath: Self.folder + "/\(name).png"))
        let decoded = try PNGLibrary.decode(data)
        #expect(decoded.width == 17 && decoded.height == 13)
        #expect(decoded.pixels == (try expected("\(name).rgb")))
    }

    /// 16-bit samples are reduced to 8 bits by libpng (within one level of v / 257; Pillow does
    /// not read 16-bit RGB and is no reference here).
    @Test func sixteenBitWithinOneLevel() throws {
        let data = try #require(FileManager.default.contents(atPath: Self.folder + "/rgb16.png"))
        let decoded = try PNGLibrary.decode(data)
        let values = try SafetensorsFile(path: Self.folder + "/expected.safetensors").tensor("rgb16.values").scalars
        let worst = zip(decoded.pixels, values).map { abs(Float($0) - $1 / 257) }.max() ?? .infinity
        #expect(worst <= 1)
    }

    /// JPEG decoded as Pillow 9.5 decodes it (libjpeg-turbo, accurate DCT, fancy upsampling).
    @Test func decodesJPEGLikePillow() throws {
        let data = try #require(FileManager.default.contents(atPath: Self.folder + "/photo.jpg"))
        let decoded = try ImageDecoder.decode(data)
        #expect(decoded.width == 51 && decoded.height == 37)
        #expect(decoded.pixels == (try expected("photo.rgb")))
        #expect(throws: ImageError.self) { try ImageDecoder.decode(data.prefix(40)) }
    }

    @Test func roundTripsThroughPNG() throws {
        let original = try image("resize.source")
        #expect(try PNGLibrary.decode(try PNGLibrary.encode(original)) == original)
    }

    @Test func rejectsCorruptFiles() throws {
        #expect(throws: ImageError.unsupportedFormat(detail: "not a PNG file")) { try PNGLibrary.decode(Data("GIF89a".utf8)) }
        let data = try #require(FileManager.default.contents(atPath: Self.folder + "/rgb.png"))
        #expect { try PNGLibrary.decode(data.prefix(60)) } throws: { ($0 as? ImageError).map { if case .unreadable = $0 { true } else { false } } ?? false }
    }

    /// Crop and resize bit for bit as Pillow: down (antialiased), up, and both axes at once.
    @Test func resizesLikePillow() throws {
        let source = try image("resize.source")
        let geometry = try ImageGeometry.fitting(sourceWidth: source.width, sourceHeight: source.height, size: .native, nativeSize: 32, step: 8)
        let square = ImagePreprocessing.crop(source, geometry)
        #expect(square.width == 53 && square.height == 53)
        #expect(PillowResize.resize(square, width: 32, height: 32).pixels == (try expected("resize.down32")))
        #expect(PillowResize.resize(square, width: 96, height: 96).pixels == (try expected("resize.up96")))
        #expect(PillowResize.resize(source, width: 20, height: 61).pixels == (try expected("resize.mixed")))
    }

    @Test func tensorMapping() {
        let picture = RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 10, 20, 30])
        let t = ImagePreprocessing.modelInput(picture, size: 2)
        #expect(t.shape == [3, 2, 2])
        #expect(ImagePreprocessing.image(from: Tensor(shape: [3, 1, 1], scalars: [-1, 0, 1])!).pixels == [0, 128, 255])
        // Overflowed outputs give pixels, not a trap: NaN → 0, ±∞ clamp.
        #expect(ImagePreprocessing.image(from: Tensor(shape: [3, 1, 1], scalars: [.nan, .infinity, -.infinity])!).pixels == [0, 255, 0])
    }
}
