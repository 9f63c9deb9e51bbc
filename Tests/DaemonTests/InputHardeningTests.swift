import Core
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Wire

/// Input that used to pass validation and then crash the process (exit 132) or fail late: each is
/// refused at the boundary with its reason, and the daemon goes on serving.
@Suite(.serialized) struct InputHardeningTests {
    typealias Raw = MalformedFrameTests.Raw

    /// A greeted raw connection.
    static func connect(_ daemon: DaemonHarness) throws -> Raw {
        let raw = try Raw(daemon.socket)
        raw.send(MalformedFrameTests.hello)
        _ = raw.receive()
        return raw
    }

    static func submit(_ raw: Raw, structure: Data, appearance: Data, options: JSONValue? = nil) -> RPCMessage? {
        var params: [String: JSONValue] = ["structure": .string(structure.base64EncodedString()), "appearance": .string(appearance.base64EncodedString())]
        params["options"] = options
        raw.send(MalformedFrameTests.request(7, .submit, .object(params)))
        return raw.receive()
    }

    static func error(_ message: RPCMessage?) -> RPCErrorObject? {
        if case let .error(_, error)? = message { return error }
        return nil
    }

    static let png = FileManager.default.contents(atPath: DaemonHarness.structure) ?? Data()
    static let jpeg = FileManager.default.contents(atPath: DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/images/photo.jpg").path) ?? Data()

    /// Options only the loaded model and schedule can refuse: `invalid_options` at submit, naming the
    /// option (before: queued, then the worker trapped at t = 1000 and the service died).
    @Test func optionsAreCheckedAgainstTheModelAtSubmit() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let raw = try Self.connect(daemon)
        let grid = Self.error(Self.submit(raw, structure: Self.png, appearance: Self.png, options: .object(["timesteps": .integer(1000), "skip": .integer(0)])))
        #expect(grid?.reason == "invalid_options" && grid?.message.contains("timesteps") == true, "\(String(describing: grid))")
        let noun = Self.error(Self.submit(raw, structure: Self.png, appearance: Self.png,
                                          options: .object(["objectNoun": .string(String(repeating: "zebra ", count: 100))])))
        #expect(noun?.reason == "invalid_options" && noun?.message.contains("object-noun") == true, "\(String(describing: noun))")
        let absent = Self.error(Self.submit(raw, structure: Self.png, appearance: Self.png, options: .object(["domain": .string("animal"), "objectNoun": .string("giraffe")])))
        #expect(absent?.reason == "invalid_options", "\(String(describing: absent))")
        // The CLI exits 2 (a usage error) naming the flag, and the daemon lives on.
        let cli = try DaemonHarness.runToEnd([DaemonHarness.binaries.appendingPathComponent("xattnctl").path, "--socket", daemon.socket, "submit",
                                              DaemonHarness.structure, DaemonHarness.appearance, "--timesteps", "1000", "--skip", "0"])
        #expect(cli.code == 2 && cli.error.contains("--timesteps"), "\(cli)")
        #expect(daemon.ctl(["status"]).code == 0)
        #expect(daemon.state(daemon.submit()) != "unknown")
    }

