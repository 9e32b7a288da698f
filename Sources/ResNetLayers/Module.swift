import Foundation
import ResNetTensors

/// The base of every layer and model: parameters, children, names and train/eval mode.
///
/// Children and parameters are found by reflection on stored properties (as MLX-Swift
/// does), so a block written as
/// ```swift
/// final class BasicBlock: Module, Layer { let conv1: Conv2D; let bn1: BatchNorm2D; ... }
/// ```
/// names its weights `conv1.weight`, `bn1.scale`, ... with no registration code.
/// Properties holding arrays of modules are named by index (`layers.0`), and containers
/// such as ``Sequential`` may name their children themselves.
open class Module {
    /// Training mode (batch statistics, dropout) or evaluation mode.
    public private(set) var isTraining = true
    /// The dotted path of this module in its tree (`stage1.block0.conv1`); set by ``assignNames(prefix:)``.
    public internal(set) var path = ""

    public init() {}

    /// The name used in error messages: the dotted path, or the type for an unnamed root.
    public var label: String { path.isEmpty ? String(describing: type(of: self)) : path }

    /// Calls `body` on this module and every module under it, parents first.
    public func visit(_ body: (Module) -> Void) {
        body(self)
        for (_, child) in namedChildren { child.visit(body) }
    }

    /// Direct children and their names. The default reflects over stored properties.
    open var namedChildren: [(String, Module)] {
        reflectedProperties().compactMap { name, value in (value as? Module).map { (name, $0) } }
    }

    /// Parameters this module owns directly (not its children's). The default reflects.
    open var ownParameters: [(String, Parameter)] {
        reflectedProperties().compactMap { name, value in (value as? Parameter).map { (name, $0) } }
    }

    private func reflectedProperties() -> [(String, Any)] {
        var result: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [Mirror] = []
        while let m = mirror { levels.append(m); mirror = m.superclassMirror }
        for level in levels.reversed() {
            for child in level.children {
                guard let name = child.label?.trimmingCharacters(in: CharacterSet(charactersIn: "_")), name != "path" else { continue }
                let value = Mirror(reflecting: child.value)
                if value.displayStyle == .optional {
                    if let wrapped = value.children.first?.value { result.append((name, wrapped)) }
                } else if value.displayStyle == .collection {
                    for (i, element) in value.children.enumerated() { result.append(("\(name).\(i)", element.value)) }
                } else {
                    result.append((name, child.value))
                }
            }
        }
        return result
    }

    /// Gives every module and parameter below this one its dotted name.
    public func assignNames(prefix: String = "") {
        path = prefix
        for (name, p) in ownParameters { p.name = prefix.isEmpty ? name : "\(prefix).\(name)" }
        for (name, child) in namedChildren { child.assignNames(prefix: prefix.isEmpty ? name : "\(prefix).\(name)") }
    }

    /// Every parameter in the tree under its dotted name, in a stable order, including
    /// non-trainable state (batch-norm running statistics): what a checkpoint holds.
    /// Treats this module as the root and names the tree.
    public func namedParameters() -> [(String, Parameter)] {
        if path.isEmpty { assignNames() }
        return collect()
    }

    private func collect() -> [(String, Parameter)] {
        ownParameters.map { ($0.1.name, $0.1) } + namedChildren.flatMap { $0.1.collect() }
    }

    /// The trainable parameters, in a stable order (what an optimizer updates).
    public var trainableParameters: [Parameter] { namedParameters().map(\.1).filter(\.isTrainable) }

    /// Number of trainable scalars.
    public var trainableParameterCount: Int { trainableParameters.reduce(0) { $0 + $1.count } }

    /// Switches the whole tree to training mode.
    public func train() { setMode(training: true) }
    /// Switches the whole tree to evaluation mode.
    public func eval() { setMode(training: false) }

    private func setMode(training: Bool) {
        isTraining = training && !isFrozen
        for (_, child) in namedChildren { child.setMode(training: training) }
    }

    /// Whether the tree under this module is frozen (``freeze()``).
    public private(set) var isFrozen = false

    /// Freezes this module and everything under it for transfer learning: its parameters stop
    /// learning and it stays in evaluation mode (batch norm with its running statistics, no
    /// dropout) whatever ``train()`` says. Graphs traced afterwards compute no gradient for it
    /// when nothing before it learns.
    public func freeze() {
        visit { module in
            module.isFrozen = true
            module.isTraining = false
            for (_, p) in module.ownParameters { p.isFrozen = true }
        }
    }

    /// Re-initializes every parameter of the tree from `seed`, in name order, so that the
    /// same seed gives the same weights however the model was built.
    public func initializeParameters(seed: UInt64) {
        var generator = SeededGenerator(seed: seed)
        initializeTree(using: &generator)
    }

    private func initializeTree(using generator: inout SeededGenerator) {
        resetParameters(using: &generator)
        for (_, child) in namedChildren { child.initializeTree(using: &generator) }
    }

    /// Layers with parameters override this to draw their initial values.
    open func resetParameters(using generator: inout SeededGenerator) {}
}

/// A module with a forward pass. Layers declare only this; gradients come from the graph.
public protocol Layer: Module {
    func callAsFunction(_ input: Tensor) throws -> Tensor
}

/// The generator layers draw their initial weights from when they are built.
/// Seed it (``seed(_:)``) before building a model for reproducible weights, or call
/// ``Module/initializeParameters(seed:)`` afterwards.
public enum DefaultGenerator {
    nonisolated(unsafe) private static var generator = SeededGenerator(seed: 0)
    private static let lock = NSLock()

    /// Restarts the default generator from `seed`.
    public static func seed(_ seed: UInt64) { lock.withLock { generator = SeededGenerator(seed: seed) } }

    /// Runs `body` with the default generator.
    public static func with<R>(_ body: (inout SeededGenerator) -> R) -> R {
        lock.withLock { body(&generator) }
    }
}
