// exp and log come from the platform C library (no Foundation needed).
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Plain-Swift reference implementations of the network's operations.
///
/// These are the oracle the oneDNN implementations are tested against:
/// straightforward loops, accumulation in `Double`, results rounded to `Float`.
/// Images are `[N, C, H, W]`, matrices `[N, K]`, both row-major.
/// Every `...Backward` function returns the gradient of a scalar loss with
/// respect to the inputs, given the gradient with respect to the output.
public enum Reference {

    // MARK: - Convolution

    /// 2-D cross-correlation as PyTorch's `conv2d` (no groups, no dilation).
    ///
    /// - Parameters:
    ///   - x: Input `[N, C, H, W]`.
    ///   - weight: Filters `[O, C, KH, KW]`.
    ///   - bias: `O` values added to each output channel, or `nil`.
    ///   - stride: `(sh, sw)`, both at least 1.
    ///   - padding: `(ph, pw)` zeros added on each side.
    /// - Returns: `[N, O, (H + 2ph - KH)/sh + 1, (W + 2pw - KW)/sw + 1]`.
    public static func conv2d(_ x: RefTensor, weight: RefTensor, bias: [Float]?,
                              stride: (Int, Int), padding: (Int, Int)) -> RefTensor {
        let (n, c, h, w) = dims4(x, "conv2d input")
        let (o, wc, kh, kw) = dims4(weight, "conv2d weight")
        precondition(wc == c, "conv2d: weight has \(wc) input channels, input has \(c)")
        if let bias { precondition(bias.count == o, "conv2d: bias has \(bias.count) values, expected \(o)") }
        let oh = windowCount(h, kernel: kh, stride: stride.0, padding: padding.0)
        let ow = windowCount(w, kernel: kw, stride: stride.1, padding: padding.1)

        var y = RefTensor(zeros: [n, o, oh, ow])
        for b in 0..<n {
            for oc in 0..<o {
                for i in 0..<oh {
                    for j in 0..<ow {
                        var sum = Double(bias?[oc] ?? 0)
                        for ic in 0..<c {
                            for p in 0..<kh {
                                let ih = i * stride.0 - padding.0 + p
                                guard ih >= 0 && ih < h else { continue }
                                for q in 0..<kw {
                                    let iw = j * stride.1 - padding.1 + q
                                    guard iw >= 0 && iw < w else { continue }
                                    sum += Double(x[b, ic, ih, iw]) * Double(weight[oc, ic, p, q])
                                }
                            }
                        }
                        y[b, oc, i, j] = Float(sum)
                    }
                }
            }
        }
        return y
    }

