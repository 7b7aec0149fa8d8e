/// A request a client made of the cluster, as a coordinator runs it. A delete is a
/// put of a tombstone.
public enum ClientOperation: Sendable, Equatable {
    /// Read with `r` replies out of the table's `n` replicas.
    case get(ItemKey, r: Int, n: Int)
    /// Write `sibling` superseding what `context` saw; done after `w` durable replicas of `n`.
    case put(ItemKey, sibling: Sibling, context: VersionVector?, w: Int, n: Int)

    public var key: ItemKey {
        switch self {
        case .get(let key, _, _), .put(let key, _, _, _, _): key
        }
    }

    /// Whether the operation is a read, which changes nothing wherever it runs.
    public var isRead: Bool {
        if case .get = self { return true }
        return false
    }
}

/// Why a client operation failed.
public enum ClientFailure: Error, Sendable, Equatable {
    /// Fewer replicas answered than the quorum needs.
    case insufficientReplicas(have: Int, need: Int)
    /// The write would leave more siblings than `Limits.siblingsMax`.
    case tooManySiblings(count: Int, max: Int)
    /// A replica's disk is full.
    case diskFull
    /// A replica's storage failed.
    case storage(String)
    /// No node that could coordinate the request answered.
    case unavailable(String)
}

/// What a client operation produced.
public enum ClientResult: Sendable, Equatable {
    /// A read found versions (one, or several concurrent).
    case found(StoredObject)
    /// A read found no value; the context is set when only tombstones remain.
    case notFound(context: VersionVector?)
    /// A write succeeded; the new context supersedes it.
    case written(context: VersionVector)
    case failed(ClientFailure)
}

/// A message one node sends another and expects a reply to.
public enum PeerRequest: Sendable, Equatable {
    /// Read a replica: main storage merged with any hinted copy.
    case replicaRead(ItemKey)
    /// Merge this object into a replica; `hintFor` names the home replica a fallback stands in for.
    case replicaWrite(ItemKey, object: StoredObject, hintFor: NodeID?)
    /// Run a client operation as coordinator (a node that is not a replica forwards puts).
    case coordinate(ClientOperation)
    /// Are you there? `from` names the sender (nil from a sender that does not say),
    /// so that a node that stopped counting it learns at once that it is back.
    case ping(from: NodeID?)
    /// A client's read of a replica it addresses itself (the partition-aware client):
    /// answered like `replicaRead` only while this node is one of the key's first
    /// `n` nodes by its ring, else refused with `ClientFailure.unavailable`.
    case homeRead(ItemKey, n: Int)
}

/// The reply to a `PeerRequest`.
public enum PeerReply: Sendable, Equatable {
    case replicaRead(StoredObject?)
    case replicaWritten
    case coordinated(ClientResult)
    case pong
    case failed(ClientFailure)
}

// MARK: - Wire encoding

/// Binary encoding of peer messages: one message type byte, then the fields with
/// `ByteWriter`'s primitives. A peer that reads an unknown type answers with an
/// error; nothing is guessed.
public enum PeerCodec {
    /// The message type of `PeerRequest.coordinate`, which clients send too.
    public static let coordinateType: UInt16 = 3
    /// The RPC error code a ring server answers a client's write with when the
    /// coordinator it passed the write to did not answer: the write may have been
    /// applied, so it must not be sent again.
    public static let outcomeUnknownCode: UInt16 = 503

    public static func encode(_ request: PeerRequest) -> (type: UInt16, body: [UInt8]) {
        var writer = ByteWriter(capacity: 128)
        switch request {
        case .replicaRead(let key):
            key.encode(into: &writer)
            return (1, writer.bytes)
        case .replicaWrite(let key, let object, let hintFor):
            key.encode(into: &writer)
            writer.writeBytes(StoredObject.encodeObject(object))
            writeOptionalNode(hintFor, into: &writer)
            return (2, writer.bytes)
        case .coordinate(let operation):
            encode(operation, into: &writer)
            return (coordinateType, writer.bytes)
        case .ping(let from):
            writeOptionalNode(from, into: &writer)
            return (4, writer.bytes)
        case .homeRead(let key, let n):
            key.encode(into: &writer)
            writer.writeVarint(UInt64(n))
            return (5, writer.bytes)
        }
    }

    public static func decodeRequest(type: UInt16, body: [UInt8]) throws(DecodeError) -> PeerRequest {
        var reader = ByteReader(body)
        let request: PeerRequest
        switch type {
        case 1: request = .replicaRead(try ItemKey(from: &reader))
        case 2:
            let key = try ItemKey(from: &reader)
            let object = try StoredObject.decodeObject(try reader.readBytes())
            request = .replicaWrite(key, object: object, hintFor: try readOptionalNode(&reader))
        case coordinateType: request = .coordinate(try decodeOperation(&reader))
        case 4: request = .ping(from: reader.isAtEnd ? nil : try readOptionalNode(&reader))
        case 5:
            let key = try ItemKey(from: &reader)
            let n = try reader.readVarint()
            guard (1...UInt64(Limits.replicasMax)).contains(n) else { throw DecodeError("a home read's n must be 1 to \(Limits.replicasMax), not \(n)") }
            request = .homeRead(key, n: Int(n))
        default: throw DecodeError("unknown peer request type \(type)")
        }
        try reader.expectEnd()
        return request
    }

    public static func encode(_ reply: PeerReply) -> (type: UInt16, body: [UInt8]) {
        var writer = ByteWriter(capacity: 64)
        switch reply {
        case .replicaRead(let object):
            writeOptionalObject(object, into: &writer)
            return (101, writer.bytes)
        case .replicaWritten:
            return (102, [])
        case .coordinated(let result):
            encode(result, into: &writer)
            return (103, writer.bytes)
        case .pong:
            return (104, [])
        case .failed(let failure):
            encode(failure, into: &writer)
            return (105, writer.bytes)
        }
    }

