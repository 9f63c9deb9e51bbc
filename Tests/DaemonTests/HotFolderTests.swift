import Core
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// Hot folders through the real daemon on the tiny model: files written, renamed and deleted by
/// the test as a user would, results and failures checked on disk.
@Suite(.serialized) struct HotFolderTests {
    /// Short jobs (T = 5) so that a hundred of them fit in a test.
    static let quickOptions = """
        domain = "animal"
        timesteps = 5
        skip = 1
        cross_attn_range_0 = [1, 4]
        cross_attn_range_1 = [1, 4]
        adain_range = [1, 4]
        settle = 0.3
        """

    /// A job directory's options for the default T = 100 job: seconds long, long enough to interrupt.
    static let longJobOptions = Data(#"{"timesteps": 100, "skip": 32, "crossAttnRange0": [10, 90], "crossAttnRange1": [10, 70], "adainRange": [20, 100]}"#.utf8)

    static let structurePNG = FileManager.default.contents(atPath: DaemonHarness.structure) ?? Data()
    static let appearancePNG = FileManager.default.contents(atPath: DaemonHarness.appearance) ?? Data()

    /// A daemon with `folders` (TOML tables without the header) under its temp dir.
    static func start(_ daemon: DaemonHarness, folders: [String], extra: [String] = []) throws {
        let config = daemon.directory.appendingPathComponent("xattnd.toml").path
        let text = folders.map { "[[folder]]\n" + $0 + "\n" + quickOptions }.joined(separator: "\n\n")
        _ = FileManager.default.createFile(atPath: config, contents: Data(text.utf8))
        try daemon.start(extra: ["--config", config] + extra)
    }

    static func folder(_ daemon: DaemonHarness, _ name: String) throws -> String {
        let path = daemon.directory.appendingPathComponent(name).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func write(_ data: Data, _ path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: data)
    }

    /// Waits until `path` exists.
    @discardableResult
    static func waitFor(_ path: String, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !FileManager.default.fileExists(atPath: path) {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return true
    }

    static func names(_ directory: String) -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
    }

    static func json(_ path: String) -> [String: JSONValue] {
        guard let data = FileManager.default.contents(atPath: path),
              case let .object(fields)? = try? JSONDecoder().decode(JSONValue.self, from: data) else { return [:] }
        return fields
    }

    /// `daemon.status`'s hot folders, by name.
    static func folders(_ daemon: DaemonHarness) -> [String: FolderStatus] {
        let output = daemon.ctl(["--json", "status"]).output
        let folders = (try? JSONDecoder().decode(DaemonStatus.self, from: Data(output.utf8)))?.folders ?? []
        return Dictionary(folders.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    static func jobs(_ daemon: DaemonHarness) -> [JobInfo] {
        let output = daemon.ctl(["--json", "list", "--limit", "1000"]).output
        return (try? JSONDecoder().decode(ListResult.self, from: Data(output.utf8)))?.jobs ?? []
    }

    /// The three pairing modes, junk, an unpaired file, a corrupt image, and the same pair twice.
    @Test func pairingModesJunkAndFailures() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets"), zebra = try Self.folder(daemon, "zebra")
        try Self.start(daemon, folders: [
            "path = \"\(pets)\"\nunpaired_timeout = 2",
            "path = \"\(zebra)\"\nname = \"zebras\"\nappearance = \"\(DaemonHarness.appearance)\"",
        ])
        // Mode 2: NAME.structure.EXT + NAME.appearance.EXT, written in place.
        Self.write(Self.structurePNG, pets + "/in/giraffe.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/giraffe.appearance.png")
        // Mode 1: a job directory with an options file, prepared elsewhere and renamed into place.
        let staging = daemon.directory.appendingPathComponent("staging").path
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        Self.write(Self.structurePNG, staging + "/structure.png")
        Self.write(Self.appearancePNG, staging + "/appearance.png")
        Self.write(Data(#"{"seed": 7}"#.utf8), staging + "/options.json")
        #expect(rename(staging, pets + "/in/job1") == 0)
        // Mode 1 again, the directory made in place and filled file by file.
        try FileManager.default.createDirectory(atPath: pets + "/in/job2", withIntermediateDirectories: false)
        Self.write(Self.structurePNG, pets + "/in/job2/structure.png")
        Self.write(Self.appearancePNG, pets + "/in/job2/appearance.png")
        // Mode 3: every image dropped into a folder with a fixed appearance is a job.
        Self.write(Self.structurePNG, zebra + "/in/horse.png")
        // Junk is never taken nor failed.
        let junk = [".DS_Store", "._giraffe.png", "photo.png.part", "upload.tmp", "big.png.crdownload", ".hidden.structure.png"]
        for name in junk { Self.write(Self.structurePNG, pets + "/in/" + name) }
        // A corrupt image: a PNG signature and then garbage.
        Self.write(Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 100)), pets + "/in/broken.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/broken.appearance.png")
        // A misspelt option fails the drop with the key named, not a job with the default seed.
        try FileManager.default.createDirectory(atPath: pets + "/in/typo", withIntermediateDirectories: false)
        Self.write(Self.structurePNG, pets + "/in/typo/structure.png")
        Self.write(Self.appearancePNG, pets + "/in/typo/appearance.png")
        Self.write(Data(#"{"seeds": 7}"#.utf8), pets + "/in/typo/options.json")
        // Unpaired: times out into failed/ with a reason.
        Self.write(Self.structurePNG, pets + "/in/lonely.structure.png")

        #expect(Self.waitFor(pets + "/out/giraffe.png"))
        #expect(Self.waitFor(pets + "/out/job1.png"))
        #expect(Self.waitFor(pets + "/out/job2.png"))
        #expect(Self.waitFor(zebra + "/out/horse.png"))
        #expect(Self.waitFor(pets + "/failed/broken.error.json"))
        #expect(Self.waitFor(pets + "/failed/lonely.error.json"))

        #expect(Self.names(pets + "/done") == ["giraffe.structure.png", "giraffe.appearance.png", "job1", "job2"])
        #expect(Self.names(pets + "/done/job1") == ["structure.png", "appearance.png", "options.json"])
        #expect(Self.names(zebra + "/done") == ["horse.png"])
        let sidecar = Self.json(pets + "/out/job1.json")
        #expect(sidecar["folder"] == .string("pets") && sidecar["name"] == .string("job1"))
        #expect(sidecar["seed"] == .integer(7))
        #expect(sidecar["model"] != nil && sidecar["seconds"] != nil)
        // The options as run, in the dialect of options.json and job.submit (defaults filled in).
        if case let .object(options)? = sidecar["options"] {
            #expect(options["seed"] == .integer(7) && options["timesteps"] == .integer(5) && options["maskedAdain"] == .bool(true))
            #expect(options["adainRange"] == .array([.integer(1), .integer(4)]) && options["prompt"] == .string("A photo of a animal"))
        } else { Issue.record("no options in the sidecar") }

        let broken = Self.json(pets + "/failed/broken.error.json")
        #expect(broken["reason"] == .string("invalid_image"))
        #expect(broken["code"] == .integer(-32003))
        #expect(broken["job"] == .null)  // refused at the gate (the whole image is decoded): no job was made
        #expect(broken["time"] != nil && broken["message"] != nil)
        #expect(Self.names(pets + "/failed").isSuperset(of: ["broken.structure.png", "broken.appearance.png", "lonely.structure.png"]))
        #expect(Self.json(pets + "/failed/lonely.error.json")["reason"] == .string("unpaired"))
        #expect(Self.waitFor(pets + "/failed/typo.error.json"))
        let typo = Self.json(pets + "/failed/typo.error.json")
        #expect(typo["reason"] == .string("invalid_options") && typo["job"] == .null)
        if case let .string(message)? = typo["message"] { #expect(message.contains("'seeds'")) } else { Issue.record("no message in \(typo)") }

        // The same pair again: no new job, a second result.
        let before = Self.jobs(daemon).count
        Self.write(Self.structurePNG, pets + "/in/again.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/again.appearance.png")
        #expect(Self.waitFor(pets + "/out/again.png"))
        #expect(Self.jobs(daemon).count == before)

        // Junk is still there, untouched; processing/ is empty; the list names the folders.
        #expect(Self.names(pets + "/in") == Set(junk))
        #expect(Self.names(pets + "/processing").isEmpty)
        let jobs = Self.jobs(daemon)
        #expect(jobs.count == 3)  // giraffe and job2 are the same pair with the same options: one job; broken made none
        #expect(Set(jobs.compactMap(\.folder)) == ["pets", "zebras"] && jobs.allSatisfy { $0.source == "hot-folder" })
        #expect(daemon.ctl(["list"]).output.contains("hot-folder zebras"))
        let folders = Self.folders(daemon)
        #expect(folders["pets"]?.mode == "inotify" && folders["zebras"]?.mode == "inotify")
        #expect(folders["pets"]?.waiting == 0 && folders["pets"]?.processing == 0)
    }

    /// A file written slowly is taken only once its writer closes it; a file renamed into place is
    /// taken at once.
    @Test func slowWriterAndRenameIntoPlace() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets")
        try Self.start(daemon, folders: ["path = \"\(pets)\""])
        Self.write(Self.appearancePNG, pets + "/in/slow.appearance.png")
        let handle = try #require(FileHandle(forWritingAtPath: {
            Self.write(Data(), pets + "/in/slow.structure.png"); return pets + "/in/slow.structure.png"
        }()))
        let half = Self.structurePNG.count / 2
        try handle.write(contentsOf: Self.structurePNG.prefix(half))
        Thread.sleep(forTimeInterval: 1.5)  // five settle delays with the file open and half written
        #expect(Self.names(pets + "/in").contains("slow.structure.png"))
        #expect(Self.names(pets + "/processing").isEmpty)
        try handle.write(contentsOf: Self.structurePNG.dropFirst(half))
        try handle.close()
        #expect(Self.waitFor(pets + "/out/slow.png"))
        #expect(Self.names(pets + "/failed").isEmpty)

        // Written under a junk name, then renamed: IN_MOVED_TO.
        Self.write(Self.structurePNG, pets + "/in/.moved.structure.png.tmp")
        Self.write(Self.appearancePNG, pets + "/in/moved.appearance.jpg.part")
        #expect(rename(pets + "/in/.moved.structure.png.tmp", pets + "/in/moved.structure.png") == 0)
        #expect(rename(pets + "/in/moved.appearance.jpg.part", pets + "/in/moved.appearance.png") == 0)
        #expect(Self.waitFor(pets + "/out/moved.png"))
        #expect(Self.names(pets + "/done") == ["slow.structure.png", "slow.appearance.png", "moved.structure.png", "moved.appearance.png"])
    }

    /// A burst through inotify: 40 files at once (20 pairs, each different) with a queue limit of 5:
    /// drops wait in in/ while the queue is full and none is lost. (The same with 200 files and
    /// the jobs' ends simulated runs in-process: ServiceTests, HotFolderIntakeTests.)
    @Test func aBurstOfFilesWithAFullQueue() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets")
        try Self.start(daemon, folders: ["path = \"\(pets)\""], extra: ["--queue-limit", "5"])
        let staging = daemon.directory.appendingPathComponent("staging").path
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let base = try PNGLibrary.decode(Self.structurePNG)
        for i in 0..<20 {
            var image = base
            image.pixels[0] = UInt8(i)  // distinct contents: distinct jobs
            image.pixels[1] = UInt8(i / 7)
            Self.write(try PNGLibrary.encode(image), staging + "/p\(i).structure.png")
            Self.write(Self.appearancePNG, staging + "/p\(i).appearance.png")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: staging) {
            #expect(rename(staging + "/" + name, pets + "/in/" + name) == 0)
        }
        let deadline = Date().addingTimeInterval(240)
        while Self.names(pets + "/out").filter({ $0.hasSuffix(".png") }).count < 20 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(Self.names(pets + "/out").filter { $0.hasSuffix(".png") }.count == 20)
        #expect(Self.names(pets + "/done").count == 40)
        #expect(Self.names(pets + "/failed").isEmpty && Self.names(pets + "/in").isEmpty)
        #expect(Self.jobs(daemon).count == 20)
    }

