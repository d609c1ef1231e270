// swift-tools-version:6.1
// pgha: move a PostgreSQL application from a single node to a Patroni HA cluster, and keep it
// connected through every failover afterwards.
//
// Layers, bottom to top (each imports only the ones below it):
//   CLibPQ, CCurl, CCrypto   system-library shims over libpq, libcurl, libcrypto
//   BlockingIO               a small thread pool so no C call blocks Swift's cooperative pool
//   PGClient, HTTPClient     libpq and libcurl, made safe
//   Patroni                  REST models and client
//   ShadowCompare            results as values, their typed comparison, SQL fingerprints, latency histograms
//   HAPool                   topology state machine, per-node pools, routing, dual pools, config
//   Verification             checks as values
//   Sandbox                  the local rehearsal cluster (single node + etcd + 3 Patroni members)
//   Migration                stage engine, state store, playbooks, templates, runner
//   pgha                     the command-line tool
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "pgha",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PGClient", targets: ["PGClient"]),
        .library(name: "Patroni", targets: ["Patroni"]),
        .library(name: "HAPool", targets: ["HAPool"]),
        .library(name: "Verification", targets: ["Verification"]),
        .library(name: "Migration", targets: ["Migration"]),
        .library(name: "Workload", targets: ["Workload"]),
        .executable(name: "pgha", targets: ["pgha"]),
    ],
    traits: [
        // Off by default: swift-service-lifecycle brings swift-async-algorithms and
        // swift-collections, which would add ~1 min to a clean debug build (docs/POOL.md).
        .trait(
            name: "ServiceLifecycle",
            description: "PatroniHAPool conforms to swift-service-lifecycle's Service (graceful shutdown closes the pool)."
        ),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Latency histograms of the shadow stage and the pools' shadow mode.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        // Tests only: generators for the property-based tests of every parser.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // C shims
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // Plain-text presentation shared by the sandbox, migration reports and the CLI.
        .target(name: "PlainText", swiftSettings: swiftSettings),

        // Safe wrappers
        .target(name: "BlockingIO", swiftSettings: swiftSettings),
        .target(name: "PGClient", dependencies: ["CLibPQ", "BlockingIO"], swiftSettings: swiftSettings),
        .target(name: "HTTPClient", dependencies: ["CCurl", "BlockingIO"], swiftSettings: swiftSettings),

        // Shadowing's comparison, shared by the shadow stage (Migration) and the pools' shadow mode (HAPool).
        .target(
            name: "ShadowCompare",
            dependencies: ["PGClient", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: swiftSettings
        ),

        // Domain
        .target(name: "Patroni", dependencies: ["HTTPClient"], swiftSettings: swiftSettings),
        .target(
            name: "HAPool",
            dependencies: [
                "PGClient", "Patroni", "PlainText", "ShadowCompare",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["ServiceLifecycle"])),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "Verification", dependencies: ["HAPool", "PGClient", "Patroni"], swiftSettings: swiftSettings),
        .target(
            name: "Sandbox",
            dependencies: ["Patroni", "CCrypto", "PlainText"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Migration",
            dependencies: [
                "PGClient", "Patroni", "HAPool", "Verification", "CCrypto", "PlainText", "ShadowCompare",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // A miniature application for rehearsals: writers and readers through the real way in.
        .target(name: "Workload", dependencies: ["PGClient", "HAPool"], swiftSettings: swiftSettings),

        // CLI
        .executableTarget(
            name: "pgha",
            dependencies: [
                "HAPool", "Verification", "Migration", "Sandbox", "PGClient", "Patroni", "CLibPQ", "BlockingIO", "PlainText", "Workload", "ShadowCompare",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),

        // Tests: pure unit tests per module (no network, mock clock) ...
        .testTarget(name: "PGClientTests", dependencies: ["PGClient", "BlockingIO"], swiftSettings: swiftSettings),
        .testTarget(name: "WorkloadTests", dependencies: ["Workload"], swiftSettings: swiftSettings),
        // Test doubles shared by test targets: a loopback HTTP server, and documents mutated by
        // seeded generators for the property-based tests of the parsers.
        .target(
            name: "TestSupport",
            dependencies: [
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Tests/TestSupport", swiftSettings: swiftSettings
        ),
        .testTarget(name: "HTTPClientTests", dependencies: ["HTTPClient", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "PatroniTests",
            dependencies: ["Patroni", "HTTPClient", "TestSupport"],
            resources: [.copy("Fixtures")], swiftSettings: swiftSettings
        ),
        // Test doubles of the HA pool's executor: a fake clock, connections, topology source.
        .target(name: "HAPoolTesting", dependencies: ["HAPool", "Patroni", "PGClient"], path: "Tests/HAPoolTesting", swiftSettings: swiftSettings),
        .testTarget(
            name: "HAPoolTests",
            dependencies: [
                "HAPool", "HAPoolTesting", "TestSupport", "Patroni", "PGClient", "PlainText",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["ServiceLifecycle"])),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle", condition: .when(traits: ["ServiceLifecycle"])),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MigrationTests",
            dependencies: [
                "Migration", "Verification", "HAPool", "PGClient", "Patroni", "TestSupport", "PlainText", "ShadowCompare",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        // ... and integration tests against the sandbox (real PostgreSQL, Patroni, etcd on loopback).
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "PGClient", "BlockingIO", "HTTPClient", "Patroni", "HAPool", "Verification", "Migration", "Sandbox", "PlainText", "ShadowCompare",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
