import Foundation
import NIOCore
import RingstoreCore
import RingstoreRPC

/// How the membership protocol's messages (RingstoreCore's `RingServerMessage` and
/// `NodeToRingServerMessage`) ride on the framed RPC transport.
///
/// Every message is a request whose reply is either another protocol message (a
/// node answers an offer or a vote request in the reply itself) or `ack`. A node's
/// message to a ring server carries the node's id first, since the transport does
/// not say who is calling. Table changes asked of a ring server by a node (a client
/// called the node's `PUT /v1/tables/…`) travel as JSON.
enum MembershipWire {
    /// The reply to a message that needs no answer.
    static let ack: UInt16 = 240
    /// Node → ring server: body is a `TableChangeRequest` as JSON; reply `tableChanged` or an error.
    static let tableChange: UInt16 = 241
    /// Reply to `tableChange`: the table's definition as JSON (empty for a drop).
    static let tableChanged: UInt16 = 242
    /// Ring server → ring server: a client request the secondary cannot serve (a table change) for the primary.
    /// Body and reply as `tableChange`.
    static let forwardedTableChange: UInt16 = 243

    static let ringServerTypes: ClosedRange<UInt16> = 200...219
    static let nodeTypes: ClosedRange<UInt16> = 220...239

    static var ackMessage: RPCMessage { RPCMessage(messageType: ack, body: ByteBuffer()) }

    static func message(_ message: RingServerMessage) -> RPCMessage {
        let (type, body) = message.encode()
        return RPCMessage(messageType: type, body: ByteBuffer(bytes: body))
    }

    /// A node's message, prefixed with the node's id.
    static func message(_ message: NodeToRingServerMessage, from node: NodeID) -> RPCMessage {
        let (type, body) = message.encode()
        var writer = ByteWriter(capacity: body.count + 16)
        writer.writeString(node.rawValue)
        var buffer = ByteBuffer(bytes: writer.bytes)
        buffer.writeBytes(body)
        return RPCMessage(messageType: type, body: buffer)
    }

    /// A node's reply, which carries no id: the caller knows whom it asked.
    static func reply(_ message: NodeToRingServerMessage) -> RPCMessage {
        let (type, body) = message.encode()
        return RPCMessage(messageType: type, body: ByteBuffer(bytes: body))
    }

    static func decodeRingServerMessage(_ message: RPCMessage) throws(DecodeError) -> RingServerMessage {
        try RingServerMessage.decode(type: message.messageType, body: Array(message.body.readableBytesView))
    }

    static func decodeNodeReply(_ message: RPCMessage) throws(DecodeError) -> NodeToRingServerMessage? {
        guard message.messageType != ack else { return nil }
        return try NodeToRingServerMessage.decode(type: message.messageType, body: Array(message.body.readableBytesView))
    }

    static func decodeNodeMessage(_ message: RPCMessage) throws(DecodeError) -> (NodeID, NodeToRingServerMessage) {
        let bytes = Array(message.body.readableBytesView)
        var reader = ByteReader(bytes)
        let id = try reader.readString()
        guard !id.isEmpty, id.utf8.count <= MembershipLimits.hostBytesMax else { throw DecodeError("a node message names no valid node") }
        let rest = Array(bytes[reader.offset...])
        return (NodeID(id), try NodeToRingServerMessage.decode(type: message.messageType, body: rest))
    }
}

/// A table change a node or the secondary passes on to the primary ring server.
struct TableChangeRequest: Codable, Sendable {
    /// "create" or "drop".
    var action: String
    var name: String
    var n: Int?
    var r: Int?
    var w: Int?
    var consistency: Consistency?
}

/// A ring server's address as nodes and clients are given it: `ID=HOST:PORT` or just `HOST:PORT`.
public struct RingServerAddress: Sendable, Hashable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}
