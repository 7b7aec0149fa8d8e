import NIOCore
import NIOEmbedded
import RingstoreRPC
import Synchronization
import Testing

/// Answers every request with a future the test completes by hand.
final class RPCLaterHandler: RPCHandler {
    let promises = Mutex<[EventLoopPromise<RPCMessage>]>([])

    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        let promise = context.eventLoop.makePromise(of: RPCMessage.self)
        promises.withLock { $0.append(promise) }
        return .later(promise.futureResult)
    }

    func completeNext(with message: RPCMessage) {
        let promise = promises.withLock { $0.removeFirst() }
        promise.succeed(message)
    }
}

/// Implements only `receive`, leaving `handle` to the protocol's default.
struct RPCDetachOnlyHandler: RPCHandler {
    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch { .detach }
}

/// Counts the reads that reach the socket end of the pipeline.
final class RPCReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var reads = 0

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// Closes the channel when it is flushed, as a socket whose peer vanished does: the
/// close runs inside the flush, so the handler's channelInactive is re-entered.
final class RPCCloseOnFlush: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    func flush(context: ChannelHandlerContext) {
        context.flush()
        context.close(promise: nil)
    }
}

@Suite("RPC server connection handler")
struct RPCServerHandlerTests {
    private func serverChannel(handler: any RPCHandler, inFlightMax: Int = 16, extra: [any ChannelHandler] = []) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handlers: extra + [RPCServerConnectionHandler(handler: handler, inFlightMax: inFlightMax)])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    private func request(_ id: UInt64, _ message: RPCMessage) -> ByteBuffer {
        rpcTestBytes([RPCFrame(requestID: id, kind: .request, messageType: message.messageType, body: message.body)])
    }

    /// Every frame written so far (the handler may pack several into one buffer).
    private func readReplies(_ channel: EmbeddedChannel) throws -> [RPCFrame] {
        var frames: [RPCFrame] = []
        while var bytes = try channel.readOutbound(as: ByteBuffer.self) {
            while let frame = try RPCFrameDecoder.decodeFrame(from: &bytes) { frames.append(frame) }
            #expect(bytes.readableBytes == 0)
        }
        return frames
    }

    private func readReply(_ channel: EmbeddedChannel) throws -> RPCFrame? {
        let frames = try readReplies(channel)
        #expect(frames.count <= 1)
        return frames.first
    }

    @Test func requestOnTheEventLoopGetsItsReplyWithTheSameID() throws {
        // Proves a request frame in gives a response frame out, same id, answered without a Task.
        let channel = try serverChannel(handler: RPCTestHandler())
        try channel.writeInbound(request(77, rpcTestMessage(RPCTestMessage.echo, "ping")))
        let reply = try #require(try readReply(channel))
        #expect(reply == RPCFrame(requestID: 77, kind: .response, messageType: RPCTestMessage.echo, body: ByteBuffer(string: "ping")))
        _ = try channel.finish()
    }

    @Test func aConnectionThatClosesWhileRepliesAreFlushedIsHandled() throws {
        // Proves a channel that closes in the middle of a flush (a peer killed while replies are written) re-enters the handler without an exclusivity violation and leaves it closed.
        let channel = try serverChannel(handler: RPCTestHandler(), extra: [RPCCloseOnFlush()])
        try channel.writeInbound(request(1, rpcTestMessage(RPCTestMessage.echo, "a")))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        _ = try? channel.finish()
    }

    @Test func handlerFailureBecomesAnErrorFrame() throws {
        // Proves RPCDispatch.fail becomes an error response carrying the code and message.
        let channel = try serverChannel(handler: RPCTestHandler())
        try channel.writeInbound(request(5, rpcTestMessage(RPCTestMessage.fail, "")))
        let reply = try #require(try readReply(channel))
        #expect(reply == RPCFrame(requestID: 5, kind: .errorResponse, messageType: 42, body: ByteBuffer(string: "refused")))
        _ = try channel.finish()
    }

    @Test func everyRequestOfOneReadIsAnswered() throws {
        // Proves several requests arriving in one read each get their own reply, written together at the end of the read.
        let channel = try serverChannel(handler: RPCTestHandler())
        var bytes = ByteBuffer()
        for id in 1...3 as ClosedRange<UInt64> {
            var frame = request(id, rpcTestMessage(RPCTestMessage.echo, "m\(id)"))
            bytes.writeBuffer(&frame)
        }
        try channel.writeInbound(bytes)
        let replies = try readReplies(channel)
        #expect(replies.map(\.requestID) == [1, 2, 3])
        #expect(replies.map(\.body) == (1...3).map { ByteBuffer(string: "m\($0)") })
        _ = try channel.finish()
    }

    @Test func futureRepliesMayFinishOutOfOrder() throws {
        // Proves replies are written as they complete, so a later request can be answered first.
        let handler = RPCLaterHandler()
        let channel = try serverChannel(handler: handler)
        try channel.writeInbound(request(1, rpcTestMessage(9, "first")))
        try channel.writeInbound(request(2, rpcTestMessage(9, "second")))
        #expect(try readReply(channel) == nil)
        let first = handler.promises.withLock { $0.removeFirst() }
        handler.completeNext(with: rpcTestMessage(9, "answer two"))
        channel.embeddedEventLoop.run()
        #expect(try readReply(channel)?.requestID == 2)
        first.succeed(rpcTestMessage(9, "answer one"))
        channel.embeddedEventLoop.run()
        #expect(try readReply(channel)?.requestID == 1)
        _ = try channel.finish()
    }

    @Test func aResponseFrameSentToTheServerClosesTheConnection() throws {
        // Proves a peer that sends replies to a server is cut off.
        let channel = try serverChannel(handler: RPCTestHandler())
        try channel.writeInbound(rpcTestBytes([RPCFrame(requestID: 1, kind: .response, messageType: 1, body: ByteBuffer())]))
        #expect(!channel.isActive)
    }

    @Test func readingStopsAtTheInFlightLimitAndResumesBelowIt() throws {
        // Proves server back-pressure: at inFlightMax outstanding requests read() is held back until one completes.
        let handler = RPCLaterHandler()
        let counter = RPCReadCounter()
        let channel = try serverChannel(handler: handler, inFlightMax: 2, extra: [counter])
        channel.read()
        #expect(counter.reads == 1)
        try channel.writeInbound(request(1, rpcTestMessage(9, "a")))
        try channel.writeInbound(request(2, rpcTestMessage(9, "b")))
        channel.read()
        #expect(counter.reads == 1)
        handler.completeNext(with: rpcTestMessage(9, "done"))
        channel.embeddedEventLoop.run()
        #expect(counter.reads == 2)
        #expect(try readReply(channel)?.requestID == 1)
        _ = try channel.finish()
    }

    @Test func quiescingRefusesNewRequestsAndClosesAfterTheLastReply() throws {
        // Proves a stopping server finishes what it started, refuses new work with shuttingDown, then closes.
        let handler = RPCLaterHandler()
        let channel = try serverChannel(handler: handler)
        try channel.writeInbound(request(1, rpcTestMessage(9, "in flight")))
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(channel.isActive)
        try channel.writeInbound(request(2, rpcTestMessage(9, "too late")))
        let refused = try #require(try readReply(channel))
        #expect(refused.requestID == 2 && refused.kind == .errorResponse && refused.messageType == RPCRemoteError.shuttingDownCode)
        handler.completeNext(with: rpcTestMessage(9, "finished"))
        channel.embeddedEventLoop.run()
        let finished = try #require(try readReply(channel))
        #expect(finished.requestID == 1 && finished.kind == .response)
        #expect(!channel.isActive)
    }

    @Test func taskHandlersReplyAndThrownErrorsBecomeErrorFrames() async throws {
        // Proves the Task path: replies, RPCRemoteError codes, plain errors as internalErrorCode, and the default handle.
        let cases: [(any RPCHandler, RPCMessage, RPCFrame.Kind, UInt16)] = [
            (RPCTestHandler(), rpcTestMessage(RPCTestMessage.echoInTask, "x"), .response, RPCTestMessage.echoInTask),
            (RPCTestHandler(), rpcTestMessage(RPCTestMessage.throwInTask, ""), .errorResponse, 43),
            (RPCTestHandler(), rpcTestMessage(RPCTestMessage.throwPlain, ""), .errorResponse, RPCRemoteError.internalErrorCode),
            (RPCDetachOnlyHandler(), rpcTestMessage(99, ""), .errorResponse, RPCRemoteError.unsupportedMessageTypeCode),
        ]
        for (handler, message, kind, messageType) in cases {
            let channel = try await NIOAsyncTestingChannel { channel in
                try channel.pipeline.syncOperations.addHandler(RPCServerConnectionHandler(handler: handler))
            }
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))
            try await channel.writeInbound(request(3, message))
            var bytes = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
            let reply = try #require(try RPCFrameDecoder.decodeFrame(from: &bytes))
            #expect(reply.requestID == 3 && reply.kind == kind && reply.messageType == messageType)
            _ = try await channel.finish()
        }
    }
}
