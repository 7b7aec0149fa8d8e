@testable import RingstoreCore
import Testing

/// A five-node ring of 8 partitions and an engine for node `n1`.
private func makeEngine(node: String = "n1", requestTimeout: Duration = .seconds(1)) throws -> NodeEngine {
    let members = (1...5).map { NodeID("n\($0)") }
    let ring = Ring.initial(members: members, partitioning: try Partitioning(partitionCount: 8))
    return NodeEngine(configuration: .init(node: NodeID(node), actor: ActorID(rawValue: 1), requestTimeout: requestTimeout), ring: ring)
}

/// A key whose preference list starts with `first`.
private func key(homedAt first: String, in engine: NodeEngine) -> ItemKey {
    for index in 0..<10_000 {
        let candidate = ItemKey(table: "default", key: Array("k\(index)".utf8), partitioning: engine.ring.partitioning)
        if engine.ring.preferenceList(for: candidate.partition, count: 3).first == NodeID(first) { return candidate }
    }
    fatalError("no key found")
}

private let value = Sibling(contentType: "text/plain", data: Array("v".utf8))

/// Starts a W=2 put of `value` (client token 7) on a key `n1` coordinates: the local
/// write's operation, and the object that write stores.
private func startPut(_ engine: inout NodeEngine) throws -> (OperationID, StoredObject) {
    let item = key(homedAt: "n1", in: engine)
    let directives = engine.clientRequested(.put(item, sibling: value, context: nil, w: 2, n: 3), token: 7)
    let write: OperationID? = if case .write(_, .clientWrite, let id)? = directives.last { id } else { nil }
    let id = try #require(write, "expected a local client write, got \(directives)")
    return (id, StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 1)))
}

/// The peers that `directives` send a replica write to.
private func replicaWritePeers(_ directives: [NodeDirective]) -> [NodeID] {
    directives.compactMap { directive -> NodeID? in
        if case .send(.replicaWrite(_, _, nil), let peer, _) = directive { return peer }
        return nil
    }
}

