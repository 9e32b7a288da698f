// swift-tools-version:6.0
import PackageDescription
import Foundation

// Release builds use -O, with every bounds and overflow check the debug build has: the shipped
// binary reads files and flags from outside and must be as safe as what the tests run.
// -Ounchecked bought nothing measurable (resnet bench resnet20, 2 threads, 2-core AMD EPYC
// Zen 5 VM, 2026-12-01, medians of 3 train / 6 eval runs alternated: train 1,756 -> 1,764
// img/s, eval 5,920 -> 5,869; docs/performance.md). A CPU-specific build (e.g.
// `RESNET_TARGET_CPU=znver5 swift build -c release`) is opt-in: by default the binaries run on
// any x86-64 machine.
let environment = ProcessInfo.processInfo.environment
var releaseFlags: [String] = []
if let cpu = environment["RESNET_TARGET_CPU"], !cpu.isEmpty {
    releaseFlags += ["-target-cpu", cpu]
}
// Debug builds (what `swift test` compiles) optimize the library targets too, keeping every
// precondition and bounds check: building a 60M-parameter model draws 60M random numbers,
// which takes a minute at -Onone and a second at -O.
let hotSettings: [SwiftSetting] = (releaseFlags.isEmpty ? [] : [.unsafeFlags(releaseFlags, .when(configuration: .release))])
    + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "SwiftResNet",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "SwiftResNet", targets: [
            "ResNetEngine", "ResNetTensors", "ResNetLayers", "ResNetModels", "ResNetOptimizers", "ResNetData", "ResNetInference", "ResNetTraining",
            "ResNetDistributed", "ResNetServing",
        ]),
        .executable(name: "resnet", targets: ["resnet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
    ],
    targets: [
        // System libraries from Debian packages (see scripts/install-deps.sh).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CLAPACK", path: "Sources/CLAPACK"),
        // Open MPI types only: libmpi is loaded with dlopen when run under mpirun (ResNetDistributed).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI"),

        // engine -> tensors and gradients -> layers -> models / optimizers / data -> inference -> training -> command line
        .target(name: "ResNetEngine", dependencies: ["CDNNL"], swiftSettings: hotSettings),
        .target(name: "ResNetTensors", dependencies: ["ResNetEngine", "CDNNL"], swiftSettings: hotSettings),
        .target(name: "ResNetLayers", dependencies: ["ResNetTensors"], swiftSettings: hotSettings),
        .target(name: "ResNetModels", dependencies: ["ResNetLayers", "ResNetTensors"], swiftSettings: hotSettings),
        .target(name: "ResNetOptimizers", dependencies: ["ResNetTensors"], swiftSettings: hotSettings),
        .target(name: "ResNetData", dependencies: ["CZlib", "CTurboJPEG", "CPNG", "CLAPACK"], swiftSettings: hotSettings),
        // A model file (weights + model card), its verified loading, evaluation and classification.
        .target(name: "ResNetInference", dependencies: [
            "ResNetTensors", "ResNetLayers", "ResNetModels", "ResNetData",
        ], swiftSettings: hotSettings),
        .target(name: "ResNetTraining", dependencies: [
            "ResNetTensors", "ResNetLayers", "ResNetModels", "ResNetOptimizers", "ResNetData", "ResNetInference",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: hotSettings),
        // Data-parallel training over Open MPI (issue 17).
        .target(name: "ResNetDistributed", dependencies: [
            "CMPI", "ResNetTensors", "ResNetLayers", "ResNetModels", "ResNetData", "ResNetTraining",
        ], swiftSettings: hotSettings),
        // The HTTP server: a model file behind Hummingbird 2 with dynamic batching (issue 16).
        .target(name: "ResNetServing", dependencies: [
            "ResNetInference", "ResNetData", "ResNetEngine", "ResNetTensors",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotSettings),
        .executableTarget(name: "resnet", dependencies: [
            "ResNetEngine", "ResNetTensors", "ResNetLayers", "ResNetModels", "ResNetOptimizers", "ResNetData", "ResNetInference", "ResNetTraining",
            "ResNetDistributed", "ResNetServing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: hotSettings),

        // The plain-Swift oracle every oneDNN op is tested against. Tests only.
        .target(name: "ResNetReference", swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),

        .testTarget(name: "ResNetReferenceTests", dependencies: ["ResNetReference"]),
        .testTarget(name: "ResNetTensorsTests", dependencies: ["ResNetTensors", "ResNetEngine", "ResNetReference"]),
        .testTarget(name: "ResNetLayersTests", dependencies: [
            "ResNetLayers", "ResNetOptimizers", "ResNetTensors", "ResNetData", "ResNetReference",
        ]),
        .testTarget(name: "ResNetModelsTests", dependencies: ["ResNetModels", "ResNetLayers", "ResNetTensors", "ResNetReference"]),
        .testTarget(name: "ResNetTrainingTests", dependencies: [
            "ResNetTraining", "ResNetInference", "ResNetModels", "ResNetData", "ResNetTensors", "ResNetLayers", "ResNetOptimizers",
        ]),
        .testTarget(name: "ResNetDataTests", dependencies: ["ResNetData"], exclude: ["Fixtures"]),
        // The test executable's malloc family, counting a thread's allocations (tests only).
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        .testTarget(name: "ResNetInferenceTests", dependencies: [
            "ResNetInference", "ResNetModels", "ResNetData", "ResNetTensors", "ResNetLayers", "ResNetOptimizers", "AllocationCounter",
        ], exclude: ["Fixtures"]),
        .testTarget(name: "ResNetServingTests", dependencies: ["ResNetServing", "ResNetInference", "ResNetModels", "ResNetData", "ResNetTensors"]),
        .testTarget(name: "ResNetDistributedTests", dependencies: ["ResNetDistributed", "ResNetTraining", "ResNetModels", "ResNetData", "ResNetInference"]),
        .testTarget(name: "ResNetOptimizersTests", dependencies: ["ResNetOptimizers", "ResNetTensors"]),
    ],
    swiftLanguageModes: [.v6]
)
