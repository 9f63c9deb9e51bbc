import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// Every entry of a hot folder reaches a verdict and every failure reaches the folder: links,
/// FIFOs, names too long for an error file, a full disk, a writer pausing under polling.
@Suite(.serialized) struct HotFolderVerdictTests {
    typealias H = HotFolderTests

    /// A daemon with one folder `name` (a table's extra lines in `table`), its stderr in `log`.
    static func start(_ daemon: DaemonHarness, folder: String, table: String, quick: Bool = true, log: String? = nil) throws {
        let config = daemon.directory.appendingPathComponent("xattnd.toml").path
        let options = quick ? H.quickOptions : H.quickOptions.replacingOccurrences(of: "settle = 0.3", with: "")
        H.write(Data("[[folder]]\npath = \"\(folder)\"\n\(table)\n\(options)\n".utf8), config)
        try daemon.start(extra: ["--config", config], log: log)
    }

    static func reason(_ path: String) -> String? {
        if case let .string(reason)? = H.json(path)["reason"] { return reason }
        return nil
    }

    static func message(_ path: String) -> String {
        if case let .string(message)? = H.json(path)["message"] { return message }
        return ""
    }

    /// `ln`, `cp -l`, `ln -s` and `mkfifo` give IN_CREATE and never a close: they used to sit in
    /// in/ forever with their partners, past every timeout, with no error file and no log line.
    /// A hard link is an ordinary file; a symbolic link or FIFO fails at once with its reason.
    @Test func linksAndFifosGetAVerdict() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "links")
        try Self.start(daemon, folder: folder, table: "unpaired_timeout = 600")
        let staging = try H.folder(daemon, "staging")
        H.write(H.structurePNG, staging + "/s.png")
        H.write(H.appearancePNG, staging + "/a.png")

        #expect(link(staging + "/s.png", folder + "/in/hard.structure.png") == 0)
        #expect(link(staging + "/a.png", folder + "/in/hard.appearance.png") == 0)
        #expect(symlink(staging + "/s.png", folder + "/in/soft.structure.png") == 0)
        H.write(H.appearancePNG, folder + "/in/soft.appearance.png")
        #expect(mkfifo(folder + "/in/pipe.structure.png", 0o644) == 0)
        H.write(H.appearancePNG, folder + "/in/pipe.appearance.png")

        #expect(H.waitFor(folder + "/out/hard.png", seconds: 30))
        #expect(H.waitFor(folder + "/failed/soft.error.json", seconds: 10))
        #expect(H.waitFor(folder + "/failed/pipe.error.json", seconds: 10))
        #expect(Self.reason(folder + "/failed/soft.error.json") == "invalid_drop")
        #expect(Self.message(folder + "/failed/soft.error.json").contains("symbolic link"))
        #expect(Self.message(folder + "/failed/pipe.error.json").contains("FIFO"))
        #expect(H.names(folder + "/failed").isSuperset(of: ["soft.structure.png", "soft.appearance.png", "pipe.structure.png", "pipe.appearance.png"]))
        #expect(H.names(folder + "/in").isEmpty && H.names(folder + "/processing").isEmpty)
    }

    /// A dangling symbolic link in processing/ at start (a claim cut short) used to stay there:
    /// the check for what was present followed the link. It goes back to in/, then to failed/.
    @Test func danglingLinkLeavesProcessing() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "dangling")
        for sub in ["in", "processing", "out", "done", "failed"] { _ = try H.folder(daemon, "dangling/" + sub) }
        #expect(symlink("/nonexistent/ghost.png", folder + "/processing/ghost.structure.png") == 0)
        try Self.start(daemon, folder: folder, table: "unpaired_timeout = 600")
        #expect(H.waitFor(folder + "/failed/ghost.error.json", seconds: 15))
        #expect(H.names(folder + "/processing").isEmpty && H.names(folder + "/in").isEmpty)
    }

    /// A name of 250 bytes made `NAME.error.json` 261 bytes, past NAME_MAX: the error file was never
    /// written. It gets a shortened name (cut, plus a hash of the whole) and names the inputs.
    @Test func errorFileOfALongName() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "long")
        try Self.start(daemon, folder: folder, table: "")
        let stem = String(repeating: "é", count: 110) + String(repeating: "x", count: 20)  // 240 bytes
        H.write(Data("not a png".utf8), folder + "/in/\(stem).structure.png")
        H.write(H.appearancePNG, folder + "/in/\(stem).appearance.png")
        let deadline = Date().addingTimeInterval(15)
        var errorFile: String?
        while errorFile == nil && Date() < deadline {
            errorFile = H.names(folder + "/failed").first { $0.hasSuffix(".error.json") }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let name = try #require(errorFile)
        #expect(name.utf8.count <= 255 && name.hasPrefix(String(repeating: "é", count: 100)))
        guard case let .array(inputs)? = H.json(folder + "/failed/" + name)["inputs"] else { Issue.record("no inputs in the error file"); return }
        #expect(Set(inputs.compactMap { if case let .string(s) = $0 { return s } else { return nil } }) == [stem + ".structure.png", stem + ".appearance.png"])
        #expect(Self.reason(folder + "/failed/" + name) == "invalid_image")
    }

    /// A full disk: the inputs reach failed/, the error file cannot be written; it is recorded in
    /// the job store and written once space returns (before: never, the reason only in the log).
    /// Needs root to mount a small tmpfs as the folder.
    @Test func errorFileWrittenWhenSpaceReturns() throws {
        guard getuid() == 0 else { return }
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "full")
        guard mount("tmpfs", folder, "tmpfs", 0, "size=512k") == 0 else { Issue.record("cannot mount a tmpfs: \(errno)"); return }
        defer {
            daemon.stop()
            umount(folder)
        }
        try Self.start(daemon, folder: folder, table: "scan_interval = 1")
        H.write(Data("not a png".utf8), folder + "/in/broken.structure.png")
        H.write(H.appearancePNG, folder + "/in/broken.appearance.png")
        // Fill what is left under a name the folder ignores, before the drop settles (0.3 s).
        let filler = folder + "/in/.filler"
        let handle = try #require(FileHandle(forWritingAtPath: { H.write(Data(), filler); return filler }()))
        let block = Data(repeating: 0, count: 4096)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()
        #expect(H.waitFor(folder + "/failed/broken.structure.png", seconds: 15))
        Thread.sleep(forTimeInterval: 2.5)  // two scans
        #expect(!FileManager.default.fileExists(atPath: folder + "/failed/broken.error.json"))
        try FileManager.default.removeItem(atPath: filler)
        #expect(H.waitFor(folder + "/failed/broken.error.json", seconds: 10))
        #expect(Self.reason(folder + "/failed/broken.error.json") == "invalid_image")
    }

    /// A newline in a file name used to split a log line in two; names are escaped in logs.
    @Test func namesAreEscapedInLogs() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "newline")
        let log = daemon.directory.appendingPathComponent("stderr.log").path
        try Self.start(daemon, folder: folder, table: "", log: log)
        H.write(Data("not a png".utf8), folder + "/in/evil\nname.structure.png")
        H.write(H.appearancePNG, folder + "/in/evil\nname.appearance.png")
        #expect(H.waitFor(folder + "/failed/evil\nname.error.json", seconds: 15))
        let text = String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self)
        #expect(text.contains("evil\\nname"), "\(text)")
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("name") }, "\(text)")
    }

    /// Polling sees sizes and times, not closes: by default it waits 10 s of stillness, so a writer
    /// pausing 2.5 s between chunks (a copy over a network share) is not taken half-written.
    @Test func pollingWaitsOutAPausingWriter() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "polled")
        try Self.start(daemon, folder: folder, table: "poll = true\npoll_interval = 0.5", quick: false)
        H.write(H.appearancePNG, folder + "/in/slow.appearance.png")
        let path = folder + "/in/slow.structure.png"
        H.write(Data(), path)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        let thirds = stride(from: 0, to: H.structurePNG.count, by: H.structurePNG.count / 3 + 1).map { start in
            H.structurePNG.subdata(in: start..<min(start + H.structurePNG.count / 3 + 1, H.structurePNG.count))
        }
        for (index, chunk) in thirds.enumerated() {
            try handle.write(contentsOf: chunk)
            if index < thirds.count - 1 { Thread.sleep(forTimeInterval: 2.5) }
        }
        try handle.close()
        #expect(H.waitFor(folder + "/out/slow.png", seconds: 40))
        #expect(H.names(folder + "/failed").isEmpty)
    }

    /// Options the model refuses: a drop's options.json fails that drop (`invalid_options`, before:
    /// the worker trapped), and a folder's own table stops the start with the folder named.
    @Test func optionsTheModelRefuses() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "options")
        try Self.start(daemon, folder: folder, table: "")
        H.write(H.structurePNG, folder + "/in/grid.structure.png")
        H.write(H.appearancePNG, folder + "/in/grid.appearance.png")
        H.write(Data(#"{"timesteps": 1000, "skip": 0, "adainRange": [20, 100]}"#.utf8), folder + "/in/grid.options.json")
        #expect(H.waitFor(folder + "/failed/grid.error.json", seconds: 15))
        #expect(Self.reason(folder + "/failed/grid.error.json") == "invalid_options")
        #expect(Self.message(folder + "/failed/grid.error.json").contains("timesteps"))
        daemon.stop()

        let config = daemon.directory.appendingPathComponent("bad.toml").path
        H.write(Data("[[folder]]\npath = \"\(folder)\"\ntimesteps = 1000\nskip = 0\n".utf8), config)
        let (code, _, message) = try DaemonHarness.xattnd(["run", "--config", config, "--state-dir", daemon.stateDirectory, "--socket", daemon.socket,
                                                           "--model", DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path])
        #expect(code == 2 && message.contains("hot folder 'options'") && message.contains("timesteps"), "\(message)")
    }

    /// Linux file names are bytes; one that is not valid UTF-8 cannot be named by anything
    /// downstream and used to sit in in/ forever, silently. It goes to failed/ under an escaped
    /// name with its error file (found by the scan at start; here by the scan every second).
    @Test func undecodableNamesGetAVerdict() throws {
        let daemon = try DaemonHarness()
        let folder = try H.folder(daemon, "bytes")
        try Self.start(daemon, folder: folder, table: "scan_interval = 1")
        let name: [UInt8] = Array("caf".utf8) + [0xE9] + Array(".structure.png".utf8)
        let path = Array((folder + "/in/").utf8).map { CChar(bitPattern: $0) } + name.map { CChar(bitPattern: $0) } + [0]
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        #expect(fd >= 0)
        _ = H.structurePNG.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(H.waitFor(folder + "/failed/caf%E9.structure.png.error.json", seconds: 10))
        #expect(FileManager.default.fileExists(atPath: folder + "/failed/caf%E9.structure.png"))
        #expect(Self.reason(folder + "/failed/caf%E9.structure.png.error.json") == "invalid_drop")
        #expect(H.names(folder + "/in").isEmpty)
    }
}