@Suite("Node engine")
struct NodeEngineTests {
    // Proves that targets are the first N reachable home replicas, with the next fallback standing in for each unreachable one.
    @Test func sloppyQuorumTargets() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let preference = engine.ring.preferenceList(for: item.partition, count: 5)
        #expect(engine.targets(for: item, n: 3).map(\.node) == Array(preference.prefix(3)))
        _ = engine.setReachable(preference[1], false)
        let targets = engine.targets(for: item, n: 3)
        #expect(targets.map(\.node) == [preference[0], preference[3], preference[2]])
        #expect(targets[1].hintFor == preference[1])
        #expect(Set(targets.map(\.node)).count == 3)
    }

    // Proves the put path: local write first, then replication, and the reply after W acknowledgements.
    @Test func putRepliesAfterWAcknowledgements() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let directives = engine.clientRequested(.put(item, sibling: value, context: nil, w: 2, n: 3), token: 7)
        guard case .write(_, .clientWrite(_, nil, _, nil), let id)? = directives.last else {
            Issue.record("expected a local client write, got \(directives)")
            return
        }
        var object = StoredObject()
        object = object.update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 1))
        let sends = engine.storageCompleted(.object(object), operation: id)
        let peers = replicaWritePeers(sends)
        #expect(peers.count == 2)
        #expect(!sends.contains { if case .replyToClient = $0 { true } else { false } })
        let reply = engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[0])
        #expect(reply == [.replyToClient(token: 7, .written(context: object.context))])
        #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[1]).isEmpty)
        #expect(engine.operationsInFlight == 0)
    }

    // Proves a put reported appended replicates before its own fsync: the sends go at `storageAppended`, a second report changes nothing, and the reply needs W durable acknowledgements, which two replicas give before the local fsync ends; the local durable report then only finishes the operation.
    @Test func putReplicatesWhenAppendedAndCountsItselfOnceDurable() throws {
        var engine = try makeEngine()
        let (id, object) = try startPut(&engine)
        let peers = replicaWritePeers(engine.storageAppended(.object(object), operation: id))
        #expect(peers.count == 2)
        #expect(engine.storageAppended(.object(object), operation: id).isEmpty)
        #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[0]).isEmpty, "one durable copy of two")
        #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[1]) == [.replyToClient(token: 7, .written(context: object.context))])
        #expect(engine.operationsInFlight == 1)
        #expect(engine.storageCompleted(.object(object), operation: id).isEmpty)
        #expect(engine.operationsInFlight == 0)
    }

    // Proves a put whose local fsync fails after it replicated still answers by what is durable: the failure counts against W, and the two replicas' acknowledgements still meet W=2.
    @Test func putWhoseLocalFsyncFailsCountsTheReplicas() throws {
        var engine = try makeEngine()
        let (id, object) = try startPut(&engine)
        let peers = replicaWritePeers(engine.storageAppended(.object(object), operation: id))
        #expect(engine.storageCompleted(.failed(.storage("fsync failed")), operation: id).isEmpty)
        #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[0]).isEmpty)
        #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: peers[1]) == [.replyToClient(token: 7, .written(context: object.context))])
        #expect(engine.operationsInFlight == 0)
    }

    // Proves that during a ring transition a put copies the written object to the replicas the pending ring adds, and that those copies do not count toward W.
    @Test func putCopiesToPendingReplicasWithoutCountingThem() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let pending = engine.ring.adding(NodeID("n6"))
        let current = Set(engine.ring.preferenceList(for: item.partition, count: 3))
        let added = pending.preferenceList(for: item.partition, count: 3).filter { !current.contains($0) }
        var probe = item
        if added.isEmpty {
            // Find a key whose partition moves to the new node.
            let moved = engine.ring.transfers(to: pending).map(\.0)
            try #require(!moved.isEmpty)
            probe = (0..<100_000).lazy.map { ItemKey(table: "default", key: Array("p\($0)".utf8), partitioning: engine.ring.partitioning) }
                .first { moved.contains($0.partition) && engine.ring.preferenceList(for: $0.partition, count: 3).contains(NodeID("n1")) }!
        }
        engine.replaceRing(engine.ring, pending: pending)
        let copies = engine.pendingReplicas(for: probe, n: 3)
        #expect(!copies.isEmpty && copies.allSatisfy { !engine.ring.preferenceList(for: probe.partition, count: 3).contains($0) })
        let directives = engine.clientRequested(.put(probe, sibling: value, context: nil, w: 2, n: 3), token: 9)
        guard case .write(_, _, let id)? = directives.last else {
            Issue.record("expected a local write, got \(directives)")
            return
        }
        let object = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 1))
        let sends = engine.storageCompleted(.object(object), operation: id)
        let copied = sends.compactMap { directive -> NodeID? in
            if case .send(.replicaWrite, let peer, let operation) = directive, operation != id { return peer }
            return nil
        }
        #expect(Set(copied) == Set(copies))
        // A copy's acknowledgement is not one of the W.
        for copy in copies { #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: copy).isEmpty) }
        engine.replaceRing(engine.ring, pending: nil)
        #expect(engine.pendingReplicas(for: probe, n: 3).isEmpty)
    }

    // Proves that a put which cannot reach W acknowledgements fails with the numbers: at once when too many replicas failed, else at the deadline.
    @Test func putFailsWithoutQuorum() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let object = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 1))
        for failFast in [true, false] {
            let directives = engine.clientRequested(.put(item, sibling: value, context: nil, w: 3, n: 3), token: 1)
            guard case .write(_, _, let id)? = directives.last else { return }
            let sends = engine.storageCompleted(.object(object), operation: id)
            let peer = sends.compactMap { if case .send(_, let peer, _) = $0 { peer } else { nil } }.first!
            #expect(engine.peerReplied(.success(.replicaWritten), operation: id, from: NodeID("nobody")).isEmpty)
            if failFast {
                let result = engine.peerReplied(.failure(.unreachable), operation: id, from: peer)
                #expect(result.contains(.replyToClient(token: 1, .failed(.insufficientReplicas(have: 1, need: 3)))))
            } else {
                let result = engine.timerFired(id)
                #expect(result == [.replyToClient(token: 1, .failed(.insufficientReplicas(have: 1, need: 3)))])
            }
            #expect(engine.timerFired(id).isEmpty || failFast)
        }
    }

    // Proves that a node outside the targets forwards a put to the first target, and tries the next one when it is unreachable.
    @Test func nonReplicaForwardsPuts() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n3", in: engine)
        let preference = engine.ring.preferenceList(for: item.partition, count: 3)
        guard !preference.contains(NodeID("n1")) else { return }
        let directives = engine.clientRequested(.put(item, sibling: value, context: nil, w: 2, n: 3), token: 3)
        guard case .send(.coordinate, let first, let id)? = directives.first else {
            Issue.record("expected a forward, got \(directives)")
            return
        }
        #expect(first == preference[0])
        let retry = engine.peerReplied(.failure(.unreachable), operation: id, from: first)
        guard case .send(.coordinate, let second, let retryID)? = retry.first else {
            Issue.record("expected a second forward, got \(retry)")
            return
        }
        #expect(second == preference[1])
        let done = engine.peerReplied(.success(.coordinated(.written(context: VersionVector()))), operation: retryID, from: second)
        #expect(done == [.replyToClient(token: 3, .written(context: VersionVector()))])
    }

    // Proves the get path: it asks R replicas (itself first), answers with their merge, and repairs the one that was behind.
    @Test func getMergesAndRepairs() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let directives = engine.clientRequested(.get(item, r: 2, n: 3), token: 9)
        let id = directives.compactMap { if case .read(_, let id) = $0 { id } else { nil } }.first!
        let peers = directives.compactMap { if case .send(.replicaRead, let peer, _) = $0 { peer } else { nil } }
        #expect(peers.count == 1)
        let old = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 2))
        let new = old.update(with: .fresh(Sibling(contentType: "text/plain", data: [1]), context: old.context), actor: ActorID(rawValue: 2))
        #expect(engine.storageCompleted(.object(old), operation: id).isEmpty)
        let reply = engine.peerReplied(.success(.replicaRead(new)), operation: id, from: peers[0])
        #expect(reply.first == .replyToClient(token: 9, .found(new)))
        #expect(reply.contains(.write(item, .merge(new), operation: OperationID(rawValue: id.rawValue + 1))))
        #expect(engine.operationsInFlight == 0)
    }

    // Proves that a client's home read is a replica read on a home replica, and is refused by a node that is not one of the key's first n.
    @Test func homeReadsAreAnsweredOnlyByHomeReplicas() throws {
        var engine = try makeEngine()
        let homed = key(homedAt: "n1", in: engine)
        let directives = engine.peerRequested(.homeRead(homed, n: 3), from: NodeID("n1"), token: 5)
        guard case .read(homed, let id)? = directives.first, directives.count == 1 else {
            Issue.record("expected a read of the key, got \(directives)")
            return
        }
        let object = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 2))
        #expect(engine.storageCompleted(.object(object), operation: id) == [.replyToPeer(token: 5, .replicaRead(object))])

        let elsewhere = try #require((0..<10_000).lazy.map {
            ItemKey(table: "default", key: Array("k\($0)".utf8), partitioning: engine.ring.partitioning)
        }.first { !engine.ring.preferenceList(for: $0.partition, count: 3).contains(NodeID("n1")) })
        let refused = engine.peerRequested(.homeRead(elsewhere, n: 3), from: NodeID("n1"), token: 6)
        guard case .replyToPeer(6, .failed(.unavailable))? = refused.first, refused.count == 1 else {
            Issue.record("expected a refusal, got \(refused)")
            return
        }
        // With n = 5 every member of the five-node ring is one of the key's first n.
        guard case .read? = engine.peerRequested(.homeRead(elsewhere, n: 5), from: NodeID("n1"), token: 7).first else {
            Issue.record("expected a read with n = 5")
            return
        }
        #expect(engine.operationsInFlight == 1)
    }

    // Proves that a get asks one more replica for every one that fails, and fails with the numbers when none is left.
    @Test func getAsksAnotherReplicaOnFailure() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n1", in: engine)
        let directives = engine.clientRequested(.get(item, r: 2, n: 3), token: 4)
        guard case .send(.replicaRead, let first, let id)? = directives.last else {
            Issue.record("expected a replica read, got \(directives)")
            return
        }
        let retry = engine.peerReplied(.failure(.unreachable), operation: id, from: first)
        guard case .send(.replicaRead, let second, _)? = retry.first else {
            Issue.record("expected a read of the third replica, got \(retry)")
            return
        }
        #expect(second != first && second != NodeID("n1"))
        let failed = engine.peerReplied(.failure(.timedOut), operation: id, from: second)
        #expect(failed.contains(.replyToClient(token: 4, .failed(.insufficientReplicas(have: 0, need: 2)))))
    }

    // Proves hinted hand-off: a fallback keeps a hint, delivers it when the owner is back, and forgets it once acknowledged.
    @Test func hintedHandoff() throws {
        var engine = try makeEngine()
        let item = key(homedAt: "n2", in: engine)
        let object = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 3))
        _ = engine.setReachable(NodeID("n2"), false)
        let write = engine.peerRequested(.replicaWrite(item, object: object, hintFor: NodeID("n2")), from: NodeID("n3"), token: 5)
        guard case .write(_, .mergeHint(_, let owner), let id)? = write.first else { return }
        #expect(owner == NodeID("n2"))
        let stored = engine.storageCompleted(.hint(HintRecord(object: object, owners: [owner])), operation: id)
        #expect(stored.contains(.replyToPeer(token: 5, .replicaWritten)))
        #expect(engine.hintCount == 1)
        let reads = engine.setReachable(NodeID("n2"), true)
        guard case .read(_, let readID)? = reads.first else {
            Issue.record("expected a hand-off read, got \(reads)")
            return
        }
        let sends = engine.storageCompleted(.object(object), operation: readID)
        guard case .send(.replicaWrite(_, _, nil), let to, let sendID)? = sends.first else { return }
        #expect(to == NodeID("n2"))
        let settle = engine.peerReplied(.success(.replicaWritten), operation: sendID, from: to)
        guard case .write(_, .settleHint, let settleID)? = settle.first else { return }
        let done = engine.storageCompleted(.hint(nil), operation: settleID)
        #expect(done == [.observe(.hintDelivered(item, owner: NodeID("n2")))])
        #expect(engine.hintCount == 0)
    }

    // Proves that the hint index drops the oldest hints past its bounds.
    @Test func hintIndexIsBounded() {
        var index = HintIndex(countMax: 3, bytesMax: 1000)
        let keys = (0..<5).map { ItemKey(table: "t", key: [UInt8($0)], partition: PartitionID(rawValue: 0)) }
        for key in keys.prefix(3) { #expect(index.add(key, owner: NodeID("a"), size: 10).isEmpty) }
        let dropped = index.add(keys[3], owner: NodeID("a"), size: 10)
        #expect(dropped == [HintIndex.Entry(key: keys[0], owner: NodeID("a"))])
        let byBytes = index.add(keys[4], owner: NodeID("b"), size: 990)
        #expect(byBytes.count == 2)
        #expect(index.count == 2)
        #expect(index.bytes <= 1000)
    }
}

