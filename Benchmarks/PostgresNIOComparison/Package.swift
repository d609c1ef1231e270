// swift-tools-version:6.1
// A separate package so that the main package (and CI) never builds swift-nio.
// Compares pgha's pool with PostgresNIO's PostgresClient on the same work, in the same run.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name: whatever the clone is called.
let pghaIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../..").standardized.lastPathComponent.lowercased()

let package = Package(
    name: "pgha-postgresnio-comparison",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .executableTarget(
            name: "pgha-bench-nio",
            dependencies: [
                .product(name: "HAPool", package: pghaIdentity),
                .product(name: "PGClient", package: pghaIdentity),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
