import Core
import Foundation
import Testing
import Wire

/// Sizes, drawn masks and previews through the doors other than the RPC itself (tested
/// in-process in ServiceTests' ImageOptionTests): xattnctl, xattnd transfer and a hot folder, with
/// the real executables on the tiny model (native 128×128, sides in steps of 64).
@Suite(.serialized) struct ImageDoorTests {
    /// The demo images are 200×160; this mask keeps the left part of either (white = object).
    static func maskFile(_ directory: URL) throws -> String {
        var pixels = [UInt8](repeating: 0, count: 200 * 160 * 3)
        for y in 0..<160 { for x in 0..<90 { for c in 0..<3 { pixels[(y * 200 + x) * 3 + c] = 255 } } }
        let path = directory.appendingPathComponent("mask.png").path
        try PNGLibrary.encode(RGBImage(width: 200, height: 160, pixels: pixels)).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func decode(_ path: String) -> RGBImage? {
        FileManager.default.contents(atPath: path).flatMap { try? ImageDecoder.decode($0) }
    }

    /// A job of T = 100 on the tiny model: long enough (seconds) to watch previews arrive.
    static let longJob = ["--domain", "animal", "--timesteps", "100", "--skip", "32"]

    @Test func xattnctlSubmitsSizesMasksAndFollowsPreviews() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        defer { daemon.stop() }
        let mask = try Self.maskFile(daemon.directory)
        let preview = daemon.directory.appendingPathComponent("preview.png").path, out = daemon.directory.appendingPathComponent("out.png").path
        let run = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--size", "192x128", "--structure-mask", mask,
                              "--preview-every", "3", "--out", out, "--preview", preview] + DaemonHarness.quick)
        #expect(run.code == 0, "\(run.output)")
        // 192×128 → a 24×16 latent; the linear preview has the latent's size.
        let image = Self.decode(out), shown = Self.decode(preview)
        #expect(image?.width == 192 && image?.height == 128)
        #expect(shown?.width == 24 && shown?.height == 16)

        // watch --preview of a job already running writes the latest preview at once, then each new one.
        let job = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--preview-every", "1"] + Self.longJob).output
        #expect(daemon.waitUntil(job, isIn: ["running", "succeeded"]) != "queued")
        let watched = daemon.directory.appendingPathComponent("watched.png").path
        let watch = daemon.ctl(["watch", job, "--preview", watched])
        #expect(watch.code == 0, "\(watch.output)")
        #expect(Self.decode(watched)?.width == 16)

        // A mask marking the whole image is refused at submit (exit 2: an option the daemon refuses).
        let white = daemon.directory.appendingPathComponent("white.png").path
        try PNGLibrary.encode(RGBImage(width: 200, height: 160, pixels: [UInt8](repeating: 255, count: 200 * 160 * 3))).write(to: URL(fileURLWithPath: white))
        let refused = daemon.ctl(["submit", DaemonHarness.structure, DaemonHarness.appearance, "--structure-mask", white] + DaemonHarness.quick)
        #expect(refused.code == 2, "\(refused)")
    }

    @Test func xattndTransferTakesSizesMasksAndWritesPreviews() throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("xattn-doors-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let mask = try Self.maskFile(directory)
        let out = directory.appendingPathComponent("out.png").path, preview = directory.appendingPathComponent("preview.png").path
        let run = try DaemonHarness.xattnd(["transfer", "--model", DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path,
                                            "--structure", DaemonHarness.structure, "--appearance", DaemonHarness.appearance, "--out", out,
                                            "--size", "128x192", "--appearance-mask", mask, "--preview", preview, "--no-cache"] + DaemonHarness.quick)
        #expect(run.code == 0, "\(run.error)")
        #expect(Self.decode(out).map { ($0.width, $0.height) } ?? (0, 0) == (128, 192))
        #expect(Self.decode(preview).map { ($0.width, $0.height) } ?? (0, 0) == (16, 24))
        let tooBig = try DaemonHarness.xattnd(["transfer", "--model", DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path,
                                               "--structure", DaemonHarness.structure, "--appearance", DaemonHarness.appearance, "--out", out,
                                               "--size", "1024x1024", "--max-pixels", "500000", "--no-cache"] + DaemonHarness.quick)
        #expect(tooBig.code != 0 && tooBig.error.contains("working memory"), "\(tooBig.error)")
    }

    /// NAME.structure-mask.png with the pair, `previews = true`: processing/NAME.preview.png is
    /// there while the job runs and gone when it is delivered; the sidecar names the mask given.
    @Test func hotFolderTakesMasksAndKeepsAPreview() throws {
        let daemon = try DaemonHarness()
        let pets = try HotFolderTests.folder(daemon, "pets")
        let config = daemon.directory.appendingPathComponent("xattnd.toml").path
        _ = FileManager.default.createFile(atPath: config, contents: Data("""
            [[folder]]
            path = "\(pets)"
            previews = true
            preview_every = 1
            size = "192x128"
            domain = "animal"
            timesteps = 100
            skip = 32
            settle = 0.3
            """.utf8))
        try daemon.start(extra: ["--config", config])
        defer { daemon.stop() }
        let mask = try #require(FileManager.default.contents(atPath: try Self.maskFile(daemon.directory)))
        HotFolderTests.write(mask, pets + "/in/fox.structure-mask.png")
        HotFolderTests.write(HotFolderTests.structurePNG, pets + "/in/fox.structure.png")
        HotFolderTests.write(HotFolderTests.appearancePNG, pets + "/in/fox.appearance.png")
        #expect(HotFolderTests.waitFor(pets + "/processing/fox.preview.png"), "a preview while the job runs")
        #expect(HotFolderTests.waitFor(pets + "/out/fox.png"))
        Thread.sleep(forTimeInterval: 0.3)
        #expect(!FileManager.default.fileExists(atPath: pets + "/processing/fox.preview.png"), "the preview goes with the job")
        #expect(HotFolderTests.names(pets + "/done") == ["fox.structure.png", "fox.appearance.png", "fox.structure-mask.png"])
        #expect(Self.decode(pets + "/out/fox.png").map { ($0.width, $0.height) } ?? (0, 0) == (192, 128))
        let sidecar = HotFolderTests.json(pets + "/out/fox.json")
        #expect(sidecar["masks"]?["structure"]?["source"] == "given" && sidecar["masks"]?["appearance"]?["source"] == "self-segmentation")

        // A mask that does not fit its image fails the drop with the reason.
        var wrong = [UInt8](repeating: 255, count: 50 * 50 * 3)
        wrong[0] = 0
        HotFolderTests.write(try PNGLibrary.encode(RGBImage(width: 50, height: 50, pixels: wrong)), pets + "/in/owl.structure-mask.png")
        HotFolderTests.write(HotFolderTests.structurePNG, pets + "/in/owl.structure.png")
        HotFolderTests.write(HotFolderTests.appearancePNG, pets + "/in/owl.appearance.png")
        #expect(HotFolderTests.waitFor(pets + "/failed/owl.error.json"))
        let error = HotFolderTests.json(pets + "/failed/owl.error.json")
        #expect(error["reason"] == "invalid_options", "\(error)")
    }
}
