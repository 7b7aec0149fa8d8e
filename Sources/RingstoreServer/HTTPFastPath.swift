import Foundation
import Hummingbird
public import HummingbirdCore
public import HTTPTypes
public import Logging
public import NIOCore
import NIOHTTP1
public import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import RingstoreCore

/// A request the fast path serves itself: a GET, PUT or DELETE of a table's key, or
/// a counter or set operation (a POST) on a linearizable table's key.
public struct FastPathRequest: Sendable {
    public let head: HTTPRequest
    let uri: URI
    let table: TableDefinition
    let rawKey: String
    /// The operation a POST names (its last path segment).
    let operation: String?
    let started: ContinuousClock.Instant
}

/// Serves the hottest routes straight from the connection's event loop, without
/// the responder's task, router and body stream (decision 0013). Everything it
/// does not accept goes on to the Hummingbird responder unchanged.
public protocol HTTPFastPath: Sendable {
    /// The request `head` begins, when the fast path serves it; nil leaves it to the responder.
    func accept(_ head: HTTPRequest) -> FastPathRequest?
    /// Answers through `done`, once, on any thread.
    func serve(_ request: FastPathRequest, body: ByteBuffer, done: @escaping @Sendable (HTTPReply) -> Void)
    /// The most body bytes the fast path collects: past them it keeps one byte more
    /// and drops the rest, and `serve` answers 413.
    var bodyBytesMax: Int { get }
}

extension NodeHTTPAPI: HTTPFastPath {
    static let fastRoute = "/v1/kv/{table}/{key}"
    static let fastOperationRoute = "/v1/kv/{table}/{key}/{operation}"

    public var bodyBytesMax: Int { maxValueBytes }

    public func accept(_ head: HTTPRequest) -> FastPathRequest? {
        guard head.method == .get || head.method == .put || head.method == .delete || head.method == .post,
              let target = head.path, target.utf8.starts(with: "/v1/kv/".utf8)
        else { return nil }
        // A body announced as too large is refused by the responder before it is read.
        if let length = head.headerFields[.contentLength].flatMap(Int.init), length > maxValueBytes { return nil }
        let uri = URI(target)
        // "/v1/kv/" table "/" key…[ "/" operation ], cut where the slashes are.
        let path = uri.path
        let afterPrefix = path.utf8.dropFirst(7)
        guard path.utf8.starts(with: "/v1/kv/".utf8), let slash = afterPrefix.firstIndex(of: UInt8(ascii: "/")),
              let table = try? lookUpTable(String(path[afterPrefix.startIndex..<slash]))
        else { return nil }
        let keyStart = path.utf8.index(after: slash)
        guard head.method == .post else {
            return FastPathRequest(head: head, uri: uri, table: table, rawKey: String(path[keyStart...]), operation: nil, started: .now)
        }
        // The responder explains a POST to an eventual table, or one without a key.
        guard table.consistency == .linearizable, let lastSlash = path.utf8[keyStart...].lastIndex(of: UInt8(ascii: "/")) else { return nil }
        return FastPathRequest(
            head: head, uri: uri, table: table, rawKey: String(path[keyStart..<lastSlash]),
            operation: String(path[path.utf8.index(after: lastSlash)...]), started: .now)
    }

    public func serve(_ request: FastPathRequest, body: ByteBuffer, done: @escaping @Sendable (HTTPReply) -> Void) {
        let head = request.head
        let route = request.operation == nil ? Self.fastRoute : Self.fastOperationRoute
        let answered: @Sendable (HTTPReply) -> Void = { [metrics] reply in
            metrics.record(route: route, method: head.method.rawValue, status: reply.status.code, duration: .now - request.started)
            done(reply)
        }
        serveKey(
            method: head.method, uri: request.uri, headers: head.headerFields, table: request.table, rawKey: request.rawKey,
            operation: request.operation, body: head.method == .put ? body : nil, done: answered)
    }
}

