/// Why a model could not be loaded. Every case names the file or tensor concerned.
public enum ModelLoadError: Error, Equatable, CustomStringConvertible {
    case missingTensor(component: String, name: String, file: String)
    case shapeMismatch(component: String, name: String, expected: [Int], found: [Int], file: String)
    case unexpectedTensors(component: String, names: [String], file: String)
    case missingFile(path: String, hint: String)
    case pickleRefused(path: String)
    case invalidConfig(path: String, detail: String)
    case unsupportedConfig(path: String, detail: String)
    case tokenizer(path: String, detail: String)
    /// Two components that load on their own but do not fit together.
    case inconsistent(first: String, second: String, detail: String)
    /// A precision this CPU cannot run (bf16 without AVX512-BF16).
    case unsupportedPrecision(String)

    public var description: String {
        switch self {
        case let .missingTensor(component, name, file):
            return "\(file): \(component) tensor '\(name)' is missing"
        case let .shapeMismatch(component, name, expected, found, file):
            return "\(file): \(component) tensor '\(name)' has shape \(found), expected \(expected)"
        case let .unexpectedTensors(component, names, file):
            let shown = names.prefix(5).joined(separator: ", ")
            return "\(file): \(names.count) \(component) tensor(s) not used by the model: \(shown)\(names.count > 5 ? ", …" : "")"
        case let .missingFile(path, hint):
            return "\(path): not found. \(hint)"
        case let .pickleRefused(path):
            return "\(path): pickle checkpoints (.ckpt, .bin, .pt) are refused because loading them executes code; convert the model to .safetensors"
        case let .invalidConfig(path, detail):
            return "\(path): invalid configuration: \(detail)"
        case let .unsupportedConfig(path, detail):
            return "\(path): unsupported model configuration: \(detail)"
        case let .tokenizer(path, detail):
            return "\(path): tokenizer: \(detail)"
        case let .inconsistent(first, second, detail):
            return first == second ? "\(first): \(detail)" : "\(first) does not fit \(second): \(detail)"
        case let .unsupportedPrecision(name):
            return "precision \(name) needs a CPU with AVX512-BF16, which this one lacks; use fp32 (or auto)"
        }
    }
}

/// Where one component's tensors come from, under their diffusers names. A source may rename
/// (the single-file checkpoint) or reshape (its 1×1-conv VAE attention), always in one place.
public protocol TensorSource: AnyObject {
    /// A human-readable origin for error messages (a file path).
    var origin: String { get }
    /// Every tensor name the source offers, in diffusers naming.
    var names: [String] { get }
    /// The stored shape of `name` as seen in diffusers naming, or nil when absent.
    func shape(of name: String) -> [Int]?
    /// Loads `name` as Float32 with the shape `shape(of:)` reports.
    func load(_ name: String) throws -> Tensor
}

/// Requests every tensor by name and expected shape, and remembers which were taken, so that a
/// missing, mis-shaped or unused tensor is an error naming it ("claim every tensor").
public final class WeightReader {
    let source: TensorSource
    let component: String
    /// The precision products load their weights for (docs/PERFORMANCE.md, "Precision").
    public let precision: Precision
    private(set) var taken: Set<String> = []
    /// Names the model does not use but which real checkpoints carry (e.g. CLIP's position_ids).
    let ignorable: (String) -> Bool

    public init(source: TensorSource, component: String, precision: Precision = .fp32,
                ignorable: @escaping (String) -> Bool = { _ in false }) {
        self.source = source
        self.precision = precision
        self.component = component
        self.ignorable = ignorable
    }

    /// The tensor `name`, which must have exactly `shape`.
    public func take(_ name: String, _ shape: [Int]) throws -> Tensor {
        if let random = source as? RandomWeights {
            taken.insert(name)
            return random.synthesize(name, shape)
        }
        guard let found = source.shape(of: name) else {
            throw ModelLoadError.missingTensor(component: component, name: name, file: source.origin)
        }
        guard found == shape else {
            throw ModelLoadError.shapeMismatch(component: component, name: name, expected: shape, found: found, file: source.origin)
        }
        taken.insert(name)
        return try source.load(name).reshaped(shape)
    }

    /// Throws when the source offers tensors the model never took.
    public func finish() throws {
        let unused = source.names.filter { !taken.contains($0) && !ignorable($0) }.sorted()
        guard unused.isEmpty else {
            throw ModelLoadError.unexpectedTensors(component: component, names: unused, file: source.origin)
        }
    }

    /// A view that prefixes every name with `prefix` + ".".
    public func scope(_ prefix: String) -> WeightScope { WeightScope(reader: self, prefix: prefix) }
}

/// A prefix into a `WeightReader`, so that layer code names tensors as the checkpoint does
/// relative to its own module (`conv1.weight` inside `down_blocks.0.resnets.1`).
public struct WeightScope {
    let reader: WeightReader
    let prefix: String

    /// The precision the products of this component are loaded for.
    public var precision: Precision { reader.precision }

    public func take(_ name: String, _ shape: [Int]) throws -> Tensor {
        try reader.take(prefix.isEmpty ? name : prefix + "." + name, shape)
    }

    public func scope(_ name: String) -> WeightScope {
        WeightScope(reader: reader, prefix: prefix.isEmpty ? name : prefix + "." + name)
    }

    public func scope(_ name: String, _ index: Int) -> WeightScope { scope("\(name).\(index)") }

    /// Whether the source has a tensor under this scope (for optional parts such as a shortcut).
    public func has(_ name: String) -> Bool {
        reader.source.shape(of: prefix.isEmpty ? name : prefix + "." + name) != nil
    }
}

/// A safetensors file offered under its own names.
public final class SafetensorsSource: TensorSource {
    let file: SafetensorsFile
    public init(file: SafetensorsFile) { self.file = file }
    public var origin: String { file.path }
    public var names: [String] { file.names }
    public func shape(of name: String) -> [Int]? { file.entries[name]?.shape }
    public func load(_ name: String) throws -> Tensor { try file.tensor(name) }
}
