public import Logging
public import NIOCore
import NIOPosix
import Synchronization

/// Settings of an `RPCClient`.
public struct RPCClientConfiguration: Sendable {
    /// Calls outstanding on the connection (sent or waiting for a connect) before
    /// new calls fail fast with `RPCError.overloaded`.
    public var inFlightMax: Int
    /// How long one connection attempt may take.
    public var connectTimeout: TimeAmount
    /// Delays between failed connection attempts.
    public var backoff: RPCBackoff
    /// The local IP address connections leave from; nil lets the kernel choose. A
    /// process that listens on one address of a host with several (a machine with
    /// two networks, or each process of a test cluster on its own loopback address)
    /// sends from that address too, so that peers and firewalls see who it is.
    public var localAddress: String?

    /// Creates settings; the defaults suit node-to-node traffic on one network.
    public init(
        inFlightMax: Int = RPCLimits.inFlightMaxDefault, connectTimeout: TimeAmount = .seconds(1), backoff: RPCBackoff = RPCBackoff(),
        localAddress: String? = nil
    ) {
        precondition(inFlightMax > 0, "inFlightMax must be positive")
        self.inFlightMax = inFlightMax
        self.connectTimeout = connectTimeout
        self.backoff = backoff
        self.localAddress = localAddress
    }

    /// Settings whose connections leave from `listenHost`, the address the process
    /// listens on, when it is one IP address of this host (not a name, not the
    /// wildcard).
    public static func sending(from listenHost: String) -> RPCClientConfiguration {
        var configuration = RPCClientConfiguration()
        if let address = try? SocketAddress(ipAddress: listenHost, port: 0) {
            let wildcard = listenHost == "0.0.0.0" || listenHost == "::"
            if !wildcard { configuration.localAddress = address.ipAddress }
        }
        return configuration
    }
}

/// Calls one peer over one persistent connection.
///
/// The client connects on the first call and reconnects after the connection drops;
/// while attempts keep failing it backs off (see `RPCBackoff`) and fails calls fast
/// with `connectionFailed` instead of queueing them. Many calls are outstanding at
/// once, each with its own deadline; replies may come in any order.
///
/// All of its state lives on one event loop (`eventLoop`), picked from the group at
/// creation. Calls may come from any thread, but a call made on that loop skips a
/// thread hop, and returned futures complete on it. The owner MUST call `shutdown()`.
public final class RPCClient: Sendable {
    /// The loop that owns the connection; futures from `callFuture` complete on it.
    public let eventLoop: any EventLoop
    private let core: NIOLoopBoundBox<RPCClientCore>
    private let status: RPCClientStatus

    /// Creates a client for `host:port`; nothing connects until the first call.
    public init(
        host: String, port: Int, group: any EventLoopGroup,
        configuration: RPCClientConfiguration = RPCClientConfiguration(), logger: Logger? = nil
    ) {
        let eventLoop = group.next()
        let status = RPCClientStatus()
        self.eventLoop = eventLoop
        self.status = status
        self.core = NIOLoopBoundBox.makeBoxSendingValue(
            RPCClientCore(host: host, port: port, eventLoop: eventLoop, configuration: configuration, status: status, logger: logger),
            eventLoop: eventLoop)
    }

    /// Sends `request` and completes with the reply, or fails with `RPCError` when the
    /// deadline passes, the connection fails or closes, the connection has too many
    /// calls outstanding, or the peer answers with an error.
    ///
    /// For callers already on a NIO event loop: no Task is made.
    public func callFuture(_ request: RPCMessage, timeout: TimeAmount) -> EventLoopFuture<RPCMessage> {
        let promise = eventLoop.makePromise(of: RPCMessage.self)
        if eventLoop.inEventLoop {
            core.value.call(request, timeout: timeout, promise: promise)
        } else {
            let core = self.core
            eventLoop.execute { core.value.call(request, timeout: timeout, promise: promise) }
        }
        return promise.futureResult
    }

    /// Sends `request` and returns the reply; see `callFuture(_:timeout:)`.
    ///
    /// Cancelling the task does not end the wait early; the deadline does.
    public func call(_ request: RPCMessage, timeout: TimeAmount) async throws -> RPCMessage {
        try await callFuture(request, timeout: timeout).get()
    }

    /// Ends a backoff after failed connects: the caller knows the peer is up again
    /// (it heard from it), so the next call connects at once.
    public func peerIsBack() {
        let core = self.core
        if eventLoop.inEventLoop { core.value.peerIsBack() } else { eventLoop.execute { core.value.peerIsBack() } }
    }

    /// Whether a connection is established now.
    public var isConnected: Bool {
        status.connected.load(ordering: .relaxed)
    }

