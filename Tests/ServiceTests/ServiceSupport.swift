import Foundation
@testable import Service
import TestSupport
import Wire

/// A directory under /tmp removed when the value goes away.
final class Scratch: @unchecked Sendable {
    let path: String

    init() throws {
        path = "/tmp/xs-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A fresh store of `kind` in this directory, stamping jobs with `clock`.
    func store(_ kind: StoreKind = .sqlite, clock: @escaping @Sendable () -> Date = { Date() }) throws -> any JobStore {
        switch kind {
        case .sqlite: try SQLiteJobStore(path: path + "/jobs.sqlite", clock: clock)
        case .postgres: try PostgresJobStore(url: try TestPostgres.shared.get().database(), node: "test-node", clock: clock)
        }
    }
}

/// The job store implementations JobStoreTests hold to the same behaviour.
enum StoreKind: String, CaseIterable, Sendable {
    case sqlite
    /// A database of its own in the tests' throwaway cluster (TestPostgres).
    case postgres
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.lock(); defer { lock.unlock() }; return current }
    func advance(_ seconds: TimeInterval) { lock.lock(); current += seconds; lock.unlock() }
    var read: @Sendable () -> Date { { [self] in now } }
}

enum Fixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = repository.appendingPathComponent("Tests/Fixtures/tiny-sd").path
    static let structure = FileManager.default.contents(atPath: repository.appendingPathComponent("Tests/Fixtures/images/demo-structure.png").path) ?? Data()
    static let appearance = FileManager.default.contents(atPath: repository.appendingPathComponent("Tests/Fixtures/images/demo-appearance.png").path) ?? Data()
    /// Options that run the tiny model in a fraction of a second.
    static var quick: TransferParameters {
        var p = TransferParameters()
        (p.domain, p.timesteps, p.skip, p.adainRange) = ("animal", 20, 6, [4, 14])
        return p
    }

    static func job(owner: UInt32 = 1000, priority: Int = 0, key: String? = nil, seed: UInt64? = nil,
                    structure: Data = Data([1, 2, 3]), appearance: Data = Data([4, 5, 6])) -> NewJob {
        var parameters = quick
        parameters.seed = seed
        return NewJob(owner: owner, source: "rpc", folder: nil, priority: priority, idempotencyKey: key,
                               parameters: parameters, inputs: JobInputs(structure: structure, appearance: appearance))
    }
}
