#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import SystemCalls

/// Element types of the safetensors format. All are recognised (real checkpoints carry I64
/// `position_ids`, for example); F32, F16 and BF16 convert to Float32.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case f64 = "F64", i64 = "I64", u64 = "U64"

    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }
}

/// One tensor's header entry; `dataRange` is relative to the start of the data section.
public struct SafetensorsEntry: Equatable, Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let dataRange: Range<Int>
}

/// A `.safetensors` file mapped read-only into memory, its header fully validated on open.
///
/// Format: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON mapping each
/// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
/// "__metadata__" string map), then the data section. Tensors must lie inside the data section,
/// must not overlap, must cover it with no holes, and must have exactly shape × dtype size bytes.
/// Pages are only read when a tensor is loaded, so the peak memory of loading a half-precision file
/// is the Float32 result plus the page cache, never a second full copy.
/// Immutable once opened (a read-only mapping, `let` properties), so it may be shared.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    public let metadata: [String: String]
    private let mapping: UnsafeRawPointer
    private let mappedSize: Int
    private let dataStart: Int
    /// Kept open for `fingerprint`, which reads with pread rather than through the mapping.
    private let descriptor: Int32

    /// Header size cap, as in the reference implementation: a larger "header" is a corrupt file.
    static let maximumHeaderLength: UInt64 = 100 << 20

    public init(path: String) throws {
        self.path = path
        let fd: Int32, info: stat
        do { fd = try POSIX.openForReading(path) } catch let error as SystemCallError {
            throw SafetensorsError.cannotOpen(file: path, reason: String(cString: strerror(error.code)))
        }
        var keep = false
        defer { if !keep { close(fd) } }
        do { info = try POSIX.status(of: fd, name: path) } catch let error as SystemCallError {
            throw SafetensorsError.cannotOpen(file: path, reason: String(cString: strerror(error.code)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SafetensorsError.cannotOpen(file: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        guard size >= 8 else { throw SafetensorsError.truncatedHeader(file: path, fileSize: size) }
        guard let raw = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), raw != MAP_FAILED else {
            throw SafetensorsError.cannotOpen(file: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        let base = UnsafeRawPointer(raw)
        do {
            let headerLength = base.loadUnaligned(as: UInt64.self).littleEndian
            guard headerLength <= UInt64(size - 8), headerLength <= Self.maximumHeaderLength else {
                throw SafetensorsError.headerLengthBeyondFile(file: path, headerLength: headerLength, fileSize: size)
            }
            let header = Data(bytes: base + 8, count: Int(headerLength))
            let parsed = try SafetensorsHeader.parse(header, file: path, dataSize: size - 8 - Int(headerLength))
            entries = parsed.entries
            metadata = parsed.metadata
            dataStart = 8 + Int(headerLength)
        } catch {
            munmap(raw, size)
            throw error
        }
        mapping = base
        mappedSize = size
        descriptor = fd
        keep = true
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: mapping), mappedSize)
        close(descriptor)
    }

    /// Adds a content fingerprint to `hash`: every header entry (name, dtype, shape, offsets), the
    /// first and last 64 bytes of every tensor, and the file size. Cheap (no full read), and any
    /// fine-tuned or re-exported weights change it.
    public func fingerprint(into hash: inout SHA256) {
        hash.update("\(mappedSize)\0")
        // Read with pread, not through the mapping: touching each tensor's first and last bytes
        // there faulted in ~700 MB of the file (readahead and fault-around) at the end of a load.
        var chunk = [UInt8](repeating: 0, count: 64)
        func read(_ offset: Int, _ count: Int) {
            // A read that fails leaves these bytes out of the fingerprint; the header's still count.
            let n = (try? chunk.withUnsafeMutableBytes { try POSIX.pread(descriptor, into: UnsafeMutableRawBufferPointer(rebasing: $0.prefix(count)), at: offset, from: path) }) ?? 0
            hash.update(Array(chunk.prefix(n)))
        }
        for name in names {
            guard let entry = entries[name] else { continue }
            hash.update("\(name)\0\(entry.dtype.rawValue)\0\(entry.shape)\0\(entry.dataRange)\0")
            let start = dataStart + entry.dataRange.lowerBound
            let count = entry.dataRange.count
            if count > 0 { read(start, min(64, count)) }
            if count > 64 { read(start + count - min(64, count - 64), min(64, count - 64)) }
        }
    }

    public var names: [String] { entries.keys.sorted() }

    /// The raw bytes of a tensor, as stored (valid while this file object lives).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let entry = entries[name] else { throw SafetensorsError.tensorNotFound(file: path, tensor: name) }
        return UnsafeRawBufferPointer(start: mapping + dataStart + entry.dataRange.lowerBound, count: entry.dataRange.count)
    }

    /// Loads a tensor as Float32 (F32 copied; F16 and BF16 widened exactly).
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw SafetensorsError.tensorNotFound(file: path, tensor: name) }
        let bytes = try rawBytes(name)
        var out = Tensor(uninitializedShape: entry.shape)
        let n = out.count
        guard let source = bytes.baseAddress else { return out }  // empty tensor
        switch entry.dtype {
        case .f32:
            out.withUnsafeMutablePointer { UnsafeMutableRawPointer($0).copyMemory(from: source, byteCount: n * 4) }
        case .f16:
            out.withUnsafeMutablePointer { dst in
                parallelRanges(n, grain: 1 << 16) { r in HalfConversion.f16ToF32(source, dst, r) }
            }
        case .bf16:
            out.withUnsafeMutablePointer { dst in
                parallelRanges(n, grain: 1 << 16) { r in HalfConversion.bf16ToF32(source, dst, r) }
            }
        default:
            throw SafetensorsError.unsupportedConversion(file: path, tensor: name, dtype: entry.dtype.rawValue)
        }
        release(bytes)
        return out
    }

    /// Drops the file pages of a tensor that has been copied out from this process's memory. A
    /// model is read once, front to back: without this, every page of the file stays resident
    /// beside its Float32 copy until the file is closed, and loading an fp32 SD 1.5 checkpoint
    /// peaked at twice the model's size (8.4 GB against MemoryMax=8G). Pages shared with a
    /// neighbouring tensor go too (the mapping is read-only: a later read faults them in again).
    private func release(_ bytes: UnsafeRawBufferPointer) {
        guard let start = bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = Int(bitPattern: start) / page * page
        let end = (Int(bitPattern: start) + bytes.count + page - 1) / page * page
        guard end > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) else { return }
        madvise(pointer, end - first, Int32(MADV_DONTNEED))
    }
}

/// Widening of 16-bit floats, bit-exact.
enum HalfConversion {
    static func f16ToF32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
        for i in range {
            let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian
            dst[i] = Float(Float16(bitPattern: bits))
        }
    }

    static func bf16ToF32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
        for i in range {
            let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian
            dst[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    }
}
