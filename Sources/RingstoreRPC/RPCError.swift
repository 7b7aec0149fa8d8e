/// Why a call, or a connection, failed.
///
/// `connectionFailed`, `overloaded` and `frameTooLarge` mean the request was never
/// written, so a retry cannot duplicate it. `remote` means the peer answered. After
/// `timedOut`, `connectionClosed`, or `shutdown` of an outstanding call the caller
/// cannot know whether the peer ran the request: a retry MUST be safe to repeat
/// (idempotent or versioned) or must not happen.
public enum RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call's deadline passed before a reply came; a late reply is dropped.
    case timedOut
    /// No connection could be made, so the request was not sent: the connect failed,
    /// or the client is backing off after failures and fails calls fast until its
    /// next attempt is due.
    case connectionFailed(String)
    /// The connection closed while the call was outstanding.
    case connectionClosed
    /// The connection already has `max` calls outstanding; the call was not sent.
    case overloaded(inFlight: Int, max: Int)
    /// The peer answered with an error response.
    case remote(code: UInt16, message: String)
    /// A frame larger than the transport carries, counted after the length field; a
    /// request this large is not sent.
    case frameTooLarge(bytes: Int, max: Int)
    /// Bytes that are not a frame; the connection is closed.
    case malformedFrame(String)
    /// The client or server was shut down; an outstanding call may have run.
    case shutdown

    public var description: String {
        switch self {
        case .timedOut: "RPC timed out"
        case .connectionFailed(let reason): "RPC connection failed: \(reason)"
        case .connectionClosed: "RPC connection closed"
        case .overloaded(let inFlight, let max): "RPC connection overloaded: \(inFlight) calls in flight, limit \(max)"
        case .remote(let code, let message): "RPC peer error \(code): \(message)"
        case .frameTooLarge(let bytes, let max): "RPC frame of \(bytes) bytes exceeds the limit of \(max)"
        case .malformedFrame(let reason): "malformed RPC frame: \(reason)"
        case .shutdown: "RPC endpoint shut down"
        }
    }
}

/// An error a server-side handler throws (or returns) to send an error response;
/// the caller sees it as `RPCError.remote(code:message:)`.
///
/// Codes from `0xFF00` up are the transport's own; handlers use the codes below it.
public struct RPCRemoteError: Error, Sendable, Equatable {
    /// What went wrong, for the caller's code to switch on.
    public var code: UInt16
    /// A human sentence for logs.
    public var message: String

    /// Creates an error response.
    public init(code: UInt16, message: String) {
        self.code = code
        self.message = message
    }

    /// The handler threw an error that was not an `RPCRemoteError`.
    public static let internalErrorCode: UInt16 = 0xFFFF
    /// The server is shutting down and takes no new requests on this connection.
    public static let shuttingDownCode: UInt16 = 0xFFFE
    /// The handler does not know the request's message type.
    public static let unsupportedMessageTypeCode: UInt16 = 0xFFFD
    /// The handler's reply does not fit in a frame.
    public static let replyTooLargeCode: UInt16 = 0xFFFC
}