@Suite("Replica store")
struct ReplicaStoreTests {
    // Proves that a client write goes to the hint slot when the node stands in for another, and that a read merges both slots.
    @Test func clientWriteAndHints() {
        let actor = ActorID(rawValue: 1)
        let stored = ReplicaStore.apply(
            .clientWrite(value, context: nil, actor: actor, hint: HintedWrite(owner: NodeID("n2"), freshActor: ActorID(rawValue: 77))), main: nil, hint: nil)
        #expect(stored.main == nil)
        guard case .some(let record?) = stored.hint else {
            Issue.record("expected a hint record")
            return
        }
        #expect(record.owners == [NodeID("n2")])
        #expect(record.actor == ActorID(rawValue: 77) && record.actorEpoch == actor)
        let mainObject = StoredObject().update(with: .fresh(Sibling(contentType: "x", data: [2]), context: nil), actor: ActorID(rawValue: 9))
        let read = ReplicaStore.read(main: mainObject, hint: record)
        #expect(read?.siblingCount == 2)
    }

    // Proves that a fallback keeps issuing under its hint actor while its own actor is unchanged, and draws a fresh one after the node took a new actor (an unclean restart).
    @Test func hintActorIsRetiredWithTheNodeActor() {
        let before = ActorID(rawValue: 1), after = ActorID(rawValue: 2)
        let first = ReplicaStore.apply(
            .clientWrite(value, context: nil, actor: before, hint: HintedWrite(owner: NodeID("n2"), freshActor: ActorID(rawValue: 10))), main: nil, hint: nil)
        guard case .some(let record?) = first.hint else { return }
        let same = ReplicaStore.apply(
            .clientWrite(value, context: nil, actor: before, hint: HintedWrite(owner: NodeID("n2"), freshActor: ActorID(rawValue: 11))), main: nil, hint: record)
        guard case .some(let kept?) = same.hint else { return }
        #expect(kept.actor == ActorID(rawValue: 10))
        let restarted = ReplicaStore.apply(
            .clientWrite(value, context: nil, actor: after, hint: HintedWrite(owner: NodeID("n2"), freshActor: ActorID(rawValue: 12))), main: nil, hint: record)
        guard case .some(let renewed?) = restarted.hint else { return }
        #expect(renewed.actor == ActorID(rawValue: 12) && renewed.actorEpoch == after)
        let decoded = try? HintRecord.decode(HintRecord.encode(renewed))
        #expect(decoded == renewed)
    }

