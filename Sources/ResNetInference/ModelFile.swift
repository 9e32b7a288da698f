import Foundation
import ResNetData
import ResNetLayers
import ResNetModels

/// A model read from a file: its card, the network with the file's weights, and the fitted
/// whitening when its inputs are ZCA-whitened.
public struct LoadedModel {
    /// The file the weights came from.
    public let url: URL
    public let card: ModelCard
    /// The network, in evaluation mode, with the file's weights.
    public let model: any Layer
    /// The stored whitening of a ZCA card.
    public let whitening: ZCAWhitening?
    /// The file's metadata besides the card (a training run's configuration and state).
    public let metadata: [String: String]

    public init(url: URL, card: ModelCard, model: any Layer, whitening: ZCAWhitening?, metadata: [String: String]) {
        self.url = url
        self.card = card
        self.model = model
        self.whitening = whitening
        self.metadata = metadata
    }
}

/// Reads and writes model files: safetensors files whose metadata holds a ``ModelCard``.
///
/// Loading is a verified boundary (as MLX-Swift's `update(parameters:verify:)`): the file must
/// hold exactly the tensors the card's network has, each with its shape and finite values; a
/// missing, unexpected, mis-shaped or non-finite tensor is one error that lists them.
public enum ModelFile {
    /// Tensor-name prefixes that are not the network's: a run's optimizer buffers and stored
    /// preprocessing.
    public static let auxiliaryPrefixes = ["optimizer/", "preprocessing/"]

    /// The file `path` names: itself, or in a training run's directory its `best.safetensors`
    /// (the weights chosen on validation), else its `last.safetensors`.
    public static func resolve(_ path: String) throws -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFileError.io("\(path): no such model file or run directory")
        }
        let url = URL(fileURLWithPath: path)
        guard isDirectory.boolValue else { return url }
        for name in ["best.safetensors", "last.safetensors", "model.safetensors"] {
            let candidate = url.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        throw ModelFileError.io("\(path): a directory without best.safetensors, last.safetensors or model.safetensors")
    }

    /// Loads the model that `path` names (see ``resolve(_:)``).
    ///
    /// - Parameter legacyCard: derives a card from the metadata of a file written before cards
    ///   existed (a training run's configuration); `nil`, or a `nil` answer, refuses such files.
    public static func load(_ path: String, legacyCard: (([String: String], URL) throws -> ModelCard?)? = nil) throws -> LoadedModel {
        let url = try resolve(path)
        let (tensors, metadata) = try SafeTensors.read(url)
        let card: ModelCard
        if let json = metadata[ModelCard.metadataKey] {
            card = try ModelCard.decode(json, path: url.path)
        } else if let derived = try legacyCard?(metadata, url) {
            do { card = try derived.validated() } catch let error as ModelFileError {
                throw ModelFileError.invalidCard("\(url.path): \(error.description)")
            }
        } else {
            throw ModelFileError.invalidCard("\(url.path): no model card in the metadata (key '\(ModelCard.metadataKey)'): not a SwiftResNet model file")
        }
        // Stored preprocessing is exactly what the card needs: the ZCA mean and matrix, or nothing.
        let stored = Set(tensors.keys.filter { $0.hasPrefix("preprocessing/") })
        if case .zca = card.preprocessing.normalization {
            guard stored.isSubset(of: [ModelCard.zcaMeanTensor, ModelCard.zcaMatrixTensor]) else {
                throw ModelFileError.mismatch("\(url.path): unexpected preprocessing tensors \(stored.sorted())")
            }
        } else if let extra = stored.sorted().first {
            throw ModelFileError.mismatch("\(url.path): a preprocessing tensor '\(extra)' the card's normalization does not use")
        }
        let model = try card.buildModel()
        try loadWeights(tensors, into: model, path: url.path)
        model.eval()
        var whitening: ZCAWhitening?
        if case .zca(let epsilon) = card.preprocessing.normalization,
           let mean = tensors[ModelCard.zcaMeanTensor], let matrix = tensors[ModelCard.zcaMatrixTensor] {
            guard mean.values.count == card.input.shape.reduce(1, *) else {
                throw ModelFileError.mismatch("\(url.path): the stored ZCA mean has \(mean.values.count) values for \(card.input.shape.reduce(1, *))-value inputs")
            }
            do { whitening = try ZCAWhitening(epsilon: epsilon, mean: mean.values, matrix: matrix.values) } catch let error as DataOptionError {
                throw ModelFileError.mismatch("\(url.path): \(error.description)")
            }
        }
        var others = metadata
        others[ModelCard.metadataKey] = nil
        return LoadedModel(url: url, card: card, model: model, whitening: whitening, metadata: others)
    }

    /// The network's tensors by name, plain layout, as a model file stores them.
    public static func tensors(of model: Module) -> [String: SafeTensors.Tensor] {
        var tensors: [String: SafeTensors.Tensor] = [:]
        for (name, p) in model.namedParameters() { tensors[name] = SafeTensors.Tensor(shape: p.shape, values: p.values) }
        return tensors
    }

    /// The tensors that store a fitted whitening.
    public static func tensors(of whitening: ZCAWhitening) -> [String: SafeTensors.Tensor] {
        [ModelCard.zcaMeanTensor: SafeTensors.Tensor(shape: [whitening.dimension], values: whitening.mean),
         ModelCard.zcaMatrixTensor: SafeTensors.Tensor(shape: [whitening.dimension, whitening.dimension], values: whitening.matrix)]
    }

    /// Writes `model`'s weights with `card` (and the whitening a ZCA card needs) atomically to
    /// `url`; `extraTensors` and `metadata` add a run's optimizer buffers and state.
    public static func write(model: Module, card: ModelCard, whitening: ZCAWhitening?,
                             extraTensors: [String: SafeTensors.Tensor] = [:], metadata: [String: String] = [:],
                             to url: URL) throws {
        var tensors = tensors(of: model)
        if case .zca = card.preprocessing.normalization {
            guard let whitening else { throw ModelFileError.invalidCard("\(url.path): a ZCA model card needs its fitted whitening") }
            tensors.merge(Self.tensors(of: whitening)) { a, _ in a }
        }
        if let clash = extraTensors.keys.first(where: { tensors[$0] != nil }) {
            throw ModelFileError.invalidCard("\(url.path): the extra tensor '\(clash)' has the name of one of the model's")
        }
        tensors.merge(extraTensors) { a, _ in a }
        var all = metadata
        all[ModelCard.metadataKey] = try card.validated().encoded()
        try SafeTensors.write(tensors, metadata: all, to: url)
    }
}

