import Core
import Foundation
import Wire

extension WireError {
    /// The one place where the daemon's errors become the wire's (protocol/README.md, "Errors"):
    /// the user's mistakes keep their reasons; only what is left is `internal_error`.
    init(from error: Error) {
        switch error {
        case let error as WireError: self = error
        case let error as StoreError:
            switch error {
            case let .queueFull(limit): self = .queueFull(limit: limit)
            case let .storeFull(limit): self = .storeFull(limit: limit)
            case let .notFound(job): self = .jobNotFound(job)
            case let .invalidState(detail): self = .invalidState(detail)
            }
        case let error as TransferError:
            switch error {
            case let .invalidImage(detail): self = .invalidImage(detail)
            case .cancelled: self = .invalidState("the job was cancelled")
            case .invalidOption, .objectNounNotInPrompt, .invalidNoise: self = .invalidOptions(error.description)
            }
        case let error as PGError where error.isConnectionLoss:
            self = .storeUnavailable("the job database cannot be reached (\(error.message)); nothing was changed, try again later")
        default: self = .internalError("\(error)")
        }
    }
}
