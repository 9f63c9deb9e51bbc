#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Contiguous, 64-byte aligned Float32 buffer. Owned by exactly one `TensorStorage`; tensors share
/// it until one of them writes (copy on write, see `Tensor.withUnsafeMutablePointer`).
public final class TensorStorage {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Allocates `count` floats, uninitialised.
    init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        // 64-byte alignment: one cache line, the widest vector loads.
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            // Out of memory is not recoverable for a compute engine; every caller would crash anyway.
            preconditionFailure("xattn: cannot allocate \(bytes) bytes for a tensor")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { free(pointer) }

    @usableFromInline func copy() -> TensorStorage {
        let other = TensorStorage(count: count)
        other.pointer.update(from: pointer, count: count)
        return other
    }
}

/// A dense Float32 tensor: a shape and row-major contiguous storage (NCHW for images and feature
/// maps, [batch, tokens, channels] for sequences). Value semantics: copies share storage until one
/// of them is written.
public struct Tensor {
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// Number of elements: the product of `shape`.
    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// A tensor of `shape` whose elements are uninitialised; the caller must write every element.
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
    }

    /// A tensor of `shape` with every element equal to `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: count)
    }

    /// A tensor of `shape` holding `scalars` in row-major order; nil when the counts differ.
    public init?(shape: [Int], scalars: [Float]) {
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == scalars.count else { return nil }
        self.init(uninitializedShape: shape)
        for (i, x) in scalars.enumerated() { storage.pointer[i] = x }
    }

    /// The elements in row-major order.
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// The same elements under another shape with the same element count (shares storage).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var result = self
        result.shape = newShape
        return result
    }

    /// Read access to the contiguous elements.
    @inlinable
    public func withUnsafePointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(UnsafePointer(storage.pointer)) }
    }

    /// Write access; copies the storage first if another tensor shares it.
    @inlinable
    public mutating func withUnsafeMutablePointer<R>(
        _ body: (UnsafeMutablePointer<Float>) throws -> R
    ) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return try withExtendedLifetime(storage) { try body(storage.pointer) }
    }

    /// Dimension `i`, counting negative indices from the end (-1 is the last).
    public func dim(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }
}

/// Copy on write like `Array`: storage is mutated in place only when `isKnownUniquelyReferenced`
/// (an atomic check) says no other tensor shares it, so tensors can cross threads.
extension Tensor: @unchecked Sendable {}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}
