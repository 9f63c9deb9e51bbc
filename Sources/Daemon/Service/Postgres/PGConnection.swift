import CLibPQ
import Foundation

/// An error from PostgreSQL or the connection to it: the server's SQLSTATE when it sent one.
package struct PGError: Error, CustomStringConvertible {
    package let message: String
    package let sqlState: String?
    package var description: String { sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message }

    /// Errors after which the same transaction may succeed when run again.
    var isTransient: Bool { ["40001", "40P01"].contains(sqlState ?? "") }
    /// The connection itself failed (server down, restarted, network): reconnect and retry.
    var isConnectionLoss: Bool { sqlState == nil || sqlState?.hasPrefix("08") == true || sqlState == "57P01" || sqlState == "57P03" }
}

/// A parameter of a statement: text, bytes (sent in binary, for bytea) or NULL.
package enum PGValue {
    case text(String)
    case bytes(Data)
    case null

    init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    init(_ value: Int) { self = .text(String(value)) }
    init(_ value: Double?) { self = value.map { .text(String($0)) } ?? .null }
}

/// Rows of a result in text format, by column name.
package struct PGRows {
    package let columns: [String]
    let values: [[String?]]

    package var count: Int { values.count }
    /// nil for NULL, and for a row or column the result does not have.
    package func string(_ row: Int, _ column: String) -> String? {
        guard row >= 0 && row < values.count, let index = columns.firstIndex(of: column) else { return nil }
        return values[row][index]
    }
    func int(_ row: Int, _ column: String) -> Int? { string(row, column).flatMap { Int($0) } }
    func double(_ row: Int, _ column: String) -> Double? { string(row, column).flatMap { Double($0) } }
    func bool(_ row: Int, _ column: String) -> Bool? { string(row, column).map { $0 == "t" } }
    /// A bytea column: the text format's `\x` hex.
    func bytes(_ row: Int, _ column: String) -> Data? {
        guard let text = string(row, column) else { return nil }
        return PGConnection.decodeHex(text)
    }
}

/// One connection through libpq (PostgreSQL's own client library; the wire protocol is its). Not
/// thread-safe: callers serialise (PostgresJobStore holds a lock). A lost connection is reset on the
/// next use.
package final class PGConnection {
    private var handle: OpaquePointer?
    let keywords: [String: String]

    /// `url`: a libpq connection string or `postgresql://` URI; `password`, when given, is passed
    /// apart from it (never part of a string that could be logged).
    package init(url: String, password: String? = nil) throws {
        var keywords = ["dbname": url, "connect_timeout": "5", "application_name": "xattnd"]
        if let password { keywords["password"] = password }
        self.keywords = keywords
        try connect()
    }

    deinit { if let handle { PQfinish(handle) } }

    private func connect() throws {
        if let handle { PQfinish(handle) }
        let names = Array(keywords.keys), values = names.map { keywords[$0] ?? "" }
        let cNames = names.map { strdup($0) }, cValues = values.map { strdup($0) }
        defer { (cNames + cValues).forEach { free($0) } }
        var namePointers: [UnsafePointer<CChar>?] = cNames.map { UnsafePointer($0) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = cValues.map { UnsafePointer($0) } + [nil]
        // expand_dbname = 1: the `dbname` value may itself be a connection string or URI.
        handle = PQconnectdbParams(&namePointers, &valuePointers, 1)
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let message = handle.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            throw PGError(message: "connecting to PostgreSQL: " + message.trimmingCharacters(in: .whitespacesAndNewlines), sqlState: nil)
        }
        _ = try execute("SET client_min_messages = warning")
    }

    /// Runs one statement with $1… parameters; returns its rows (text format).
    @discardableResult
    package func execute(_ sql: String, _ parameters: [PGValue] = []) throws -> PGRows {
        if handle == nil || PQstatus(handle) != CONNECTION_OK { try connect() }
        let storage: [Data?] = parameters.map {
            switch $0 {
            case let .text(text): return Data(text.utf8) + Data([0])
            case let .bytes(data): return data
            case .null: return nil
            }
        }
        let formats: [Int32] = parameters.map { if case .bytes = $0 { 1 } else { 0 } }
        let lengths: [Int32] = storage.map { Int32(clamping: $0?.count ?? 0) }
        let result: OpaquePointer? = withPointers(storage) { pointers in
            PQexecParams(handle, sql, Int32(parameters.count), nil, pointers, lengths, formats, 0)
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = result.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) }
            let message = result.flatMap { PQresultErrorMessage($0) }.map { String(cString: $0) } ?? String(cString: PQerrorMessage(handle))
            throw PGError(message: message.trimmingCharacters(in: .whitespacesAndNewlines), sqlState: state)
        }
        let (rows, columns) = (Int(PQntuples(result)), Int(PQnfields(result)))
        let names = (0..<columns).map { String(cString: PQfname(result, Int32($0))) }
        let values = (0..<rows).map { r in
            (0..<columns).map { c -> String? in
                PQgetisnull(result, Int32(r), Int32(c)) == 1 ? nil : String(cString: PQgetvalue(result, Int32(r), Int32(c)))
            }
        }
        return PGRows(columns: names, values: values)
    }

    /// `body` inside BEGIN … COMMIT (ROLLBACK when it throws).
    package func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            _ = try? execute("ROLLBACK")
            throw error
        }
    }

    /// The connection's socket, for waiting on notifications.
    var socket: Int32 { handle.map { PQsocket($0) } ?? -1 }

    /// Notifications received so far (after LISTEN): their channels and payloads.
    func notifications() throws -> [(channel: String, payload: String)] {
        guard let handle else { return [] }
        guard PQconsumeInput(handle) == 1 else {
            throw PGError(message: String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines), sqlState: nil)
        }
        var received: [(channel: String, payload: String)] = []
        while let notice = PQnotifies(handle) {
            received.append((String(cString: notice.pointee.relname), notice.pointee.extra.map { String(cString: $0) } ?? ""))
            PQfreemem(notice)
        }
        return received
    }

    static func decodeHex(_ text: String) -> Data? {
        guard text.hasPrefix("\\x") else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity((text.utf8.count - 2) / 2)
        var high: UInt8?
        for c in text.utf8.dropFirst(2) {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            if let h = high { bytes.append(h << 4 | v); high = nil } else { high = v }
        }
        return Data(bytes)
    }

    private func withPointers<R>(_ storage: [Data?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        var pointers: [UnsafePointer<CChar>?] = []
        func next(_ index: Int) -> R {
            guard index < storage.count else { return body(pointers) }
            guard let data = storage[index] else { pointers.append(nil); return next(index + 1) }
            return data.withUnsafeBytes { raw in
                pointers.append(raw.baseAddress?.assumingMemoryBound(to: CChar.self) ?? UnsafePointer(bitPattern: 1))
                return next(index + 1)
            }
        }
        return next(0)
    }
}
