import ArgumentParser
import ResNetModels

extension ShortcutOption: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.uppercased()) }
}

/// Options that choose and shape a network, shared by every command that builds one.
struct ModelChoice: ParsableArguments {
    @Argument(help: "The network: resnet20 ... resnet1202, resnet29v2 ... resnet1001v2, resnet18 ... resnet152, plain20 ... plain110, plain18, plain34, wrn-DEPTH-K, svgg.")
    var model: String

    @Option(help: "Input size HxWxC (default: the model's own, 32x32x3 or 224x224x3).")
    var input: String?

    @Option(help: "Number of classes (default: 10 for CIFAR networks, 1000 for ImageNet ones).")
    var classes: Int?

    @Option(help: "Shortcut option: A (identity, zero-padded channels), B (projection on shape change), C (projections everywhere).")
    var shortcut: ShortcutOption = .b

    @Flag(help: "Bottlenecks stride their first 1x1 (the paper's original model) instead of the 3x3 (torchvision v1.5).")
    var strideOnFirst1x1 = false

    /// The definition, the input shape and class count it will be built for.
    func resolve() throws -> (ModelDefinition, ImageShape, Int) {
        do {
            let definition = try ModelDefinition(name: model, options: ModelOptions(shortcut: shortcut, strideOnFirst1x1: strideOnFirst1x1))
            let shape = try input.map(ImageShape.init(parsing:)) ?? definition.defaultInput
            return (definition, shape, classes ?? definition.defaultClasses)
        } catch let error as ModelError {
            throw UserError(error.description)
        }
    }
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a network's layers, output shapes, parameter counts and cost (like Keras's model.summary()).")

    @OptionGroup var choice: ModelChoice

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let (definition, input, classes) = try choice.resolve()
        do {
            let model = try definition.build(input: input, classes: classes)
            let summary = try ModelSummary(of: model, name: definition.name, input: input, classes: classes)
            print(json ? summary.json : summary.table)
        } catch let error as ModelError {
            throw UserError(error.description)
        }
    }
}
