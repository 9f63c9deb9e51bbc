import CInotifyTools

/// The libinotifytools boundary (the only file that imports it). libinotifytools keeps
/// process-global state: all of its calls must come from one thread (SERVICE-NOTES.md).
enum InotifyTools {
    /// Initialises the library; false when inotify is unavailable (then hot folders fall back to polling).
    static func initialize() -> Bool {
        inotifytools_initialize() != 0
    }
}
