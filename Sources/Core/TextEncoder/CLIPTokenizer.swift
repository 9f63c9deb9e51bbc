import Foundation

/// CLIP's byte-level BPE tokenizer, as transformers' `CLIPTokenizer` (4.30) runs it without ftfy,
/// the reference stack's setup:
/// 1. BasicTokenizer: drop NUL, U+FFFD and control characters, map whitespace to spaces, space out
///    CJK ideographs, split on whitespace, lower-case, strip accents (NFD, drop marks), split off
///    every punctuation character.
/// 2. CLIP's pattern on the rejoined text: contractions ('s 't 're 've 'm 'll 'd), letter runs,
///    single digits, runs of other non-space characters.
/// 3. Each piece as UTF-8 bytes mapped to printable characters, then BPE with the merge ranks;
///    the last symbol of a piece carries "</w>".
/// `encode` adds BOS 49406 and EOS 49407, truncates to 77 and pads with EOS.
/// Shared by every job: immutable but for the BPE cache, which `cacheLock` guards.
public final class CLIPTokenizer: @unchecked Sendable {
    public let vocabulary: [String: Int]
    let mergeRanks: [String: Int]  // "first second" → rank
    let byteCharacters: [Character]
    public let bos: Int
    public let eos: Int
    public let maxLength: Int
    private var cache: [String: [Int]] = [:]
    private let cacheLock = NSLock()

    /// Reads `vocab.json` and `merges.txt` from a tokenizer folder.
    public convenience init(folder: String, maxLength: Int = 77) throws {
        let vocabPath = folder + "/vocab.json", mergesPath = folder + "/merges.txt"
        guard let vocabData = FileManager.default.contents(atPath: vocabPath) else {
            throw ModelLoadError.tokenizer(path: vocabPath, detail: "vocab.json is missing or unreadable")
        }
        guard let mergesData = FileManager.default.contents(atPath: mergesPath),
              let mergesText = String(data: mergesData, encoding: .utf8) else {
            throw ModelLoadError.tokenizer(path: mergesPath, detail: "merges.txt is missing or not UTF-8")
        }
        let vocabulary: [String: Int]
        do {
            vocabulary = try JSONDecoder().decode([String: Int].self, from: vocabData)
        } catch {
            throw ModelLoadError.tokenizer(path: vocabPath, detail: "not a JSON object of token ids: \(error)")
        }
        try self.init(vocabulary: vocabulary, merges: mergesText, path: folder, maxLength: maxLength)
    }

    public init(vocabulary: [String: Int], merges: String, path: String, maxLength: Int = 77) throws {
        guard let bos = vocabulary["<|startoftext|>"], let eos = vocabulary["<|endoftext|>"] else {
            throw ModelLoadError.tokenizer(path: path, detail: "vocabulary lacks <|startoftext|> or <|endoftext|>")
        }
        // transformers reads lines [1, 49152 − 256 − 2 + 1) of merges.txt: the header, then the merges.
        let lines = merges.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().prefix(49152 - 256 - 2)
        var ranks: [String: Int] = [:]
        for (rank, line) in lines.enumerated() where !line.isEmpty {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else {
                throw ModelLoadError.tokenizer(path: path, detail: "merges.txt line \(rank + 2) is not two symbols: \(line)")
            }
            if ranks[String(line)] == nil { ranks[String(line)] = rank }
        }
        self.vocabulary = vocabulary
        self.mergeRanks = ranks
        self.byteCharacters = Self.bytesToUnicode()
        self.bos = bos
        self.eos = eos
        self.maxLength = maxLength
    }

    /// Token ids padded to `maxLength`: [BOS, text…, EOS, EOS…], text truncated to maxLength − 2.
    /// `truncated` reports whether text was dropped.
    public func encode(_ text: String) -> (ids: [Int], truncated: Bool) {
        let tokens = tokenize(text)
        let room = maxLength - 2
        var ids = [bos] + tokens.prefix(room) + [eos]
        ids += Array(repeating: eos, count: maxLength - ids.count)
        return (ids, tokens.count > room)
    }

    /// The BPE token ids of `text`, without BOS/EOS.
    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        for word in BasicTokenization.words(text) {
            for piece in Self.pieces(word) {
                ids += bpe(piece)
            }
        }
        return ids
    }

    /// CLIP's split pattern over one (lower-cased) word, by Unicode scalars as Python's `regex` does.
    static func pieces(_ word: String) -> [String] {
        let scalars = Array(word.unicodeScalars)
        var result: [String] = []
        var i = 0
        func text(_ range: Range<Int>) -> String {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[range])
            return String(s)
        }
        let contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
        while i < scalars.count {
            let c = scalars[i]
            if c == "'", let match = contractions.first(where: { i + $0.count <= scalars.count && Array(scalars[i..<(i + $0.count)]) == $0 }) {
                result.append(text(i..<(i + match.count)))
                i += match.count
            } else if c.isLetterScalar {
                var j = i + 1
                while j < scalars.count && scalars[j].isLetterScalar { j += 1 }
                result.append(text(i..<j))
                i = j
            } else if c.isNumberScalar {
                result.append(text(i..<(i + 1)))
                i += 1
            } else if c.properties.isWhitespace {
                i += 1
            } else {
                var j = i + 1
                while j < scalars.count && !scalars[j].isLetterScalar && !scalars[j].isNumberScalar && !scalars[j].properties.isWhitespace { j += 1 }
                result.append(text(i..<j))
                i = j
            }
        }
        return result
    }

    /// Byte-level BPE of one piece → ids.
    func bpe(_ piece: String) -> [Int] {
        cacheLock.lock()
        if let cached = cache[piece] { cacheLock.unlock(); return cached }
        cacheLock.unlock()
        var word = Array(piece.utf8).map { String(byteCharacters[Int($0)]) }
        guard !word.isEmpty else { return [] }
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(word.count - 1) {
                if let rank = mergeRanks[word[i] + " " + word[i + 1]], rank < (best?.rank ?? Int.max) { best = (rank, i) }
            }
            guard let best else { break }
            // Merge every occurrence of the best pair, left to right (as the reference does).
            let first = word[best.index], second = word[best.index + 1]
            var merged: [String] = []
            var i = 0
            while i < word.count {
                if i < word.count - 1 && word[i] == first && word[i + 1] == second {
                    merged.append(first + second)
                    i += 2
                } else {
                    merged.append(word[i])
                    i += 1
                }
            }
            word = merged
        }
        // Unknown symbols map to <|endoftext|>, the tokenizer's unk token.
        let ids = word.map { vocabulary[$0] ?? eos }
        cacheLock.lock()
        cache[piece] = ids
        cacheLock.unlock()
        return ids
    }

    /// GPT-2's reversible byte → printable character table.
    static func bytesToUnicode() -> [Character] {
        var bytes = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = bytes
        var n = 0
        for b in 0..<256 where !bytes.contains(b) {
            bytes.append(b)
            chars.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bytes, chars) { table[b] = Unicode.Scalar(UInt32(c)).map(Character.init) ?? " " }
        return table
    }
}

extension Unicode.Scalar {
    /// Python regex `\p{L}`.
    var isLetterScalar: Bool {
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// Python regex `\p{N}`.
    var isNumberScalar: Bool {
        switch properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
}
