import Foundation
import Glibc

/// A system call that failed: which call, on what path, and errno (read at once, before anything
/// else can change it).
package struct SystemCallError: Error, CustomStringConvertible, Equatable {
    package let call: String
    package let path: String
    package let code: Int32

    package var description: String { "\(call) \(path): \(String(cString: strerror(code)))" }
}

/// The service's one door to libc's file calls: each is retried when a signal interrupts it
/// (EINTR), and each failure is thrown as a SystemCallError naming the call and the path. No result
/// is ignored; a caller that may ignore one says so with `try?`.
package enum POSIX {
    /// Runs `body` until it is not interrupted; a negative result throws.
    @discardableResult
    static func call<T: BinaryInteger>(_ name: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code != EINTR { throw SystemCallError(call: name, path: path, code: code) }
        }
    }

    /// lstat(2): a link is described as a link, never followed.
    package static func linkStatus(_ path: String) throws -> stat {
        var status = Glibc.stat()
        try call("lstat", path) { lstat(path, &status) }
        return status
    }

    /// stat(2): links followed.
    package static func status(_ path: String) throws -> stat {
        var status = Glibc.stat()
        try call("stat", path) { stat(path, &status) }
        return status
    }

    package static func rename(_ source: String, _ target: String) throws {
        try call("rename", source) { Glibc.rename(source, target) }
    }

    /// rename(2) of a name that is not valid UTF-8 (a String cannot hold it).
    package static func rename(rawPath source: [CChar], to target: String, shownAs name: String) throws {
        try call("rename", name) { source.withUnsafeBufferPointer { Glibc.rename($0.baseAddress, target) } }
    }

    /// mkdir(2); false when something already exists at `path`.
    @discardableResult
    package static func mkdir(_ path: String, mode: mode_t) throws -> Bool {
        do { try call("mkdir", path) { Glibc.mkdir(path, mode) } } catch let error as SystemCallError where error.code == EEXIST {
            return false
        }
        return true
    }

    package static func chmod(_ path: String, _ mode: mode_t) throws {
        try call("chmod", path) { Glibc.chmod(path, mode) }
    }

    /// chown(2) of the group only (the owner stays).
    package static func chown(_ path: String, group: gid_t) throws {
        try call("chown", path) { Glibc.chown(path, uid_t.max, group) }
    }

    /// An open file descriptor, closed when the value goes away.
    package final class File {
        package let descriptor: Int32
        let path: String

        package init(_ path: String, flags: Int32) throws {
            self.path = path
            descriptor = try call("open", path) { Glibc.open(path, flags | O_CLOEXEC) }
        }

        deinit { Glibc.close(descriptor) }

        package func status() throws -> stat {
            var status = Glibc.stat()
            try call("fstat", path) { Glibc.fstat(descriptor, &status) }
            return status
        }

        /// Up to `count` bytes; fewer only at the end of the file.
        package func read(upTo count: Int) throws -> Data {
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
    package static func rawNames(in directory: String) throws -> [[UInt8]] {
        guard let handle = opendir(directory) else { throw SystemCallError(call: "opendir", path: directory, code: errno) }
        defer { closedir(handle) }
        var names: [[UInt8]] = []
        while let entry = readdir(handle) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes != Array(".".utf8) && bytes != Array("..".utf8) { names.append(bytes) }
        }
        return names
    }
}
