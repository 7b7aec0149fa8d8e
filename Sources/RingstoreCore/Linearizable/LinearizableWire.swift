/// How a proposer places a key: the ring epoch it routes by and the key's replica
/// count. Every request to an acceptor carries it, and an acceptor takes part only
/// when it places the key the same way (see `CASPaxosPlacementRefusal`), so that a
/// proposer with an older or newer ring never forms a quorum of acceptors that no
/// longer (or not yet) hold the key.
public struct CASPaxosPlacement: Hashable, Sendable {
    /// The epoch of the proposer's ring.
    public var ringEpoch: UInt64
    /// The key's table's n: the key's home replicas are the first n of its preference list.
    public var replicaCount: Int

    /// Creates a placement.
    public init(ringEpoch: UInt64, replicaCount: Int) {
        self.ringEpoch = ringEpoch
        self.replicaCount = replicaCount
    }
}

/// Why an acceptor refused to take part in a proposer's attempt.
public enum CASPaxosPlacementRefusal: UInt8, Hashable, Sendable {
    /// The acceptor routes by another ring epoch than the proposer.
    case otherRingEpoch = 1
    /// The acceptor is not one of the key's home replicas in its ring.
    case notAReplica = 2
    /// The key's partition is moving to other replicas; linearizable operations on it
    /// wait until the new ring takes effect.
    case partitionMoving = 3
}

/// A request to an acceptor on the node-to-node protocol: a `prepare` or `accept`
/// with the proposer's placement. Type 300 or 302; the body is the placement (epoch
/// as 8 bytes, replica count as 1 byte) followed by the message's own body.
public struct CASPaxosRequest: Hashable, Sendable {
    /// The prepare or accept.
    public var message: CASPaxosMessage
    /// How the proposer places the key.
    public var placement: CASPaxosPlacement

    /// Creates a request; `message` MUST be a prepare or an accept.
    public init(message: CASPaxosMessage, placement: CASPaxosPlacement) {
        self.message = message
        self.placement = placement
    }

    /// The message type and body.
    public func encode() -> (type: UInt16, body: [UInt8]) {
        let (type, body) = message.encode()
        var writer = ByteWriter(capacity: body.count + 9)
        writer.writeUInt64BE(placement.ringEpoch)
        writer.writeUInt8(UInt8(clamping: placement.replicaCount))
        writer.writeRaw(body)
        return (type, writer.bytes)
    }

    /// Reads what `encode()` wrote; refuses anything but a prepare or an accept.
    public static func decode(type: UInt16, body: [UInt8]) throws(DecodeError) -> CASPaxosRequest {
        guard type == 300 || type == 302 else { throw DecodeError("message type \(type) is not a request to an acceptor") }
        var reader = ByteReader(body)
        let epoch = try reader.readUInt64BE()
        let count = Int(try reader.readUInt8())
        guard (1...Limits.replicasMax).contains(count) else { throw DecodeError("replica count \(count) is outside 1...\(Limits.replicasMax)") }
        let message = try CASPaxosMessage.decode(type: type, body: Array(body.dropFirst(9)))
        return CASPaxosRequest(message: message, placement: CASPaxosPlacement(ringEpoch: epoch, replicaCount: count))
    }
}

/// An acceptor's answer on the node-to-node protocol: a CASPaxos reply, or a refusal
/// to take part (type 306: key, ballot, the acceptor's ring epoch, the reason).
public enum CASPaxosReply: Hashable, Sendable {
    /// A promise, an accept, or a rejection naming a higher ballot.
    case message(CASPaxosMessage)
    /// The acceptor does not place the key as the proposer does.
    case placementRefused(ItemKey, ballot: Ballot, ringEpoch: UInt64, reason: CASPaxosPlacementRefusal)

    static let placementRefusedType: UInt16 = 306

    /// The message type and body.
    public func encode() -> (type: UInt16, body: [UInt8]) {
        switch self {
        case .message(let message):
            return message.encode()
        case .placementRefused(let key, let ballot, let epoch, let reason):
            var writer = ByteWriter(capacity: 64)
            key.encode(into: &writer)
            ballot.encode(into: &writer)
            writer.writeUInt64BE(epoch)
            writer.writeUInt8(reason.rawValue)
            return (Self.placementRefusedType, writer.bytes)
        }
    }

