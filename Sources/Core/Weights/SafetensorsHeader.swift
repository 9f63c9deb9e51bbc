import Foundation
import Wire

/// Parsing and validation of a safetensors JSON header against the size of its data section.
enum SafetensorsHeader {
    static func parse(_ json: Data, file: String, dataSize: Int) throws
        -> (entries: [String: SafetensorsEntry], metadata: [String: String])
    {
        // The shape of the header is checked first (object of objects), then each entry's fields.
        let top: [String: JSONValue]
        do {
            guard case let .object(object) = try JSONDecoder().decode(JSONValue.self, from: json) else {
                throw SafetensorsError.invalidJSON(file: file, detail: "the header is not a JSON object")
            }
            top = object
        } catch let error as SafetensorsError {
            throw error
        } catch {
            throw SafetensorsError.invalidJSON(file: file, detail: "\(error)")
        }
        var metadata: [String: String] = [:]
        var entries: [String: SafetensorsEntry] = [:]
        for (name, value) in top {
            if name == "__metadata__" {
                guard case let .object(map) = value else {
                    throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "__metadata__ must be an object of strings")
                }
                for (key, item) in map {
                    guard case let .string(text) = item else {
                        throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "metadata '\(key)' is not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            entries[name] = try entry(name: name, value: value, file: file, dataSize: dataSize)
        }
        try checkLayout(entries, file: file, dataSize: dataSize)
        return (entries, metadata)
    }

    private static func entry(name: String, value: JSONValue, file: String, dataSize: Int) throws -> SafetensorsEntry {
        func invalid(_ detail: String) -> SafetensorsError {
            .invalidEntry(file: file, tensor: name, detail: detail)
        }
        guard case let .object(fields) = value else { throw invalid("not an object") }
        guard case let .string(dtypeName)? = fields["dtype"] else { throw invalid("missing or non-string \"dtype\"") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw SafetensorsError.unknownDType(file: file, tensor: name, dtype: dtypeName)
        }
        guard let shape = fields["shape"]?.integers, shape.allSatisfy({ $0 >= 0 }) else {
            throw invalid("\"shape\" must be a list of non-negative integers")
        }
        guard let offsets = fields["data_offsets"]?.integers, offsets.count == 2 else {
            throw invalid("\"data_offsets\" must be two integers")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw SafetensorsError.offsetsOutOfRange(file: file, tensor: name, begin: begin, end: end, dataSize: dataSize)
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw invalid("shape \(shape) overflows") }
            elements = product
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, expected == end - begin else {
            throw SafetensorsError.byteCountMismatch(file: file, tensor: name, shape: shape, dtype: dtypeName,
                                                     expected: overflow ? Int.max : expected, actual: end - begin)
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    /// Sorted by offset, the tensors must tile the data section exactly: no overlap, no hole.
    private static func checkLayout(_ entries: [String: SafetensorsEntry], file: String, dataSize: Int) throws {
        // Zero-byte tensors occupy no bytes and cannot overlap anything.
        let sorted = entries.values.filter { !$0.dataRange.isEmpty }
            .sorted { ($0.dataRange.lowerBound, $0.name) < ($1.dataRange.lowerBound, $1.name) }
        var position = 0
        var previous: SafetensorsEntry?
        for entry in sorted {
            if entry.dataRange.lowerBound < position, let previous {
                throw SafetensorsError.overlappingTensors(file: file, tensor: entry.name, other: previous.name)
            }
            if entry.dataRange.lowerBound > position {
                throw SafetensorsError.unindexedBytes(file: file, begin: position, end: entry.dataRange.lowerBound)
            }
            position = entry.dataRange.upperBound
            previous = entry
        }
        if position < dataSize {
            throw SafetensorsError.unindexedBytes(file: file, begin: position, end: dataSize)
        }
    }
}

extension JSONValue {
    /// The elements when this is an array of integers (a fractional or boolean "shape" is not).
    var integers: [Int]? {
        guard case let .array(items) = self else { return nil }
        var result: [Int] = []
        for item in items {
            guard case let .integer(value) = item else { return nil }
            result.append(value)
        }
        return result
    }
}
