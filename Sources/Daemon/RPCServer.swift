import Service
import Foundation
import SystemCalls
import Logging
import NIOCore
import NIOPosix
import Wire

/// `struct ucred` of SO_PEERCRED (Swift's Glibc does not export it).
struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The Unix-socket server: framing and dispatch per connection; the event loop only moves bytes.
final class RPCServer: @unchecked Sendable {
    let service: RPCService
    let events: EventHub
    let logger: Logger
    let isAdmin: (UInt32, UInt32) -> Bool
    let budget: ConnectionBudget
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?
    private let lock = NSLock()
    private var open: [ObjectIdentifier: ConnectionHandler] = [:]
    private var stopped = false

    init(service: RPCService, events: EventHub, logger: Logger, limits: ConnectionLimits, isAdmin: @escaping (UInt32, UInt32) -> Bool) {
        (self.service, self.events, self.logger, self.isAdmin) = (service, events, logger, isAdmin)
        budget = ConnectionBudget(limits)
    }

    /// Listens on the socket systemd passed (LISTEN_FDS), else binds `path` (mode 0660).
    func start(path: String) throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ConnectionHandler(server: self)) }
            }
        if let fd = Self.inheritedSocket() {
            channel = try bootstrap.withBoundSocket(fd).wait()
            logger.info("listening on the socket passed by systemd")
        } else {
            channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
            // Only the owner and the socket group may connect; a socket left more open is refused.
            do { try POSIX.chmod(path, 0o660) } catch {
                try? channel?.close().wait()
                throw UsageError("cannot restrict the socket to mode 0660: \(error)")
            }
            logger.info("listening on \(path)")
        }
    }

    /// WATCHDOG=1 at half the interval systemd asked for, from the event loop: if the loop stalls,
    /// systemd notices (the compute thread is busy by design and proves nothing).
    func startWatchdog(intervalMicroseconds: UInt64) {
        let period = TimeAmount.microseconds(Int64(intervalMicroseconds / 2))
        _ = group.next().scheduleRepeatedTask(initialDelay: period, delay: period) { _ in Systemd.notify("WATCHDOG=1") }
    }

    func register(_ connection: ConnectionHandler) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !stopped else { return false }
        open[ObjectIdentifier(connection)] = connection
        return true
    }

    func unregister(_ connection: ConnectionHandler) { lock.lock(); open[ObjectIdentifier(connection)] = nil; lock.unlock() }

    /// Stops accepting connections, lets each open one answer what it has received (watchers have
    /// had their last notifications: the worker stops first), closes them, then the event loop.
    /// Nothing is written to a loop that has shut down (SwiftNIO makes that a crash).
    func stop() {
        lock.lock(); stopped = true; let connections = Array(open.values); lock.unlock()
        try? channel?.close().wait()
        for connection in connections { connection.finish() }
        try? group.syncShutdownGracefully()
    }

    /// systemd socket activation: LISTEN_PID is us and LISTEN_FDS ≥ 1 → fd 3.
    static func inheritedSocket() -> CInt? {
        let environment = ProcessInfo.processInfo.environment
        guard let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
              let count = environment["LISTEN_FDS"].flatMap(Int.init), count >= 1 else { return nil }
        return 3
    }
}