    /// Reads what `encode()` wrote; refuses requests and unknown types.
    public static func decode(type: UInt16, body: [UInt8]) throws(DecodeError) -> CASPaxosReply {
        guard type == placementRefusedType else {
            guard type != 300, type != 302 else { throw DecodeError("message type \(type) is a request, not a reply") }
            return .message(try CASPaxosMessage.decode(type: type, body: body))
        }
        var reader = ByteReader(body)
        let key = try ItemKey(from: &reader)
        let ballot = try Ballot(from: &reader)
        let epoch = try reader.readUInt64BE()
        let raw = try reader.readUInt8()
        guard let reason = CASPaxosPlacementRefusal(rawValue: raw) else { throw DecodeError("unknown placement refusal \(raw)") }
        try reader.expectEnd()
        return .placementRefused(key, ballot: ballot, ringEpoch: epoch, reason: reason)
    }
}

/// Why a linearizable operation ended without an answer about the key.
public enum LinearizableFailure: UInt8, Hashable, Sendable {
    /// No majority of the key's replicas answered; nothing was applied.
    case noQuorum = 1
    /// The change may or may not have been applied.
    case outcomeUnknown = 2
    /// The key's partition is moving between nodes; nothing was applied.
    case partitionMoving = 3
    /// The node serving the request has no ring (not yet formed, or it left); nothing was applied.
    case notReady = 4

    /// Whether the change is known not to have been applied.
    public var isNotApplied: Bool { self != .outcomeUnknown }
}

/// What a linearizable operation answered: the node-to-node form of the result a
/// ring server or another node asked a coordinator for.
public enum LinearizableAnswer: Hashable, Sendable {
    /// The change was chosen; the key's value is now this one (for a read, the value read).
    case applied(LinearizableValue?)
    /// The change was refused against the chosen value `current`.
    case refused(LinearizableRefusal, current: LinearizableValue?)
    /// No answer about the key: why, and a sentence for the client.
    case failed(LinearizableFailure, message: String)
}

/// A request to run a linearizable operation, sent by a ring server (or a node that
/// forwards) to a coordinator: type 310; the reply is type 311.
public struct LinearizableRequest: Hashable, Sendable {
    /// The key.
    public var key: ItemKey
    /// The key's table's n.
    public var replicaCount: Int
    /// The change to apply.
    public var change: LinearizableChange
    /// For a read: the caller means to change the key soon after (an enrolment reads
    /// a student's subjects, then adds one). A leader that holds no promise for the
    /// key then reads with a prepare instead of a look, and keeps the promise, so the
    /// change skips its prepare phase.
    public var forUpdate: Bool

    /// The request's message type.
    public static let type: UInt16 = 310
    /// The reply's message type.
    public static let replyType: UInt16 = 311

    /// Creates a request.
    public init(key: ItemKey, replicaCount: Int, change: LinearizableChange, forUpdate: Bool = false) {
        self.key = key
        self.replicaCount = replicaCount
        self.change = change
        self.forUpdate = forUpdate
    }

    /// The body: the key, the replica count (1 byte), the change, and a byte 1 when
    /// `forUpdate` (absent otherwise).
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        key.encode(into: &writer)
        writer.writeUInt8(UInt8(clamping: replicaCount))
        change.encode(into: &writer)
        if forUpdate { writer.writeUInt8(1) }
        return writer.bytes
    }

    /// Reads what `encode()` wrote.
    public init(decoding body: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(body)
        key = try ItemKey(from: &reader)
        replicaCount = Int(try reader.readUInt8())
        guard (1...Limits.replicasMax).contains(replicaCount) else {
            throw DecodeError("replica count \(replicaCount) is outside 1...\(Limits.replicasMax)")
        }
        change = try LinearizableChange(from: &reader)
        forUpdate = false
        if !reader.isAtEnd {
            guard try reader.readUInt8() == 1 else { throw DecodeError("a linearizable request's last byte must be 1 (for update)") }
            forUpdate = true
        }
        try reader.expectEnd()
    }
}

