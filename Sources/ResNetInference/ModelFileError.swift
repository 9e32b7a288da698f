/// A model file that cannot be used: one line for the user, naming the file and the reason.
public enum ModelFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bytes are not a valid file of their format (safetensors, model card JSON).
    case invalidFile(String)
    /// The file is well formed but does not fit the model it describes: missing, unexpected or
    /// mis-shaped tensors, non-finite weights.
    case mismatch(String)
    /// The model card is unusable: unknown architecture, sizes beyond the bounds, inconsistent
    /// preprocessing.
    case invalidCard(String)
    /// The file cannot be read or written.
    case io(String)

    public var description: String {
        switch self {
        case .invalidFile(let m), .mismatch(let m), .invalidCard(let m), .io(let m): m
        }
    }
}
