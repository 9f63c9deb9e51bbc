import Foundation
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
    let idleTimeout: TimeAmount
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?

    init(service: RPCService, events: EventHub, logger: Logger, idleTimeoutSeconds: Int64, isAdmin: @escaping (UInt32, UInt32) -> Bool) {
        (self.service, self.events, self.logger, self.isAdmin) = (service, events, logger, isAdmin)
        idleTimeout = .seconds(idleTimeoutSeconds)
    }

    /// Listens on the socket systemd passed (LISTEN_FDS), else binds `path` (mode 0660).
    func start(path: String) throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelInitializer { [self] channel in
                channel.pipeline.addHandler(IdleStateHandler(readTimeout: idleTimeout)).flatMap {
                    channel.pipeline.addHandler(ConnectionHandler(server: self))
                }
            }
        if let fd = Self.inheritedSocket() {
            channel = try bootstrap.withBoundSocket(fd).wait()
            logger.info("listening on the socket passed by systemd")
        } else {
            channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
            chmod(path, 0o660)
            logger.info("listening on \(path)")
        }
    }

    /// WATCHDOG=1 at half the interval systemd asked for, from the event loop: if the loop stalls,
    /// systemd notices (the compute thread is busy by design and proves nothing).
    func startWatchdog(intervalMicroseconds: UInt64) {
        let period = TimeAmount.microseconds(Int64(intervalMicroseconds / 2))
        _ = group.next().scheduleRepeatedTask(initialDelay: period, delay: period) { _ in Systemd.notify("WATCHDOG=1") }
    }

    /// Stops accepting connections (open ones finish their replies).
    func stop() {
        try? channel?.close().wait()
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

/// One connection: bytes → frames → messages → replies, in order, off the event loop.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Malformed messages tolerated before the connection is closed.
    static let faultLimit = 8
    let server: RPCServer
    private var decoder: FrameDecoder
    private var session: Session?
    /// Set on the event loop when the peer credentials arrive, read on the request queue.
    private var peer = Caller(uid: 65534, gid: 65534, isAdmin: false)
    private let peerLock = NSLock()
    private var caller: Caller {
        get { peerLock.lock(); defer { peerLock.unlock() }; return peer }
        set { peerLock.lock(); peer = newValue; peerLock.unlock() }
    }
    private let queue = DispatchQueue(label: "xattn-connection")
    private var faults = 0
    private var heartbeat: RepeatedTask?

    init(server: RPCServer) {
        self.server = server
        decoder = FrameDecoder(maximumFrameSize: server.service.limits.maximumFrameSize)
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        session = Session { message in Self.write(message, to: channel) }
        if let provider = channel as? SocketOptionProvider {
            let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
            credentials.whenSuccess { [self] c in
                caller = Caller(uid: c.uid, gid: c.gid, isAdmin: server.isAdmin(c.uid, c.gid))
            }
        }
        heartbeat = channel.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(15), delay: .seconds(15)) { [weak self] _ in
            guard let session = self?.session, session.isWatching else { return }
            let time = JobConversion.formatter.string(from: Date())
            session.send(.notification(method: RPCNotificationName.heartbeat.rawValue, params: try? JSONValue(encoding: Heartbeat(time: time))))
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        heartbeat?.cancel()
        session?.close(server.events)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Idle peers are closed, unless they are watching a job (heartbeats keep them).
        if event is IdleStateHandler.IdleStateEvent, !(session?.isWatching ?? false) {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let frames: [Data]
        do {
            frames = try decoder.feed(Data(buffer.readableBytesView))
        } catch let error as FramingError {
            let reply: WireError
            switch error {
            case let .frameTooLarge(length, maximum): reply = .frameTooLarge(length: length, maximum: maximum)
            case .emptyFrame: reply = .invalidRequest("zero-length frame")
            }
            Self.write(.error(id: nil, error: reply.object), to: context.channel)
            context.close(promise: nil)  // the rest of the stream cannot be framed
            return
        } catch {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        for frame in frames {
            queue.async { [self] in process(frame, channel: channel) }
        }
    }

    private func process(_ frame: Data, channel: Channel) {
        guard let session else { return }
        do {
            let message = try RPCMessage.decode(frame)
            if let reply = server.service.handle(message, caller: caller, session: session) { Self.write(reply, to: channel) }
        } catch let failure as RPCFailure {
            Self.write(.error(id: failure.id, error: failure.error), to: channel)
            faults += 1
            if faults >= Self.faultLimit {
                server.logger.warning("closing a connection that sent \(faults) malformed messages")
                channel.close(promise: nil)
            }
        } catch {
            Self.write(.error(id: nil, error: WireError.internalError("\(error)").object), to: channel)
        }
    }

    /// Thread-safe: NIO hops to the channel's event loop.
    static func write(_ message: RPCMessage, to channel: Channel) {
        guard let payload = try? message.encoded() else { return }
        let framed = FrameEncoder.frame(payload)
        var buffer = channel.allocator.buffer(capacity: framed.count)
        buffer.writeBytes(framed)
        channel.writeAndFlush(buffer, promise: nil)
    }
}