/// One connection: bytes → frames → messages → replies, in order, off the event loop. Every byte
/// it holds is counted in the server's budget; a tick on the event loop sends heartbeats, closes
/// an idle connection and times out a frame that does not complete.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Malformed messages tolerated before the connection is closed.
    static let faultLimit = 8
    /// A watching connection hears something at least this often (protocol/README.md).
    static let heartbeatInterval: TimeInterval = 15
    let server: RPCServer
    private var decoder: FrameDecoder
    private var session: Session?
    private var channel: Channel?
    private let queue = DispatchQueue(label: "xattn-connection")
    private var faults = 0
    private var tick: RepeatedTask?
    /// Event loop only: admitted to the budget; bytes of the decoder's unfinished frame counted
    /// there; when that frame began; when the last complete request arrived.
    private var admitted = false
    private var decoderHeld = 0
    private var partialSince: Date?
    private var lastRequest = Date()

    /// Shared with the request queue and the worker's notifications.
    private let lock = NSLock()
    private var peer = Caller(uid: 65534, gid: 65534, isAdmin: false)
    private var lastSent = Date()
    private var closing = false
    /// Signalled when the outbound buffer drains below its low-water mark.
    private let room = NSCondition()

    private var caller: Caller {
        get { lock.lock(); defer { lock.unlock() }; return peer }
        set { lock.lock(); peer = newValue; lock.unlock() }
    }

    init(server: RPCServer) {
        self.server = server
        decoder = FrameDecoder(maximumFrameSize: server.service.limits.maximumFrameSize)
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        self.channel = channel
        guard server.budget.admitConnection() else {
            let limit = server.budget.limits.maxConnections
            server.logger.warning("refusing a connection: \(limit) are open")
            write(.error(id: nil, error: WireError.overloaded("the daemon serves its maximum of \(limit) connections; try again later").object))
            context.close(promise: nil)
            return
        }
        admitted = true
        guard server.register(self) else { context.close(promise: nil); return }
        session = Session { [weak self] message in self?.send(message) }
        if let provider = channel as? SocketOptionProvider {
            let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
            credentials.whenSuccess { [self] c in
                caller = Caller(uid: c.uid, gid: c.gid, isAdmin: server.isAdmin(c.uid, c.gid))
            }
        }
        tick = channel.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [weak self] _ in
            self?.onTick()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tick?.cancel()
        session?.close(server.events)
        if admitted {
            server.budget.release(decoderHeld)
            decoderHeld = 0
            server.budget.releaseConnection()
            admitted = false
        }
        server.unregister(self)
        context.fireChannelInactive()
    }

    /// Event loop: heartbeats while watching, the idle timeout otherwise, and the frame timeout.
    private func onTick() {
        let now = Date()
        let limits = server.budget.limits
        if let since = partialSince, now.timeIntervalSince(since) >= Double(limits.frameTimeout) {
            refuse(.overloaded("a frame did not complete within \(limits.frameTimeout) s"))
            return
        }
        if session?.isWatching == true {
            lock.lock(); let quiet = now.timeIntervalSince(lastSent); lock.unlock()
            if quiet >= Self.heartbeatInterval {
                send(.notification(method: RPCNotificationName.heartbeat.rawValue,
                                   params: try? JSONValue(encoding: Heartbeat(time: JobConversion.timestamp(now)))))
            }
        } else if partialSince == nil, now.timeIntervalSince(lastRequest) >= Double(limits.idleTimeout) {
            channel?.close(promise: nil)
        }
    }

    /// Answers `error` (no id: it concerns the connection) and closes.
    private func refuse(_ error: WireError) {
        write(.error(id: nil, error: error.object))
        channel?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted, !isClosing else { return }
        let buffer = unwrapInboundIn(data)
        let incoming = buffer.readableBytes
        guard server.budget.reserve(incoming) else {
            let limit = server.budget.limits.maxBufferedBytes
            server.logger.warning("closing a connection: the daemon holds its maximum of \(limit) bytes of unfinished requests")
            refuse(.overloaded("the daemon holds its maximum of \(limit) bytes of unanswered requests; try again later"))
            return
        }
        let frames: [Data]
        do {
            frames = try decoder.feed(Data(buffer.readableBytesView))
        } catch let error as FramingError {
            server.budget.release(decoderHeld + incoming)
            decoderHeld = 0
            switch error {
            case let .frameTooLarge(length, maximum): refuse(.frameTooLarge(length: length, maximum: maximum))
            case .emptyFrame: refuse(.invalidRequest("zero-length frame"))
            }
            return
        } catch {
            context.close(promise: nil)
            return
        }
        // What is held now: the decoder's unfinished frame and the frames waiting for the queue
        // (their length prefixes are gone).
        let framed = frames.reduce(0) { $0 + $1.count }
        server.budget.release(decoderHeld + incoming - decoder.bufferedByteCount - framed)
        decoderHeld = decoder.bufferedByteCount
        if !frames.isEmpty { lastRequest = Date(); partialSince = nil }
        if decoderHeld > 0 && partialSince == nil { partialSince = Date() }
        for frame in frames {
            queue.async { [self] in
                defer { server.budget.release(frame.count) }
                process(frame)
            }
        }
    }

    private var isClosing: Bool { lock.lock(); defer { lock.unlock() }; return closing }

    /// At shutdown: takes no more requests, answers those received, then closes.
    func finish() {
        lock.lock(); closing = true; lock.unlock()
        room.lock(); room.broadcast(); room.unlock()
        queue.sync {}
        try? channel?.close().wait()
    }

    /// Event loop: the outbound buffer crossed a water mark; a request waiting for room may go on.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        room.lock(); room.broadcast(); room.unlock()
        context.fireChannelWritabilityChanged()
    }

    /// Request queue: waits while this connection's replies are not being read (the outbound
    /// buffer is above its high-water mark), so a client that sends requests and never reads
    /// cannot make the daemon hold its replies without bound; it simply gets no more answers.
    private func waitForRoom() {
        room.lock(); defer { room.unlock() }
        while let channel, channel.isActive, !channel.isWritable, !isClosing {
            _ = room.wait(until: Date().addingTimeInterval(1))
        }
    }

    private func process(_ frame: Data) {
        waitForRoom()
        guard let session, !isClosing else { return }
        do {
            let message = try RPCMessage.decode(frame)
            if let reply = server.service.handle(message, caller: caller, session: session) { send(reply) }
        } catch let failure as RPCFailure {
            send(.error(id: failure.id, error: failure.error))
            faults += 1
            if faults >= Self.faultLimit {
                server.logger.warning("closing a connection that sent \(faults) malformed messages")
                channel?.close(promise: nil)
            }
        } catch {
            send(.error(id: nil, error: WireError.internalError("\(error)").object))
        }
    }

    /// Thread-safe: NIO hops to the channel's event loop. Notes the time for the heartbeat rule.
    /// Progress is dropped for a connection that is not reading (the next one supersedes it);
    /// replies and state changes never are.
    func send(_ message: RPCMessage) {
        if case let .notification(method, _) = message, method == RPCNotificationName.progress.rawValue,
           let channel, !channel.isWritable { return }
        lock.lock(); lastSent = Date(); lock.unlock()
        write(message)
    }

    private func write(_ message: RPCMessage) {
        guard let channel, channel.isActive, let payload = try? message.encoded() else { return }
        let framed = FrameEncoder.frame(payload)
        var buffer = channel.allocator.buffer(capacity: framed.count)
        buffer.writeBytes(framed)
        channel.writeAndFlush(buffer, promise: nil)
    }
}