    /// Broken images are decoded whole at submit and refused with `invalid_image` (before: any bytes
    /// after a PNG or JPEG signature were queued and failed later).
    @Test func brokenImagesAreRefusedAtSubmit() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let raw = try Self.connect(daemon)
        var badCRC = Self.png
        badCRC[32] ^= 0xFF  // the last byte of IHDR's CRC (8 signature + 4 length + 4 type + 13 data + 4 CRC)
        let cases: [(String, Data, String)] = [
            ("truncated PNG", Self.png.prefix(Self.png.count / 2), "structure"),
            ("PNG with a bad CRC", badCRC, "structure"),
            ("empty file", Data(), "empty"),
            ("JPEG header alone", Self.jpeg.prefix(20), "not a complete JPEG"),
            ("truncated JPEG", Self.jpeg.prefix(Self.jpeg.count * 2 / 3), "structure"),
        ]
        for (name, data, words) in cases {
            let error = Self.error(Self.submit(raw, structure: data, appearance: Self.png))
            #expect(error?.reason == "invalid_image", "\(name): \(String(describing: error))")
            #expect(error?.message.contains(words) == true, "\(name): \(String(describing: error?.message))")
            #expect(error?.message.contains("67108864") == false, "\(name): \(String(describing: error?.message))")
        }
        let list = try JSONDecoder().decode(ListResult.self, from: Data(daemon.ctl(["--json", "list"]).output.utf8))
        #expect(list.jobs.isEmpty)
    }

    /// `xattnd transfer` exits 2 naming the flag for options the model refuses (before: exit 132).
    @Test func transferCommandRefusesOptionsTheModelCannotRun() throws {
        let out = NSTemporaryDirectory() + "xattn-never-\(UUID().uuidString).png"
        let (code, _, message) = try DaemonHarness.xattnd([
            "transfer", "--model", DaemonHarness.repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path,
            "--structure", DaemonHarness.structure, "--appearance", DaemonHarness.appearance, "--out", out,
            "--timesteps", "1000", "--skip", "0", "--no-cache",
        ])
        #expect(code == 2, "\(message)")
        #expect(message.contains("--timesteps"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// The second wall: a job the service died running (SIGKILL here, as a crash would) is run once
    /// more, and failed with a reason when it happens again, so it cannot take the service down
    /// restart after restart; the rest of the queue goes on.
    @Test func aJobTheServiceDiedRunningTwiceIsFailed() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--max-attempts", "5"])
        let poisoned = daemon.submit(["--domain", "animal"])  // a default job: long enough to be killed in
        let next = daemon.submit()
        for round in 1...2 {
            #expect(daemon.waitUntil(poisoned, isIn: ["running"]) == "running", "round \(round)")
            if let pid = daemon.process?.processIdentifier { kill(pid, SIGKILL) }
            daemon.process?.waitUntilExit()
            try daemon.start(extra: ["--max-attempts", "5"])
        }
        let info = try JSONDecoder().decode(JobInfo.self, from: Data(daemon.ctl(["--json", "status", poisoned]).output.utf8))
        #expect(info.state == .failed)
        #expect(info.attempts == 2)
        #expect(info.error?.message.contains("stopped abnormally") == true, "\(String(describing: info.error))")
        #expect(daemon.waitUntil(next, isIn: ["succeeded", "failed"]) == "succeeded")
    }

    /// Valid JSON whose numbers do not fit a field is named, not called "not valid JSON".
    @Test func outOfRangeNumbersAreNamed() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let raw = try Self.connect(daemon)
        let seed = Self.error(Self.submit(raw, structure: Self.png, appearance: Self.png, options: .object(["seed": .integer(-1)])))
        #expect(seed?.reason == "invalid_options" && seed?.message.contains("seed") == true, "\(String(describing: seed))")
        #expect(seed?.message.contains("not valid JSON") == false)
        let params: [String: JSONValue] = ["structure": .string(Self.png.base64EncodedString()), "appearance": .string(Self.png.base64EncodedString()),
                                           "priority": .number(9_223_372_036_854_775_808)]
        raw.send(MalformedFrameTests.request(8, .submit, .object(params)))
        let priority = Self.error(raw.receive())
        #expect(priority?.reason == "invalid_params" && priority?.message.contains("priority") == true, "\(String(describing: priority))")
    }

    /// A PNG of 36 million pixels compresses to a few hundred KB. Six submitted at once used to be
    /// decoded at once (≈250 MB each); decodes now take turns, so the daemon's peak stays near one.
    @Test func concurrentLargeImagesDoNotMultiplyMemory() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        #expect(daemon.ctl(["pause"]).code == 0)
        let side = 6000
        let png = try PNGLibrary.encode(RGBImage(width: side, height: side, pixels: [UInt8](repeating: 0x80, count: side * side * 3)))
        #expect(png.count < 1 << 20)
        let threads = (0..<6).map { _ in
            Thread {
                guard let raw = try? Self.connect(daemon) else { return }
                _ = Self.submit(raw, structure: png, appearance: Self.png)
            }
        }
        threads.forEach { $0.start() }
        while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.1) }
        let status = (try? String(contentsOfFile: "/proc/\(daemon.process?.processIdentifier ?? 0)/status", encoding: .utf8)) ?? ""
        let peakKB = Int(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }?.split(separator: " ").dropFirst().first ?? "0") ?? 0
        #expect(peakKB > 0 && peakKB < 700_000, "peak \(peakKB / 1024) MB")
        #expect(daemon.ctl(["list"]).output.split(separator: "\n").count == 6)
    }
}
