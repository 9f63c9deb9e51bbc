import Foundation

/// What a name dropped into a hot folder's `in/` means.
package enum DropName: Equatable {
    package enum Role: String {
        case structure, appearance, options
        case structureMask = "structure-mask", appearanceMask = "appearance-mask"
    }

    /// `NAME.structure.png`, `NAME.appearance.jpg`, `NAME.options.json`, `NAME.structure-mask.png`,
    /// `NAME.appearance-mask.png` (and, inside a job directory, `structure.png` … with an empty stem).
    case part(stem: String, role: Role)
    /// Any other image: one job when the folder has a fixed appearance or structure.
    case image(stem: String)
    /// Not an image and not an options file: it times out into failed/ with a reason.
    case other
    /// Temporary or metadata files that are never taken nor failed.
    case junk

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    package init(_ name: String) {
        let lower = name.lowercased()
        // Dotfiles cover .DS_Store, AppleDouble `._*` and the hidden temp files of rsync, vim, …
        if name.hasPrefix(".") || name.hasSuffix("~")
            || [".part", ".tmp", ".crdownload", ".swp", ".partial", ".download"].contains(where: lower.hasSuffix) {
            self = .junk
            return
        }
        let ext = (lower as NSString).pathExtension
        let base = (name as NSString).deletingPathExtension
        for role in [Role.structure, .appearance, .options, .structureMask, .appearanceMask] {
            let matchesExtension = role == .options ? ext == "json" : Self.imageExtensions.contains(ext)
            guard matchesExtension else { continue }
            if base.lowercased() == role.rawValue { self = .part(stem: "", role: role); return }
            if base.lowercased().hasSuffix("." + role.rawValue) {
                self = .part(stem: String(base.dropLast(role.rawValue.count + 1)), role: role)
                return
            }
        }
        self = Self.imageExtensions.contains(ext) && !base.isEmpty ? .image(stem: base) : .other
    }

    package var isJunk: Bool { self == .junk }
}
