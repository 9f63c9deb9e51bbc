// swift-tools-version: 6.0
// xattn: zero-shot appearance transfer (Cross-Image Attention, SD 1.5) as a Linux workstation service.
// Layout and module boundaries: README.md, "Layout"; the computation: docs/ALGORITHM.md.
import PackageDescription
import Foundation

/// The CPU the engine's vector code is compiled for. Swift has no per-function multiversioning,
/// and the baseline x86-64 (SSE2) halves the width of every exp/norm loop and has no FMA, so an
/// x86-64 build host with AVX2 and FMA builds for `haswell` (x86-64-v3), like `-march=native`
/// for a workstation that builds from source. `XATTN_TARGET_CPU=NAME` picks another CPU;
/// `XATTN_TARGET_CPU=none` keeps the portable baseline.
func engineTargetCPU() -> String? {
    if let chosen = ProcessInfo.processInfo.environment["XATTN_TARGET_CPU"] {
        return chosen == "none" || chosen.isEmpty ? nil : chosen
    }
    #if arch(x86_64) && os(Linux)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let set = Set(flags.split(separator: " ").map(String.init))
    return set.isSuperset(of: ["avx2", "fma", "f16c"]) ? "haswell" : nil
    #else
    return nil
    #endif
}

/// Every target builds in the Swift 6 language mode (strict concurrency checking); the engine
/// targets add only the target CPU.
let engineSettings: [SwiftSetting] = []
    + (engineTargetCPU().map { [.unsafeFlags(["-target-cpu", $0])] } ?? [])

let package = Package(
    name: "xattn",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "XattnCore", targets: ["Core"]),
        .library(name: "XattnWire", targets: ["Wire"]),
        .executable(name: "xattnd", targets: ["Daemon"]),
        .executable(name: "xattnctl", targets: ["Client"]),
        .executable(name: "xattn-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries from Debian's -dev packages (scripts/setup installs them). Each is imported
        // by one wrapper file.
        .systemLibrary(name: "CPNG", path: "Sources/SystemLibraries/CPNG"),
        .systemLibrary(name: "CSystemd", path: "Sources/SystemLibraries/CSystemd"),
        .systemLibrary(name: "CInotifyTools", path: "Sources/SystemLibraries/CInotifyTools"),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/SystemLibraries/CTurboJPEG"),
        // PostgreSQL's own client library (libpq-dev): the shared job store of several machines.
        .systemLibrary(name: "CLibPQ", path: "Sources/SystemLibraries/CLibPQ"),

        // The engine: tensors, kernels, weights, models, pipeline, imaging. It reads JSON (safetensors
        // headers) with Wire's JSONValue, the project's one.
        .target(
            name: "Core",
            dependencies: ["CPNG", "CTurboJPEG", "CKernels", "Wire", "SystemCalls"],
            path: "Sources/Core",
            exclude: ["Wire", "SystemCalls", "Kernels"],
            swiftSettings: engineSettings
        ),
        // The kernels OpenBLAS lacks (bf16 products), in C: AVX512-BF16 code behind function-level
        // target attributes, chosen at run time by CPUID, so one binary runs on every x86-64.
        // OpenBLAS too is opened here, at run time, after choosing its kernel for the CPU.
        .target(name: "CKernels", path: "Sources/Core/Kernels", cSettings: [.unsafeFlags(["-O3"])],
                linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // libc's file and socket calls behind one wrapper (EINTR, errors naming call, path, errno).
        .target(name: "SystemCalls", path: "Sources/Core/SystemCalls"),
        // RPC message types and framing; Foundation only, shared by daemon and client.
        .target(name: "Wire", path: "Sources/Core/Wire"),

        // The service's logic: job store, RPC methods, events, hot-folder logic, settings, worker.
        // No sockets, no inotify, no signals: side effects it needs (clock, directory listing,
        // file status) come in as values, so ServiceTests run it in-process.
        .target(
            name: "Service",
            dependencies: [
                "Core", "Wire", "SystemCalls", "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            path: "Sources/Daemon/Service"
        ),
        // xattnd itself: main, the NIO socket adapter, the inotify thread, systemd, signals.
        .executableTarget(
            name: "Daemon",
            dependencies: [
                "Core", "Wire", "Service", "SystemCalls", "CommandLineOptions", "CSystemd", "CInotifyTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Daemon",
            exclude: ["Service"]
        ),
        // The transfer options both command lines take (one option group, on swift-argument-parser).
        .target(
            name: "CommandLineOptions",
            dependencies: ["Wire", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Client/Options"
        ),
        .executableTarget(
            name: "Client",
            dependencies: ["Wire", "SystemCalls", "CommandLineOptions", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Client",
            exclude: ["Options"]
        ),
        .executableTarget(
            name: "Bench",
            dependencies: ["Core"],
            path: "Sources/Bench",
            swiftSettings: engineSettings
        ),

        .testTarget(
            name: "CoreTests",
            dependencies: ["Core", "Wire", "CKernels", "SystemCalls"],
            path: "Tests/CoreTests",
            swiftSettings: engineSettings
        ),
        .testTarget(name: "WireTests", dependencies: ["Wire"], path: "Tests/WireTests"),
        // The service's logic in-process: store, RPC methods, events, drop tracking (milliseconds each).
        // A throwaway PostgreSQL server for the tests of the shared store (Debian's postgresql).
        .target(name: "TestSupport", dependencies: ["Service"], path: "Tests/Support"),
        .testTarget(
            name: "ServiceTests",
            dependencies: ["Service", "Wire", "Core", "TestSupport",
                           .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            path: "Tests/ServiceTests"
        ),
        // Runs the real xattnd and xattnctl binaries (the dependency makes SwiftPM build them):
        // what only processes show (sockets, signals, inotify, systemd, the command lines).
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Client", "Wire", "Core", "TestSupport"], path: "Tests/DaemonTests"),
    ]
)
