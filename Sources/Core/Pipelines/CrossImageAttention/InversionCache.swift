import Foundation
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Inversions on disk, keyed by content: the preprocessed image, prompt, T, K, seed, noise stream,
/// inversion guidance and the model's identity (ALGORITHM.md §10). A job that reuses an image
/// skips that inversion; anything that changes the result changes the key, so a stale entry is
/// never returned (the reference keys by file name). One safetensors file per entry, written
/// atomically; least recently used entries are evicted beyond `maximumBytes`.
public final class InversionCache: @unchecked Sendable {
    public let directory: String
    public let maximumBytes: Int
    /// Entries other machines computed (a shared job store): looked up when this machine has none,
    /// and given every entry this machine computes. Best effort: when it fails, the cache behaves
    /// as this machine's alone.
    public let shared: (any SharedInversionTier)?
    private let lock = NSLock()

    public init(directory: String, maximumBytes: Int = 2 << 30, shared: (any SharedInversionTier)? = nil) throws {
        self.directory = directory
        self.maximumBytes = maximumBytes
        self.shared = shared
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// The key of one image's inversion.
    static func key(image: Tensor, prompt: String, options: TransferOptions, stream: UInt64, model: String) -> String {
        var hash = SHA256()
        hash.update("xattn-inversion-v1\0\(prompt)\0\(options.timesteps)\0\(options.skip)\0\(options.seed)\0\(stream)\0\(options.inversionGuidanceScale)\0\(model)\0\(image.shape)\0")
        image.withUnsafePointer { hash.update(UnsafeRawBufferPointer(start: $0, count: image.count * 4)) }
        return SHA256.hex(hash.finalize())
    }

    private func path(_ key: String) -> String { directory + "/" + key + ".safetensors" }

    /// The stored inversion, or nil; a hit marks the entry as recently used. An entry that cannot
    /// be read or whose tensors do not have the shapes this job needs (a damaged file, or one
    /// written by other code) is deleted, so the inversion is computed again and stored anew.
    public func load(_ key: String, xSkipShape: [Int], zsShape: [Int]) -> InversionResult? {
        lock.lock(); defer { lock.unlock() }
        let file = path(key)
        if !FileManager.default.fileExists(atPath: file) {
            // Another machine's entry becomes this machine's file, then is read like one.
            guard let data = try? shared?.fetch(key), (try? data.write(to: URL(fileURLWithPath: file), options: .atomic)) != nil else { return nil }
        }
        guard let stored = try? SafetensorsFile(path: file),
              let xSkip = try? stored.tensor("x_skip"), let zs = try? stored.tensor("zs"),
              xSkip.shape == xSkipShape, zs.shape == zsShape else {
            try? FileManager.default.removeItem(atPath: file)
            return nil
        }
        // Mark as recently used (the kernel stamps the current time). If it fails, the entry is only
        // evicted as if it had not been reused: the hit itself is still good.
        try? POSIX.touch(file)
        return InversionResult(xSkip: xSkip, zs: zs)
    }

    public func store(_ key: String, _ result: InversionResult) throws {
        lock.lock(); defer { lock.unlock() }
        try SafetensorsWriter.write([("x_skip", result.xSkip), ("zs", result.zs)], to: path(key))
        if let shared, let data = FileManager.default.contents(atPath: path(key)) { try? shared.put(key, data) }
        evict()
    }

    /// Removes the least recently used entries until the total fits.
    private func evict() {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: directory) else { return }
        var entries: [(path: String, size: Int, used: Date)] = []
        for name in names where name.hasSuffix(".safetensors") {
            let file = directory + "/" + name
            guard let attributes = try? manager.attributesOfItem(atPath: file) else { continue }
            entries.append((file, (attributes[.size] as? NSNumber)?.intValue ?? 0, attributes[.modificationDate] as? Date ?? .distantPast))
        }
        var total = entries.reduce(0) { $0 + $1.size }
        for entry in entries.sorted(by: { $0.used < $1.used }) where total > maximumBytes {
            try? manager.removeItem(atPath: entry.path)
            total -= entry.size
        }
    }
}

/// A tier of inversions shared by several machines, holding the same bytes as the cache's files
/// (a safetensors file per key).
public protocol SharedInversionTier: AnyObject, Sendable {
    func fetch(_ key: String) throws -> Data?
    func put(_ key: String, _ data: Data) throws
}