    /// Files dropped while the daemon was down are taken at start; a restart in the middle of a
    /// job loses nothing: the job runs again and its drop is delivered.
    @Test func filesBeforeStartAndRestartMidJob() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets")
        for name in ["in", "processing", "out", "done", "failed"] {
            try FileManager.default.createDirectory(atPath: pets + "/" + name, withIntermediateDirectories: true)
        }
        Self.write(Self.structurePNG, pets + "/in/early.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/early.appearance.png")
        // A long job (the default T = 100) in a job directory, to be interrupted.
        try FileManager.default.createDirectory(atPath: pets + "/in/long", withIntermediateDirectories: true)
        Self.write(Self.structurePNG, pets + "/in/long/structure.png")
        Self.write(Self.appearancePNG, pets + "/in/long/appearance.png")
        Self.write(Self.longJobOptions, pets + "/in/long/options.json")
        try Self.start(daemon, folders: ["path = \"\(pets)\""])
        let deadline = Date().addingTimeInterval(30)
        var long: JobInfo?
        while long?.state != .running && Date() < deadline {
            long = Self.jobs(daemon).first { $0.options.timesteps == 100 }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(long?.state == .running)
        daemon.stop()
        // Both drops stay claimed: the long one was interrupted, the early one is still queued.
        #expect(Self.names(pets + "/processing") == ["long", "early.structure.png", "early.appearance.png"])
        #expect(!FileManager.default.fileExists(atPath: pets + "/out/long.png"))
        try Self.start(daemon, folders: ["path = \"\(pets)\""])
        #expect(Self.waitFor(pets + "/out/long.png", seconds: 120))
        #expect(Self.waitFor(pets + "/out/early.png"))
        #expect(Self.names(pets + "/done") == ["early.structure.png", "early.appearance.png", "long"])
        let job = try #require(Self.jobs(daemon).first { $0.options.timesteps == 100 })
        #expect(job.state == .succeeded && job.attempts == 2)
    }

