// swift-tools-version:6.1
import PackageDescription

/// One set of compiler settings for every target: Swift 6 language mode with
/// complete concurrency checking, plus the upcoming features we hold ourselves to.
let strictSettings: [SwiftSetting] = [
    // Lets release builds specialise generics (version vectors, codecs) across module
    // boundaries; without it the hot read path pays for runtime generic metadata.
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Ringstore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ringstore", targets: ["ringstore"]),
        .library(name: "RingstoreClient", targets: ["RingstoreClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Pure logic: no I/O, no clocks, no randomness it is not given, no dependencies.
        .target(
            name: "RingstoreCore",
            swiftSettings: strictSettings
        ),
        // The log-structured, checksummed storage engine.
        .target(
            name: "RingstoreStorage",
            dependencies: [
                "RingstoreCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings
        ),
        // The framed binary protocol on SwiftNIO (DESIGN §3b): between nodes, ring
        // servers and the partition-aware client.
        .target(
            name: "RingstoreRPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The shells: HTTP API, lifecycle, metrics; they drive the core's state machines.
        .target(
            name: "RingstoreServer",
            dependencies: [
                "RingstoreCore",
                "RingstoreRPC",
                "RingstoreStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            // The enrolment app and the dashboard: static files the ring servers serve.
            resources: [.copy("Web")],
            swiftSettings: strictSettings
        ),
        // The Swift client library used by the CLI and by Swift programs.
        .target(
            name: "RingstoreClient",
            dependencies: [
                "RingstoreCore",
                "RingstoreRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // Load generation for `ringstore bench run`: workloads, key distributions, the
        // open-loop driver, HDR histograms, the JSON report.
        .target(
            name: "RingstoreBench",
            dependencies: [
                "RingstoreCore",
                "RingstoreClient",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The one binary: argument parsing and wiring only.
        .executableTarget(
            name: "ringstore",
            dependencies: [
                "RingstoreCore",
                "RingstoreStorage",
                "RingstoreServer",
                "RingstoreClient",
                "RingstoreBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RingstoreCoreTests",
            dependencies: ["RingstoreCore"],
            swiftSettings: strictSettings
        ),
        // The deterministic simulator: whole clusters of RingstoreCore state machines on one thread.
        .testTarget(
            name: "RingstoreSimulationTests",
            dependencies: ["RingstoreCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RingstoreStorageTests",
            dependencies: ["RingstoreStorage", "RingstoreCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RingstoreRPCTests",
            dependencies: [
                "RingstoreRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The partition-aware client against real node processes (the `ringstore` binary).
        .testTarget(
            name: "RingstoreClientTests",
            dependencies: [
                "RingstoreClient",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RingstoreBenchTests",
            dependencies: ["RingstoreBench", "RingstoreCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RingstoreServerTests",
            dependencies: [
                "RingstoreServer",
                "RingstoreStorage",
                "RingstoreCore",
                "RingstoreRPC",
                "RingstoreClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
