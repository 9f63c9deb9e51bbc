/// The `size` option (docs/ALGORITHM.md §2, "Sizes"): what each input image becomes before the
/// VAE. Shared by the wire, the command lines and the engine.
public enum ImageSize: Equatable, Sendable, CustomStringConvertible {
    /// The model's own square (512×512 for SD 1.5), centre-cropped: the paper's behaviour.
    case native
    /// W×H pixels: each image is centre-cropped to that aspect, then resized.
    case fixed(width: Int, height: Int)
    /// Each image keeps its aspect, at about the native square's pixel count, sides rounded to
    /// the model's size step.
    case auto

    /// "512x512" style, "auto", or "native"; nil for anything else.
    public init?(parsing text: String) {
        let lowered = text.lowercased()
        if lowered == "auto" { self = .auto; return }
        if lowered == "native" { self = .native; return }
        let parts = lowered.split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else { return nil }
        self = .fixed(width: w, height: h)
    }

    public var description: String {
        switch self {
        case .native: return "native"
        case .auto: return "auto"
        case let .fixed(w, h): return "\(w)x\(h)"
        }
    }
}

extension ImageSize: Codable {
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let size = ImageSize(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a size: \(text)"))
        }
        self = size
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
