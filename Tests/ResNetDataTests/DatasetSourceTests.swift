import Foundation
import Testing
@testable import ResNetData

@Suite("Loading data sets by name")
struct DatasetSourceTests {
    @Test("Names are what users type")
    func names() {
        #expect(DatasetName.allCases.map(\.rawValue) == ["cifar10", "cifar100", "fashion-mnist", "mnist", "folder"])
    }

    @Test("With no path, the per-user cache is searched, respecting XDG_CACHE_HOME")
    func cacheDirectories() {
        #expect(DatasetName.cacheRoot(environment: ["HOME": "/home/u"]) == "/home/u/.cache/swiftresnet")
        #expect(DatasetName.cacheRoot(environment: ["HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"]) == "/xdg/swiftresnet")
        #expect(DatasetName.cacheRoot(environment: ["HOME": "/home/u", "XDG_CACHE_HOME": "relative"]) == "/home/u/.cache/swiftresnet")
        let environment = ["HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"]
        #expect(LoadedDataset.searchPaths(.cifar10, path: nil, environment: environment) == ["/xdg/swiftresnet/cifar10"])
        #expect(LoadedDataset.searchPaths(.fashionMNIST, path: nil, environment: environment)
                == ["/xdg/swiftresnet/fashion-mnist", "/usr/share/datasets/fashion-mnist"])
        #expect(LoadedDataset.searchPaths(.mnist, path: "/data", environment: environment) == ["/data"])
    }

    @Test("CIFAR folders and archives are detected from the path")
    func cifar() throws {
        let layout = binaryLayout(.cifar100, trainPerFile: 5, test: 2, labels: .coarse)
        try withTemporaryDirectory { dir in
            try writeFiles(layout.files, to: dir + "/cifar-100-binary")
            let loaded = try LoadedDataset.load(.cifar100, from: dir, options: DatasetOptions(cifar100Labels: .coarse))
            #expect(loaded.name == "cifar100" && loaded.classNames == coarseNames)
            #expect(loaded.splits.map(\.name) == ["train", "test"])
            expectSplit(loaded.split("test"), equals: layout.test, classNames: coarseNames)
            #expect(loaded.split("validation") == nil)
        }
    }

    @Test("MNIST and Fashion-MNIST load from a folder of IDX files")
    func idx() throws {
        try withTemporaryDirectory { dir in
            try FashionMNISTTests.writeSplit("train", to: dir, count: 12, compressed: true)
            try FashionMNISTTests.writeSplit("t10k", to: dir, count: 5, compressed: false)
            let mnist = try LoadedDataset.load(.mnist, from: dir)
            #expect(mnist.name == "mnist" && mnist.classNames == (0..<10).map(String.init))
            #expect(mnist.splits.map(\.name) == ["train", "test"])
            #expect(mnist.split("train")?.count == 12 && mnist.split("test")?.count == 5)
            #expect(mnist.split("train")?.classNames == mnist.classNames)
            let fashion = try LoadedDataset.load(.fashionMNIST, from: dir)
            #expect(fashion.classNames == FashionMNIST.classNames && fashion.split("test")?.channels == 1)
        }
    }

    @Test("A missing data set says where the loader looked and how to get it", arguments: DatasetName.allCases)
    func missing(name: DatasetName) throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/absent"
            let hint = name == .mnist || name == .folder ? "give the" : "resnet download \(name.rawValue)"
            expectDescription(of: { try LoadedDataset.load(name, from: path) }, contains: [name.rawValue, "not found", path, hint])
        }
        if name == .folder {
            expectDescription(of: { try LoadedDataset.load(.folder, from: nil) }, contains: ["folder", "no path given"])
        }
    }

    static let fashionInstalled = FashionMNISTTests.installed

    @Test("With no path, Fashion-MNIST is found where Debian installs it",
          .enabled(if: fashionInstalled, "Fashion-MNIST not in /usr/share/datasets/fashion-mnist (apt install dataset-fashion-mnist); skipping"))
    func debianFashionMNIST() throws {
        let loaded = try LoadedDataset.load(.fashionMNIST, from: nil)
        #expect(loaded.split("train")?.count == 60_000 && loaded.split("test")?.count == 10_000)
    }
}
