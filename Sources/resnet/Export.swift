import ArgumentParser
import Foundation
import ResNetInference
import ResNetTraining

extension ImportedWeights.OptionAPadding: ExpressibleByArgument {}

/// `resnet export`: a model file that stands on its own, an ONNX model, or PyTorch weights.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model for use elsewhere: a SwiftResNet model file (default), an ONNX model, or weights under torchvision's/akamaster's names.",
        discussion: """
            safetensors: the weights and the model card (architecture, input, preprocessing, classes, provenance), \
            without a run's optimizer state; what `resnet predict` and `resnet evaluate` (and a Swift program, through \
            ResNetInference) load, even for ZCA models (the fitted whitening is stored).
            onnx (opset 17, dynamic batch): input 'image', float32 [N, C, H, W] RGB pixels scaled to 0..1 after the \
            card's resize and crop; the card's normalization inside the graph; output 'probabilities' (softmax). \
            --raw: the bare network, normalized 'input' to 'logits'. The card and class names are in the metadata.
            torchvision: a safetensors file for PyTorch's load_state_dict(safetensors.torch.load_file(...)): torchvision's \
            resnet18...resnet152 names (shortcut B), akamaster/pytorch_resnet_cifar10's for CIFAR resnet20... (shortcut A).
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case safetensors, onnx, torchvision
    }

    @Argument(help: "A run directory (its best.safetensors), a checkpoint or a model file.") var model: String
    @Option(help: "The file to write: .safetensors (formats safetensors and torchvision) or .onnx.") var out: String
    @Option(help: "safetensors (a SwiftResNet model file), onnx or torchvision (default: onnx for an .onnx --out, else safetensors).")
    var format: Format?
    @Flag(help: "ONNX: the bare network (normalized input to logits), without the card's normalization and the softmax.")
    var raw = false
    @Option(help: "torchvision, CIFAR option A networks: where the zero channels go in the PyTorch network: symmetric (akamaster's, the default; `resnet convert` assumes it for PyTorch names) or end (SwiftResNet's).")
    var optionAPadding: ImportedWeights.OptionAPadding?

    func run() throws {
        let format = self.format ?? (out.hasSuffix(".onnx") ? .onnx : .safetensors)
        let suffix = format == .onnx ? ".onnx" : ".safetensors"
        guard out.hasSuffix(suffix) else { throw UserError("--out must name a \(suffix) file for --format \(format.rawValue), got '\(out)'") }
        guard !raw || format == .onnx else { throw UserError("--raw is for --format onnx") }
        guard optionAPadding == nil || format == .torchvision else { throw UserError("--option-a-padding is for --format torchvision") }
        let trained = try TrainedModel(model)
        let source = trained.loaded.url.standardizedFileURL
        let destination = URL(fileURLWithPath: out).standardizedFileURL
        guard source.path != destination.path else { throw UserError("--out is the model being exported: choose another file") }
        var card = trained.loaded.card
        // A run's test figure belongs to its best checkpoint (train evaluates that one once).
        if source.lastPathComponent == "best.safetensors", let result = try readTestResult(of: source.deletingLastPathComponent(), classCount: card.classNames.count) {
            guard result.classNames == card.classNames else {
                throw UserError("\(source.deletingLastPathComponent().appendingPathComponent("test.json").path): its classes are not the model's: the test result of another run")
            }
            card.provenance.metrics["test_top1"] = result.top1
            card.provenance.metrics["test_top5"] = result.top5
        }
        let what: String
        switch format {
        case .safetensors:
            try ModelFile.write(model: trained.loaded.model, card: card, whitening: trained.loaded.whitening, to: destination)
            what = "\(trained.loaded.model.trainableParameterCount) parameters"
        case .onnx:
            try ONNXExport.write(trained.loaded, card: card, raw: raw, producerVersion: SwiftResNetVersion.current, to: destination)
            what = raw ? "ONNX opset \(ONNXExport.opsetVersion), normalized input to logits"
                : "ONNX opset \(ONNXExport.opsetVersion), RGB 0..1 pixels to probabilities"
        case .torchvision:
            let padding = optionAPadding ?? .symmetric
            try TorchvisionExport.write(trained.loaded, card: card, optionAPadding: padding, to: destination)
            let layout = try TorchvisionExport.layout(of: card, source: source.path)
            what = layout == .akamaster ? "akamaster's CIFAR ResNet names (option A padded \(padding.rawValue))" : "torchvision's names"
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int) ?? 0
        print("wrote \(destination.path): \(card.architecture.name), \(card.input.height)x\(card.input.width)x\(card.input.channels) input, \(card.classNames.count) classes, \(what), \(size / 1024) KiB")
    }
}
