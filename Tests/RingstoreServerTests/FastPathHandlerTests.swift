import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
@testable import RingstoreServer
import Synchronization
import Testing

/// A fast path that accepts paths starting with `/fast`, and answers when told to.
final class ScriptedFastPath: HTTPFastPath, Sendable {
    let bodyBytesMax = 8
    /// The answers not given yet, with the body each request brought.
    let waiting = Mutex<[(body: String, done: @Sendable (HTTPReply) -> Void)]>([])

    func accept(_ head: HTTPRequest) -> FastPathRequest? {
        guard head.path?.hasPrefix("/fast") == true else { return nil }
        return FastPathRequest(
            head: head, uri: .init(head.path!), table: TableDefinition(name: "t", n: 1, r: 1, w: 1, consistency: .eventual),
            rawKey: "k", operation: nil, started: .now)
    }

    func serve(_ request: FastPathRequest, body: ByteBuffer, done: @escaping @Sendable (HTTPReply) -> Void) {
        waiting.withLock { $0.append((String(buffer: body), done)) }
    }

    /// Answers the oldest request with `status` and its own body echoed back.
    func answerNext(_ status: HTTPResponse.Status) {
        let (body, done) = waiting.withLock { $0.removeFirst() }
        done(HTTPReply(status: status, body: ByteBuffer(string: body)))
    }
}

/// Counts the reads that reach the socket end of the pipeline.
final class HTTPReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = HTTPResponsePart
    var reads = 0

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// Records the inbound events that pass it.
final class InboundEventRecorder: ChannelInboundHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    var events: [String] = []
    var readCompletes = 0

    func channelReadComplete(context: ChannelHandlerContext) {
        readCompletes += 1
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        events.append("\(event)")
        context.fireUserInboundEventTriggered(event)
    }
}

