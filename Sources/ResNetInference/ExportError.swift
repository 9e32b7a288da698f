/// Why a model could not be exported: one line for the user, naming the model's file and the
/// reason. Nothing is written when an export fails.
public enum ExportError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The network has a layer or a setting the target format cannot express (a layer type the
    /// exporter does not know, batch norm that normalizes with each batch's own statistics, a
    /// model beyond ONNX's 2 GiB protobuf limit).
    case inexpressible(String)
    /// No PyTorch network has this model's layout under torchvision's or akamaster's names.
    case noCounterpart(String)

    public var description: String {
        switch self {
        case .inexpressible(let m), .noCounterpart(let m): m
        }
    }
}