extension LinearizableAnswer {
    /// The body of a type 311 reply.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch self {
        case .applied(let value):
            writer.writeUInt8(1)
            LinearizableValue.encodeOptional(value, into: &writer)
        case .refused(let reason, let current):
            writer.writeUInt8(2)
            reason.encode(into: &writer)
            LinearizableValue.encodeOptional(current, into: &writer)
        case .failed(let failure, let message):
            writer.writeUInt8(3)
            writer.writeUInt8(failure.rawValue)
            writer.writeString(message)
        }
        return writer.bytes
    }

    /// Reads what `encode()` wrote.
    public init(decoding body: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(body)
        switch try reader.readUInt8() {
        case 1:
            self = .applied(try LinearizableValue.decodeOptional(&reader))
        case 2:
            let reason = try LinearizableRefusal(from: &reader)
            self = .refused(reason, current: try LinearizableValue.decodeOptional(&reader))
        case 3:
            let raw = try reader.readUInt8()
            guard let failure = LinearizableFailure(rawValue: raw) else { throw DecodeError("unknown linearizable failure \(raw)") }
            self = .failed(failure, message: try reader.readString())
        case let other:
            throw DecodeError("unknown linearizable answer \(other)")
        }
        try reader.expectEnd()
    }
}

extension LinearizablePrecondition {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .none: writer.writeUInt8(0)
        case .ifMatch(let version):
            writer.writeUInt8(1)
            writer.writeVarint(version)
        case .ifNoneMatch: writer.writeUInt8(2)
        case .ifExists: writer.writeUInt8(3)
        }
    }

    init(from reader: inout ByteReader) throws(DecodeError) {
        switch try reader.readUInt8() {
        case 0: self = .none
        case 1: self = .ifMatch(version: try reader.readVarint())
        case 2: self = .ifNoneMatch
        case 3: self = .ifExists
        case let other: throw DecodeError("unknown precondition \(other)")
        }
    }
}

extension LinearizableChange {
    /// The most changes one batch holds.
    public static let batchMax = 256
    /// The most conflicting members one `setAddUnless` names.
    public static let conflictsMax = 256

