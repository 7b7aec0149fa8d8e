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

/// The channel handler of the fast path. It sits after the HTTP codec, which holds
/// each further request of a connection until the response before it is written, so
/// it sees one request at a time and answers in order.
final class FastPathHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
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
    }

    private let fastPath: any HTTPFastPath
    private let logger: Logger
    private var state = State.idle
    private var date = HTTPDateCache()

    init(fastPath: any HTTPFastPath, logger: Logger) {
        self.fastPath = fastPath
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.idle, .head(let head)):
            if let request = fastPath.accept(head) {
                state = .collecting(request, context.channel.allocator.buffer(capacity: 0))
            } else {
                state = .forwarding
                context.fireChannelRead(data)
            }
        case (.forwarding, .end):
            state = .idle
            context.fireChannelRead(data)
        case (.forwarding, _), (.idle, _):
            context.fireChannelRead(data)
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
        case (.collecting, .head), (.tooLarge, .head), (.responding, _):
            // The codec delivers one request at a time; anything else is a broken connection.
            logger.error("HTTP request part out of order on a connection; closing it", metadata: ["part": "\(part)"])
            context.close(promise: nil)
        }
    }

    private func write(_ reply: HTTPReply, request: FastPathRequest, context: ChannelHandlerContext) {
        guard case .responding = state else { return }  // the connection closed meanwhile
        // Idle before the end is written: the codec hands over the next request as it passes.
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
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            // Flushed once the loop has handled its other ready connections, so that a
            // client on the same cores wakes for several answers at a time.
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            let channel = context.channel
            context.eventLoop.execute { channel.flush() }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        state = .idle
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .idle
        context.fireChannelInactive()
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

/// Hummingbird's HTTP/1 server with the fast path in front of the responder, and
/// the codec's pipelining assistance on (it keeps the fast path's answers in order
/// with the responder's).
public struct FastPathHTTP1Channel: HTTPChannelHandler {
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    public let responder: HTTPChannelHandler.Responder
    let fastPath: any HTTPFastPath
    let logger: Logger

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: true,
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
