import CSystemd

/// The libsystemd boundary (the only file that imports it): readiness and status notifications.
enum Systemd {
    /// Sends a notification such as "READY=1" or "STATUS=idle" to the service manager. Returns
    /// false when not running under systemd (no NOTIFY_SOCKET), which is not an error.
    @discardableResult
    static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// Sends one journal entry made of "FIELD=value" strings (sd_journal_sendv: the variadic
    /// sd_journal_send does not import into Swift).
    static func journal(_ fields: [String]) {
        let buffers = fields.map { Array($0.utf8) }
        var vectors: [iovec] = []
        var pinned: [UnsafeMutableRawPointer] = []
        for bytes in buffers {
            let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            memory.copyMemory(from: bytes, byteCount: bytes.count)
            pinned.append(memory)
            vectors.append(iovec(iov_base: memory, iov_len: bytes.count))
        }
        _ = sd_journal_sendv(&vectors, Int32(vectors.count))
        for memory in pinned { memory.deallocate() }
    }

    /// Whether the service manager expects watchdog pings, and how often (microseconds).
    static func watchdogInterval() -> UInt64? {
        var usec: UInt64 = 0
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : nil
    }
}
