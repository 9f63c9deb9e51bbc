import Foundation
import Testing
import Core
import SystemCalls

/// The reader against files written by the reference `safetensors` package, our writer, and
/// hand-built broken files: each defect gets its own typed error naming the file and the tensor.
@Suite struct SafetensorsTests {
    let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-st-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// Writes a file made of a raw header length, header text and data bytes.
    func rawFile(_ name: String, header: String, data: [UInt8] = [], length: UInt64? = nil) -> String {
        var bytes = Data()
        withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: Array(header.utf8))
        bytes.append(contentsOf: data)
        let path = directory.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: bytes)
        return path
    }

    @Test func readsTheReferenceWriter() throws {
        let file = try #require(Fixtures.kernels)
        #expect(file.metadata["generator"] == "tools/reference/kernels.py")
        #expect(file.entries["conv1x1.weight"]?.shape == [3, 7, 1, 1])
        #expect(file.entries["conv1x1.weight"]?.dtype == .f32)
    }

    @Test func roundTripsAllStorageTypes() throws {
        // Values exactly representable in f16 and bf16, so every round trip is exact.
        let t = Tensor(shape: [2, 3], scalars: [0, 1, -2, 0.5, 3.25, -1024])!
        for type in [SafetensorsWriter.StorageType.f32, .f16, .bf16] {
            let path = directory.appendingPathComponent("rt-\(type.rawValue).safetensors").path
            try SafetensorsWriter.write([("w", t), ("empty", Tensor(shape: [0, 4]))], to: path, as: type, metadata: ["k": "v\"q"])
            let file = try SafetensorsFile(path: path)
            #expect(try file.tensor("w").scalars == t.scalars)
            #expect(try file.tensor("empty").shape == [0, 4])
            #expect(file.metadata == ["k": "v\"q"])
        }
    }

    /// The atomic writer's loop, in parts far smaller than the data (its real part is 1 GiB, below
    /// write(2)'s 2 GiB limit, past which Foundation's writer corrupted a 3.4 GB model file): every
    /// byte in place, an existing file replaced, no temporary left; a failed write leaves nothing.
    @Test func atomicWriteInPartsKeepsEveryByte() throws {
        let path = directory.appendingPathComponent("parts.bin").path
        _ = FileManager.default.createFile(atPath: path, contents: Data([9, 9, 9]))
        let bytes = Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        try POSIX.writeAtomically(bytes, to: path, part: 7)
        #expect(FileManager.default.contents(atPath: path) == bytes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("partial") }.isEmpty)
        let missing = directory.appendingPathComponent("no-such-folder/x.bin").path
        #expect(throws: SystemCallError.self) { try POSIX.writeAtomically(bytes, to: missing) }
    }

    @Test func bf16RoundsToNearestEven() throws {
        let path = directory.appendingPathComponent("bf.safetensors").path
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0); 1 + 3·2^-9 rounds up.
        try SafetensorsWriter.write([("x", Tensor(shape: [2], scalars: [1 + 1.0 / 256, 1 + 3.0 / 512])!)], to: path, as: .bf16)
        #expect(try SafetensorsFile(path: path).tensor("x").scalars == [1, 1 + 1.0 / 128])
    }

    @Test func missingFile() {
        let path = directory.appendingPathComponent("nope.safetensors").path
        #expect(throws: SafetensorsError.cannotOpen(file: path, reason: "No such file or directory")) {
            try SafetensorsFile(path: path)
        }
    }

    @Test func truncatedHeader() {
        let path = directory.appendingPathComponent("short.safetensors").path
        _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        #expect(throws: SafetensorsError.truncatedHeader(file: path, fileSize: 3)) { try SafetensorsFile(path: path) }
    }

    @Test func headerLengthBeyondFile() {
        let path = rawFile("long.safetensors", header: "{}", length: 1000)
        #expect(throws: SafetensorsError.headerLengthBeyondFile(file: path, headerLength: 1000, fileSize: 10)) {
            try SafetensorsFile(path: path)
        }
    }

    @Test func invalidJSON() {
        let path = rawFile("json.safetensors", header: "{\"a\": [1,")
        #expect { try SafetensorsFile(path: path) } throws: { error in
            guard case let SafetensorsError.invalidJSON(file, _)? = error as? SafetensorsError else { return false }
            return file == path
        }
        let array = rawFile("array.safetensors", header: "[1, 2]")
        #expect(throws: SafetensorsError.invalidJSON(file: array, detail: "the header is not a JSON object")) {
            try SafetensorsFile(path: array)
        }
    }

    @Test func unknownDType() {
        let path = rawFile("dtype.safetensors", header: #"{"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.unknownDType(file: path, tensor: "w", dtype: "F12")) { try SafetensorsFile(path: path) }
    }

    @Test func malformedEntry() {
        let path = rawFile("entry.safetensors", header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.invalidEntry(file: path, tensor: "w", detail: "\"shape\" must be a list of non-negative integers")) {
            try SafetensorsFile(path: path)
        }
    }

    @Test func offsetsOutOfRange() {
        let path = rawFile("range.safetensors", header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.offsetsOutOfRange(file: path, tensor: "w", begin: 0, end: 8, dataSize: 4)) {
            try SafetensorsFile(path: path)
        }
    }

    @Test func overlappingTensors() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let path = rawFile("overlap.safetensors", header: header, data: Array(repeating: 0, count: 8))
        #expect(throws: SafetensorsError.overlappingTensors(file: path, tensor: "b", other: "a")) { try SafetensorsFile(path: path) }
    }

    @Test func unindexedBytes() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let path = rawFile("hole.safetensors", header: header, data: Array(repeating: 0, count: 12))
        #expect(throws: SafetensorsError.unindexedBytes(file: path, begin: 4, end: 12)) { try SafetensorsFile(path: path) }
    }

    @Test func byteCountMismatch() {
        let path = rawFile("count.safetensors", header: #"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.byteCountMismatch(file: path, tensor: "w", shape: [3], dtype: "F16", expected: 6, actual: 4)) {
            try SafetensorsFile(path: path)
        }
    }

    @Test func namedTensorErrors() throws {
        let path = rawFile("ids.safetensors", header: #"{"position_ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                           data: Array(repeating: 0, count: 8))
        let file = try SafetensorsFile(path: path)  // I64 headers are valid: real checkpoints carry them
        #expect(throws: SafetensorsError.unsupportedConversion(file: path, tensor: "position_ids", dtype: "I64")) {
            try file.tensor("position_ids")
        }
        #expect(throws: SafetensorsError.tensorNotFound(file: path, tensor: "w")) { try file.tensor("w") }
    }

    @Test func errorsReadWell() {
        let error = SafetensorsError.byteCountMismatch(file: "unet.safetensors", tensor: "conv_in.weight", shape: [320, 4, 3, 3],
                                                       dtype: "F16", expected: 23040, actual: 100)
        #expect(error.description == "unet.safetensors: tensor 'conv_in.weight': shape [320, 4, 3, 3] of F16 needs 23040 bytes, offsets give 100")
    }

    /// A model is read once, front to back: the file's pages must not stay resident beside the
    /// Float32 copies (loading an fp32 SD 1.5 peaked at 2× its size, over the unit's MemoryMax).
    /// RssFile is this process's resident file-backed memory; reading 256 MB of tensors used to
    /// add 256 MB to it (measured: +4067 MB for SD 1.5 with `xattn-bench load`).
    @Test func readingTensorsDoesNotKeepTheFileResident() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("xattn-resident-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SafetensorsWriter.write((0..<16).map { ("t\($0)", Tensor(shape: [4 << 20], repeating: Float($0))) }, to: path)  // 16 × 16 MB
        func residentFileKB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("RssFile:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        let file = try SafetensorsFile(path: path)
        let before = residentFileKB()
        var tensors: [Tensor] = []
        for name in file.names { tensors.append(try file.tensor(name)) }
        var hash = SHA256()
        file.fingerprint(into: &hash)
        let grown = residentFileKB() - before
        #expect(zip(file.names, tensors).allSatisfy { name, tensor in Float(String(name.dropFirst())) == tensor.scalars[0] })
        #expect(grown < 64 << 10, "the file's pages stayed resident: +\(grown / 1024) MB after reading 256 MB")
        withExtendedLifetime(file) {}
    }
}