@Suite("HTTP fast path handler")
struct FastPathHandlerTests {
    static func request(_ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:]) -> HTTPRequestPart {
        .head(HTTPRequest(method: method, scheme: nil, authority: "x", path: path, headerFields: headers))
    }

    /// A connected channel with the fast path's handler between `before` (the socket's
    /// side) and `after` (the responder's).
    func channel(_ fastPath: ScriptedFastPath, before: [any ChannelHandler] = [], after: [any ChannelHandler] = []) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handlers: before + [FastPathHandler(fastPath: fastPath, logger: Logger(label: "test"))] + after)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    // Proves that an accepted request is answered by the fast path, with its body, a length
    // and a date, and that nothing of it reaches the responder behind.
    @Test func acceptedRequestIsAnsweredAndNotPassedOn() throws {
        let fastPath = ScriptedFastPath()
        let channel = try channel(fastPath)
        try channel.writeInbound(Self.request(.put, "/fast/k"))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "abc")))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "de")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil, "no answer before the service gives one")
        fastPath.answerNext(.created)
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil, "flushed once the loop runs again")
        channel.embeddedEventLoop.run()
        guard case .head(let head) = try channel.readOutbound(as: HTTPResponsePart.self) else { Issue.record("no head"); return }
        #expect(head.status == .created)
        #expect(head.headerFields[.contentLength] == "5")
        #expect(head.headerFields[.date]?.hasSuffix(" GMT") == true)
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == .body(ByteBuffer(string: "abcde")))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == .end(nil))
        #expect(channel.isActive)
    }

    // Proves that a request the fast path does not accept passes on whole and unchanged,
    // and that the next request is the fast path's again once the responder has answered.
    @Test func otherRequestsPassOnWhole() throws {
        let fastPath = ScriptedFastPath()
        let channel = try channel(fastPath)
        let head = Self.request(.post, "/slow/route")
        try channel.writeInbound(head)
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "body")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == head)
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == .body(ByteBuffer(string: "body")))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
        try channel.writeInbound(Self.request(.get, "/fast/k"))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        #expect(fastPath.waiting.withLock { $0.isEmpty }, "served after the responder's answer")
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        #expect(fastPath.waiting.withLock { $0.count } == 1)
    }

    // Proves that a body past the limit is cut one byte past it (so that serving it
    // answers 413) rather than collected whole.
    @Test func bodyPastTheLimitIsCut() throws {
        let fastPath = ScriptedFastPath()
        let channel = try channel(fastPath)
        try channel.writeInbound(Self.request(.put, "/fast/k"))
        for _ in 0..<5 { try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "0123456789"))) }
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(fastPath.waiting.withLock { $0.map(\.body) } == ["012345678"])
    }

    // Proves that a request asking to close the connection is answered, then the connection closes.
    @Test func connectionCloseIsHonoured() throws {
        let fastPath = ScriptedFastPath()
        let channel = try channel(fastPath)
        try channel.writeInbound(Self.request(.get, "/fast/k", headers: [.connection: "close"]))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        fastPath.answerNext(.ok)
        guard case .head(let head) = try channel.readOutbound(as: HTTPResponsePart.self) else { Issue.record("no head"); return }
        #expect(head.headerFields[.connection] == "close")
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    /// The statuses of the answers written so far, in order.
    static func answeredStatuses(_ channel: EmbeddedChannel) throws -> [Int] {
        channel.embeddedEventLoop.run()
        var statuses: [Int] = []
        while let part = try channel.readOutbound(as: HTTPResponsePart.self) {
            if case .head(let head) = part { statuses.append(head.status.code) }
        }
        return statuses
    }

    // Proves that pipelined requests are answered in the order they came: a fast request
    // waits for the fast answer before it, a request for the responder is not passed on
    // while a fast answer is pending, and a fast request waits for the responder's answer.
    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let fastPath = ScriptedFastPath()
        let recorder = InboundEventRecorder()
        let channel = try channel(fastPath, after: [recorder])
        // fast 1, fast 2, slow 3, fast 4, all sent at once.
        try channel.writeInbound(Self.request(.put, "/fast/1"))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "one")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        try channel.writeInbound(Self.request(.get, "/fast/2"))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        let slow = Self.request(.get, "/slow/3")
        try channel.writeInbound(slow)
        try channel.writeInbound(HTTPRequestPart.end(nil))
        try channel.writeInbound(Self.request(.get, "/fast/4"))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(fastPath.waiting.withLock { $0.map(\.body) } == ["one"], "the second waits for the first answer")
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil, "the responder's request waits too")

        fastPath.answerNext(.created)
        #expect(fastPath.waiting.withLock { $0.count } == 1, "the second is served once the first is answered")
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        let readCompletes = recorder.readCompletes
        fastPath.answerNext(.ok)
        #expect(recorder.readCompletes == readCompletes + 1, "parts passed on outside a read burst end with a read-complete")
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == slow, "then the responder's request passes on")
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
        #expect(fastPath.waiting.withLock { $0.isEmpty }, "the fourth waits for the responder's answer")
        #expect(try Self.answeredStatuses(channel) == [201, 200])

        // The responder answers the third: its end lets the fourth go.
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .accepted)))
        #expect(fastPath.waiting.withLock { $0.isEmpty }, "not before the answer's end")
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        #expect(fastPath.waiting.withLock { $0.count } == 1)
        fastPath.answerNext(.notFound)
        #expect(try Self.answeredStatuses(channel) == [202, 404])
    }

    // Proves that a client that closes its side after its requests still gets every
    // answer: the responder learns of the closed input only after them.
    @Test func closedInputWaitsForPendingAnswers() throws {
        let fastPath = ScriptedFastPath()
        let recorder = InboundEventRecorder()
        let channel = try channel(fastPath, after: [recorder])
        try channel.writeInbound(Self.request(.get, "/fast/1"))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(recorder.events.isEmpty)
        fastPath.answerNext(.ok)
        #expect(recorder.events == ["\(ChannelEvent.inputClosed)"])
        #expect(try Self.answeredStatuses(channel) == [200])

        // With nothing pending it passes at once.
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(recorder.events.count == 2)
    }

    // Proves that a client pipelining more than the handler holds is read no further
    // until the answers catch up.
    @Test func readingStopsWhileTooManyPartsAreHeld() throws {
        let fastPath = ScriptedFastPath()
        let counter = HTTPReadCounter()
        let channel = try channel(fastPath, before: [counter])
        let requests = FastPathHandler.heldPartsMax / 2 + 2
        for index in 0..<requests {
            try channel.writeInbound(Self.request(.get, "/fast/\(index)"))
            try channel.writeInbound(HTTPRequestPart.end(nil))
        }
        let before = counter.reads
        channel.read()
        #expect(counter.reads == before, "too many parts are held: no read")
        fastPath.answerNext(.ok)
        fastPath.answerNext(.ok)
        #expect(counter.reads == before + 1, "the deferred read goes once fewer are held")
        for _ in 2..<requests { fastPath.answerNext(.ok) }
        #expect(try Self.answeredStatuses(channel).count == requests)
    }

    // Proves that an answer given on another thread (a replica's reply arrives on an
    // RPC connection's loop) is written on the channel's own loop.
    @Test func answerFromAnotherThreadIsWritten() async throws {
        let fastPath = ScriptedFastPath()
        let channel = try await NIOAsyncTestingChannel { channel in
            try channel.pipeline.syncOperations.addHandler(FastPathHandler(fastPath: fastPath, logger: Logger(label: "test")))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        try await channel.writeInbound(Self.request(.get, "/fast/k"))
        try await channel.writeInbound(HTTPRequestPart.end(nil))
        await Task.detached { fastPath.answerNext(.ok) }.value
        guard case .head(let head) = try await channel.waitForOutboundWrite(as: HTTPResponsePart.self) else {
            Issue.record("no head")
            return
        }
        #expect(head.status == .ok)
        #expect(try await channel.waitForOutboundWrite(as: HTTPResponsePart.self) == .end(nil))
    }
}