    /// A tag byte (1 read, 2 put, 3 delete, 4 counter add, 5 set add, 6 set remove,
    /// 7 batch, 8 set add unless), then the fields.
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .read:
            writer.writeUInt8(1)
        case .put(let contentType, let data, let precondition):
            writer.writeUInt8(2)
            writer.writeString(contentType)
            writer.writeBytes(data)
            precondition.encode(into: &writer)
        case .delete(let precondition):
            writer.writeUInt8(3)
            precondition.encode(into: &writer)
        case .counterAdd(let delta, let min, let max):
            writer.writeUInt8(4)
            for value in [delta, min, max] { writer.writeUInt64BE(UInt64(bitPattern: value)) }
        case .setAdd(let member, let cap):
            writer.writeUInt8(5)
            writer.writeString(member)
            writer.writeVarint(UInt64(Swift.max(cap, 0)))
        case .setRemove(let member):
            writer.writeUInt8(6)
            writer.writeString(member)
        case .setAddUnless(let member, let cap, let conflicts):
            writer.writeUInt8(8)
            writer.writeString(member)
            writer.writeVarint(UInt64(Swift.max(cap, 0)))
            writer.writeVarint(UInt64(conflicts.count))
            for conflict in conflicts { writer.writeString(conflict) }
        case .batch(let changes):
            writer.writeUInt8(7)
            writer.writeVarint(UInt64(changes.count))
            for change in changes { change.encode(into: &writer) }
        }
    }

    init(from reader: inout ByteReader) throws(DecodeError) {
        switch try reader.readUInt8() {
        case 1:
            self = .read
        case 2:
            let contentType = try reader.readString()
            guard contentType.utf8.count <= Limits.contentTypeBytesMax else { throw DecodeError("content type too long") }
            let data = try reader.readBytes()
            guard data.count <= Limits.valueBytesMaxCeiling else { throw DecodeError("value of \(data.count) bytes is too large") }
            self = .put(contentType: contentType, data: data, precondition: try LinearizablePrecondition(from: &reader))
        case 3:
            self = .delete(precondition: try LinearizablePrecondition(from: &reader))
        case 4:
            let delta = Int64(bitPattern: try reader.readUInt64BE())
            let min = Int64(bitPattern: try reader.readUInt64BE())
            self = .counterAdd(delta: delta, min: min, max: Int64(bitPattern: try reader.readUInt64BE()))
        case 5:
            let member = try reader.readString()
            let cap = try reader.readVarint()
            guard cap <= UInt64(CASPaxosLimits.setMembersMax) else { throw DecodeError("set cap \(cap) exceeds \(CASPaxosLimits.setMembersMax)") }
            self = .setAdd(member: member, cap: Int(cap))
        case 6:
            self = .setRemove(member: try reader.readString())
        case 8:
            let member = try reader.readString()
            let cap = try reader.readVarint()
            guard cap <= UInt64(CASPaxosLimits.setMembersMax) else { throw DecodeError("set cap \(cap) exceeds \(CASPaxosLimits.setMembersMax)") }
            let count = try reader.readCount(elementBytesMin: 1)
            guard count <= LinearizableChange.conflictsMax else { throw DecodeError("\(count) conflicting members exceed \(LinearizableChange.conflictsMax)") }
            var conflicts: [String] = []
            for _ in 0..<count { conflicts.append(try reader.readString()) }
            self = .setAddUnless(member: member, cap: Int(cap), conflicts: conflicts)
        case 7:
            let count = try reader.readCount(elementBytesMin: 1)
            guard count <= LinearizableChange.batchMax else { throw DecodeError("a batch of \(count) changes exceeds \(LinearizableChange.batchMax)") }
            var changes: [LinearizableChange] = []
            for _ in 0..<count {
                let change = try LinearizableChange(from: &reader)
                if case .batch = change { throw DecodeError("a batch inside a batch") }
                changes.append(change)
            }
            self = .batch(changes)
        case let other:
            throw DecodeError("unknown linearizable change \(other)")
        }
    }

    /// Whether running the change twice leaves the same value as running it once, so
    /// that a coordinator may run it again when an attempt's outcome is unknown:
    /// reads, set additions and removals, and puts and deletes without a precondition.
    public var isIdempotent: Bool {
        switch self {
        case .batch(let changes): changes.allSatisfy(\.isIdempotent)
        case .read, .setAdd, .setAddUnless, .setRemove: true
        case .put(_, _, let precondition), .delete(let precondition): precondition == .none
        case .counterAdd: false
        }
    }
}

extension LinearizableRefusal {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .preconditionFailed:
            writer.writeUInt8(1)
        case .wrongKind(let expected, let found):
            writer.writeUInt8(2)
            writer.writeUInt8(expected.rawValue)
            writer.writeUInt8(found.rawValue)
        case .counterOutOfBounds(let value, let delta, let min, let max):
            writer.writeUInt8(3)
            for number in [value, delta, min, max] { writer.writeUInt64BE(UInt64(bitPattern: number)) }
        case .setFull(let count, let cap):
            writer.writeUInt8(4)
            writer.writeVarint(UInt64(count))
            writer.writeVarint(UInt64(cap))
        case .memberTooLong(let bytes, let max):
            writer.writeUInt8(5)
            writer.writeVarint(UInt64(bytes))
            writer.writeVarint(UInt64(max))
        case .conflictingMember(let member):
            writer.writeUInt8(6)
            writer.writeString(member)
        }
    }

    init(from reader: inout ByteReader) throws(DecodeError) {
        func kind(_ raw: UInt8) throws(DecodeError) -> LinearizableKind {
            guard let kind = LinearizableKind(rawValue: raw) else { throw DecodeError("unknown value kind \(raw)") }
            return kind
        }
        func count() throws(DecodeError) -> Int {
            let value = try reader.readVarint()
            guard value <= UInt64(Int32.max) else { throw DecodeError("count \(value) is too large") }
            return Int(value)
        }
        func int64() throws(DecodeError) -> Int64 { Int64(bitPattern: try reader.readUInt64BE()) }
        switch try reader.readUInt8() {
        case 1: self = .preconditionFailed
        case 2:
            let expected = try kind(try reader.readUInt8())
            self = .wrongKind(expected: expected, found: try kind(try reader.readUInt8()))
        case 3:
            let value = try int64(), delta = try int64(), min = try int64()
            self = .counterOutOfBounds(value: value, delta: delta, min: min, max: try int64())
        case 4:
            let found = try count()
            self = .setFull(count: found, cap: try count())
        case 5:
            let bytes = try count()
            self = .memberTooLong(bytes: bytes, max: try count())
        case 6:
            self = .conflictingMember(try reader.readString())
        case let other:
            throw DecodeError("unknown refusal \(other)")
        }
    }
}