/// Copies a file's tensors into `model`'s parameters by name, after checking that the file
/// holds exactly the network's tensors (auxiliary ones under ``ModelFile/auxiliaryPrefixes``
/// aside), each with the parameter's shape and only finite values.
///
/// - Throws: ``ModelFileError/mismatch(_:)`` listing every missing, unexpected and mis-shaped
///   tensor (the first few of each), or the first non-finite one; nothing is copied then.
public func loadWeights(_ tensors: [String: SafeTensors.Tensor], into model: Module, path: String) throws {
    let parameters = model.namedParameters()
    let expected = Set(parameters.map(\.0))
    let missing = parameters.map(\.0).filter { tensors[$0] == nil }
    let unexpected = tensors.keys.filter { name in
        !expected.contains(name) && !ModelFile.auxiliaryPrefixes.contains(where: { name.hasPrefix($0) })
    }.sorted()
    let misshaped = parameters.compactMap { name, p -> String? in
        guard let t = tensors[name], t.shape != p.shape else { return nil }
        return "'\(name)' is \(t.shape), the network's is \(p.shape)"
    }
    func list(_ items: [String], _ what: String) -> String? {
        guard !items.isEmpty else { return nil }
        let shown = items.prefix(4).map { $0.hasPrefix("'") ? $0 : "'\($0)'" }.joined(separator: ", ")
        return "\(items.count) \(what) (\(shown)\(items.count > 4 ? ", ..." : ""))"
    }
    let problems = [list(missing, "missing"), list(unexpected, "unexpected"), list(misshaped, "mis-shaped")].compactMap { $0 }
    if !problems.isEmpty {
        throw ModelFileError.mismatch("\(path): the tensors do not fit the network (another architecture, shortcut option or input?): \(problems.joined(separator: "; "))")
    }
    for (name, _) in parameters {
        if let bad = tensors[name]!.values.first(where: { !$0.isFinite }) {
            throw ModelFileError.mismatch("\(path): tensor '\(name)' holds \(bad): the weights are not finite (a diverged run?)")
        }
    }
    for (name, parameter) in parameters { try parameter.setValues(tensors[name]!.values) }
}

/// Removes what interrupted atomic writes left in `folder`: ``writeAtomically(_:to:)``'s
/// temporary files (`.NAME.PID.tmp`) whose process is gone (a `kill -9` mid-write leaves one).
/// Returns the names removed.
@discardableResult
public func removeStaleTemporaryFiles(in folder: URL) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
    var removed: [String] = []
    for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
        let parts = name.dropLast(4).split(separator: ".")
        guard let pid = parts.last.flatMap({ Int32($0) }), pid > 0 else { continue }
        // Alive (kill answers, or refuses for lack of permission): its write may be in progress.
        if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }
        if unlink(folder.appendingPathComponent(name).path) == 0 { removed.append(name) }
    }
    return removed.sorted()
}
