import Foundation
import Testing
import Wire

/// Command lines are read strictly by every executable: an unparsable or unknown value is a usage
/// error (exit 2) naming the flag, before anything is sent or run.
@Suite struct CommandLineTests {
    static func ctl(_ arguments: [String]) throws -> (code: Int32, output: String, error: String) {
        // No daemon listens there: a usage error must be found before connecting (exit 2, not 3).
        try DaemonHarness.runToEnd([DaemonHarness.binaries.appendingPathComponent("xattnctl").path, "--socket", "/nonexistent/xattn.sock"] + arguments)
    }

    @Test func xattnctlRefusesValuesItCannotParse() throws {
        let images = [DaemonHarness.structure, DaemonHarness.appearance]
        for (extra, flag) in [(["--seed", "abc"], "--seed"), (["--timesteps", "ten"], "--timesteps"), (["--seeds", "7"], "--seeds"),
                              (["--seed", "-1"], "--seed"), (["--priority", "9223372036854775808"], "--priority"),
                              (["--adain-range", "20-100"], "--adain-range"), (["--contrast", "nan"], "--contrast"), (["--wait", "--out"], "--out")] {
            let run = try Self.ctl(["submit"] + images + extra)
            #expect(run.code == 2, "\(extra): \(run.code) \(run.error)")
            #expect(run.error.contains(flag), "\(extra): \(run.error)")
        }
        #expect(try Self.ctl(["submit", DaemonHarness.structure]).code == 2)
        #expect(try Self.ctl(["list", "--limit", "lots"]).code == 2)
        #expect(try Self.ctl(["cancel"]).code == 2)
        #expect(try Self.ctl(["status", "a", "b"]).code == 2)
        #expect(try Self.ctl(["frobnicate"]).code == 2)
        // Well-formed commands get as far as connecting.
        #expect(try Self.ctl(["submit"] + images + ["--seed", "7", "--timesteps", "20"]).code == 3)
        let help = try Self.ctl(["submit", "--help"])
        #expect(help.code == 0 && help.output.contains("USAGE: xattnctl submit") && help.output.contains("--cross-attn-range-0"))
        let top = try Self.ctl(["--help"])
        #expect(top.code == 0 && top.output.contains("Exit codes"))
        let completion = try Self.ctl(["--generate-completion-script", "bash"])
        #expect(completion.code == 0 && completion.output.hasPrefix("#!/bin/bash") && completion.output.contains("submit"))
    }

    @Test func xattndRefusesValuesItCannotParse() throws {
        let bad = try DaemonHarness.xattnd(["run", "--queue-limit", "lots", "--model", "/nonexistent"])
        #expect(bad.code == 2 && bad.error.contains("--queue-limit"), "\(bad)")
        let transfer = try DaemonHarness.xattnd(["transfer", "--seed", "abc", "--model", "/nonexistent", "--structure", "s", "--appearance", "a", "--out", "o"])
        #expect(transfer.code == 2 && transfer.error.contains("--seed"), "\(transfer)")
        let help = try DaemonHarness.xattnd(["run", "--help"])
        #expect(help.code == 0 && help.output.contains("USAGE: xattnd run") && help.output.contains("--queue-limit"))
        #expect(try DaemonHarness.xattnd(["--help"]).output.contains("check-config"))
        // Bounds are those of the configuration file's keys.
        let zero = try DaemonHarness.xattnd(["run", "--queue-limit", "0", "--model", "/nonexistent"])
        #expect(zero.code == 2 && zero.error.contains("--queue-limit must be in 1…1000000"), "\(zero)")
    }

    /// `xattn-bench unet --help` used to start the benchmark (minutes of full-size UNet passes).
    @Test func benchmarkHelpDoesNotRunTheBenchmark() throws {
        let bench = DaemonHarness.binaries.appendingPathComponent("xattn-bench").path
        let started = Date()
        let help = try DaemonHarness.runToEnd([bench, "unet", "--help"])
        #expect(help.code == 0 && help.output.contains("usage: xattn-bench"))
        #expect(Date().timeIntervalSince(started) < 10)
        let typo = try DaemonHarness.runToEnd([bench, "unet", "--quik"])
        #expect(typo.code == 2 && typo.error.contains("--quik"))
    }
}
