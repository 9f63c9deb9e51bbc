/// Every error the daemon answers with: JSON-RPC's own codes for protocol faults, and application
/// errors in −32000…−32099, each with a stable `reason` string in `data` that clients branch on
/// (messages are for people and may change).
public enum WireError: Error, Equatable, Sendable {
    case parseError(String)
    case invalidRequest(String)
    case methodNotFound(String)
    case invalidParams(String)
    case internalError(String)
    case queueFull(limit: Int)
    /// Also `queue_full`: the images of waiting jobs fill the job store's bound (bytes).
    case storeFull(limit: Int)
    case jobNotFound(String)
    case invalidImage(String)
    case permissionDenied(String)
    case shuttingDown
    case modelNotReady(String)
    case frameTooLarge(length: Int, maximum: Int)
    case unsupportedProtocol(requested: [Int], supported: ClosedRange<Int>)
    case invalidOptions(String)
    case invalidState(String)
    /// Connections or bytes held in unfinished frames at the daemon's limit, or a frame that did not
    /// complete in time: this connection is closed, the others are served.
    case overloaded(String)
    /// The job store (a shared PostgreSQL database) cannot be reached now; nothing was changed. The
    /// daemon retries with backoff; clients retry later.
    case storeUnavailable(String)

    public var code: Int {
        switch self {
        case .parseError: return -32700
        case .invalidRequest: return -32600
        case .methodNotFound: return -32601
        case .invalidParams: return -32602
        case .internalError: return -32603
        case .queueFull, .storeFull: return -32001
        case .jobNotFound: return -32002
        case .invalidImage: return -32003
        case .permissionDenied: return -32004
        case .shuttingDown: return -32005
        case .modelNotReady: return -32006
        case .frameTooLarge: return -32007
        case .unsupportedProtocol: return -32008
        case .invalidOptions: return -32009
        case .invalidState: return -32010
        case .overloaded: return -32011
        case .storeUnavailable: return -32012
        }
    }

    /// The stable reason (protocol/README.md, "Errors").
    public var reason: String {
        switch self {
        case .parseError: return "parse_error"
        case .invalidRequest: return "invalid_request"
        case .methodNotFound: return "method_not_found"
        case .invalidParams: return "invalid_params"
        case .internalError: return "internal_error"
        case .queueFull, .storeFull: return "queue_full"
        case .jobNotFound: return "job_not_found"
        case .invalidImage: return "invalid_image"
        case .permissionDenied: return "permission_denied"
        case .shuttingDown: return "shutting_down"
        case .modelNotReady: return "model_not_ready"
        case .frameTooLarge: return "frame_too_large"
        case .unsupportedProtocol: return "unsupported_protocol"
        case .invalidOptions: return "invalid_options"
        case .invalidState: return "invalid_state"
        case .overloaded: return "overloaded"
        case .storeUnavailable: return "store_unavailable"
        }
    }

    public var message: String {
        switch self {
        case let .parseError(detail), let .invalidRequest(detail), let .invalidParams(detail), let .internalError(detail),
             let .invalidImage(detail), let .permissionDenied(detail), let .modelNotReady(detail), let .invalidOptions(detail),
             let .invalidState(detail), let .overloaded(detail), let .storeUnavailable(detail):
            return detail
        case let .methodNotFound(method): return "unknown method '\(method)'"
        case let .queueFull(limit): return "the queue is full (\(limit) jobs)"
        case let .storeFull(limit): return "the job store holds its maximum of \(limit) bytes of images of waiting jobs"
        case let .jobNotFound(id): return "no job '\(id)'"
        case .shuttingDown: return "the daemon is shutting down"
        case let .frameTooLarge(length, maximum): return "frame of \(length) bytes exceeds the maximum of \(maximum)"
        case let .unsupportedProtocol(requested, supported):
            return "protocol versions \(requested) not supported; this daemon speaks \(supported.lowerBound)…\(supported.upperBound)"
        }
    }

    public var object: RPCErrorObject {
        var data: [String: JSONValue] = ["reason": .string(reason)]
        if case let .unsupportedProtocol(_, supported) = self {
            data["supported"] = .object(["min": .integer(supported.lowerBound), "max": .integer(supported.upperBound)])
        }
        if case let .frameTooLarge(_, maximum) = self { data["maximum"] = .integer(maximum) }
        return RPCErrorObject(code: code, message: message, data: .object(data))
    }
}
