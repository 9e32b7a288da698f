import CLAPACK
import Foundation

/// ZCA whitening (Bell & Sejnowski 1997; the Keras tutorial's `zca_whitening`): images, scaled
/// to 0...1 and centred by the per-pixel mean, are multiplied by `W = U diag(1/sqrt(l + eps)) U^T`,
/// where `U, l` are the eigenvectors and eigenvalues of their covariance. The result has (nearly)
/// identity covariance while staying as close as possible to the original images.
///
/// Fitting takes the 3072x3072 covariance of CIFAR-10 (BLAS `ssyrk`, in chunks) and its
/// eigen-decomposition (LAPACK `ssyevd`); applying is one `sgemm` per batch.
public struct ZCAWhitening: Sendable {
    public let epsilon: Float
    /// Per-pixel mean, `D = C * H * W` values.
    public let mean: [Float]
    /// The symmetric `D x D` whitening matrix.
    public let matrix: [Float]
    public var dimension: Int { mean.count }

    /// The largest image (`C * H * W` values) whitening handles: its matrix has the square of it.
    public static let maximumDimension = 16_384

    /// A whitening fitted before (read from a model file): `matrix` has `mean.count` squared values.
    public init(epsilon: Float, mean: [Float], matrix: [Float]) throws {
        guard !mean.isEmpty, mean.count <= Self.maximumDimension, matrix.count == mean.count * mean.count else {
            throw DataOptionError("ZCA whitening: \(matrix.count) matrix values for a \(mean.count)-value mean (needs its square, at most \(Self.maximumDimension) values)")
        }
        guard mean.allSatisfy(\.isFinite), matrix.allSatisfy(\.isFinite) else {
            throw DataOptionError("ZCA whitening: the stored mean or matrix has non-finite values")
        }
        self.epsilon = epsilon
        self.mean = mean
        self.matrix = matrix
    }

    private init(fitted epsilon: Float, mean: [Float], matrix: [Float]) {
        self.epsilon = epsilon
        self.mean = mean
        self.matrix = matrix
    }

    /// Fits on `dataset` (the training split).
    public static func fit(_ dataset: ImageDataset, epsilon: Float) throws -> ZCAWhitening {
        let d = dataset.elementsPerImage, n = dataset.count
        guard n > 1 else { throw DataOptionError("ZCA whitening needs at least 2 training images") }
        guard d <= maximumDimension else { throw DataOptionError("ZCA whitening of \(d)-value images would need a \(d)x\(d) matrix; use channel normalization") }
        let mean = dataset.pixelMean()
        // Covariance, accumulated over chunks of centred images (row-major N x D is column-major D x N).
        var covariance = [Float](repeating: 0, count: d * d)
        let chunk = 2_048
        var block = [Float](repeating: 0, count: chunk * d)
        dataset.images.withUnsafeBufferPointer { pixels in
            var start = 0
            while start < n {
                let rows = min(chunk, n - start)
                for r in 0..<rows {
                    let source = pixels.baseAddress! + (start + r) * d
                    for j in 0..<d { block[r * d + j] = Float(source[j]) / 255 - mean[j] }
                }
                var uplo = Int8(UInt8(ascii: "U")), trans = Int8(UInt8(ascii: "N"))
                var nn = Int32(d), k = Int32(rows), lda = Int32(d), ldc = Int32(d)
                var alpha = Float(1) / Float(n), beta: Float = start == 0 ? 0 : 1
                ssyrk_(&uplo, &trans, &nn, &k, &alpha, block, &lda, &beta, &covariance, &ldc)
                start += rows
            }
        }
        // Eigen-decomposition: covariance's columns become the eigenvectors.
        var eigenvalues = [Float](repeating: 0, count: d)
        var jobz = Int8(UInt8(ascii: "V")), uplo = Int8(UInt8(ascii: "U"))
        var nn = Int32(d), lda = Int32(d), info: Int32 = 0
        var workSize: Float = 0, iworkSize: Int32 = 0, query: Int32 = -1
        ssyevd_(&jobz, &uplo, &nn, &covariance, &lda, &eigenvalues, &workSize, &query, &iworkSize, &query, &info)
        // The queried size comes back as a Float, which cannot hold 1 + 6n + 2n^2 exactly for
        // n = 3072: take the documented minimum when it is larger.
        var lwork = max(Int32(workSize.rounded(.up)), Int32(1 + 6 * d + 2 * d * d))
        var liwork = max(iworkSize, Int32(3 + 5 * d))
        var work = [Float](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
        ssyevd_(&jobz, &uplo, &nn, &covariance, &lda, &eigenvalues, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else { throw DataOptionError("ZCA whitening: the eigen-decomposition failed (LAPACK ssyevd info \(info))") }
        // W = U S U^T with S = diag(1/sqrt(l + eps)): scale U's columns, multiply by U^T.
        var scaled = covariance
        for j in 0..<d {
            let s = 1 / (max(eigenvalues[j], 0) + epsilon).squareRoot()
            for i in 0..<d { scaled[j * d + i] *= s }
        }
        var matrix = [Float](repeating: 0, count: d * d)
        var transA = Int8(UInt8(ascii: "N")), transB = Int8(UInt8(ascii: "T"))
        var m = Int32(d), ldb = Int32(d), ldc = Int32(d), k = Int32(d)
        var alpha: Float = 1, beta: Float = 0
        sgemm_(&transA, &transB, &m, &m, &k, &alpha, scaled, &lda, covariance, &ldb, &beta, &matrix, &ldc)
        return ZCAWhitening(fitted: epsilon, mean: mean, matrix: matrix)
    }

    /// Whitens `count` images in place: `x <- W (x - mean)`; `x` holds values already scaled to
    /// 0...1, `scratch` at least `count * dimension` floats.
    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int, scratch: UnsafeMutablePointer<Float>) {
        _ = singleThreadedBLAS
        let d = dimension
        mean.withUnsafeBufferPointer { m in
            for i in 0..<count { for j in 0..<d { scratch[i * d + j] = x[i * d + j] - m[j] } }
        }
        // Column-major: X^T (D x count); result W X^T, W symmetric.
        var transA = Int8(UInt8(ascii: "N")), transB = Int8(UInt8(ascii: "N"))
        var m = Int32(d), n = Int32(count), k = Int32(d), lda = Int32(d), ldb = Int32(d), ldc = Int32(d)
        var alpha: Float = 1, beta: Float = 0
        matrix.withUnsafeBufferPointer { w in
            sgemm_(&transA, &transB, &m, &n, &k, &alpha, w.baseAddress!, &lda, scratch, &ldb, &beta, x, &ldc)
        }
    }
}

/// With OpenBLAS behind libblas, whitening batches on the loader thread must not start a thread
/// team of its own next to oneDNN's: ask for one thread (a no-op with the reference BLAS).
private let singleThreadedBLAS: Void = {
    typealias SetThreads = @convention(c) (Int32) -> Void
    if let symbol = dlsym(nil, "openblas_set_num_threads") {  // nil is glibc's RTLD_DEFAULT
        unsafeBitCast(symbol, to: SetThreads.self)(1)
    }
}()
