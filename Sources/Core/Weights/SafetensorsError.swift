/// Everything that can be wrong with a `.safetensors` file. Each case names the file and, where
/// there is one, the tensor, so that a user with a broken download knows which file to replace.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(file: String, reason: String)
    /// Shorter than the 8-byte header length prefix.
    case truncatedHeader(file: String, fileSize: Int)
    /// The length prefix points past the end of the file (a truncated download, typically).
    case headerLengthBeyondFile(file: String, headerLength: UInt64, fileSize: Int)
    case invalidJSON(file: String, detail: String)
    /// A header entry that is not {"dtype", "shape", "data_offsets"} of the right types.
    case invalidEntry(file: String, tensor: String, detail: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case offsetsOutOfRange(file: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case overlappingTensors(file: String, tensor: String, other: String)
    /// Bytes of the data section that no tensor claims (the format forbids holes: no polyglot files).
    case unindexedBytes(file: String, begin: Int, end: Int)
    case byteCountMismatch(file: String, tensor: String, shape: [Int], dtype: String, expected: Int, actual: Int)
    case tensorNotFound(file: String, tensor: String)
    /// The tensor exists but its element type cannot be read as Float32.
    case unsupportedConversion(file: String, tensor: String, dtype: String)
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open: \(reason)"
        case let .truncatedHeader(file, size):
            return "\(file): truncated safetensors header: the file has \(size) bytes, fewer than the 8-byte length prefix"
        case let .headerLengthBeyondFile(file, length, size):
            return "\(file): header length \(length) goes beyond the end of the file (\(size) bytes); the file is truncated or not safetensors"
        case let .invalidJSON(file, detail):
            return "\(file): the safetensors header is not valid JSON: \(detail)"
        case let .invalidEntry(file, tensor, detail):
            return "\(file): tensor '\(tensor)': invalid header entry: \(detail)"
        case let .unknownDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)': unknown dtype '\(dtype)'"
        case let .offsetsOutOfRange(file, tensor, begin, end, size):
            return "\(file): tensor '\(tensor)': data offsets [\(begin), \(end)) outside the data section of \(size) bytes"
        case let .overlappingTensors(file, tensor, other):
            return "\(file): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .unindexedBytes(file, begin, end):
            return "\(file): data bytes [\(begin), \(end)) belong to no tensor"
        case let .byteCountMismatch(file, tensor, shape, dtype, expected, actual):
            return "\(file): tensor '\(tensor)': shape \(shape) of \(dtype) needs \(expected) bytes, offsets give \(actual)"
        case let .tensorNotFound(file, tensor):
            return "\(file): no tensor named '\(tensor)'"
        case let .unsupportedConversion(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' is \(dtype); only F32, F16 and BF16 load as Float32"
        case let .writeFailed(file, reason):
            return "\(file): cannot write: \(reason)"
        }
    }
}