    /// Gradients of ``conv2d(_:weight:bias:stride:padding:)``.
    ///
    /// - Parameters:
    ///   - dy: Gradient with respect to the output, shaped like the forward output.
    ///   - hasBias: Whether to return the bias gradient (the sum of `dy` over N, H, W).
    /// - Returns: Gradients with respect to the input, the weight and (if `hasBias`) the bias.
    public static func conv2dBackward(_ x: RefTensor, weight: RefTensor,
                                      stride: (Int, Int), padding: (Int, Int),
                                      outputGradient dy: RefTensor, hasBias: Bool)
        -> (input: RefTensor, weight: RefTensor, bias: [Float]?) {
        let (n, c, h, w) = dims4(x, "conv2d input")
        let (o, wc, kh, kw) = dims4(weight, "conv2d weight")
        precondition(wc == c, "conv2dBackward: weight has \(wc) input channels, input has \(c)")
        let oh = windowCount(h, kernel: kh, stride: stride.0, padding: padding.0)
        let ow = windowCount(w, kernel: kw, stride: stride.1, padding: padding.1)
        precondition(dy.shape == [n, o, oh, ow],
                     "conv2dBackward: output gradient has shape \(dy.shape), expected \([n, o, oh, ow])")

        var dx = [Double](repeating: 0, count: x.count)
        var dw = [Double](repeating: 0, count: weight.count)
        var db = [Double](repeating: 0, count: o)
        for b in 0..<n {
            for oc in 0..<o {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let g = Double(dy[b, oc, i, j])
                        db[oc] += g
                        for ic in 0..<c {
                            for p in 0..<kh {
                                let ih = i * stride.0 - padding.0 + p
                                guard ih >= 0 && ih < h else { continue }
                                for q in 0..<kw {
                                    let iw = j * stride.1 - padding.1 + q
                                    guard iw >= 0 && iw < w else { continue }
                                    dx[offset(x.shape, b, ic, ih, iw)] += g * Double(weight[oc, ic, p, q])
                                    dw[offset(weight.shape, oc, ic, p, q)] += g * Double(x[b, ic, ih, iw])
                                }
                            }
                        }
                    }
                }
            }
        }
        return (input: tensor(x.shape, dx), weight: tensor(weight.shape, dw),
                bias: hasBias ? floats(db) : nil)
    }

    // MARK: - Batch normalization

    /// Batch normalization in training mode: normalizes each channel with the
    /// statistics of this batch over (N, H, W).
    ///
    /// `output = scale[c] * (x - mean[c]) / sqrt(variance[c] + epsilon) + shift[c]`.
    /// - Returns: The output, and the batch mean and *biased* variance
    ///   (divided by `N*H*W`) of each channel.
    public static func batchNormTraining(_ x: RefTensor, scale: [Float], shift: [Float], epsilon: Float)
        -> (output: RefTensor, mean: [Float], variance: [Float]) {
        let c = x.shape.count == 4 ? x.shape[1] : 0
        precondition(scale.count == c && shift.count == c, "batchNormTraining: need \(c) scale and shift values")
        let (mean, variance) = channelStatistics(x)
        let output = normalize(x, scale: scale, shift: shift, mean: mean, variance: variance, epsilon: epsilon)
        return (output: output, mean: floats(mean), variance: floats(variance))
    }

    /// Gradients of ``batchNormTraining(_:scale:shift:epsilon:)``, including the
    /// paths through the batch mean and variance.
    ///
    /// With `xhat = (x - mean) / sqrt(var + eps)` and `M = N*H*W`:
    /// `dx = scale / sqrt(var + eps) * (dy - sum(dy)/M - xhat * sum(dy * xhat)/M)`,
    /// `dscale = sum(dy * xhat)`, `dshift = sum(dy)` (sums per channel).
    public static func batchNormTrainingBackward(_ x: RefTensor, scale: [Float], epsilon: Float,
                                                 outputGradient dy: RefTensor)
        -> (input: RefTensor, scale: [Float], shift: [Float]) {
        let (n, c, h, w) = dims4(x, "batchNormTrainingBackward input")
        precondition(scale.count == c, "batchNormTrainingBackward: need \(c) scale values")
        precondition(dy.shape == x.shape, "batchNormTrainingBackward: output gradient shape \(dy.shape) != \(x.shape)")
        let (mean, variance) = channelStatistics(x)
        let m = Double(n * h * w)

        var dx = RefTensor(zeros: x.shape)
        var dscale = [Float](repeating: 0, count: c)
        var dshift = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            let invStd = 1 / (variance[ch] + Double(epsilon)).squareRoot()
            var sumDy = 0.0, sumDyXhat = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w {
                let g = Double(dy[b, ch, i, j])
                sumDy += g
                sumDyXhat += g * (Double(x[b, ch, i, j]) - mean[ch]) * invStd
            } } }
            for b in 0..<n { for i in 0..<h { for j in 0..<w {
                let xhat = (Double(x[b, ch, i, j]) - mean[ch]) * invStd
                let g = Double(dy[b, ch, i, j])
                dx[b, ch, i, j] = Float(Double(scale[ch]) * invStd * (g - sumDy / m - xhat * sumDyXhat / m))
            } } }
            dscale[ch] = Float(sumDyXhat)
            dshift[ch] = Float(sumDy)
        }
        return (input: dx, scale: dscale, shift: dshift)
    }

    /// Batch normalization in inference mode, with given (constant) statistics.
    ///
    /// `output = scale[c] * (x - mean[c]) / sqrt(variance[c] + epsilon) + shift[c]`.
    public static func batchNormInference(_ x: RefTensor, scale: [Float], shift: [Float],
                                          mean: [Float], variance: [Float], epsilon: Float) -> RefTensor {
        let c = x.shape.count == 4 ? x.shape[1] : 0
        precondition(scale.count == c && shift.count == c && mean.count == c && variance.count == c,
                     "batchNormInference: need \(c) values of scale, shift, mean and variance")
        return normalize(x, scale: scale, shift: shift, mean: mean.map(Double.init),
                         variance: variance.map(Double.init), epsilon: epsilon)
    }

    /// Gradients of ``batchNormInference(_:scale:shift:mean:variance:epsilon:)``;
    /// the mean and variance are treated as constants.
    ///
    /// `dx = scale / sqrt(var + eps) * dy`, `dscale = sum(dy * xhat)`, `dshift = sum(dy)`.
    public static func batchNormInferenceBackward(_ x: RefTensor, scale: [Float], mean: [Float],
                                                  variance: [Float], epsilon: Float,
                                                  outputGradient dy: RefTensor)
        -> (input: RefTensor, scale: [Float], shift: [Float]) {
        let (n, c, h, w) = dims4(x, "batchNormInferenceBackward input")
        precondition(scale.count == c && mean.count == c && variance.count == c,
                     "batchNormInferenceBackward: need \(c) values of scale, mean and variance")
        precondition(dy.shape == x.shape, "batchNormInferenceBackward: output gradient shape \(dy.shape) != \(x.shape)")
        var dx = RefTensor(zeros: x.shape)
        var dscale = [Float](repeating: 0, count: c)
        var dshift = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            let invStd = 1 / (Double(variance[ch]) + Double(epsilon)).squareRoot()
            var sumDy = 0.0, sumDyXhat = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w {
                let g = Double(dy[b, ch, i, j])
                sumDy += g
                sumDyXhat += g * (Double(x[b, ch, i, j]) - Double(mean[ch])) * invStd
                dx[b, ch, i, j] = Float(Double(scale[ch]) * invStd * g)
            } } }
            dscale[ch] = Float(sumDyXhat)
            dshift[ch] = Float(sumDy)
        }
        return (input: dx, scale: dscale, shift: dshift)
    }

    /// Updates running statistics the PyTorch way:
    /// `running = (1 - momentum) * running + momentum * batch`.
    ///
    /// For the running variance, callers pass the *unbiased* batch variance
    /// (the biased one times `M / (M - 1)`, `M = N*H*W`), as PyTorch does;
    /// ``batchNormTraining(_:scale:shift:epsilon:)`` returns the biased one.
    public static func updateRunningStatistics(running: inout [Float], batch: [Float], momentum: Float) {
        precondition(running.count == batch.count, "updateRunningStatistics: \(running.count) != \(batch.count) values")
        let m = Double(momentum)
        for i in running.indices {
            running[i] = Float((1 - m) * Double(running[i]) + m * Double(batch[i]))
        }
    }

    // MARK: - Elementwise

    /// Rectified linear unit, `max(x, 0)` elementwise (any shape).
    public static func relu(_ x: RefTensor) -> RefTensor {
        RefTensor(shape: x.shape, data: x.data.map { $0 > 0 ? $0 : 0 })
    }

    /// Gradient of ``relu(_:)``: `dy` where `x > 0`, and 0 where `x <= 0`.
    public static func reluBackward(_ x: RefTensor, outputGradient dy: RefTensor) -> RefTensor {
        precondition(dy.shape == x.shape, "reluBackward: output gradient shape \(dy.shape) != \(x.shape)")
        return RefTensor(shape: x.shape, data: zip(x.data, dy.data).map { $0 > 0 ? $1 : 0 })
    }

    /// Elementwise sum of two tensors of the same shape.
    /// (Its gradient passes `dy` unchanged to both operands.)
    public static func add(_ a: RefTensor, _ b: RefTensor) -> RefTensor {
        precondition(a.shape == b.shape, "add: shapes \(a.shape) and \(b.shape) differ")
        return RefTensor(shape: a.shape, data: zip(a.data, b.data).map { Float(Double($0) + Double($1)) })
    }

    // MARK: - Shortcut (option A)

    /// The parameter-free shortcut of the ResNet paper (option A).
    ///
    /// First subsamples spatially, `y[n, c, h, w] = x[n, c, h*stride, w*stride]`
    /// (output size `(H - 1)/stride + 1`, i.e. `ceil(H / stride)`), then appends
    /// zero channels at the end so that there are `channels` of them.
    /// - Precondition: `channels >= C`, `stride >= 1`.
    public static func padChannels(_ x: RefTensor, to channels: Int, stride: Int) -> RefTensor {
        let (n, c, h, w) = dims4(x, "padChannels input")
        precondition(channels >= c, "padChannels: cannot pad \(c) channels to \(channels)")
        precondition(stride >= 1, "padChannels: stride must be at least 1")
        let oh = (h - 1) / stride + 1, ow = (w - 1) / stride + 1
        var y = RefTensor(zeros: [n, channels, oh, ow])
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            y[b, ch, i, j] = x[b, ch, i * stride, j * stride]
        } } } }
        return y
    }

    /// Gradient of ``padChannels(_:to:stride:)``: drops the gradient of the
    /// appended channels and scatters the rest back to the sampled positions
    /// (all other input positions get 0).
    /// - Parameter inputShape: The `[N, C, H, W]` shape of the forward input.
    public static func padChannelsBackward(inputShape: [Int], stride: Int, outputGradient dy: RefTensor) -> RefTensor {
        precondition(inputShape.count == 4, "padChannelsBackward: input shape \(inputShape) is not 4-D")
        precondition(stride >= 1, "padChannelsBackward: stride must be at least 1")
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let oh = (h - 1) / stride + 1, ow = (w - 1) / stride + 1
        precondition(dy.shape.count == 4 && dy.shape[0] == n && dy.shape[1] >= c && dy.shape[2] == oh && dy.shape[3] == ow,
                     "padChannelsBackward: output gradient shape \(dy.shape) does not fit input shape \(inputShape)")
        var dx = RefTensor(zeros: inputShape)
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            dx[b, ch, i * stride, j * stride] = dy[b, ch, i, j]
        } } } }
        return dx
    }

    // MARK: - Pooling

    /// Max pooling; padded positions count as `-infinity`.
    ///
    /// Output size `floor((H + 2p - k)/s) + 1` in each spatial dimension.
    /// - Precondition: `padding < kernel` in each dimension, so every window
    ///   holds at least one real element.
    public static func maxPool2d(_ x: RefTensor, kernel: (Int, Int), stride: (Int, Int),
                                 padding: (Int, Int)) -> RefTensor {
        let (n, c, _, _) = dims4(x, "maxPool2d input")
        let (oh, ow) = poolOutputSize(x, kernel: kernel, stride: stride, padding: padding)
        var y = RefTensor(zeros: [n, c, oh, ow])
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            let (ih, iw) = argmaxInWindow(x, b, ch, i, j, kernel: kernel, stride: stride, padding: padding)
            y[b, ch, i, j] = x[b, ch, ih, iw]
        } } } }
        return y
    }

    /// Gradient of ``maxPool2d(_:kernel:stride:padding:)``: each output gradient
    /// goes to the first maximal element of its window, in row-major window order.
    public static func maxPool2dBackward(_ x: RefTensor, kernel: (Int, Int), stride: (Int, Int),
                                         padding: (Int, Int), outputGradient dy: RefTensor) -> RefTensor {
        let (n, c, _, _) = dims4(x, "maxPool2dBackward input")
        let (oh, ow) = poolOutputSize(x, kernel: kernel, stride: stride, padding: padding)
        precondition(dy.shape == [n, c, oh, ow],
                     "maxPool2dBackward: output gradient has shape \(dy.shape), expected \([n, c, oh, ow])")
        var dx = [Double](repeating: 0, count: x.count)
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            let (ih, iw) = argmaxInWindow(x, b, ch, i, j, kernel: kernel, stride: stride, padding: padding)
            dx[offset(x.shape, b, ch, ih, iw)] += Double(dy[b, ch, i, j])
        } } } }
        return tensor(x.shape, dx)
    }

    /// Average pooling.
    ///
    /// Output size `floor((H + 2p - k)/s) + 1`. The divisor is `kh * kw` when
    /// `countIncludesPadding` (PyTorch's default), otherwise the number of
    /// real (non-padding) elements in the window.
    /// - Precondition: `padding < kernel` in each dimension.
    public static func avgPool2d(_ x: RefTensor, kernel: (Int, Int), stride: (Int, Int),
                                 padding: (Int, Int), countIncludesPadding: Bool) -> RefTensor {
        let (n, c, h, w) = dims4(x, "avgPool2d input")
        let (oh, ow) = poolOutputSize(x, kernel: kernel, stride: stride, padding: padding)
        var y = RefTensor(zeros: [n, c, oh, ow])
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            var sum = 0.0, real = 0
            for p in 0..<kernel.0 {
                let ih = i * stride.0 - padding.0 + p
                guard ih >= 0 && ih < h else { continue }
                for q in 0..<kernel.1 {
                    let iw = j * stride.1 - padding.1 + q
                    guard iw >= 0 && iw < w else { continue }
                    sum += Double(x[b, ch, ih, iw])
                    real += 1
                }
            }
            let divisor = countIncludesPadding ? kernel.0 * kernel.1 : real
            y[b, ch, i, j] = Float(sum / Double(divisor))
        } } } }
        return y
    }

    /// Gradient of ``avgPool2d(_:kernel:stride:padding:countIncludesPadding:)``:
    /// each output gradient is spread evenly (divided by the same divisor) over
    /// the real elements of its window.
    /// - Parameter inputShape: The `[N, C, H, W]` shape of the forward input.
    public static func avgPool2dBackward(inputShape: [Int], kernel: (Int, Int), stride: (Int, Int),
                                         padding: (Int, Int), countIncludesPadding: Bool,
                                         outputGradient dy: RefTensor) -> RefTensor {
        let probe = RefTensor(zeros: inputShape)
        let (n, c, h, w) = dims4(probe, "avgPool2dBackward input")
        let (oh, ow) = poolOutputSize(probe, kernel: kernel, stride: stride, padding: padding)
        precondition(dy.shape == [n, c, oh, ow],
                     "avgPool2dBackward: output gradient has shape \(dy.shape), expected \([n, c, oh, ow])")
        var dx = [Double](repeating: 0, count: probe.count)
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            // Collect the window's real positions first: the divisor may depend on them.
            var positions: [(Int, Int)] = []
            for p in 0..<kernel.0 {
                let ih = i * stride.0 - padding.0 + p
                guard ih >= 0 && ih < h else { continue }
                for q in 0..<kernel.1 {
                    let iw = j * stride.1 - padding.1 + q
                    guard iw >= 0 && iw < w else { continue }
                    positions.append((ih, iw))
                }
            }
            let divisor = countIncludesPadding ? kernel.0 * kernel.1 : positions.count
            let g = Double(dy[b, ch, i, j]) / Double(divisor)
            for (ih, iw) in positions { dx[offset(inputShape, b, ch, ih, iw)] += g }
        } } } }
        return tensor(inputShape, dx)
    }

    /// Global average pooling: the mean of each `(n, c)` plane, shaped `[N, C, 1, 1]`.
    public static func globalAvgPool2d(_ x: RefTensor) -> RefTensor {
        let (n, c, h, w) = dims4(x, "globalAvgPool2d input")
        var y = RefTensor(zeros: [n, c, 1, 1])
        for b in 0..<n { for ch in 0..<c {
            var sum = 0.0
            for i in 0..<h { for j in 0..<w { sum += Double(x[b, ch, i, j]) } }
            y[b, ch, 0, 0] = Float(sum / Double(h * w))
        } }
        return y
    }

    /// Gradient of ``globalAvgPool2d(_:)``: `dy[n, c] / (H*W)` at every position of the plane.
    /// - Parameter inputShape: The `[N, C, H, W]` shape of the forward input.
    public static func globalAvgPool2dBackward(inputShape: [Int], outputGradient dy: RefTensor) -> RefTensor {
        precondition(inputShape.count == 4, "globalAvgPool2dBackward: input shape \(inputShape) is not 4-D")
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        precondition(dy.shape == [n, c, 1, 1],
                     "globalAvgPool2dBackward: output gradient has shape \(dy.shape), expected \([n, c, 1, 1])")
        var dx = RefTensor(zeros: inputShape)
        for b in 0..<n { for ch in 0..<c {
            let g = Float(Double(dy[b, ch, 0, 0]) / Double(h * w))
            for i in 0..<h { for j in 0..<w { dx[b, ch, i, j] = g } }
        } }
        return dx
    }

    // MARK: - Fully connected

    /// Fully connected layer: `y = x * weightᵀ + bias`.
    ///
    /// - Parameters:
    ///   - x: Input `[N, I]`.
    ///   - weight: `[O, I]` (PyTorch's layout).
    ///   - bias: `O` values, or `nil`.
    /// - Returns: `[N, O]`.
    public static func linear(_ x: RefTensor, weight: RefTensor, bias: [Float]?) -> RefTensor {
        let (n, inputs) = dims2(x, "linear input")
        let (o, wi) = dims2(weight, "linear weight")
        precondition(wi == inputs, "linear: weight has \(wi) inputs, input has \(inputs)")
        if let bias { precondition(bias.count == o, "linear: bias has \(bias.count) values, expected \(o)") }
        var y = [Float](repeating: 0, count: n * o)
        for b in 0..<n {
            for k in 0..<o {
                var sum = Double(bias?[k] ?? 0)
                for i in 0..<inputs { sum += Double(x.data[b * inputs + i]) * Double(weight.data[k * inputs + i]) }
                y[b * o + k] = Float(sum)
            }
        }
        return RefTensor(shape: [n, o], data: y)
    }

    /// Gradients of ``linear(_:weight:bias:)``:
    /// `dx = dy * weight`, `dweight = dyᵀ * x`, `dbias = sum of dy over the batch` (if `hasBias`).
    public static func linearBackward(_ x: RefTensor, weight: RefTensor, outputGradient dy: RefTensor,
                                      hasBias: Bool) -> (input: RefTensor, weight: RefTensor, bias: [Float]?) {
        let (n, inputs) = dims2(x, "linearBackward input")
        let (o, wi) = dims2(weight, "linearBackward weight")
        precondition(wi == inputs, "linearBackward: weight has \(wi) inputs, input has \(inputs)")
        precondition(dy.shape == [n, o], "linearBackward: output gradient has shape \(dy.shape), expected \([n, o])")
        var dx = [Double](repeating: 0, count: x.count)
        var dw = [Double](repeating: 0, count: weight.count)
        var db = [Double](repeating: 0, count: o)
        for b in 0..<n {
            for k in 0..<o {
                let g = Double(dy.data[b * o + k])
                db[k] += g
                for i in 0..<inputs {
                    dx[b * inputs + i] += g * Double(weight.data[k * inputs + i])
                    dw[k * inputs + i] += g * Double(x.data[b * inputs + i])
                }
            }
        }
        return (input: tensor(x.shape, dx), weight: tensor(weight.shape, dw), bias: hasBias ? floats(db) : nil)
    }

    // MARK: - Dropout

    /// Inverted dropout with a given mask: `x * mask / (1 - rate)` elementwise.
    ///
    /// - Parameters:
    ///   - mask: One value per element of `x`, each 0 (dropped) or 1 (kept).
    ///   - rate: The drop probability `p`, `0 <= p < 1`.
    public static func dropout(_ x: RefTensor, mask: [Float], rate p: Float) -> RefTensor {
        precondition(mask.count == x.count, "dropout: mask has \(mask.count) values, input has \(x.count)")
        precondition(p >= 0 && p < 1, "dropout: rate \(p) not in [0, 1)")
        let keep = 1 - Double(p)
        return RefTensor(shape: x.shape, data: zip(x.data, mask).map { Float(Double($0) * Double($1) / keep) })
    }

    /// Gradient of ``dropout(_:mask:rate:)``: `dy * mask / (1 - rate)`.
    public static func dropoutBackward(mask: [Float], rate p: Float, outputGradient dy: RefTensor) -> RefTensor {
        dropout(dy, mask: mask, rate: p)
    }

    /// Channel (spatial) dropout on `[N, C, H, W]`: plane `(n, c)` is multiplied
    /// by `mask[n*C + c] / (1 - rate)`.
    ///
    /// - Parameter mask: `N*C` values, each 0 (dropped) or 1 (kept).
    public static func channelDropout(_ x: RefTensor, mask: [Float], rate p: Float) -> RefTensor {
        let (n, c, h, w) = dims4(x, "channelDropout input")
        precondition(mask.count == n * c, "channelDropout: mask has \(mask.count) values, expected N*C = \(n * c)")
        return dropout(x, mask: mask.flatMap { [Float](repeating: $0, count: h * w) }, rate: p)
    }

    /// Gradient of ``channelDropout(_:mask:rate:)``: `dy` scaled the same way.
    public static func channelDropoutBackward(mask: [Float], rate p: Float, outputGradient dy: RefTensor) -> RefTensor {
        channelDropout(dy, mask: mask, rate: p)
    }

    // MARK: - Softmax and loss

    /// Row-wise softmax of `[N, K]` logits (computed after subtracting each row's maximum).
    public static func softmax(_ x: RefTensor) -> RefTensor {
        let (n, k) = dims2(x, "softmax input")
        var y = [Float](repeating: 0, count: x.count)
        for b in 0..<n {
            let row = softmaxRow(x.data[(b * k)..<((b + 1) * k)])
            for j in 0..<k { y[b * k + j] = Float(row[j]) }
        }
        return RefTensor(shape: x.shape, data: y)
    }

    /// Gradient of ``softmax(_:)`` given its output `y`:
    /// `dx = y * (dy - sum_k(dy * y))` per row.
    public static func softmaxBackward(output y: RefTensor, outputGradient dy: RefTensor) -> RefTensor {
        let (n, k) = dims2(y, "softmaxBackward output")
        precondition(dy.shape == y.shape, "softmaxBackward: output gradient shape \(dy.shape) != \(y.shape)")
        var dx = [Float](repeating: 0, count: y.count)
        for b in 0..<n {
            var dot = 0.0
            for j in 0..<k { dot += Double(dy.data[b * k + j]) * Double(y.data[b * k + j]) }
            for j in 0..<k { dx[b * k + j] = Float(Double(y.data[b * k + j]) * (Double(dy.data[b * k + j]) - dot)) }
        }
        return RefTensor(shape: y.shape, data: dx)
    }

    /// Mean over the batch of the cross-entropy between smoothed one-hot
    /// targets and the softmax of the logits.
    ///
    /// `loss = -(1/N) sum_n sum_k q[n,k] log p[n,k]` with `p = softmax(logits)`
    /// and `q = (1 - eps) * onehot(label) + eps / K`.
    /// - Parameters:
    ///   - logits: `[N, K]`.
    ///   - labels: `N` class indices in `0..<K`.
    ///   - eps: Label smoothing, `0` for plain cross-entropy.
    public static func softmaxCrossEntropy(logits: RefTensor, labels: [Int], labelSmoothing eps: Float) -> Float {
        let (n, k) = dims2(logits, "softmaxCrossEntropy logits")
        precondition(labels.count == n, "softmaxCrossEntropy: \(labels.count) labels for \(n) rows")
        var total = 0.0
        for b in 0..<n {
            let row = logits.data[(b * k)..<((b + 1) * k)].map(Double.init)
            let maximum = row.max()!
            let logSum = maximum + log(row.map { exp($0 - maximum) }.reduce(0, +))
            let q = smoothedTarget(label: labels[b], classes: k, eps: eps)
            for j in 0..<k { total -= q[j] * (row[j] - logSum) }
        }
        return Float(total / Double(n))
    }

    /// Gradient of ``softmaxCrossEntropy(logits:labels:labelSmoothing:)`` with
    /// respect to the logits: `(softmax(logits) - q) / N`.
    public static func softmaxCrossEntropyBackward(logits: RefTensor, labels: [Int], labelSmoothing eps: Float) -> RefTensor {
        let (n, k) = dims2(logits, "softmaxCrossEntropyBackward logits")
        precondition(labels.count == n, "softmaxCrossEntropyBackward: \(labels.count) labels for \(n) rows")
        var dx = [Float](repeating: 0, count: logits.count)
        for b in 0..<n {
            let p = softmaxRow(logits.data[(b * k)..<((b + 1) * k)])
            let q = smoothedTarget(label: labels[b], classes: k, eps: eps)
            for j in 0..<k { dx[b * k + j] = Float((p[j] - q[j]) / Double(n)) }
        }
        return RefTensor(shape: logits.shape, data: dx)
    }

    // MARK: - Gradient checking

    /// Central finite-difference gradient of `f` at `x`.
    ///
    /// Component `i` is `(f(x + h e_i) - f(x - h e_i)) / (actual difference of the two
    /// perturbed inputs)`, where the perturbed inputs are rounded to `Float`
    /// (so the divisor is the step that `f` really saw, close to `2 * step`).
    public static func numericalGradient(of f: ([Float]) -> Double, at x: [Float], step: Double = 1e-3) -> [Float] {
        var gradient = [Float](repeating: 0, count: x.count)
        var probe = x
        for i in x.indices {
            let plus = Float(Double(x[i]) + step), minus = Float(Double(x[i]) - step)
            probe[i] = plus
            let fPlus = f(probe)
            probe[i] = minus
            let fMinus = f(probe)
            probe[i] = x[i]
            gradient[i] = Float((fPlus - fMinus) / (Double(plus) - Double(minus)))
        }
        return gradient
    }

    // MARK: - Helpers

    private static func dims4(_ t: RefTensor, _ what: String) -> (Int, Int, Int, Int) {
        precondition(t.shape.count == 4, "\(what): expected a 4-D [N, C, H, W] tensor, got shape \(t.shape)")
        return (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    }

    private static func dims2(_ t: RefTensor, _ what: String) -> (Int, Int) {
        precondition(t.shape.count == 2, "\(what): expected a 2-D [N, K] tensor, got shape \(t.shape)")
        return (t.shape[0], t.shape[1])
    }

    /// Row-major offset of `[n, c, h, w]` in a tensor of the given 4-D shape.
    private static func offset(_ shape: [Int], _ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Int {
        ((n * shape[1] + c) * shape[2] + h) * shape[3] + w
    }

    private static func floats(_ values: [Double]) -> [Float] { values.map { Float($0) } }

    private static func tensor(_ shape: [Int], _ values: [Double]) -> RefTensor {
        RefTensor(shape: shape, data: floats(values))
    }

    /// Number of window positions, `floor((size + 2*padding - kernel)/stride) + 1`.
    private static func windowCount(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        precondition(kernel >= 1 && stride >= 1 && padding >= 0,
                     "kernel \(kernel), stride \(stride), padding \(padding): need kernel, stride >= 1 and padding >= 0")
        precondition(size + 2 * padding >= kernel, "kernel \(kernel) larger than padded size \(size + 2 * padding)")
        return (size + 2 * padding - kernel) / stride + 1
    }

    private static func poolOutputSize(_ x: RefTensor, kernel: (Int, Int), stride: (Int, Int),
                                       padding: (Int, Int)) -> (Int, Int) {
        precondition(padding.0 < kernel.0 && padding.1 < kernel.1,
                     "pooling: padding \(padding) must be smaller than kernel \(kernel)")
        return (windowCount(x.shape[2], kernel: kernel.0, stride: stride.0, padding: padding.0),
                windowCount(x.shape[3], kernel: kernel.1, stride: stride.1, padding: padding.1))
    }

    /// Position of the first maximal real element of pooling window `(i, j)`
    /// (padding is `-infinity`, so never chosen).
    private static func argmaxInWindow(_ x: RefTensor, _ b: Int, _ ch: Int, _ i: Int, _ j: Int,
                                       kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) -> (Int, Int) {
        var best: (Int, Int)? = nil
        var bestValue = -Float.infinity
        for p in 0..<kernel.0 {
            let ih = i * stride.0 - padding.0 + p
            guard ih >= 0 && ih < x.shape[2] else { continue }
            for q in 0..<kernel.1 {
                let iw = j * stride.1 - padding.1 + q
                guard iw >= 0 && iw < x.shape[3] else { continue }
                let v = x[b, ch, ih, iw]
                if best == nil || v > bestValue { best = (ih, iw); bestValue = v }
            }
        }
        return best!
    }

    /// Per-channel mean and biased variance over (N, H, W), in `Double`.
    private static func channelStatistics(_ x: RefTensor) -> (mean: [Double], variance: [Double]) {
        let (n, c, h, w) = dims4(x, "batch norm input")
        let m = Double(n * h * w)
        precondition(m > 0, "batch norm: empty channel")
        var mean = [Double](repeating: 0, count: c)
        var variance = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            var sum = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w { sum += Double(x[b, ch, i, j]) } } }
            mean[ch] = sum / m
            var squares = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w {
                let d = Double(x[b, ch, i, j]) - mean[ch]
                squares += d * d
            } } }
            variance[ch] = squares / m
        }
        return (mean, variance)
    }

    private static func normalize(_ x: RefTensor, scale: [Float], shift: [Float], mean: [Double],
                                  variance: [Double], epsilon: Float) -> RefTensor {
        let (n, c, h, w) = dims4(x, "batch norm input")
        var y = RefTensor(zeros: x.shape)
        for ch in 0..<c {
            let invStd = 1 / (variance[ch] + Double(epsilon)).squareRoot()
            for b in 0..<n { for i in 0..<h { for j in 0..<w {
                let xhat = (Double(x[b, ch, i, j]) - mean[ch]) * invStd
                y[b, ch, i, j] = Float(Double(scale[ch]) * xhat + Double(shift[ch]))
            } } }
        }
        return y
    }

    /// Softmax of one row, in `Double`.
    private static func softmaxRow(_ row: ArraySlice<Float>) -> [Double] {
        let values = row.map(Double.init)
        let maximum = values.max()!
        let exps = values.map { exp($0 - maximum) }
        let sum = exps.reduce(0, +)
        return exps.map { $0 / sum }
    }

    /// `q = (1 - eps) * onehot(label) + eps / K`.
    private static func smoothedTarget(label: Int, classes k: Int, eps: Float) -> [Double] {
        precondition(label >= 0 && label < k, "label \(label) not in 0..<\(k)")
        let e = Double(eps)
        var q = [Double](repeating: e / Double(k), count: k)
        q[label] += 1 - e
        return q
    }
}
