import Foundation

/// transformers' `BasicTokenizer(do_lower_case=True)`, which `CLIPTokenizer` uses when ftfy is
/// not installed (the reference stack): the words of `text`, each lower-cased, accent-stripped,
/// and with every punctuation character split off as its own word.
enum BasicTokenization {
    static func words(_ text: String) -> [String] {
        // _clean_text: drop NUL, U+FFFD and control characters; whitespace becomes a space.
        // _tokenize_chinese_chars: CJK ideographs get spaces around them.
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || isControl(scalar) { continue }
            if isWhitespace(scalar) {
                cleaned.append(" ")
            } else if isCJK(scalar.value) {
                cleaned.append(" "); cleaned.append(scalar); cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        var words: [String] = []
        for token in String(cleaned).split(whereSeparator: { $0.unicodeScalars.allSatisfy(\.properties.isWhitespace) }) {
            let lowered = stripAccents(String(token).lowercased())
            words += splitOnPunctuation(lowered)
        }
        return words
    }

    /// NFD, then drop nonspacing marks (category Mn), as `_run_strip_accents`.
    static func stripAccents(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.decomposedStringWithCanonicalMapping.unicodeScalars
        where scalar.properties.generalCategory != .nonspacingMark {
            out.append(scalar)
        }
        return String(out)
    }

    /// Every punctuation scalar becomes its own word; runs of others stay together.
    static func splitOnPunctuation(_ word: String) -> [String] {
        var result: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in word.unicodeScalars {
            if isPunctuation(scalar) {
                if !current.isEmpty { result.append(String(current)); current = String.UnicodeScalarView() }
                result.append(String(scalar))
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { result.append(String(current)) }
        return result
    }

    /// `_is_whitespace`: space, \t, \n, \r, or category Zs.
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == " " || s == "\t" || s == "\n" || s == "\r" || s.properties.generalCategory == .spaceSeparator
    }

    /// `_is_control`: category C* except \t, \n, \r.
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// `_is_punctuation`: ASCII 33–47, 58–64, 91–96, 123–126, or category P*.
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    /// `_is_chinese_char`: the CJK Unified Ideographs blocks.
    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}
