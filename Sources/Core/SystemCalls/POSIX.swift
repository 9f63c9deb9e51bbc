import Foundation
import Glibc

/// A system call that failed: which call, on what path, and errno (read at once, before anything
/// else can change it).
public struct SystemCallError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let path: String
    public let code: Int32

    public var description: String { "\(call) \(path): \(String(cString: strerror(code)))" }
}

/// The project's one door to libc's file and socket calls: each is retried when a signal
/// interrupts it (EINTR), and each failure is thrown as a SystemCallError naming the call and the
/// path. No result is ignored; a caller that may ignore one says so with `try?`.
public enum POSIX {
    /// Runs `body` until it is not interrupted; a negative result throws.
    @discardableResult
    public static func call<T: BinaryInteger>(_ name: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code != EINTR { throw SystemCallError(call: name, path: path, code: code) }
        }
    }

    /// lstat(2): a link is described as a link, never followed.
    public static func linkStatus(_ path: String) throws -> stat {
        var status = Glibc.stat()
        try call("lstat", path) { lstat(path, &status) }
        return status
    }

    /// stat(2): links followed.
    public static func status(_ path: String) throws -> stat {
        var status = Glibc.stat()
        try call("stat", path) { stat(path, &status) }
        return status
    }

    public static func rename(_ source: String, _ target: String) throws {
        try call("rename", source) { Glibc.rename(source, target) }
    }

    /// rename(2) of a name that is not valid UTF-8 (a String cannot hold it).
    public static func rename(rawPath source: [CChar], to target: String, shownAs name: String) throws {
        try call("rename", name) { source.withUnsafeBufferPointer { Glibc.rename($0.baseAddress, target) } }
    }

    /// mkdir(2); false when something already exists at `path`.
    @discardableResult
    public static func mkdir(_ path: String, mode: mode_t) throws -> Bool {
        do { try call("mkdir", path) { Glibc.mkdir(path, mode) } } catch let error as SystemCallError where error.code == EEXIST {
            return false
        }
        return true
    }

    public static func chmod(_ path: String, _ mode: mode_t) throws {
        try call("chmod", path) { Glibc.chmod(path, mode) }
    }

    /// chown(2) of the group only (the owner stays).
    public static func chown(_ path: String, group: gid_t) throws {
        try call("chown", path) { Glibc.chown(path, uid_t.max, group) }
    }

    /// An open file descriptor, closed when the value goes away.
    public final class File {
        public let descriptor: Int32
        public let path: String

        public init(_ path: String, flags: Int32) throws {
            self.path = path
            descriptor = try call("open", path) { Glibc.open(path, flags | O_CLOEXEC) }
        }

        deinit { Glibc.close(descriptor) }

        public func status() throws -> stat { try POSIX.status(of: descriptor, name: path) }

        /// Up to `count` bytes; fewer only at the end of the file.
        public func read(upTo count: Int) throws -> Data {
            var data = Data(count: count)
            let filled = try data.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                var offset = 0
                while offset < count {
                    let n = try call("read", path) { Glibc.read(descriptor, base + offset, count - offset) }
                    if n == 0 { break }
                    offset += n
                }
                return offset
            }
            return data.prefix(filled)
        }
    }

    /// The raw names in a directory (bytes: a name need not be valid UTF-8).
    public static func rawNames(in directory: String) throws -> [[UInt8]] {
        guard let handle = opendir(directory) else { throw SystemCallError(call: "opendir", path: directory, code: errno) }
        defer { closedir(handle) }
        var names: [[UInt8]] = []
        while let entry = readdir(handle) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes != Array(".".utf8) && bytes != Array("..".utf8) { names.append(bytes) }
        }
        return names
    }

    /// send(2) of all of `bytes` (MSG_NOSIGNAL: a closed peer is an error, not a SIGPIPE).
    public static func sendAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, peer: String) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            offset += try call("send", peer) { Glibc.send(descriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
        }
    }

    /// Writes `data` to a new file beside `path`, then renames it over `path`: a reader sees the old
    /// file or the whole new one. write(2) in parts of at most `part` bytes, each retried until all
    /// of it is written (Linux moves at most 2 GiB − 4 KiB per call, and Foundation's
    /// `Data.write(to:options:)` corrupted the bytes just past that point in a 3.4 GB file).
    public static func writeAtomically(_ data: Data, to path: String, part: Int = 1 << 30) throws {
        let temporary = path + ".partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = try call("open", temporary) { Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        do {
            try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
                guard let base = bytes.baseAddress else { return }
                var offset = 0
                while offset < bytes.count {
                    let size = min(max(part, 1), bytes.count - offset)
                    offset += try call("write", temporary) { Glibc.write(descriptor, base + offset, size) }
                }
            }
            try call("close", temporary) { Glibc.close(descriptor) }
        } catch {
            _ = Glibc.close(descriptor)
            _ = Glibc.unlink(temporary)
            throw error
        }
        do { try rename(temporary, path) } catch {
            _ = Glibc.unlink(temporary)
            throw error
        }
    }

    /// read(2) into `buffer`; 0 at the end of the stream.
    public static func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, from name: String) throws -> Int {
        try call("read", name) { Glibc.read(descriptor, buffer.baseAddress, buffer.count) }
    }

    /// utimes(2) to now: marks a file as just used.
    public static func touch(_ path: String) throws {
        try call("utimes", path) { utimes(path, nil) }
    }

    /// pread(2) of up to `buffer.count` bytes at `offset`; fewer only at the end of the file.
    public static func pread(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, from name: String) throws -> Int {
        try call("pread", name) { Glibc.pread(descriptor, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// open(2) of a file to read, as a bare descriptor for a caller that manages its lifetime.
    public static func openForReading(_ path: String) throws -> Int32 {
        try call("open", path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
    }

    /// fstat(2).
    public static func status(of descriptor: Int32, name: String) throws -> stat {
        var status = Glibc.stat()
        try call("fstat", name) { fstat(descriptor, &status) }
        return status
    }
}
