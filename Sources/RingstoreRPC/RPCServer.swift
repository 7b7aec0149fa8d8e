public import Logging
public import NIOCore
import NIOPosix
import Synchronization

/// Settings of an `RPCServer`.
public struct RPCServerConfiguration: Sendable {
    /// Requests one connection works on at once; at the limit the server stops
    /// reading that connection until replies go out.
    public var inFlightMax: Int
    /// How long `stop()` lets outstanding requests finish before it closes connections.
    public var stopGracePeriod: TimeAmount
    /// Whether the Tasks that run `RPCHandler.handle` use the connection's event loop
    /// as their executor (true, the default: no thread hop, about twice the requests
    /// per second on two cores) or Swift's global pool (false: long CPU work in
    /// `handle` then cannot delay other connections' I/O).
    public var tasksRunOnEventLoop: Bool

    /// Creates settings; the defaults suit node-to-node traffic.
    public init(inFlightMax: Int = RPCLimits.serverInFlightMaxDefault, stopGracePeriod: TimeAmount = .seconds(5), tasksRunOnEventLoop: Bool = true) {
        precondition(inFlightMax > 0, "inFlightMax must be positive")
        self.inFlightMax = inFlightMax
        self.stopGracePeriod = stopGracePeriod
        self.tasksRunOnEventLoop = tasksRunOnEventLoop
    }
}

/// Accepts framed RPC connections and answers every request with an `RPCHandler`.
///
/// One instance serves once: `start()`, then `stop()`. Both may be called from any
/// thread or task. The event-loop group belongs to the caller, who shuts it down
/// after `stop()` returns.
public final class RPCServer: Sendable {
    private enum Phase {
        case created
        case running(any Channel)
        case stopping
        case stopped
    }

    private struct State {
        var phase: Phase = .created
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    private let host: String
    private let port: Int
    private let handler: any RPCHandler
    private let group: any EventLoopGroup
    private let configuration: RPCServerConfiguration
    private let logger: Logger?
    private let state = Mutex(State())

    /// Creates a server; nothing listens until `start()`.
    public init(
        host: String, port: Int, handler: any RPCHandler, group: any EventLoopGroup,
        configuration: RPCServerConfiguration = RPCServerConfiguration(), logger: Logger? = nil
    ) {
        self.host = host
        self.port = port
        self.handler = handler
        self.group = group
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts listening and returns the bound port (useful with port 0).
    ///
    /// Throws the bind error, or `RPCError.shutdown` if the server was started before.
    public func start() async throws -> Int {
        try state.withLock { state in
            guard case .created = state.phase else { throw RPCError.shutdown }
            state.phase = .stopping  // claimed: a second start() fails while this one binds
        }
        let channel: any Channel
        do {
            channel = try await makeBootstrap().bind(host: host, port: port).get()
        } catch {
            state.withLock { $0.phase = .stopped }
            throw error
        }
        state.withLock { $0.phase = .running(channel) }
        let boundPort = channel.localAddress?.port ?? port
        logger?.info("RPC server listening", metadata: ["address": "\(host):\(boundPort)"])
        return boundPort
    }

    /// Stops accepting, lets outstanding requests finish for at most the grace period
    /// (new requests on open connections are refused with `shuttingDownCode`), then
    /// closes every connection. Returns when all are closed.
    public func stop() async {
        let listener: (any Channel)? = state.withLock { state in
            defer { state.phase = .stopping }
            if case .running(let channel) = state.phase { return channel }
            return nil
        }
        try? await listener?.close()
        let connections = state.withLock { Array($0.connections.values) }
        for connection in connections {
            connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        await waitUntilClosed(connections, limit: configuration.stopGracePeriod)
        for connection in connections {
            try? await connection.close()
        }
        state.withLock { $0.phase = .stopped }
        logger?.info("RPC server stopped")
    }

    /// Connections open now; for tests and metrics.
    public var connectionCount: Int {
        state.withLock { $0.connections.count }
    }

    private func makeBootstrap() -> ServerBootstrap {
        let handler = self.handler
        let inFlightMax = configuration.inFlightMax
        let tasksRunOnEventLoop = configuration.tasksRunOnEventLoop
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [weak self] channel in
                guard let self, self.register(channel) else {
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RPCServerConnectionHandler(
                            handler: handler, inFlightMax: inFlightMax, tasksRunOnEventLoop: tasksRunOnEventLoop, logger: logger))
                }
            }
    }

    /// Tracks a new connection; false if the server is stopping and it must be closed.
    private func register(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let accepted = state.withLock { state in
            guard case .running = state.phase else { return false }
            state.connections[key] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { [weak self] _ in
                _ = self?.state.withLock { $0.connections.removeValue(forKey: key) }
            }
        }
        return accepted
    }

    private func waitUntilClosed(_ channels: [any Channel], limit: TimeAmount) async {
        guard !channels.isEmpty else { return }
        let loop = group.next()
        let done = loop.makePromise(of: Void.self)
        let timer = loop.scheduleTask(in: limit) { done.succeed(()) }
        EventLoopFuture.andAllComplete(channels.map(\.closeFuture), on: loop).whenComplete { _ in
            timer.cancel()
            done.succeed(())
        }
        try? await done.futureResult.get()
    }
}
