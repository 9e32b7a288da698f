import ArgumentParser
import Foundation
import ResNetData
import ResNetInference
import ResNetModels

/// `resnet convert`: pretrained weights from PyTorch's world into a model file.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn pretrained weights (torchvision, timm or akamaster CIFAR ResNets, or SwiftResNet's own names) into a model file.",
        discussion: """
            SOURCE is a PyTorch checkpoint as torch.save(model.state_dict(), "x.pth") writes it (zip or legacy \
            format; read without executing anything: a pickle that names any other global is refused), or a \
            safetensors file (e.g. timm's model.safetensors). Every tensor is checked against the network's, \
            name by name and shape by shape. ImageNet networks with 1,000 classes get torchvision's preprocessing \
            (shorter side 256, center crop 224, ImageNet mean and std) and the ImageNet class names; CIFAR networks \
            with 10 classes akamaster's (32x32, ImageNet mean and std) and CIFAR-10's names.
            """)

    @Argument(help: "The weights (.pth, .pt or .safetensors).") var source: String
    @Option(help: "The zoo network they are for: resnet18 ... resnet152, resnet20 ... (CIFAR), wrn-..., with --shortcut.") var model: String
    @Option(help: "Shortcut option (torchvision and timm: B; akamaster's CIFAR networks: A).") var shortcut: ShortcutOption?
    @Option(help: "Input HxW (default: the network's, 224x224 or 32x32).") var input: String?
    @Option(help: "A file of class names, one per line (default: ImageNet's or CIFAR-10's when the class count fits).") var classNames: String?
    @Option(help: "The model file to write (.safetensors).") var out: String

    func run() throws {
        guard out.hasSuffix(".safetensors") else { throw UserError("--out must name a .safetensors file, got '\(out)'") }
        let definition = try ModelDefinition(name: model)
        let cifar = definition.configuration?.stem == .cifar
        let options = ModelOptions(shortcut: shortcut ?? (cifar ? .a : .b))
        var size: (height: Int, width: Int)?
        if let input {
            do { size = try DatasetOptions.parseImageSize(input) } catch let error as DataOptionError { throw UserError("--input: \(error.description)") }
        }
        var names: [String]?
        if let classNames {
            guard let text = FileManager.default.contents(atPath: classNames), text.count <= 16 << 20 else {
                throw UserError("\(classNames): cannot read the class names (a text file of at most 16 MiB)")
            }
            names = String(decoding: text, as: UTF8.self).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let tensors = try ImportedWeights.readTensors(path: source)
        let loaded = try ImportedWeights.model(from: tensors, source: source, architecture: .init(name: model, options: options),
                                               input: size, classNames: names)
        try ModelFile.write(model: loaded.model, card: loaded.card, whitening: nil, to: URL(fileURLWithPath: out))
        print("wrote \(out): \(model) (shortcut \(options.shortcut)), \(loaded.card.input.height)x\(loaded.card.input.width) input, \(loaded.card.classNames.count) classes, \(loaded.model.trainableParameterCount) parameters")
    }
}