    /// A hot-folder job is cancelled like any other (by its owner, here the test's user): its
    /// drop goes to failed/ with reason "cancelled".
    @Test func cancelAHotFolderJob() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets")
        try Self.start(daemon, folders: ["path = \"\(pets)\""])
        try FileManager.default.createDirectory(atPath: pets + "/in/long", withIntermediateDirectories: true)
        Self.write(Self.structurePNG, pets + "/in/long/structure.png")
        Self.write(Self.appearancePNG, pets + "/in/long/appearance.png")
        Self.write(Self.longJobOptions, pets + "/in/long/options.json")
        let deadline = Date().addingTimeInterval(30)
        var job: JobInfo?
        while job?.state != .running && Date() < deadline {
            job = Self.jobs(daemon).first
            Thread.sleep(forTimeInterval: 0.1)
        }
        let id = try #require(job?.id)
        #expect(job?.owner == getuid())
        #expect(daemon.ctl(["cancel", id]).code == 0)
        #expect(Self.waitFor(pets + "/failed/long.error.json"))
        let error = Self.json(pets + "/failed/long.error.json")
        #expect(error["reason"] == .string("cancelled") && error["job"] == .string(id))
        #expect(Self.names(pets + "/failed/long") == ["structure.png", "appearance.png", "options.json"])
        #expect(daemon.state(id) == "cancelled")
    }

    /// Events lost to a full inotify queue (IN_Q_OVERFLOW) are made up by a rescan: with the
    /// daemon stopped, enough junk events fill the kernel's queue (max_queued_events) so that those
    /// of a pair dropped next are dropped; the pair is still taken well before the periodic scan.
    @Test func overflowRescans() throws {
        let limit = Int((try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16384
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets")
        try Self.start(daemon, folders: ["path = \"\(pets)\"\nscan_interval = 3600"])
        #expect(Self.waitFor(pets + "/in"))
        Thread.sleep(forTimeInterval: 2.5)  // the first look after the watch is set up is over
        let pid = try #require(daemon.process?.processIdentifier)
        kill(pid, SIGSTOP)
        // Each empty junk file is two events (IN_CREATE, IN_CLOSE_WRITE).
        for i in 0...(limit / 2) { Self.write(Data(), pets + "/in/.junk-\(i)") }
        Self.write(Self.structurePNG, pets + "/in/flood.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/flood.appearance.png")
        kill(pid, SIGCONT)
        #expect(Self.waitFor(pets + "/out/flood.png", seconds: 30))
    }

    /// A folder deleted and created again is watched again; a polled folder works without inotify.
    @Test func deletedAndRecreatedAndPolling() throws {
        let daemon = try DaemonHarness()
        let pets = try Self.folder(daemon, "pets"), polled = try Self.folder(daemon, "polled")
        try Self.start(daemon, folders: ["path = \"\(pets)\"", "path = \"\(polled)\"\npoll = true\npoll_interval = 0.3"])
        #expect(Self.waitFor(pets + "/in"))
        #expect(Self.folders(daemon)["polled"]?.mode == "polling")
        try FileManager.default.removeItem(atPath: pets)
        Thread.sleep(forTimeInterval: 1)
        #expect(Self.folders(daemon)["pets"]?.mode == "unavailable")
        try FileManager.default.createDirectory(atPath: pets + "/in", withIntermediateDirectories: true)
        Self.write(Self.structurePNG, pets + "/in/back.structure.png")
        Self.write(Self.appearancePNG, pets + "/in/back.appearance.png")
        #expect(Self.waitFor(pets + "/out/back.png", seconds: 30))

        Self.write(Self.structurePNG, polled + "/in/polled.structure.png")
        Self.write(Self.appearancePNG, polled + "/in/polled.appearance.png")
        #expect(Self.waitFor(polled + "/out/polled.png", seconds: 30))
        #expect(Self.names(polled + "/done") == ["polled.structure.png", "polled.appearance.png"])
    }

    /// The shipped example's [[folder]] block, uncommented, is a valid configuration.
    @Test func exampleFolderConfiguration() throws {
        let example = try DaemonHarness.exampleConfiguration()
        let block = try #require(example.range(of: "# [[folder]]"))
        let uncommented = example[block.lowerBound...].split(separator: "\n").map { line in
            line.hasPrefix("# appearance") || !line.hasPrefix("# ") ? "" : String(line.dropFirst(2))
        }
        let daemon = try DaemonHarness()
        let config = daemon.directory.appendingPathComponent("example.toml").path
        Self.write(Data((example[..<block.lowerBound] + uncommented.joined(separator: "\n")).utf8), config)
        let (code, text, _) = try DaemonHarness.xattnd(["check-config", config])
        #expect(code == 0 && text.contains("1 hot folder"), "\(text)")
    }

    /// Bad folder configuration is refused at start with the key named.
    @Test func invalidFolderConfiguration() throws {
        let daemon = try DaemonHarness()
        for (table, message) in [("path = \"relative\"", "absolute"), ("path = \"/tmp/x\"\nsetle = 1", "unknown setting 'setle'"),
                                 ("path = \"/tmp/x\"\ntimesteps = 1", "timesteps")] {
            let config = daemon.directory.appendingPathComponent("bad.toml").path
            Self.write(Data("model = \"/nonexistent\"\n[[folder]]\n\(table)\n".utf8), config)
            let (code, _, text) = try DaemonHarness.xattnd(["check-config", config])
            #expect(code != 0)
            #expect(text.contains(message), "\(text)")
        }
    }
}
