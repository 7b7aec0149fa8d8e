/// What a fallback node keeps for a key it stores on behalf of down home replicas:
/// the versions it received and the replicas that still need them.
public struct HintRecord: Sendable, Equatable {
    public var object: StoredObject
    /// Home replicas this copy must still reach, sorted.
    public var owners: [NodeID]
    /// The actor this node issues versions under while it coordinates writes of this
    /// key as a fallback. Fresh for every record: once the record is handed off and
    /// deleted, the node no longer knows that actor's counter for the key, so it must
    /// never issue versions under it again.
    public var actor: ActorID?
    /// The node's own actor when `actor` was drawn. A node takes a new actor after an
    /// unclean shutdown, which may have lost versions issued under `actor` too; a
    /// record from an earlier actor's time gets a fresh `actor` at its next write.
    public var actorEpoch: ActorID?

    public init(object: StoredObject, owners: [NodeID], actor: ActorID? = nil, actorEpoch: ActorID? = nil) {
        self.object = object
        self.owners = owners.sorted()
        self.actor = actor
        self.actorEpoch = actorEpoch
    }

    public static func encode(_ record: HintRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.writeUInt8(1)
        writer.writeVarint(UInt64(record.owners.count))
        for owner in record.owners { writer.writeString(owner.rawValue) }
        if let actor = record.actor, let epoch = record.actorEpoch {
            writer.writeUInt8(1)
            writer.writeUInt64BE(actor.rawValue)
            writer.writeUInt64BE(epoch.rawValue)
        } else {
            writer.writeUInt8(0)
        }
        writer.writeBytes(StoredObject.encodeObject(record.object))
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> HintRecord {
        var reader = ByteReader(bytes)
        guard try reader.readUInt8() == 1 else { throw DecodeError("unknown hint record format") }
        let count = try reader.readCount(elementBytesMin: 1)
        var owners: [NodeID] = []
        for _ in 0..<count { owners.append(NodeID(try reader.readString())) }
        var actor: ActorID?
        var epoch: ActorID?
        switch try reader.readUInt8() {
        case 0: break
        case 1:
            actor = ActorID(rawValue: try reader.readUInt64BE())
            epoch = ActorID(rawValue: try reader.readUInt64BE())
        case let other: throw DecodeError("hint record actor flag \(other)")
        }
        let object = try StoredObject.decodeObject(try reader.readBytes())
        try reader.expectEnd()
        return HintRecord(object: object, owners: owners, actor: actor, actorEpoch: epoch)
    }
}

/// A change a node makes to its copy of one key. The shell runs it under the
/// key's lock with `ReplicaStore.apply`, so every node, real or simulated, stores
/// the same way.
public enum StorageOperation: Sendable, Equatable {
    /// The coordinator's own write: a new version after what `context` saw, under the
    /// node's `actor`. When the node stands in for a home replica (`hint`), the write
    /// goes to the hint store under the hint record's actor (see `HintRecord.actor`).
    case clientWrite(Sibling, context: VersionVector?, actor: ActorID, hint: HintedWrite?)
    /// A replica write: merge the coordinator's object into main storage.
    case merge(StoredObject)
    /// A fallback's replica write: merge into the hint kept for `owner`.
    case mergeHint(StoredObject, owner: NodeID)
    /// `owner` acknowledged `delivered`: it no longer needs the hint, unless newer
    /// versions arrived meanwhile.
    case settleHint(owner: NodeID, delivered: StoredObject)
    /// Forget the hint for `owner` (the hint store is over its bounds).
    case dropHint(owner: NodeID)
}

/// A client write coordinated by a fallback: the home replica it stands in for, and
/// a fresh actor for the hint record should it need one.
public struct HintedWrite: Sendable, Equatable {
    public var owner: NodeID
    public var freshActor: ActorID

