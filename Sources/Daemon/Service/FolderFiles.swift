import Core
import Foundation
import SystemCalls
import Glibc

/// File moves of a hot folder: atomic renames, names that never overwrite, and reads that never
/// follow a link. (Results are written with Foundation's `.atomic`: a temporary file beside the
/// target, then a rename.)
enum FolderFiles {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Images above this are refused before they are read into memory.
    static var maximumFileBytes: Int { JobAdmission.maximumFileBytes }

    /// Whether anything is at `path`, a dangling symbolic link included (lstat, never followed).
    static func exists(_ path: String) -> Bool {
        (try? POSIX.linkStatus(path)) != nil
    }

    /// Longest file name most Linux filesystems take (NAME_MAX).
    static let maximumNameBytes = 255

    /// `stem + suffix`, or when that is longer than a file name may be, the stem cut (at a
    /// character) and marked with a hash of the whole, so that the name is still unique and fits.
    static func fittingName(_ stem: String, suffix: String) -> String {
        guard (stem + suffix).utf8.count > maximumNameBytes else { return stem + suffix }
        var hash = Core.SHA256()
        hash.update(Array(stem.utf8))
        let mark = "~" + Core.SHA256.hex(hash.finalize()).prefix(8)
        var cut = ""
        for character in stem where (cut + String(character) + mark + suffix).utf8.count <= maximumNameBytes { cut.append(character) }
        return cut + mark + suffix
    }

    /// The first of `stem`, `stem-2`, `stem-3`, … for which no `candidate + suffix` exists in
    /// `directory` (and none of `extra` suffixes either).
    static func freeStem(_ stem: String, suffixes: [String], in directory: String) -> String {
        var k = 1
        while true {
            let candidate = k == 1 ? stem : "\(stem)-\(k)"
            if !suffixes.contains(where: { exists(directory + "/" + fittingName(candidate, suffix: $0)) }) { return candidate }
            k += 1
        }
    }

    /// Renames `stem + suffix` from one directory to another under a free stem; all or nothing.
    /// Returns the stem used.
    static func move(stem: String, suffixes: [String], from source: String, to target: String, extraSuffixes: [String] = []) throws -> String {
        let newStem = freeStem(stem, suffixes: suffixes + extraSuffixes, in: target)
        var moved: [String] = []
        for suffix in suffixes {
            do { try POSIX.rename(source + "/" + stem + suffix, target + "/" + newStem + suffix) } catch {
                // All or nothing: what moved goes back (if that fails too, the scan finds it in either place).
                for done in moved.reversed() { try? POSIX.rename(target + "/" + newStem + done, source + "/" + stem + done) }
                throw Failure(description: "cannot move \(stem + suffix) to \(target): \(error)")
            }
            moved.append(suffix)
        }
        return newStem
    }

    /// Entries of `directory` whose names are not valid UTF-8, as raw bytes (a String cannot hold
    /// them, and FileManager's listing skips or mangles them).
    static func undecodableNames(in directory: String) -> [[UInt8]] {
        ((try? POSIX.rawNames(in: directory)) ?? []).filter { String(validating: $0, as: UTF8.self) == nil }
    }

    /// A readable, valid stand-in for such a name: printable ASCII kept, every other byte as %XX.
    static func escapedName(_ bytes: [UInt8]) -> String {
        bytes.map { (0x20...0x7E).contains($0) && $0 != UInt8(ascii: "%") ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0) }.joined()
    }

    /// Renames the entry named `bytes` in `source` to `target` (a path).
    static func move(bytes: [UInt8], from source: String, to target: String) throws {
        let path = Array(source.utf8CString.dropLast()) + [CChar(bitPattern: UInt8(ascii: "/"))] + bytes.map { CChar(bitPattern: $0) } + [0]
        do { try POSIX.rename(rawPath: path, to: target, shownAs: escapedName(bytes)) } catch {
            throw Failure(description: "cannot move \(escapedName(bytes)) to \(target): \(error)")
        }
    }

    /// A regular file's bytes, refusing devices, anything above the limit and (unless the path
    /// comes from the configuration) links.
    static func read(_ path: String, limit: Int = maximumFileBytes, followLinks: Bool = false) throws -> Data {
        let name = (path as NSString).lastPathComponent
        let file: POSIX.File
        do { file = try POSIX.File(path, flags: O_RDONLY | O_NONBLOCK | (followLinks ? 0 : O_NOFOLLOW)) } catch let error as SystemCallError {
            throw Failure(description: "cannot open \(name): \(String(cString: strerror(error.code)))")
        }
        let status = try file.status()
        guard status.st_mode & S_IFMT == S_IFREG else { throw Failure(description: "\(name) is not a regular file") }
        guard status.st_size <= limit else { throw Failure(description: "\(name) is larger than \(limit >> 20) MB") }
        let data = try file.read(upTo: Int(status.st_size))
        guard data.count == Int(status.st_size) else { throw Failure(description: "\(name) changed while it was read") }
        return data
    }

    /// The owner of a path (hot-folder jobs belong to whoever dropped the files).
    static func owner(_ path: String) -> UInt32? {
        (try? POSIX.linkStatus(path))?.st_uid
    }

    /// Makes in/, processing/, out/, done/ and failed/ (the folder itself must exist).
    static func prepare(_ folder: HotFolderSettings) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(description: "\(folder.path) does not exist")
        }
        let setgid = ((try? POSIX.status(folder.path))?.st_mode ?? 0) & S_ISGID
        for directory in [folder.inbox, folder.processing, folder.outbox, folder.done, folder.failed] where !FileManager.default.fileExists(atPath: directory) {
            // Group-writable whatever the service's umask (0027): members of the folder's group
            // drop files into in/ and tidy out/; the set-group-ID bit of the folder carries over.
            do { try POSIX.mkdir(directory, mode: 0o775) } catch { throw Failure(description: "cannot create \(directory): \(error)") }
            do { try POSIX.chmod(directory, 0o775 | setgid) } catch {
                throw Failure(description: "cannot make \(directory) group-writable: \(error)")
            }
        }
    }
}
