import CPNG

/// The libpng boundary (the only file that imports it); the PNG codec grows here.
public enum PNGLibrary {
    /// The libpng version linked at run time, e.g. "1.6.39".
    public static var version: String {
        guard let text = png_get_libpng_ver(nil) else { return "unknown" }
        return String(cString: text)
    }
}