/// A read-only look at acceptors (types 307 and 308): a node asks a key's replicas
/// for the value each last accepted, changing nothing and writing nothing. When a
/// majority answer with the same accepted ballot, that value was chosen (a
/// majority accepted it) and no later value was chosen before they answered (it
/// would have been accepted by one of them), so it is a linearizable read in one
/// round trip and no fsync. Otherwise the read runs as a full CASPaxos operation.
public enum CASPaxosPeek {
    /// The request's message type: the placement, then the key.
    public static let requestType: UInt16 = 307
    /// The reply's message type: the key, then an optional accepted value.
    public static let replyType: UInt16 = 308

    public static func encodeRequest(_ key: ItemKey, placement: CASPaxosPlacement) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.writeUInt64BE(placement.ringEpoch)
        writer.writeUInt8(UInt8(clamping: placement.replicaCount))
        key.encode(into: &writer)
        return writer.bytes
    }

    public static func decodeRequest(_ body: [UInt8]) throws(DecodeError) -> (ItemKey, CASPaxosPlacement) {
        var reader = ByteReader(body)
        let epoch = try reader.readUInt64BE()
        let count = Int(try reader.readUInt8())
        guard (1...Limits.replicasMax).contains(count) else { throw DecodeError("replica count \(count) is outside 1...\(Limits.replicasMax)") }
        let key = try ItemKey(from: &reader)
        try reader.expectEnd()
        return (key, CASPaxosPlacement(ringEpoch: epoch, replicaCount: count))
    }

    public static func encodeReply(_ key: ItemKey, accepted: CASPaxosAcceptedValue?) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        key.encode(into: &writer)
        if let accepted {
            writer.writeUInt8(1)
            accepted.ballot.encode(into: &writer)
            LinearizableValue.encodeOptional(accepted.value, into: &writer)
        } else {
            writer.writeUInt8(0)
        }
        return writer.bytes
    }

    public static func decodeReply(_ body: [UInt8]) throws(DecodeError) -> (ItemKey, CASPaxosAcceptedValue?) {
        var reader = ByteReader(body)
        let key = try ItemKey(from: &reader)
        let accepted: CASPaxosAcceptedValue?
        switch try reader.readUInt8() {
        case 0: accepted = nil
        case 1:
            let ballot = try Ballot(from: &reader)
            accepted = CASPaxosAcceptedValue(ballot: ballot, value: try LinearizableValue.decodeOptional(&reader))
        case let other: throw DecodeError("unknown presence byte \(other) before an accepted value")
        }
        try reader.expectEnd()
        return (key, accepted)
    }

    /// A counting look at many keys at once (type 312; reply 313): the placement
    /// epoch, then each key with its replica count; the reply holds, per key and in
    /// order, a status byte (0 refused, 1 nothing accepted, 2 accepted), then the
    /// accepted ballot and how many members the accepted set holds (a varint; 0 for
    /// no value or one that is not a set). Counts, not values: the seats of a whole
    /// catalogue in a few bytes per roster, whatever the rosters hold.
    public static let manyRequestType: UInt16 = 312
    public static let manyReplyType: UInt16 = 313
    /// The most keys one look holds.
    public static let manyKeysMax = 1024

    public static func encodeManyRequest(_ keys: [(ItemKey, replicaCount: Int)], ringEpoch: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 64 * keys.count + 16)
        writer.writeUInt64BE(ringEpoch)
        writer.writeVarint(UInt64(keys.count))
        for (key, count) in keys {
            writer.writeUInt8(UInt8(clamping: count))
            key.encode(into: &writer)
        }
        return writer.bytes
    }

    public static func decodeManyRequest(_ body: [UInt8]) throws(DecodeError) -> [(ItemKey, CASPaxosPlacement)] {
        var reader = ByteReader(body)
        let epoch = try reader.readUInt64BE()
        let count = try reader.readCount(elementBytesMin: 8)
        guard count <= manyKeysMax else { throw DecodeError("a look at \(count) keys exceeds \(manyKeysMax)") }
        var keys: [(ItemKey, CASPaxosPlacement)] = []
        for _ in 0..<count {
            let replicas = Int(try reader.readUInt8())
            guard (1...Limits.replicasMax).contains(replicas) else { throw DecodeError("replica count \(replicas) is outside 1...\(Limits.replicasMax)") }
            keys.append((try ItemKey(from: &reader), CASPaxosPlacement(ringEpoch: epoch, replicaCount: replicas)))
        }
        try reader.expectEnd()
        return keys
    }

    public static func encodeManyReply(_ answers: [CASPaxosAcceptedCount??]) -> [UInt8] {
        var writer = ByteWriter(capacity: 24 * answers.count + 8)
        writer.writeVarint(UInt64(answers.count))
        for answer in answers {
            switch answer {
            case .none: writer.writeUInt8(0)
            case .some(nil): writer.writeUInt8(1)
            case .some(let accepted?):
                writer.writeUInt8(2)
                accepted.ballot.encode(into: &writer)
                writer.writeVarint(UInt64(accepted.members))
            }
        }
        return writer.bytes
    }

    public static func decodeManyReply(_ body: [UInt8]) throws(DecodeError) -> [CASPaxosAcceptedCount??] {
        var reader = ByteReader(body)
        let count = try reader.readCount(elementBytesMin: 1)
        var answers: [CASPaxosAcceptedCount??] = []
        for _ in 0..<count {
            switch try reader.readUInt8() {
            case 0: answers.append(.none)
            case 1: answers.append(.some(nil))
            case 2:
                let ballot = try Ballot(from: &reader)
                let members = try reader.readVarint()
                guard members <= UInt64(Int.max) else { throw DecodeError("member count \(members) out of range") }
                answers.append(.some(CASPaxosAcceptedCount(ballot: ballot, members: Int(members))))
            case let other: throw DecodeError("unknown look status \(other)")
            }
        }
        try reader.expectEnd()
        return answers
    }

    /// The member count a majority agrees on: some when at least `quorum` of
    /// `answers` hold the same accepted ballot (0 when they all hold none); nil when
    /// the answers disagree. One ballot is accepted with one value, so the same
    /// ballot means the same count.
    public static func agreedCount(_ answers: [CASPaxosAcceptedCount?], quorum: Int) -> Int? {
        guard answers.count >= quorum else { return nil }
        var counts: [Ballot?: (Int, Int)] = [:]
        for answer in answers {
            let entry = counts[answer?.ballot] ?? (0, answer?.members ?? 0)
            counts[answer?.ballot] = (entry.0 + 1, entry.1)
        }
        return counts.first(where: { $0.value.0 >= quorum })?.value.1
    }

    /// The value a majority agrees on: some when at least `quorum` of `answers` hold
    /// the same accepted ballot (or all hold none); nil when the answers disagree.
    public static func agreedValue(_ answers: [CASPaxosAcceptedValue?], quorum: Int) -> LinearizableValue?? {
        guard answers.count >= quorum else { return .none }
        var counts: [Ballot?: (Int, LinearizableValue?)] = [:]
        for answer in answers {
            let entry = counts[answer?.ballot] ?? (0, answer?.value)
            counts[answer?.ballot] = (entry.0 + 1, entry.1)
        }
        guard let agreed = counts.first(where: { $0.value.0 >= quorum }) else { return .none }
        return .some(agreed.value.1)
    }
}