    public init(owner: NodeID, freshActor: ActorID) {
        self.owner = owner
        self.freshActor = freshActor
    }
}

/// The outcome of a storage command.
public enum StorageResult: Sendable, Equatable {
    /// The key's object after the command (nil: nothing stored).
    case object(StoredObject?)
    /// The hint record after a hint command (nil: no hint left).
    case hint(HintRecord?)
    case failed(ClientFailure)
}

/// The storage semantics of a replica, as a pure function of what is stored.
public enum ReplicaStore {
    /// The result of applying an operation: what to store (nil = leave unchanged;
    /// `.some(nil)` = delete) and what to answer.
    public struct Outcome: Sendable, Equatable {
        public var main: StoredObject??
        public var hint: HintRecord??
        public var result: StorageResult
    }

    /// What a read of the key returns: main storage merged with the hinted copy.
    public static func read(main: StoredObject?, hint: HintRecord?) -> StoredObject? {
        switch (main, hint?.object) {
        case (nil, nil): nil
        case (let main?, nil): main
        case (nil, let hinted?): hinted
        case (let main?, let hinted?): StoredObject.sync(main, hinted)
        }
    }

    /// Applies `operation` to the key's stored state.
    public static func apply(_ operation: StorageOperation, main: StoredObject?, hint: HintRecord?) -> Outcome {
        switch operation {
        case .clientWrite(let sibling, let context, let actor, let hinted):
            let current = read(main: main, hint: hint) ?? StoredObject()
            let issuer = hinted.map { Self.hintActor(hint, hinted: $0, epoch: actor) } ?? actor
            let updated = current.update(with: .fresh(sibling, context: context), actor: issuer)
            guard updated.siblingCount <= Limits.siblingsMax else {
                return Outcome(main: nil, hint: nil, result: .failed(.tooManySiblings(count: updated.siblingCount, max: Limits.siblingsMax)))
            }
            if let hinted {
                var record = merged(hint, updated, owner: hinted.owner)
                record.actor = issuer
                record.actorEpoch = actor
                return Outcome(main: nil, hint: .some(record), result: .object(updated))
            }
            return Outcome(main: .some(updated), hint: nil, result: .object(updated))
        case .merge(let incoming):
            let updated = main.map { StoredObject.sync($0, incoming) } ?? incoming
            return Outcome(main: updated == main ? nil : .some(updated), hint: nil, result: .object(updated))
        case .mergeHint(let incoming, let owner):
            let record = merged(hint, incoming, owner: owner)
            return Outcome(main: nil, hint: record == hint ? nil : .some(record), result: .hint(record))
        case .settleHint(let owner, let delivered):
            guard var record = hint, record.owners.contains(owner) else { return Outcome(main: nil, hint: nil, result: .hint(hint)) }
            // Only what the owner has seen may be forgotten; newer versions wait for the next round.
            guard delivered.descends(record.object) else { return Outcome(main: nil, hint: nil, result: .hint(record)) }
            record.owners.removeAll { $0 == owner }
            let after: HintRecord? = record.owners.isEmpty ? nil : record
            return Outcome(main: nil, hint: .some(after), result: .hint(after))
        case .dropHint(let owner):
            guard var record = hint else { return Outcome(main: nil, hint: nil, result: .hint(nil)) }
            record.owners.removeAll { $0 == owner }
            let after: HintRecord? = record.owners.isEmpty ? nil : record
            return Outcome(main: nil, hint: .some(after), result: .hint(after))
        }
    }

    /// The actor a fallback write is issued under: the record's, if it was drawn under
    /// the node's current actor; otherwise the fresh one.
    static func hintActor(_ record: HintRecord?, hinted: HintedWrite, epoch: ActorID) -> ActorID {
        if let record, let actor = record.actor, record.actorEpoch == epoch { return actor }
        return hinted.freshActor
    }

    private static func merged(_ hint: HintRecord?, _ object: StoredObject, owner: NodeID) -> HintRecord {
        guard var record = hint else { return HintRecord(object: object, owners: [owner]) }
        record.object = StoredObject.sync(record.object, object)
        if !record.owners.contains(owner) {
            record.owners.append(owner)
            record.owners.sort()
        }
        return record
    }
}
