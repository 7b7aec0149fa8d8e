package import Logging
package import NIOCore

/// Serves one connection: decodes request frames, runs the `RPCHandler` for each, and
/// writes every reply as soon as it is ready, so a slow request never holds back a
/// fast one. Sits alone in the pipeline, bytes in and bytes out.
///
/// Back-pressure: while `inFlightMax` requests are outstanding, or while the socket's
/// send buffer is over its high-water mark, the handler stops asking the channel to
/// read, so a peer that sends too fast is slowed by TCP itself.
///
/// Flushing: replies computed while frames are being read are flushed once at the
/// end of the read burst; replies completed later are flushed once per event-loop
/// tick, so many replies finishing together share one buffer and one system call.
///
/// Quiescing (`ChannelShouldQuiesceEvent`): outstanding requests finish, new ones are
/// refused with `shuttingDownCode`, and the output is closed once nothing is left.
///
/// Isolation: every member is touched on the channel's event loop only.
package final class RPCServerConnectionHandler: ChannelDuplexHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let handler: any RPCHandler
    private let inFlightMax: Int
    private let logger: Logger?
    private let frames: NIOSingleStepByteToMessageProcessor<RPCFrameDecoder>
    private let tasksRunOnEventLoop: Bool
    /// The event loop as the executor of `handle` Tasks, when `tasksRunOnEventLoop`.
    private var taskExecutor: RPCEventLoopTaskExecutor?

    private var context: ChannelHandlerContext?
    private var remoteAddress: SocketAddress?
    private var outbound = RPCOutboundFrames()
    private var inFlight = 0
    private var readHeldBack = false
    private var inReadBurst = false
    private var flushAtReadComplete = false
    private var flushScheduled = false
    private var quiescing = false

    package init(
        handler: any RPCHandler, inFlightMax: Int = RPCLimits.serverInFlightMaxDefault,
        tasksRunOnEventLoop: Bool = true, frameBytesMax: Int = RPCLimits.frameBytesMax, logger: Logger? = nil
    ) {
        precondition(inFlightMax > 0, "inFlightMax must be positive")
        self.handler = handler
        self.inFlightMax = inFlightMax
        self.tasksRunOnEventLoop = tasksRunOnEventLoop
        self.logger = logger
        self.frames = NIOSingleStepByteToMessageProcessor(RPCFrameDecoder(frameBytesMax: frameBytesMax))
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        remoteAddress = context.channel.remoteAddress
        if tasksRunOnEventLoop { taskExecutor = RPCEventLoopTaskExecutor(eventLoop: context.eventLoop) }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        outbound.discard()
    }

    package func channelActive(context: ChannelHandlerContext) {
        remoteAddress = context.channel.remoteAddress
        context.fireChannelActive()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        outbound.discard()
        context.fireChannelInactive()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.context != nil else { return }  // closing after a protocol error
        inReadBurst = true
        do {
            try frames.process(buffer: unwrapInboundIn(data)) { frame in
                if self.context != nil { self.received(frame, context: context) }
            }
        } catch {
            closeForProtocolError("\(error)", context: context)
        }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        if flushAtReadComplete, self.context != nil {
            flushAtReadComplete = false
            let batch = outbound.takeBatch()
            context.flushBatch(batch)
        }
        context.fireChannelReadComplete()
    }

    package func read(context: ChannelHandlerContext) {
        if inFlight >= inFlightMax || !context.channel.isWritable {
            readHeldBack = true
        } else {
            context.read()
        }
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfAllowed()
        context.fireChannelWritabilityChanged()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if inFlight == 0 { closeOutputAfterPendingWrites() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeForProtocolError("\(error)", context: context)
    }

    // MARK: - Dispatch

    private func received(_ frame: RPCFrame, context: ChannelHandlerContext) {
        guard frame.kind == .request else {
            closeForProtocolError("peer sent a frame of kind \(frame.kind) to a server", context: context)
            return
        }
        guard !quiescing else {
            let error = RPCRemoteError(code: RPCRemoteError.shuttingDownCode, message: "server is shutting down")
            let toWrite = outbound.append(Self.errorFrame(requestID: frame.requestID, error: error, allocator: context.channel.allocator), allocator: context.channel.allocator)
            context.writeFrames(toWrite)
            requestFlush(context: context)
            return
        }
        inFlight += 1
        let requestContext = RPCRequestContext(
            requestID: frame.requestID, eventLoop: context.eventLoop,
            allocator: context.channel.allocator, remoteAddress: remoteAddress)
        let request = frame.message
        let requestID = frame.requestID
        switch handler.receive(request, context: requestContext) {
        case .reply(let reply):
            complete(requestID, .success(reply))
        case .fail(let error):
            complete(requestID, .failure(error))
        case .later(let future):
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.complete(requestID, result)
            }
        case .detach:
            let promise = context.eventLoop.makePromise(of: RPCMessage.self)
            let handler = self.handler
            if let taskExecutor {
                Task(executorPreference: taskExecutor) {
                    do {
                        promise.succeed(try await handler.handle(request, context: requestContext))
                    } catch {
                        promise.fail(error)
                    }
                }
            } else {
                promise.completeWithTask { try await handler.handle(request, context: requestContext) }
            }
            promise.futureResult.assumeIsolated().whenComplete { result in
                self.complete(requestID, result)
            }
        }
    }

    /// Writes one reply and settles the bookkeeping its request held.
    private func complete(_ requestID: UInt64, _ result: Result<RPCMessage, any Error>) {
        precondition(inFlight > 0, "internal inconsistency in RPCServerConnectionHandler: reply with no request in flight")
        inFlight -= 1
        guard let context else { return }  // the connection closed; nobody waits for this reply
        let toWrite = outbound.append(Self.replyFrame(requestID: requestID, result: result, allocator: context.channel.allocator), allocator: context.channel.allocator)
        context.writeFrames(toWrite)
        requestFlush(context: context)
        if quiescing && inFlight == 0 {
            closeOutputAfterPendingWrites()
        } else {
            resumeReadingIfAllowed()
        }
    }

    private func requestFlush(context: ChannelHandlerContext) {
        if inReadBurst {
            flushAtReadComplete = true
            return
        }
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            if let context = self.context {
                    let batch = self.outbound.takeBatch()
                    context.flushBatch(batch)
                }
        }
    }

    private func resumeReadingIfAllowed() {
        guard readHeldBack, let context, inFlight < inFlightMax, context.channel.isWritable else { return }
        readHeldBack = false
        context.read()
    }

    /// Half-closes after every reply written so far has reached the socket; the peer
    /// sees end of stream and closes, which closes this channel.
    private func closeOutputAfterPendingWrites() {
        guard let context else { return }
        let batch = outbound.takeBatch()
        context.flushBatch(batch)
        context.close(mode: .output).assumeIsolated().whenFailure { _ in
            self.context?.close(promise: nil)
        }
    }

    private func closeForProtocolError(_ reason: String, context: ChannelHandlerContext) {
        logger?.warning("closing RPC connection: \(reason)", metadata: ["peer": "\(remoteAddress.map { "\($0)" } ?? "?")"])
        self.context = nil
        outbound.discard()
        context.close(promise: nil)
    }

    // MARK: - Frames

    static func replyFrame(requestID: UInt64, result: Result<RPCMessage, any Error>, allocator: ByteBufferAllocator) -> RPCFrame {
        switch result {
        case .success(let reply):
            let bytes = RPCLimits.headerBytesAfterLength + reply.body.readableBytes
            guard bytes <= RPCLimits.frameBytesMax else {
                let error = RPCRemoteError(code: RPCRemoteError.replyTooLargeCode, message: "reply of \(bytes) bytes exceeds the frame limit of \(RPCLimits.frameBytesMax)")
                return errorFrame(requestID: requestID, error: error, allocator: allocator)
            }
            return RPCFrame(requestID: requestID, kind: .response, messageType: reply.messageType, body: reply.body)
        case .failure(let error as RPCRemoteError):
            return errorFrame(requestID: requestID, error: error, allocator: allocator)
        case .failure(let error):
            let remote = RPCRemoteError(code: RPCRemoteError.internalErrorCode, message: String(describing: error))
            return errorFrame(requestID: requestID, error: remote, allocator: allocator)
        }
    }

    static func errorFrame(requestID: UInt64, error: RPCRemoteError, allocator: ByteBufferAllocator) -> RPCFrame {
        // Messages are for logs; a bound keeps a handler's runaway description off the wire.
        let message = String(decoding: error.message.utf8.prefix(RPCLimits.errorMessageBytesMax), as: UTF8.self)
        return RPCFrame(requestID: requestID, kind: .errorResponse, messageType: error.code, body: allocator.buffer(string: message))
    }
}


/// Runs Tasks' jobs on a NIO event loop, so that a request handled in a Task starts,
/// runs and replies on the connection's own thread with no hop to Swift's global
/// pool and back (measured in docs/decisions/0004-rpc-transport.md).
///
/// Jobs enqueued after the event loop has shut down are not run.
final class RPCEventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
