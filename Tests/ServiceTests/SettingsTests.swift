import Foundation
import Testing
@testable import Service
import Wire

/// The configuration file and `run`'s flags, read in-process: one schema for a folder's transfer
/// options (the wire's fields in snake_case), unknown keys refused, errors naming file and key.
@Suite struct SettingsTests {
    func settings(_ toml: String) throws -> DaemonSettings {
        var settings = DaemonSettings()
        try settings.apply(toml: toml, path: "test.toml")
        return settings
    }

    func message(_ toml: String) -> String {
        do { _ = try settings(toml); return "accepted" } catch { return "\(error)" }
    }

    /// The shipped example, every commented key included, reads without error.
    @Test func theShippedExampleReads() throws {
        let example = try String(contentsOf: Fixtures.repository.appendingPathComponent("systemd/xattnd.toml"), encoding: .utf8)
        let settings = try settings(example)
        #expect(settings.queueLimit == 100 && settings.maximumFrameSize == 33_554_432 && settings.storeMaxBytes == 4_294_967_296)
        let uncommented = example.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix("# [[folder]]") || line.hasPrefix("# path") || line.hasPrefix("# settle") || line.hasPrefix("# domain")
                ? String(line.dropFirst(2)) : String(line)
        }.joined(separator: "\n")
        #expect(try self.settings(uncommented).folders.count == 1)
    }

    /// The shared store's keys and flags; a password only through a file.
    @Test func databaseNodeAndMaxPixels() throws {
        let read = try settings("""
            database = "postgresql://xattn@db/xattn"
            database_password_file = "/etc/xattnd/db-password"
            node = "n1"
            max_pixels = 589824
            """)
        #expect(read.database == "postgresql://xattn@db/xattn" && read.databasePasswordFile == "/etc/xattnd/db-password")
        #expect(read.node == "n1" && read.maxPixels == 589_824)
        #expect(message("node = \"\"").contains("node"))
        #expect(message("database_password = \"x\"").contains("database_password"), "no password in the file itself")
        var flags = SettingsOverrides()
        (flags.database, flags.node) = ("host=/tmp dbname=x", "n2")
        var settings = read
        try settings.apply(overrides: flags)
        #expect(settings.database == "host=/tmp dbname=x" && settings.node == "n2")
        #expect(DaemonSettings().node == ProcessInfo.processInfo.hostName)
    }

    @Test func folderOptionsAreTheWireFieldsInSnakeCase() throws {
        let folder = try #require(try settings("""
            [[folder]]
            path = "/srv/x"
            object_noun = "cat"
            domain = "animal"
            seed = 7
            timesteps = 50
            skip = 10
            masked_adain = false
            swap_guidance = 3
            contrast = 1.5
            cross_attn_range_0 = [10, 40]
            cross_attn_range_1 = [10, 30]
            adain_range = [20, 45]
            """).folders.first)
        var expected = TransferParameters()
        (expected.objectNoun, expected.domain, expected.seed, expected.timesteps, expected.skip) = ("cat", "animal", 7, 50, 10)
        (expected.maskedAdain, expected.swapGuidance, expected.contrast) = (false, 3, 1.5)
        (expected.crossAttnRange0, expected.crossAttnRange1, expected.adainRange) = ([10, 40], [10, 30], [20, 45])
        #expect(folder.options == expected)
    }

    @Test func everyOptionHasOneSpellingInTheFile() {
        for key in TransferParameters.CodingKeys.allCases {
            #expect(TOML.camelCase(TOML.snakeCase(key.rawValue)) == key.rawValue)
        }
        #expect(TOML.snakeCase("crossAttnRange0") == "cross_attn_range_0" && TOML.snakeCase("maskedAdain") == "masked_adain")
        // The wire's spelling is not the file's.
        #expect(message("[[folder]]\npath = \"/srv/x\"\nobjectNoun = \"cat\"").contains("unknown setting 'objectNoun'"))
    }

    @Test func mistakesAreNamed() {
        #expect(message("queue_limit = \"ten\"").contains("queue_limit must be a whole number"))
        #expect(message("queue_limt = 3").contains("unknown setting 'queue_limt'"))
        #expect(message("queue_limit = 0").contains("queue_limit must be a whole number in 1…1000000"))
        #expect(message("queue_limit = = 3").contains("line 1"))
        #expect(message("job_visibility = \"some\"").contains("job_visibility must be \"owner\" or \"all\""))
        #expect(message("[[folder]]\npath = \"relative\"").contains("absolute"))
        #expect(message("[[folder]]\npath = \"/srv/x\"\ntimesteps = \"ten\"").contains("timesteps: expected a whole number"))
        #expect(message("[[folder]]\npath = \"/srv/x\"\nseed = -1").contains("seed"))
        #expect(message("[[folder]]\npath = \"/srv/x\"\nsetle = 1").contains("unknown setting 'setle'"))
        #expect(message("[[folder]]\npath = \"/a\"\n[[folder]]\npath = \"/a/b\"").contains("overlap"))
        #expect(message("started = 1979-05-27").contains("dates and times are not settings"))
    }

    /// A flag is held to its key's bounds.
    @Test func flagsWinWithinTheSameBounds() throws {
        var settings = try settings("queue_limit = 5")
        var overrides = SettingsOverrides()
        overrides.queueLimit = 7
        try settings.apply(overrides: overrides)
        #expect(settings.queueLimit == 7)
        overrides.queueLimit = 0
        #expect(throws: DaemonSettings.Invalid.self) { try settings.apply(overrides: overrides) }
        overrides = SettingsOverrides()
        overrides.jobVisibility = "everyone"
        #expect(throws: DaemonSettings.Invalid.self) { try settings.apply(overrides: overrides) }
    }
}
