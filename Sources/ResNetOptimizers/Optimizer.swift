import ResNetTensors

/// Updates parameters in place from the gradients the last backward pass wrote.
///
/// One call to ``update(_:)`` is one training step. The learning rate is a plain
/// settable property: a schedule just sets it before each step.
///
/// State (momentum buffers, Adam moments) is kept per parameter object and is
/// allocated the first time the optimizer sees a parameter, by ``update(_:)`` or
/// ``register(_:)``; later steps do not allocate. Parameters with
/// `isTrainable == false` (batch-norm running statistics) are ignored everywhere.
///
/// ## State dictionary keys
/// Keys are `"<key>.<slot>"`, where `<key>` is the parameter's `name`, or
/// `"param<i>"` for a parameter with an empty name, `i` being its position in the
/// order the optimizer first saw trainable parameters (0-based, counting named ones
/// too). Slots: `momentum` for ``SGD`` (with momentum), `exp_avg`, `exp_avg_sq`
/// and `step` (one element, an integer) for ``Adam`` and ``AdamW``, `square_avg` for ``RMSprop``. A parameter whose
/// state has not been created by a step yet has no entries.
public protocol Optimizer: AnyObject {
    /// The step size used by the next ``update(_:)``. Must be finite and `>= 0`
    /// (setting anything else is a precondition failure).
    var learningRate: Float { get set }
    /// Applies one update to every trainable parameter from its current gradient.
    /// Pass each parameter at most once per call.
    func update(_ parameters: [Parameter])
    /// Creates (empty) state for trainable parameters without changing them, so a
    /// fresh optimizer can load a checkpointed state before its first step.
    func register(_ parameters: [Parameter])
    /// Named state for checkpoints: e.g. `"stage1.conv.weight.momentum"` -> values.
    func stateDictionary() -> [String: [Float]]
    /// Replaces the state of every registered parameter with the one in `state`.
    ///
    /// A registered parameter without entries gets fresh state. Throws
    /// ``OptimizerError`` on unknown keys, wrong sizes, partial entries or an invalid
    /// step; the state is unchanged when it throws.
    func loadStateDictionary(_ state: [String: [Float]]) throws
}

extension Optimizer {
    /// Registers `parameters` (see ``register(_:)``), then loads `state`.
    public func loadStateDictionary(_ state: [String: [Float]], for parameters: [Parameter]) throws {
        register(parameters)
        try loadStateDictionary(state)
    }
}
