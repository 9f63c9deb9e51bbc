import Foundation
import Testing
@testable import Service

/// The bounds that keep clients from holding the daemon's connections or memory (the socket
/// behaviour around them is in DaemonTests' ConnectionTests).
@Suite struct ConnectionBudgetTests {
    @Test func connectionsAreCountedToTheLimit() {
        let budget = ConnectionBudget(ConnectionLimits(maxConnections: 2))
        #expect(budget.admitConnection() && budget.admitConnection())
        #expect(!budget.admitConnection())
        #expect(budget.usage.connections == 2)  // a refusal counts nothing
        budget.releaseConnection()
        #expect(budget.admitConnection())
    }

    @Test func bytesAreReservedAllOrNothing() {
        let budget = ConnectionBudget(ConnectionLimits(maxBufferedBytes: 100))
        #expect(budget.reserve(60))
        #expect(!budget.reserve(41))
        #expect(budget.reserve(40))
        #expect(budget.usage.bytes == 100)
        budget.release(60)
        #expect(budget.usage.bytes == 40)
    }

    /// A reload lowers the limits for what comes next; what is held stays held.
    @Test func reloadedLimitsApplyToWhatComesNext() {
        let budget = ConnectionBudget(ConnectionLimits(maxConnections: 3))
        #expect(budget.admitConnection() && budget.admitConnection())
        budget.limits.maxConnections = 1
        #expect(!budget.admitConnection())
        #expect(budget.usage.connections == 2)
    }

    /// Accounting from many threads at once loses nothing.
    @Test func concurrentAccountingBalances() {
        let budget = ConnectionBudget(ConnectionLimits(maxConnections: 1000, maxBufferedBytes: 1 << 30))
        DispatchQueue.concurrentPerform(iterations: 1000) { _ in
            if budget.admitConnection() {
                if budget.reserve(10) { budget.release(10) }
                budget.releaseConnection()
            }
        }
        #expect(budget.usage == (0, 0))
    }
}

/// Events fan out to the watchers of a job and to the state observers, and stop at unwatch.
@Suite struct EventHubTests {
    @Test func watchersHearTheirJobUntilTheyUnwatch() {
        let hub = EventHub()
        let heard = Counter(), observed = Counter()
        let token = UUID()
        hub.watch("j-1", token: token) { _ in heard.increment() }
        hub.observeStates { _ in observed.increment() }
        let info = JobConversion.info(JobRecord(id: "j-1", owner: 1, source: "rpc", state: "cancelled", priority: 0, attempts: 0,
                                                parameters: "{}", inputHash: "h", createdAt: Date()))
        hub.publish("j-1", .state(info))
        hub.publish("j-2", .state(info))
        #expect(heard.value == 1 && observed.value == 2)
        hub.unwatch("j-1", token)
        hub.publish("j-1", .state(info))
        #expect(heard.value == 1 && observed.value == 3)
    }
}