    // Proves that settling a hint keeps it when newer versions arrived after the hand-off read.
    @Test func settleKeepsNewerVersions() {
        let first = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 1))
        let second = first.update(with: .fresh(Sibling(contentType: "x", data: [3]), context: first.context), actor: ActorID(rawValue: 1))
        let record = HintRecord(object: second, owners: [NodeID("n2")])
        let early = ReplicaStore.apply(.settleHint(owner: NodeID("n2"), delivered: first), main: nil, hint: record)
        #expect(early.hint == nil)
        let done = ReplicaStore.apply(.settleHint(owner: NodeID("n2"), delivered: second), main: nil, hint: record)
        #expect(done.hint == .some(nil))
    }

    // Proves that a write past the sibling limit is refused and stores nothing.
    @Test func siblingLimitRefusesWrites() {
        var object = StoredObject()
        for index in 0..<Limits.siblingsMax {
            object = object.update(with: .fresh(Sibling(contentType: "x", data: [UInt8(index % 256)]), context: nil), actor: ActorID(rawValue: 1))
        }
        let outcome = ReplicaStore.apply(.clientWrite(value, context: nil, actor: ActorID(rawValue: 1), hint: nil), main: object, hint: nil)
        #expect(outcome.result == .failed(.tooManySiblings(count: Limits.siblingsMax + 1, max: Limits.siblingsMax)))
        #expect(outcome.main == nil)
    }
}

