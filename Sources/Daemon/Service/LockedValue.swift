import Foundation

/// A value shared between threads (the admin group, changed by reloads and read per connection;
/// the queue's length when the store last answered).
package final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    package init(_ value: T) { stored = value }
    package var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
