public import NIOCore

/// What the server knows about one request besides its message.
public struct RPCRequestContext: Sendable {
    /// The id the caller chose; unique on its connection.
    public var requestID: UInt64
    /// The connection's event loop: `RPCHandler.receive` runs on it, and futures
    /// returned in `RPCDispatch.later` are best made on it (others are hopped).
    public var eventLoop: any EventLoop
    /// Allocates reply buffers.
    public var allocator: ByteBufferAllocator
    /// The peer's address, when the socket knows it.
    public var remoteAddress: SocketAddress?

    /// Creates a context; the server makes these, tests may too.
    public init(requestID: UInt64, eventLoop: any EventLoop, allocator: ByteBufferAllocator, remoteAddress: SocketAddress?) {
        self.requestID = requestID
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.remoteAddress = remoteAddress
    }
}

/// How a handler answers a request it received on the event loop.
public enum RPCDispatch: Sendable {
    /// The reply, computed on the event loop: no Task, no hop.
    case reply(RPCMessage)
    /// An error response, decided on the event loop.
    case fail(RPCRemoteError)
    /// The reply arrives later, for work that is already future-based (a call to a
    /// peer, a disk write on a worker thread). No Task is made. A failed future with
    /// an `RPCRemoteError` becomes that error response; any other error becomes
    /// `internalErrorCode`.
    case later(EventLoopFuture<RPCMessage>)
    /// Run `RPCHandler.handle(_:context:)` in a new Task (about 2 µs more CPU per
    /// request; see `RPCServerConfiguration.tasksRunOnEventLoop` for where it runs).
    case detach
}

/// What a server does with requests.
///
/// The server calls `receive` on the connection's event loop for every request.
/// Requests of one connection are handled concurrently and their replies are
/// written as they complete, in any order.
///
/// Conformers MUST NOT block in either method: `receive` runs on the event loop, and
/// `handle` runs in a Task whose executor is, by default, that same event loop (or
/// Swift's cooperative pool, one thread per core). Long CPU work belongs elsewhere.
public protocol RPCHandler: Sendable {
    /// Answers on the event loop, or returns `.detach` to have `handle` run in a Task.
    /// The default returns `.detach`.
    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch

    /// Answers in a Task. Throw `RPCRemoteError` to send an error response; any other
    /// error becomes `internalErrorCode`. The default throws
    /// `unsupportedMessageTypeCode`.
    func handle(_ request: RPCMessage, context: RPCRequestContext) async throws -> RPCMessage
}

extension RPCHandler {
    public func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        .detach
    }

    public func handle(_ request: RPCMessage, context: RPCRequestContext) async throws -> RPCMessage {
        throw RPCRemoteError(code: RPCRemoteError.unsupportedMessageTypeCode, message: "message type \(request.messageType) is not handled")
    }
}