    public static func decodeReply(type: UInt16, body: [UInt8]) throws(DecodeError) -> PeerReply {
        var reader = ByteReader(body)
        let reply: PeerReply
        switch type {
        case 101: reply = .replicaRead(try readOptionalObject(&reader))
        case 102: reply = .replicaWritten
        case 103: reply = .coordinated(try decodeResult(&reader))
        case 104: reply = .pong
        case 105: reply = .failed(try decodeFailure(&reader))
        default: throw DecodeError("unknown peer reply type \(type)")
        }
        try reader.expectEnd()
        return reply
    }

    // MARK: Parts

    static func encode(_ operation: ClientOperation, into writer: inout ByteWriter) {
        switch operation {
        case .get(let key, let r, let n):
            writer.writeUInt8(1)
            key.encode(into: &writer)
            writer.writeVarint(UInt64(r))
            writer.writeVarint(UInt64(n))
        case .put(let key, let sibling, let context, let w, let n):
            writer.writeUInt8(2)
            key.encode(into: &writer)
            sibling.encode(into: &writer)
            if let context {
                writer.writeUInt8(1)
                writer.writeBytes(context.encode())
            } else {
                writer.writeUInt8(0)
            }
            writer.writeVarint(UInt64(w))
            writer.writeVarint(UInt64(n))
        }
    }

    static func decodeOperation(_ reader: inout ByteReader) throws(DecodeError) -> ClientOperation {
        switch try reader.readUInt8() {
        case 1:
            let key = try ItemKey(from: &reader)
            let r = try readQuorum(&reader)
            return .get(key, r: r, n: try readQuorum(&reader))
        case 2:
            let key = try ItemKey(from: &reader)
            let sibling = try Sibling(from: &reader)
            let context: VersionVector? = try reader.readUInt8() == 1 ? try VersionVector(decoding: try reader.readBytes()) : nil
            let w = try readQuorum(&reader)
            return .put(key, sibling: sibling, context: context, w: w, n: try readQuorum(&reader))
        case let other:
            throw DecodeError("unknown client operation \(other)")
        }
    }

    static func encode(_ result: ClientResult, into writer: inout ByteWriter) {
        switch result {
        case .found(let object):
            writer.writeUInt8(1)
            writer.writeBytes(StoredObject.encodeObject(object))
        case .notFound(let context):
            writer.writeUInt8(2)
            writer.writeBytes(context?.encode() ?? [])
        case .written(let context):
            writer.writeUInt8(3)
            writer.writeBytes(context.encode())
        case .failed(let failure):
            writer.writeUInt8(4)
            encode(failure, into: &writer)
        }
    }

    static func decodeResult(_ reader: inout ByteReader) throws(DecodeError) -> ClientResult {
        switch try reader.readUInt8() {
        case 1: return .found(try StoredObject.decodeObject(try reader.readBytes()))
        case 2:
            let bytes = try reader.readBytes()
            return .notFound(context: bytes.isEmpty ? nil : try VersionVector(decoding: bytes))
        case 3: return .written(context: try VersionVector(decoding: try reader.readBytes()))
        case 4: return .failed(try decodeFailure(&reader))
        case let other: throw DecodeError("unknown client result \(other)")
        }
    }

    static func encode(_ failure: ClientFailure, into writer: inout ByteWriter) {
        switch failure {
        case .insufficientReplicas(let have, let need):
            writer.writeUInt8(1)
            writer.writeVarint(UInt64(have))
            writer.writeVarint(UInt64(need))
        case .tooManySiblings(let count, let max):
            writer.writeUInt8(2)
            writer.writeVarint(UInt64(count))
            writer.writeVarint(UInt64(max))
        case .diskFull:
            writer.writeUInt8(3)
        case .storage(let message):
            writer.writeUInt8(4)
            writer.writeString(message)
        case .unavailable(let message):
            writer.writeUInt8(5)
            writer.writeString(message)
        }
    }

    static func decodeFailure(_ reader: inout ByteReader) throws(DecodeError) -> ClientFailure {
        switch try reader.readUInt8() {
        case 1:
            let have = try readQuorum(&reader)
            return .insufficientReplicas(have: have, need: try readQuorum(&reader))
        case 2:
            let count = Int(clamping: try reader.readVarint())
            return .tooManySiblings(count: count, max: Int(clamping: try reader.readVarint()))
        case 3: return .diskFull
        case 4: return .storage(try reader.readString())
        case 5: return .unavailable(try reader.readString())
        case let other: throw DecodeError("unknown failure \(other)")
        }
    }

    private static func readQuorum(_ reader: inout ByteReader) throws(DecodeError) -> Int {
        let value = try reader.readVarint()
        guard value <= UInt64(Limits.replicasMax) else { throw DecodeError("quorum \(value) out of bounds") }
        return Int(value)
    }

    private static func writeOptionalNode(_ node: NodeID?, into writer: inout ByteWriter) {
        writer.writeString(node?.rawValue ?? "")
    }

    private static func readOptionalNode(_ reader: inout ByteReader) throws(DecodeError) -> NodeID? {
        let text = try reader.readString()
        return text.isEmpty ? nil : NodeID(text)
    }

    private static func writeOptionalObject(_ object: StoredObject?, into writer: inout ByteWriter) {
        writer.writeBytes(object.map(StoredObject.encodeObject) ?? [])
    }

    private static func readOptionalObject(_ reader: inout ByteReader) throws(DecodeError) -> StoredObject? {
        let bytes = try reader.readBytes()
        return bytes.isEmpty ? nil : try StoredObject.decodeObject(bytes)
    }
}
