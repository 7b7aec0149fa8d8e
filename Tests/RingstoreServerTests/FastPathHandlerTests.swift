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

@Suite("HTTP fast path handler")
struct FastPathHandlerTests {
    static func request(_ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:]) -> HTTPRequestPart {
        .head(HTTPRequest(method: method, scheme: nil, authority: "x", path: path, headerFields: headers))
    }

    func channel(_ fastPath: ScriptedFastPath) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: FastPathHandler(fastPath: fastPath, logger: Logger(label: "test")))
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
    // and that the next request is the fast path's again.
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