    /// Fails every outstanding call with `RPCError.shutdown`, closes the connection,
    /// and makes later calls fail with `shutdown`.
    public func shutdown() async {
        let core = self.core
        let closed = eventLoop.flatSubmit { core.value.shutdown() }
        try? await closed.get()
    }
}

/// What the client publishes to other threads.
final class RPCClientStatus: Sendable {
    let connected = Atomic<Bool>(false)
}

/// The client's state and logic; every member runs on `eventLoop`.
final class RPCClientCore {
    private struct PendingCall {
        var promise: EventLoopPromise<RPCMessage>
    }

    private let host: String
    private let port: Int
    private let eventLoop: any EventLoop
    private let configuration: RPCClientConfiguration
    private let status: RPCClientStatus
    private let logger: Logger?

    private var machine: RPCConnectionStateMachine
    private var generator = SystemRandomNumberGenerator()
    private var nextRequestID: UInt64 = 1
    private var pending: [UInt64: PendingCall] = [:]
    /// Calls waiting for the connect in progress, in call order.
    private var queued: [(requestID: UInt64, request: RPCMessage)] = []
    private var deadlines = DeadlineHeap()
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var connecting: RPCClientConnectionHandler?
    private var connection: RPCClientConnectionHandler?

    init(host: String, port: Int, eventLoop: any EventLoop, configuration: RPCClientConfiguration, status: RPCClientStatus, logger: Logger?) {
        self.host = host
        self.port = port
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.status = status
        self.logger = logger
        self.machine = RPCConnectionStateMachine(backoff: configuration.backoff)
    }

    // MARK: - Calls

    func call(_ request: RPCMessage, timeout: TimeAmount, promise: EventLoopPromise<RPCMessage>) {
        let bytes = RPCLimits.headerBytesAfterLength + request.body.readableBytes
        guard bytes <= RPCLimits.frameBytesMax else {
            promise.fail(RPCError.frameTooLarge(bytes: bytes, max: RPCLimits.frameBytesMax))
            return
        }
        guard pending.count < configuration.inFlightMax else {
            promise.fail(RPCError.overloaded(inFlight: pending.count, max: configuration.inFlightMax))
            return
        }
        let now = NIODeadline.now()
        switch machine.callRequested(now: now) {
        case .fail(let error):
            promise.fail(error)
        case .send:
            let requestID = register(promise, deadline: now + timeout)
            connection!.send(RPCFrame(requestID: requestID, kind: .request, messageType: request.messageType, body: request.body))
        case .queue:
            let requestID = register(promise, deadline: now + timeout)
            queued.append((requestID, request))
        case .connectAndQueue(let attempt):
            let requestID = register(promise, deadline: now + timeout)
            queued.append((requestID, request))
            connect(attempt: attempt)
        }
    }

    private func register(_ promise: EventLoopPromise<RPCMessage>, deadline: NIODeadline) -> UInt64 {
        let requestID = nextRequestID
        nextRequestID += 1
        pending[requestID] = PendingCall(promise: promise)
        deadlines.push(.init(deadline: deadline, id: requestID))
        if deadlines.count > 2 * pending.count + 256 {
            deadlines.retain { pending[$0.id] != nil }
        }
        armTimer(for: deadline)
        return requestID
    }

    /// A frame arrived on connection `attempt`.
    func received(_ frame: RPCFrame, attempt: UInt64) {
        guard case .connected(attempt) = machine.state else { return }
        switch frame.kind {
        case .response:
            // A reply whose call timed out is gone from `pending` and dropped here.
            pending.removeValue(forKey: frame.requestID)?.promise.succeed(frame.message)
        case .errorResponse:
            let message = String(buffer: frame.body)
            pending.removeValue(forKey: frame.requestID)?.promise.fail(RPCError.remote(code: frame.messageType, message: message))
        case .request:
            logger?.warning("closing RPC connection: server sent a request frame", metadata: ["peer": "\(host):\(port)"])
            connection?.close()
        }
    }

    // MARK: - Deadlines

    private func armTimer(for deadline: NIODeadline) {
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { self.expireCalls() }
    }

    private func expireCalls() {
        timer = nil
        timerDeadline = nil
        let now = NIODeadline.now()
        while let first = deadlines.first, first.deadline <= now {
            deadlines.popFirst()
            pending.removeValue(forKey: first.id)?.promise.fail(RPCError.timedOut)
        }
        while let first = deadlines.first, pending[first.id] == nil {
            deadlines.popFirst()
        }
        if let first = deadlines.first { armTimer(for: first.deadline) }
    }

    // MARK: - Connection