/// The channel handler of the fast path. It sits after the HTTP codec and keeps a
/// connection's answers in the order of its requests: a request waits while an answer
/// before it is pending, whether the fast path or the responder gives it. The
/// responder takes its requests one after another, so requests for it pass on at
/// once unless a fast answer is pending. (The codec's pipelining assistance did this
/// by holding back reads, which cost two `epoll_ctl` calls per request answered
/// after the read: bench/results/http-pipelining-2026-11-28.md.)
final class FastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// The responder serves the current request: its parts pass on.
        case forwarding
        /// Collecting the body of a request the fast path serves.
        case collecting(FastPathRequest, ByteBuffer)
        /// The body passed the limit: the rest is dropped, and serving it answers a 413.
        case tooLarge(FastPathRequest, ByteBuffer)
        /// Waiting for the answer.
        case responding

        var isIdle: Bool {
            if case .idle = self { return true }
            return false
        }
    }

    /// Parts held back (a pipelining client's later requests) past which reading stops.
    static let heldPartsMax = 256

    private let fastPath: any HTTPFastPath
    private let logger: Logger
    private var state = State.idle
    private var date = HTTPDateCache()
    /// Requests passed on to the responder whose answers have not been written to the end.
    private var responderAnswersPending = 0
    /// Parts that wait for an answer before them, in the order they came.
    private var held = CircularBuffer<HTTPRequestPart>()
    private var draining = false
    /// Whether `drain` passed a part on to the responder.
    private var passedOn = false
    /// A read the channel asked for while too many parts were held.
    private var readDeferred = false
    /// The client closed its side while answers were pending: passed on after them.
    private var inputClosedDeferred = false

    init(fastPath: any HTTPFastPath, logger: Logger) {
        self.fastPath = fastPath
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if held.isEmpty, !draining, handle(part, context: context) { return }
        held.append(part)
    }

    /// Handles one part in order; false when it must wait for an answer before it.
    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) -> Bool {
        switch (state, part) {
        case (.idle, .head(let head)):
            if let request = fastPath.accept(head) {
                guard responderAnswersPending == 0 else { return false }
                state = .collecting(request, context.channel.allocator.buffer(capacity: 0))
            } else {
                responderAnswersPending += 1
                state = .forwarding
                passedOn = true
                context.fireChannelRead(wrapInboundOut(part))
            }
        case (.forwarding, .end):
            state = .idle
            passedOn = true
            context.fireChannelRead(wrapInboundOut(part))
        case (.forwarding, _), (.idle, _):
            passedOn = true
            context.fireChannelRead(wrapInboundOut(part))
        case (.collecting(let request, var body), .body(var chunk)):
            state = .responding  // no copy of the buffer while it grows
            if body.readableBytes + chunk.readableBytes > fastPath.bodyBytesMax {
                // Keep one byte past the limit, so that the answer is a 413; drop the rest.
                var kept = chunk.readSlice(length: max(0, fastPath.bodyBytesMax + 1 - body.readableBytes))!
                body.writeBuffer(&kept)
                state = .tooLarge(request, body)
            } else {
                body.writeBuffer(&chunk)
                state = .collecting(request, body)
            }
        case (.collecting(let request, let body), .end), (.tooLarge(let request, let body), .end):
            state = .responding
            let handler = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            fastPath.serve(request, body: body) { reply in
                if handler.eventLoop.inEventLoop {
                    handler.value.0.write(reply, request: request, context: handler.value.1)
                } else {
                    handler.eventLoop.execute { handler.value.0.write(reply, request: request, context: handler.value.1) }
                }
            }
        case (.tooLarge, .body):
            break
        case (.responding, _):
            return false
        case (.collecting, .head), (.tooLarge, .head):
            // The codec ends a request before it begins the next; anything else is a broken connection.
            logger.error("HTTP request part out of order on a connection; closing it", metadata: ["part": "\(part)"])
            held.removeAll()
            context.close(promise: nil)
        }
        return true
    }

    /// Handles the held parts that no longer wait, then reads again if reading stopped.
    private func drain(context: ChannelHandlerContext) {
        guard !draining else { return }
        draining = true
        passedOn = false
        while let part = held.first {
            guard handle(part, context: context) else { break }
            // `handle` may have closed the connection and emptied the queue.
            if !held.isEmpty { held.removeFirst() }
        }
        draining = false
        // The responder's channel hands parts over at the end of a read burst; outside
        // one, this is that end.
        if passedOn {
            passedOn = false
            context.fireChannelReadComplete()
        }
        if readDeferred, held.count < Self.heldPartsMax {
            readDeferred = false
            context.read()
        }
        if inputClosedDeferred, held.isEmpty, state.isIdle, responderAnswersPending == 0 {
            inputClosedDeferred = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
    }

    func read(context: ChannelHandlerContext) {
        guard held.count < Self.heldPartsMax else {
            readDeferred = true
            return
        }
        context.read()
    }

    /// Counts the responder's answers as they end, and lets the requests behind them go.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard case .end = unwrapOutboundIn(data), responderAnswersPending > 0 else { return }
        responderAnswersPending -= 1
        if responderAnswersPending == 0, !held.isEmpty || inputClosedDeferred { drain(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed,
           !held.isEmpty || responderAnswersPending > 0 || !state.isIdle {
            // Answers are still due on this connection: the responder learns of the
            // closed input (and may close the connection) only after them.
            inputClosedDeferred = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func write(_ reply: HTTPReply, request: FastPathRequest, context: ChannelHandlerContext) {
        guard case .responding = state else { return }  // the connection closed meanwhile
        state = .idle
        var headers = reply.headers
        headers[.date] = date.now()
        let length = reply.body?.readableBytes ?? 0
        if reply.status != .noContent && reply.status != .notModified { headers[.contentLength] = String(length) }
        let close = request.head.headerFields[.connection]?.lowercased().contains("close") ?? false
        if close { headers[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: reply.status, headerFields: headers))), promise: nil)
        if let body = reply.body, length > 0 { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        if close {
            let channel = context.channel
            held.removeAll()
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            // Flushed once the loop has handled its other ready connections, so that a
            // client on the same cores wakes for several answers at a time.
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            let channel = context.channel
            context.eventLoop.execute { channel.flush() }
            if !held.isEmpty || inputClosedDeferred { drain(context: context) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        reset()
    }

    func channelInactive(context: ChannelHandlerContext) {
        reset()
        context.fireChannelInactive()
    }

    private func reset() {
        state = .idle
        held.removeAll()
        responderAnswersPending = 0
        readDeferred = false
        inputClosedDeferred = false
    }
}

/// The `Date` header's text, formatted once a second per connection.
struct HTTPDateCache {
    private var second = 0
    private var text = ""

    mutating func now() -> String {
        var clock = time(nil)
        if clock != second {
            second = clock
            var parts = tm()
            gmtime_r(&clock, &parts)
            var buffer = [CChar](repeating: 0, count: 40)
            let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
            text = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return text
    }
}

/// Hummingbird's HTTP/1 server with the fast path in front of the responder, which
/// keeps the fast path's answers in order with the responder's.
public struct FastPathHTTP1Channel: HTTPChannelHandler {
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    public let responder: HTTPChannelHandler.Responder
    let fastPath: any HTTPFastPath
    let logger: Logger

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: false,  // FastPathHandler keeps the order
                withErrorHandling: false,  // the responder's loop answers parse errors
                withOutboundHeaderValidation: false  // HTTP types validate fields already
            )
            try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(logger: logger))
            try channel.pipeline.syncOperations.addHandler(FastPathHandler(fastPath: fastPath, logger: self.logger))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    public func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// An HTTP/1 server whose fast path serves what it accepts, the responder the rest.
    public static func http1(fastPath: any HTTPFastPath, logger: Logger) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            FastPathHTTP1Channel(responder: responder, fastPath: fastPath, logger: logger)
        }
    }
}
