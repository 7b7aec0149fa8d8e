/// The CASPaxos messages between a proposer and the acceptors of a key (message
/// types 300...319 of the node-to-node protocol). Every reply echoes the key and
/// the ballot of the request, so a proposer matches replies to its attempt by ballot.
public enum CASPaxosMessage: Hashable, Sendable {
    /// Phase 1 request: promise to ignore ballots below `ballot`. Type 300.
    case prepare(ItemKey, ballot: Ballot)
    /// Phase 1 reply: promised, with the value last accepted (if any). Type 301.
    case promise(ItemKey, ballot: Ballot, accepted: CASPaxosAcceptedValue?)
    /// Phase 2 request: accept `value` under `ballot`; with `next`, also promise
    /// `next` (above `ballot`) once accepted, so that the proposer's next change to
    /// the key needs no prepare (the one-round-trip optimisation). Type 302.
    case accept(ItemKey, ballot: Ballot, value: LinearizableValue?, next: Ballot? = nil)
    /// Phase 2 reply: accepted. Type 303.
    case accepted(ItemKey, ballot: Ballot)
    /// Phase 1 refusal: the acceptor has seen `highest`, which is not below `ballot`. Type 304.
    case prepareRejected(ItemKey, ballot: Ballot, highest: Ballot)
    /// Phase 2 refusal: the acceptor promised `highest`, which is above `ballot`. Type 305.
    case acceptRejected(ItemKey, ballot: Ballot, highest: Ballot)

    /// The message types this enum owns in the node-to-node protocol.
    public static let typeRange: ClosedRange<UInt16> = 300...319

    /// The key the message is about.
    public var key: ItemKey {
        switch self {
        case .prepare(let key, _), .promise(let key, _, _), .accept(let key, _, _, _), .accepted(let key, _),
             .prepareRejected(let key, _, _), .acceptRejected(let key, _, _):
            key
        }
    }

    /// The ballot of the request (echoed by replies).
    public var ballot: Ballot {
        switch self {
        case .prepare(_, let ballot), .promise(_, let ballot, _), .accept(_, let ballot, _, _), .accepted(_, let ballot),
             .prepareRejected(_, let ballot, _), .acceptRejected(_, let ballot, _):
            ballot
        }
    }

    /// The message's type number and body: the key, the ballot, then the fields.
    public func encode() -> (type: UInt16, body: [UInt8]) {
        var writer = ByteWriter(capacity: 64)
        key.encode(into: &writer)
        ballot.encode(into: &writer)
        switch self {
        case .prepare:
            return (300, writer.bytes)
        case .promise(_, _, let accepted):
            if let accepted {
                writer.writeUInt8(1)
                accepted.ballot.encode(into: &writer)
                LinearizableValue.encodeOptional(accepted.value, into: &writer)
            } else {
                writer.writeUInt8(0)
            }
            return (301, writer.bytes)
        case .accept(_, let ballot, let value, let next):
            LinearizableValue.encodeOptional(value, into: &writer)
            if let next, next > ballot {
                writer.writeUInt8(1)
                next.encode(into: &writer)
            } else {
                writer.writeUInt8(0)
            }
            return (302, writer.bytes)
        case .accepted:
            return (303, writer.bytes)
        case .prepareRejected(_, _, let highest):
            highest.encode(into: &writer)
            return (304, writer.bytes)
        case .acceptRejected(_, _, let highest):
            highest.encode(into: &writer)
            return (305, writer.bytes)
        }
    }

    /// Reads what `encode()` wrote, refusing unknown types, malformed fields and
    /// trailing bytes.
    public static func decode(type: UInt16, body: [UInt8]) throws(DecodeError) -> CASPaxosMessage {
        var reader = ByteReader(body)
        let key = try ItemKey(from: &reader)
        let ballot = try Ballot(from: &reader)
        let message: CASPaxosMessage
        switch type {
        case 300:
            message = .prepare(key, ballot: ballot)
        case 301:
            message = .promise(key, ballot: ballot, accepted: try decodeAccepted(&reader, promised: ballot))
        case 302:
            let value = try LinearizableValue.decodeOptional(&reader)
            message = .accept(key, ballot: ballot, value: value, next: try decodeNext(&reader, above: ballot))
        case 303:
            message = .accepted(key, ballot: ballot)
        case 304:
            message = .prepareRejected(key, ballot: ballot, highest: try Ballot(from: &reader))
        case 305:
            message = .acceptRejected(key, ballot: ballot, highest: try Ballot(from: &reader))
        default:
            throw DecodeError("unknown CASPaxos message type \(type)")
        }
        try reader.expectEnd()
        return message
    }

    private static func decodeNext(_ reader: inout ByteReader, above ballot: Ballot) throws(DecodeError) -> Ballot? {
        switch try reader.readUInt8() {
        case 0:
            return nil
        case 1:
            let next = try Ballot(from: &reader)
            guard next > ballot else { throw DecodeError("accept of \(ballot) asks for a promise of \(next), not above it") }
            return next
        case let other:
            throw DecodeError("unknown presence byte \(other) before a next ballot")
        }
    }

    private static func decodeAccepted(_ reader: inout ByteReader, promised: Ballot) throws(DecodeError) -> CASPaxosAcceptedValue? {
        switch try reader.readUInt8() {
        case 0:
            return nil
        case 1:
            let ballot = try Ballot(from: &reader)
            guard ballot < promised else {
                throw DecodeError("promise of \(promised) carries a value accepted at \(ballot), not below it")
            }
            return CASPaxosAcceptedValue(ballot: ballot, value: try LinearizableValue.decodeOptional(&reader))
        case let other:
            throw DecodeError("unknown presence byte \(other) before an accepted value")
        }
    }
}
