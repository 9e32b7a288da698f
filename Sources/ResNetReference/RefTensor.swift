/// A plain row-major tensor used by the reference implementation.
///
/// Images are stored in NCHW order (`[N, C, H, W]`), matrices as `[N, K]`.
/// The last dimension varies fastest.
public struct RefTensor: Equatable, Sendable {
    /// The size of each dimension, outermost first.
    public var shape: [Int]
    /// The elements in row-major order; `data.count == shape.reduce(1, *)`.
    public var data: [Float]

    /// Creates a tensor from a shape and its row-major elements.
    ///
    /// - Precondition: `data.count` equals the product of `shape`.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "RefTensor: negative dimension in \(shape)")
        precondition(data.count == shape.reduce(1, *),
                     "RefTensor: \(data.count) elements do not fit shape \(shape)")
        self.shape = shape
        self.data = data
    }

    /// Creates a tensor of the given shape filled with zeros.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// The number of elements.
    public var count: Int { data.count }

    /// The element at `[n, c, h, w]` of a 4-D (NCHW) tensor.
    public subscript(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Float {
        get { data[offset(n, c, h, w)] }
        set { data[offset(n, c, h, w)] = newValue }
    }

    /// The row-major offset of `[n, c, h, w]`; checks the rank and the bounds.
    private func offset(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Int {
        precondition(shape.count == 4, "RefTensor: 4-D subscript on a tensor of shape \(shape)")
        precondition(n >= 0 && n < shape[0] && c >= 0 && c < shape[1]
                        && h >= 0 && h < shape[2] && w >= 0 && w < shape[3],
                     "RefTensor: index [\(n), \(c), \(h), \(w)] out of bounds for shape \(shape)")
        return ((n * shape[1] + c) * shape[2] + h) * shape[3] + w
    }
}