@Suite("Peer codec")
struct PeerCodecTests {
    // Proves that every request and reply survives encoding, and that truncated bodies throw instead of trapping.
    @Test func roundTripAndTruncation() throws {
        let item = ItemKey(table: "default", key: Array("key".utf8), partition: PartitionID(rawValue: 3))
        let object = StoredObject().update(with: .fresh(value, context: nil), actor: ActorID(rawValue: 4))
        let requests: [PeerRequest] = [
            .replicaRead(item),
            .replicaWrite(item, object: object, hintFor: NodeID("n2")),
            .replicaWrite(item, object: object, hintFor: nil),
            .coordinate(.get(item, r: 2, n: 3)),
            .coordinate(.put(item, sibling: value, context: object.context, w: 2, n: 3)),
            .coordinate(.put(item, sibling: .tombstone, context: nil, w: 1, n: 3)),
            .ping(from: NodeID("n1")),
            .ping(from: nil),
            .homeRead(item, n: 3),
        ]
        for request in requests {
            let (type, body) = PeerCodec.encode(request)
            #expect(try PeerCodec.decodeRequest(type: type, body: body) == request)
            // An empty ping is a whole message: the ping of a sender that does not name itself.
            let isPing = if case .ping = request { true } else { false }
            for cut in (isPing ? 1 : 0)..<body.count {
                #expect(throws: DecodeError.self) { try PeerCodec.decodeRequest(type: type, body: Array(body.prefix(cut))) }
            }
        }
        #expect(try PeerCodec.decodeRequest(type: PeerCodec.encode(.ping(from: nil)).type, body: []) == .ping(from: nil))
        let replies: [PeerReply] = [
            .replicaRead(object), .replicaRead(nil), .replicaWritten, .pong,
            .coordinated(.found(object)), .coordinated(.notFound(context: nil)), .coordinated(.notFound(context: object.context)),
            .coordinated(.written(context: object.context)), .coordinated(.failed(.insufficientReplicas(have: 1, need: 2))),
            .failed(.diskFull), .failed(.storage("bad")), .failed(.unavailable("gone")), .failed(.tooManySiblings(count: 101, max: 100)),
        ]
        for reply in replies {
            let (type, body) = PeerCodec.encode(reply)
            #expect(try PeerCodec.decodeReply(type: type, body: body) == reply)
        }
        #expect(throws: DecodeError.self) { try PeerCodec.decodeRequest(type: 999, body: []) }
    }

    // Proves that a home read names between 1 and the most replicas a table may have.
    @Test func homeReadsRefuseImpossibleReplicaCounts() throws {
        let item = ItemKey(table: "default", key: Array("key".utf8), partition: PartitionID(rawValue: 3))
        let (type, body) = PeerCodec.encode(.homeRead(item, n: 3))
        for n in [0, Limits.replicasMax + 1] {
            var writer = ByteWriter(capacity: 32)
            item.encode(into: &writer)
            writer.writeVarint(UInt64(n))
            #expect(throws: DecodeError.self) { try PeerCodec.decodeRequest(type: type, body: writer.bytes) }
        }
        #expect(try PeerCodec.decodeRequest(type: type, body: body) == .homeRead(item, n: 3))
    }
}
