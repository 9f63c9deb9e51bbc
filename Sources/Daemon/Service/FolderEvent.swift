/// Something that happened in a watched `in/` directory, as a value: xattnd's inotify thread
/// makes them (no pointer into the library's static storage survives it), tests make their own.
package struct FolderEvent: Equatable, Sendable {
    package enum Kind: Equatable, Sendable {
        /// IN_CLOSE_WRITE or IN_MOVED_TO: a writer finished, or the file was renamed into place.
        case complete
        /// IN_CREATE or IN_MODIFY: being written; never a reason to take it.
        case writing
        /// IN_DELETE or IN_MOVED_FROM.
        case removed
        /// Events were dropped by the kernel (IN_Q_OVERFLOW): every folder must be rescanned.
        case overflow
        /// The watch on `in/` is gone (IN_IGNORED, IN_MOVE_SELF): the folder was deleted or moved.
        case watchLost
    }
    /// The watched inbox this concerns (the empty string for `overflow`).
    package var inbox: String
    /// Relative to the inbox: `a.png`, or `job/structure.png` inside a job directory.
    package var path: String
    package var kind: Kind
    package var isDirectory = false

    package init(inbox: String, path: String, kind: Kind, isDirectory: Bool = false) {
        (self.inbox, self.path, self.kind, self.isDirectory) = (inbox, path, kind, isDirectory)
    }
}