    private func connect(attempt: UInt64) {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
        if let localAddress = configuration.localAddress, let address = try? SocketAddress(ipAddress: localAddress, port: 0) {
            bootstrap = bootstrap.bind(to: address)
        }
        bootstrap
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = RPCClientConnectionHandler(core: bound.value, attempt: attempt)
                    bound.value.connecting = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel): self.connectSucceeded(attempt: attempt, channel: channel)
                case .failure(let error): self.connectFailed(attempt: attempt, reason: "\(self.host):\(self.port): \(error)")
                }
            }
    }

    private func connectSucceeded(attempt: UInt64, channel: any Channel) {
        let handler = connecting
        connecting = nil
        switch machine.connectSucceeded(attempt: attempt) {
        case .closeChannel:
            channel.close(promise: nil)
        case .sendQueued:
            guard let handler, handler.attempt == attempt else {
                fatalError("internal inconsistency in RPCClientCore: connected without a handler for attempt \(attempt)")
            }
            connection = handler
            status.connected.store(true, ordering: .relaxed)
            logger?.debug("RPC connected", metadata: ["peer": "\(host):\(port)"])
            let waiting = queued
            queued = []
            for (requestID, request) in waiting where pending[requestID] != nil {
                handler.send(RPCFrame(requestID: requestID, kind: .request, messageType: request.messageType, body: request.body))
            }
        }
    }

    private func connectFailed(attempt: UInt64, reason: String) {
        connecting = nil
        switch machine.connectFailed(attempt: attempt, reason: reason, now: .now(), generator: &generator) {
        case .none:
            return
        case .failQueued(let error):
            logger?.debug("RPC connect failed", metadata: ["peer": "\(host):\(port)", "reason": "\(reason)"])
            failQueued(error)
        }
    }

    /// A channel of attempt `attempt` closed.
    func connectionClosed(attempt: UInt64) {
        switch machine.connectionClosed(attempt: attempt, now: .now(), generator: &generator) {
        case .none:
            return
        case .failOutstanding(let error):
            connection = nil
            connecting = nil
            status.connected.store(false, ordering: .relaxed)
            logger?.debug("RPC connection closed", metadata: ["peer": "\(host):\(port)", "outstanding": "\(pending.count)"])
            failAll(error)
        }
    }

    private func failQueued(_ error: RPCError) {
        let waiting = queued
        queued = []
        for (requestID, _) in waiting {
            pending.removeValue(forKey: requestID)?.promise.fail(error)
        }
    }

    private func failAll(_ error: RPCError) {
        queued = []
        let calls = pending
        pending = [:]
        deadlines = DeadlineHeap()
        timer?.cancel()
        timer = nil
        timerDeadline = nil
        for call in calls.values {
            call.promise.fail(error)
        }
    }

    func peerIsBack() {
        machine.peerIsBack()
    }

    func shutdown() -> EventLoopFuture<Void> {
        machine.shutdownRequested()
        status.connected.store(false, ordering: .relaxed)
        failAll(.shutdown)
        let closing = connection ?? connecting
        connection = nil
        connecting = nil
        return closing?.closeAndWait() ?? eventLoop.makeSucceededVoidFuture()
    }
}

/// The client's end of one connection: decodes reply frames for the core and writes
/// request frames, coalesced and flushed once per read burst or event-loop tick.
/// Sits alone in the pipeline, bytes in and bytes out. Runs on the client's loop.
final class RPCClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let attempt: UInt64
    private let core: RPCClientCore
    private let frames = NIOSingleStepByteToMessageProcessor(RPCFrameDecoder())
    private var context: ChannelHandlerContext?
    private var outbound = RPCOutboundFrames()
    private var inReadBurst = false
    private var flushAtReadComplete = false
    private var flushScheduled = false

    init(core: RPCClientCore, attempt: UInt64) {
        self.core = core
        self.attempt = attempt
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        outbound.discard()
    }

    func send(_ frame: RPCFrame) {
        guard let context else { return }  // closing: the core fails the call when the close arrives
        let toWrite = outbound.append(frame, allocator: context.channel.allocator)
        context.writeFrames(toWrite)
        if inReadBurst {
            flushAtReadComplete = true
        } else if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                if let context = self.context {
                    let batch = self.outbound.takeBatch()
                    context.flushBatch(batch)
                }
            }
        }
    }

    func close() {
        context?.close(promise: nil)
    }

    func closeAndWait() -> EventLoopFuture<Void>? {
        guard let context else { return nil }
        let closed = context.channel.closeFuture
        context.close(promise: nil)
        return closed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.context != nil else { return }
        inReadBurst = true
        do {
            try frames.process(buffer: unwrapInboundIn(data)) { frame in
                self.core.received(frame, attempt: self.attempt)
            }
        } catch {
            self.context = nil
            outbound.discard()
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        if flushAtReadComplete, self.context != nil {
            flushAtReadComplete = false
            let batch = outbound.takeBatch()
            context.flushBatch(batch)
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        outbound.discard()
        core.connectionClosed(attempt: attempt)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
