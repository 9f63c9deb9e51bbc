import Foundation
import Testing
import Core
import Wire

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

/// The `size` option's geometry (docs/ALGORITHM.md §2, "Sizes") and drawn masks through it.
@Suite struct ImageGeometryTests {
    func fit(_ w: Int, _ h: Int, _ size: ImageSize, native: Int = 512) throws -> ImageGeometry {
        try ImageGeometry.fitting(sourceWidth: w, sourceHeight: h, size: size, nativeSize: native, step: 64)
    }

    @Test func cropsAndSizes() throws {
        // native: the paper's centred square, the excess split with the smaller half first.
        let native = try fit(201, 160, .native)
        #expect([native.cropX, native.cropY, native.cropWidth, native.cropHeight, native.width, native.height] == [20, 0, 160, 160, 512, 512] as [Int])
        // WxH: the largest centred rectangle of that aspect.
        let wide = try fit(200, 160, .fixed(width: 768, height: 512))
        #expect([wide.cropX, wide.cropY, wide.cropWidth, wide.cropHeight, wide.width, wide.height] == [0, 13, 200, 133, 768, 512] as [Int])
        // auto: the image's aspect at about 512² pixels, sides rounded to 64.
        let portrait = try fit(3000, 4000, .auto)
        #expect(portrait.width == 448 && portrait.height == 576)
        #expect(portrait.cropWidth == 3000 && portrait.cropHeight == 3857 && portrait.cropY == 71)
        let panorama = try fit(4000, 1000, .auto)
        #expect(panorama.width == 1024 && panorama.height == 256)
        #expect(try fit(512, 512, .auto).width == 512)
    }

    @Test func refusesSizesItCannotRun() {
        #expect(throws: TransferError.self) { try fit(100, 100, .fixed(width: 500, height: 512)) }
        do {
            _ = try ImageGeometry.fitting(sourceWidth: 100, sourceHeight: 100, size: .fixed(width: 2048, height: 2048), nativeSize: 512, step: 64)
            Issue.record("2048² accepted")
        } catch let TransferError.invalidOption(option, reason) {
            #expect(option == "size" && reason.contains("GB of working memory"), "\(reason)")
        } catch { Issue.record("\(error)") }
    }

    /// A mask drawn at half its image's resolution lands where the image's crop puts it; empty,
    /// full and mis-shaped masks are refused.
    @Test func masksFollowTheirImage() throws {
        let geometry = try fit(200, 160, .native, native: 128)  // crop x 20…180, latent 16×16
        // White on the source's columns 100…199 (the right half): the crop's columns 80…159 → latent 8…15.
        var pixels = [UInt8](repeating: 0, count: 100 * 80 * 3)
        for y in 0..<80 { for x in 50..<100 { for c in 0..<3 { pixels[(y * 100 + x) * 3 + c] = 255 } } }
        let mask = try ObjectMask.prepare(RGBImage(width: 100, height: 80, pixels: pixels), image: geometry, latentHeight: 16, latentWidth: 16, role: "structure")
        #expect(mask.shape == [16, 16])
        #expect((0..<16).allSatisfy { x in mask.scalars[x] == (x >= 8 ? 1 : 0) }, "\(mask.scalars.prefix(16))")
        let black = RGBImage(width: 100, height: 80, pixels: [UInt8](repeating: 0, count: 100 * 80 * 3))
        let white = RGBImage(width: 100, height: 80, pixels: [UInt8](repeating: 255, count: 100 * 80 * 3))
        let square = RGBImage(width: 80, height: 80, pixels: [UInt8](repeating: 255, count: 80 * 80 * 3))
        for wrong in [black, white, square] {
            #expect(throws: TransferError.self) { try ObjectMask.prepare(wrong, image: geometry, latentHeight: 16, latentWidth: 16, role: "structure") }
        }
    }
}
