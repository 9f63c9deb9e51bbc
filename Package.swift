// swift-tools-version: 6.0
// xattn: zero-shot appearance transfer (Cross-Image Attention, SD 1.5) as a Linux workstation service.
// Layout and module boundaries: ../shared/docs/ARCHITECTURE.md.
import PackageDescription

/// The numeric engine passes raw buffers into its compute pool's closures; Swift 6's strict
/// sendability checking would demand a wrapper at every kernel for no safety gain (the pool joins
/// before returning), so the engine targets stay in the Swift 5 language mode.
let engineSettings: [SwiftSetting] = [.swiftLanguageMode(.v5)]

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
    targets: [
        // C libraries from Debian's -dev packages (scripts/setup installs them). Each is imported
        // by one wrapper file.
        .systemLibrary(name: "COpenBLAS", path: "Sources/SystemLibraries/COpenBLAS"),
        .systemLibrary(name: "CPNG", path: "Sources/SystemLibraries/CPNG"),
        .systemLibrary(name: "CSystemd", path: "Sources/SystemLibraries/CSystemd"),
        .systemLibrary(name: "CInotifyTools", path: "Sources/SystemLibraries/CInotifyTools"),

        // The engine: tensors, kernels, weights (and, as they land, models, pipeline, imaging).
        .target(
            name: "Core",
            dependencies: ["COpenBLAS", "CPNG"],
            path: "Sources/Core",
            exclude: ["Wire"],
            swiftSettings: engineSettings
        ),
        // RPC message types and framing; Foundation only, shared by daemon and client.
        .target(name: "Wire", path: "Sources/Core/Wire"),

        .executableTarget(
            name: "Daemon",
            dependencies: ["Core", "Wire", "CSystemd", "CInotifyTools"],
            path: "Sources/Daemon"
        ),
        .executableTarget(name: "Client", dependencies: ["Wire"], path: "Sources/Client"),
        .executableTarget(
            name: "Bench",
            dependencies: ["Core"],
            path: "Sources/Bench",
            swiftSettings: engineSettings
        ),

        .testTarget(
            name: "CoreTests",
            dependencies: ["Core"],
            path: "Tests/CoreTests",
            swiftSettings: engineSettings
        ),
        .testTarget(name: "WireTests", dependencies: ["Wire"], path: "Tests/WireTests"),
    ]
)
