import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Persistent HTTP/1.1 connections, a few idle ones kept per endpoint for reuse, one
/// request at a time on each (no pipelining).
///
/// A request writes its head and body while its reply is read, so a server that
/// answers early (a 413 sent from `Content-Length`) and closes is reported with its
/// own reply. A connection goes back to the pool only after a whole reply that did
/// not say `Connection: close`. When a reused connection turns out to have been
/// closed by the server before any byte of the reply arrived, the request is sent
/// once more on a new connection: the server closed it while idle, so it never saw
/// the request.
final class HTTPConnectionPool: Sendable {
    /// Idle connections kept per endpoint; more are closed when they finish.
    static let idlePerEndpointMax = 64

    private let group: any EventLoopGroup
    private let idle = Mutex<[Endpoint: [HTTPPooledConnection]]>([:])

    init(group: any EventLoopGroup) {
        self.group = group
    }

    deinit {
        closeIdle()
    }

    /// Sends one request to `endpoint` and reads the whole reply within `timeout`.
    func send(
        to endpoint: Endpoint, method: HTTPMethod, path: String, headers: [(String, String)], body: [UInt8]?, timeout: TimeAmount
    ) async throws -> HTTPReply {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: String(body?.count ?? 0))
        let bodyBuffer = body.flatMap { $0.isEmpty ? nil : ByteBuffer(bytes: $0) }

        while let connection = takeIdle(endpoint) {
            do {
                return try await exchange(on: connection, endpoint: endpoint, head: head, body: bodyBuffer, timeout: timeout)
            } catch HTTPPooledConnection.Failure.closedBeforeReply {
                continue  // closed while idle: the server never saw the request
            }
        }
        let connection = try await connect(endpoint, timeout: timeout)
        do {
            return try await exchange(on: connection, endpoint: endpoint, head: head, body: bodyBuffer, timeout: timeout)
        } catch HTTPPooledConnection.Failure.closedBeforeReply {
            throw TransportError.malformedReply(endpoint)
        }
    }

    /// Closes every idle connection.
    func closeIdle() {
        let all = idle.withLock { idle in
            defer { idle.removeAll() }
            return idle.values.flatMap { $0 }
        }
        for connection in all { connection.channel.close(promise: nil) }
    }

    private func takeIdle(_ endpoint: Endpoint) -> HTTPPooledConnection? {
        idle.withLock { idle in idle[endpoint]?.popLast() }
    }

    private func giveBack(_ connection: HTTPPooledConnection, endpoint: Endpoint) {
        let kept = idle.withLock { idle -> Bool in
            guard idle[endpoint, default: []].count < Self.idlePerEndpointMax else { return false }
            idle[endpoint, default: []].append(connection)
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
    }

    private func connect(_ endpoint: Endpoint, timeout: TimeAmount) async throws -> HTTPPooledConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTPReplyHandler())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .get()
        let handler = try await channel.pipeline.handler(type: HTTPReplyHandler.self).map {
            NIOLoopBound($0, eventLoop: channel.eventLoop)
        }.get()
        return HTTPPooledConnection(channel: channel, handler: handler)
    }

    private func exchange(
        on connection: HTTPPooledConnection, endpoint: Endpoint, head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount
    ) async throws -> HTTPReply {
        let channel = connection.channel
        let handler = connection.handler
        let promise = channel.eventLoop.makePromise(of: HTTPReplyHandler.Outcome.self)
        channel.eventLoop.execute {
            handler.value.expect(promise)
            guard channel.isActive else {
                handler.value.fail(.closedBeforeReply)
                return
            }
            // Write errors are not the caller's answer: the reply (or the close) is.
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            handler.value.fail(.timedOut)
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        switch try await promise.futureResult.get() {
        case .reply(let reply, let keepAlive):
            if keepAlive && channel.isActive {
                giveBack(connection, endpoint: endpoint)
            } else {
                channel.close(promise: nil)
            }
            return reply
        case .failed(.timedOut):
            throw TransportError.timedOut(endpoint)
        case .failed(.closedBeforeReply):
            channel.close(promise: nil)
            throw HTTPPooledConnection.Failure.closedBeforeReply
        case .failed(.closedDuringReply):
            channel.close(promise: nil)
            throw TransportError.malformedReply(endpoint)
        }
    }
}

/// One pooled connection: its channel and the handler that reads replies on it.
struct HTTPPooledConnection: Sendable {
    enum Failure: Error {
        case timedOut
        case closedBeforeReply
        case closedDuringReply
    }

    let channel: any Channel
    let handler: NIOLoopBound<HTTPReplyHandler>
}

/// Collects one reply at a time; lives at the end of the pipeline, on the channel's loop.
final class HTTPReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    enum Outcome: Sendable {
        case reply(HTTPReply, keepAlive: Bool)
        case failed(HTTPPooledConnection.Failure)
    }

    private var promise: EventLoopPromise<Outcome>?
    private var reply: HTTPReply?
    private var keepAlive = true

    /// The next reply completes `promise`.
    func expect(_ promise: EventLoopPromise<Outcome>) {
        assert(self.promise == nil, "one request at a time on a pooled connection")
        self.promise = promise
        self.reply = nil
    }

    /// Ends the wait for the reply (a deadline).
    func fail(_ failure: HTTPPooledConnection.Failure) {
        complete(.failed(failure))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            reply = HTTPReply(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }, body: [])
        case .body(let buffer):
            reply?.body.append(contentsOf: buffer.readableBytesView)
        case .end:
            if let reply { complete(.reply(reply, keepAlive: keepAlive)) }
            reply = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failed(reply == nil ? .closedBeforeReply : .closedDuringReply))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func complete(_ outcome: Outcome) {
        guard let promise else { return }
        self.promise = nil
        promise.succeed(outcome)
    }
}
