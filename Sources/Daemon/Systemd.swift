import CSystemd

/// The libsystemd boundary (the only file that imports it): readiness and status notifications.
enum Systemd {
    /// Sends a notification such as "READY=1" or "STATUS=idle" to the service manager. Returns
    /// false when not running under systemd (no NOTIFY_SOCKET), which is not an error.
    @discardableResult
    static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// Whether the service manager expects watchdog pings, and how often (microseconds).
    static func watchdogInterval() -> UInt64? {
        var usec: UInt64 = 0
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : nil
    }
}
