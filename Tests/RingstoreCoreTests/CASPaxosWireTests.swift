@testable import RingstoreCore
import Testing

private let key = ItemKey(table: "seats", key: Array("comp1000".utf8), partition: PartitionID(rawValue: 3))
private let replicas = [NodeID("n1"), NodeID("n2"), NodeID("n3")]

private func ballot(_ counter: UInt64, _ proposer: UInt64 = 1) -> Ballot {
    Ballot(counter: counter, proposer: proposer)
}

private func counter(_ version: UInt64, _ value: Int64) -> LinearizableValue {
    LinearizableValue(version: version, content: .counter(value))
}

@Suite("CASPaxos on the wire")
struct CASPaxosWireTests {
    // Proves every request, reply and answer survives encoding, and that the placement travels with requests.
    @Test func roundTrips() throws {
        let placement = CASPaxosPlacement(ringEpoch: 42, replicaCount: 3)
        for message in [CASPaxosMessage.prepare(key, ballot: ballot(7)), .accept(key, ballot: ballot(7), value: counter(2, 5))] {
            let request = CASPaxosRequest(message: message, placement: placement)
            let (type, body) = request.encode()
            #expect(try CASPaxosRequest.decode(type: type, body: body) == request)
        }
        let replies: [CASPaxosReply] = [
            .message(.promise(key, ballot: ballot(7), accepted: CASPaxosAcceptedValue(ballot: ballot(6), value: nil))),
            .message(.accepted(key, ballot: ballot(7))),
            .placementRefused(key, ballot: ballot(7), ringEpoch: 41, reason: .partitionMoving),
        ]
        for reply in replies {
            let (type, body) = reply.encode()
            #expect(try CASPaxosReply.decode(type: type, body: body) == reply)
        }
        let changes: [LinearizableChange] = [
            .read, .put(contentType: "text/plain", data: [1, 2], precondition: .ifMatch(version: 9)),
            .put(contentType: "a/b", data: [], precondition: .ifExists), .delete(precondition: .ifNoneMatch),
            .counterAdd(delta: -1, min: 0, max: .max), .setAdd(member: "s1", cap: 50), .setRemove(member: "s1"),
            .setAddUnless(member: "COMP1400", cap: 6, conflicts: ["MATH2000", "ART1000"]), .setAddUnless(member: "a", cap: 1, conflicts: []),
            .batch([.setAddUnless(member: "b", cap: 2, conflicts: ["c"]), .read]),
        ]
        for change in changes {
            let request = LinearizableRequest(key: key, replicaCount: 3, change: change)
            #expect(try LinearizableRequest(decoding: request.encode()) == request)
        }
        let forUpdate = LinearizableRequest(key: key, replicaCount: 3, change: .read, forUpdate: true)
        #expect(try LinearizableRequest(decoding: forUpdate.encode()) == forUpdate)
        #expect(forUpdate.encode() == LinearizableRequest(key: key, replicaCount: 3, change: .read).encode() + [1])
        let answers: [LinearizableAnswer] = [
            .applied(nil), .applied(LinearizableValue(version: 3, content: .set(["a", "b"]))),
            .refused(.preconditionFailed, current: counter(1, 1)),
            .refused(.wrongKind(expected: .set, found: .counter), current: counter(1, 1)),
            .refused(.counterOutOfBounds(value: 0, delta: -1, min: 0, max: 10), current: counter(4, 0)),
            .refused(.setFull(count: 50, cap: 50), current: nil), .refused(.memberTooLong(bytes: 300, max: 256), current: nil),
            .refused(.conflictingMember("MATH2000"), current: LinearizableValue(version: 2, content: .set(["MATH2000"]))),
            .failed(.outcomeUnknown, message: "maybe"), .failed(.partitionMoving, message: "moving"),
        ]
        for answer in answers {
            #expect(try LinearizableAnswer(decoding: answer.encode()) == answer)
        }
    }

    // Proves malformed requests are refused: replies sent as requests, a replica count of 0, trailing bytes, unknown tags.
    @Test func refusesMalformed() {
        let (type, body) = CASPaxosMessage.accepted(key, ballot: ballot(1)).encode()
        #expect(throws: DecodeError.self) { try CASPaxosRequest.decode(type: type, body: [UInt8](repeating: 0, count: 9) + body) }
        let request = CASPaxosRequest(message: .prepare(key, ballot: ballot(1)), placement: CASPaxosPlacement(ringEpoch: 1, replicaCount: 0))
        let (prepareType, prepareBody) = request.encode()
        #expect(throws: DecodeError.self) { try CASPaxosRequest.decode(type: prepareType, body: prepareBody) }
        #expect(throws: DecodeError.self) { try CASPaxosReply.decode(type: prepareType, body: prepareBody) }
        let valid = LinearizableRequest(key: key, replicaCount: 3, change: .read).encode()
        #expect(throws: DecodeError.self) { try LinearizableRequest(decoding: valid + [0]) }
        #expect(throws: DecodeError.self) { try LinearizableRequest(decoding: valid + [1, 1]) }
        #expect(throws: DecodeError.self) { try LinearizableAnswer(decoding: [9]) }
        #expect(throws: DecodeError.self) { try LinearizableAnswer(decoding: [3, 7, 0]) }
        // A set addition naming more conflicting members than allowed.
        var tooMany = ByteWriter(capacity: 64)
        LinearizableChange.setAddUnless(
            member: "a", cap: 1, conflicts: (0...LinearizableChange.conflictsMax).map { "c\($0)" }).encode(into: &tooMany)
        var reader = ByteReader(tooMany.bytes)
        #expect(throws: DecodeError.self) { try LinearizableChange(from: &reader) }
    }

    // Proves which changes a coordinator may run again after an unknown outcome: never a counter add or a conditional write.
    @Test func idempotence() {
        #expect(LinearizableChange.read.isIdempotent)
        #expect(LinearizableChange.setAdd(member: "a", cap: 1).isIdempotent)
        #expect(LinearizableChange.setRemove(member: "a").isIdempotent)
        #expect(LinearizableChange.put(contentType: "a/b", data: [1], precondition: .none).isIdempotent)
        #expect(!LinearizableChange.put(contentType: "a/b", data: [1], precondition: .ifMatch(version: 1)).isIdempotent)
        #expect(!LinearizableChange.delete(precondition: .ifExists).isIdempotent)
        #expect(!LinearizableChange.counterAdd(delta: 1, min: 0, max: 5).isIdempotent)
    }

    // Proves If-Match: * holds for any live value and fails for an absent or deleted key.
    @Test func ifExists() {
        #expect(LinearizablePrecondition.ifExists.isSatisfied(by: counter(3, 1)))
        #expect(!LinearizablePrecondition.ifExists.isSatisfied(by: nil))
        #expect(!LinearizablePrecondition.ifExists.isSatisfied(by: LinearizableValue(version: 4, content: .deleted)))
    }

    // Proves merging acceptor states keeps the higher promise and the accepted value of the higher ballot, in either order.
    @Test func merge() {
        let older = CASPaxosAcceptorState(promised: ballot(9), accepted: CASPaxosAcceptedValue(ballot: ballot(4), value: counter(1, 1)))
        let newer = CASPaxosAcceptorState(promised: ballot(6), accepted: CASPaxosAcceptedValue(ballot: ballot(6), value: counter(2, 2)))
        let expected = CASPaxosAcceptorState(promised: ballot(9), accepted: CASPaxosAcceptedValue(ballot: ballot(6), value: counter(2, 2)))
        #expect(older.merged(with: newer) == expected)
        #expect(newer.merged(with: older) == expected)
        #expect(CASPaxosAcceptorState().merged(with: older) == older)
        #expect(older.merged(with: CASPaxosAcceptorState()) == older)
    }
}

@Suite("CASPaxos proposer without answers")
struct CASPaxosNoAnswerTests {
    // Proves a proposer ends at once as unavailable (not applied) when too many acceptors cannot answer during prepare.
    @Test func prepareEndsEarly() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas, ballot: ballot(1), timeout: .seconds(1))
        _ = proposer.start()
        #expect(proposer.noAnswer(from: NodeID("n1")).isEmpty)
        #expect(proposer.noAnswer(from: NodeID("n1")).isEmpty)  // the same node twice counts once
        let directives = proposer.noAnswer(from: NodeID("n2"))
        #expect(directives == [.reply(.unavailable(have: 0, need: 2, outcomeUnknown: false))])
        #expect(proposer.isFinished)
    }

    // Proves a silent acceptor in the accept phase of a change ends as unknown, and a rejection among them as a conflict.
    @Test func acceptEndsEarly() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas, ballot: ballot(2), timeout: .seconds(1))
        _ = proposer.start()
        _ = proposer.receive(.promise(key, ballot: ballot(2), accepted: nil), from: NodeID("n1"))
        let accepts = proposer.receive(.promise(key, ballot: ballot(2), accepted: nil), from: NodeID("n2"))
        #expect(accepts.count == 3)
        #expect(proposer.noAnswer(from: NodeID("n3")).isEmpty)
        #expect(proposer.noAnswer(from: NodeID("n9")).isEmpty)  // not a replica
        let directives = proposer.receive(.acceptRejected(key, ballot: ballot(2), highest: ballot(5)), from: NodeID("n1"))
        #expect(directives == [.reply(.conflict(higherBallot: ballot(5), outcomeUnknown: true))])

        var silent = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas, ballot: ballot(2), timeout: .seconds(1))
        _ = silent.start()
        _ = silent.receive(.promise(key, ballot: ballot(2), accepted: nil), from: NodeID("n1"))
        _ = silent.receive(.promise(key, ballot: ballot(2), accepted: nil), from: NodeID("n2"))
        _ = silent.receive(.accepted(key, ballot: ballot(2)), from: NodeID("n1"))
        _ = silent.noAnswer(from: NodeID("n2"))
        #expect(silent.noAnswer(from: NodeID("n3")) == [.reply(.unavailable(have: 1, need: 2, outcomeUnknown: true))])
    }
}

@Suite("CASPaxos proposer timing out")
struct CASPaxosTimeoutTests {
    // Proves a timeout after a rejection reports the higher ballot, so that the next attempt climbs past it.
    @Test func timeoutAfterARejectionIsAConflict() {
        var proposer = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(1), timeout: .seconds(1))
        _ = proposer.start()
        _ = proposer.receive(.promise(key, ballot: ballot(1), accepted: nil), from: NodeID("n1"))
        _ = proposer.receive(.prepareRejected(key, ballot: ballot(1), highest: ballot(8, 2)), from: NodeID("n2"))
        #expect(proposer.timedOut() == [.reply(.conflict(higherBallot: ballot(8, 2), outcomeUnknown: false))])
    }
}

@Suite("Linearizable batches")
struct LinearizableBatchTests {
    // Proves a batch applies its changes in order, each to what the previous left, and tells each its own outcome.
    @Test func outcomesInOrder() throws {
        let batch = LinearizableChange.batch([
            .setAdd(member: "a", cap: 2), .setAdd(member: "b", cap: 2), .setAdd(member: "c", cap: 2), .read, .setRemove(member: "a"),
        ])
        let outcomes = batch.outcomes(from: nil)
        let one = LinearizableValue(version: 1, content: .set(["a"]))
        let two = LinearizableValue(version: 2, content: .set(["a", "b"]))
        let three = LinearizableValue(version: 3, content: .set(["b"]))
        #expect(outcomes == [.applied(one), .applied(two), .refused(.setFull(count: 2, cap: 2), current: two), .applied(two), .applied(three)])
        #expect(batch.apply(to: nil) == .applied(three))
        #expect(!batch.isRead && batch.isIdempotent)
        #expect(LinearizableChange.batch([.read, .read]).isRead)
        #expect(!LinearizableChange.batch([.read, .counterAdd(delta: 1, min: 0, max: 9)]).isIdempotent)
        let request = LinearizableRequest(key: key, replicaCount: 3, change: batch)
        #expect(try LinearizableRequest(decoding: request.encode()) == request)
    }
}

@Suite("One-round reads")
struct CASPaxosPeekTests {
    // Proves a peek read agrees only when a majority holds the same accepted ballot, and that its messages survive encoding.
    @Test func agreement() throws {
        let five = CASPaxosAcceptedValue(ballot: ballot(5), value: counter(2, 7))
        let four = CASPaxosAcceptedValue(ballot: ballot(4), value: counter(1, 8))
        #expect(CASPaxosPeek.agreedValue([five, five], quorum: 2) == .some(counter(2, 7)))
        #expect(CASPaxosPeek.agreedValue([five, four, five], quorum: 2) == .some(counter(2, 7)))
        #expect(CASPaxosPeek.agreedValue([five, four], quorum: 2) == .none)
        #expect(CASPaxosPeek.agreedValue([nil, nil], quorum: 2) == .some(nil))
        #expect(CASPaxosPeek.agreedValue([nil, five], quorum: 2) == .none)
        #expect(CASPaxosPeek.agreedValue([five], quorum: 2) == .none)
        let placement = CASPaxosPlacement(ringEpoch: 3, replicaCount: 3)
        let (decodedKey, decodedPlacement) = try CASPaxosPeek.decodeRequest(CASPaxosPeek.encodeRequest(key, placement: placement))
        #expect(decodedKey == key && decodedPlacement == placement)
        let (replyKey, accepted) = try CASPaxosPeek.decodeReply(CASPaxosPeek.encodeReply(key, accepted: five))
        #expect(replyKey == key && accepted == five)
    }

    // Proves a counting look agrees like a peek, counts set members (0 for no value or another kind), and survives encoding.
    @Test func countingLook() throws {
        let roster = CASPaxosAcceptedValue(ballot: ballot(5), value: LinearizableValue(version: 3, content: .set(["a", "b", "c"])))
        let five = CASPaxosAcceptedCount(roster)
        #expect(five == CASPaxosAcceptedCount(ballot: ballot(5), members: 3))
        #expect(CASPaxosAcceptedCount(CASPaxosAcceptedValue(ballot: ballot(2), value: counter(2, 7))).members == 0)
        #expect(CASPaxosAcceptedCount(CASPaxosAcceptedValue(ballot: ballot(2), value: nil)).members == 0)
        let four = CASPaxosAcceptedCount(ballot: ballot(4), members: 2)
        #expect(CASPaxosPeek.agreedCount([five, four, five], quorum: 2) == 3)
        #expect(CASPaxosPeek.agreedCount([five, four], quorum: 2) == nil)
        #expect(CASPaxosPeek.agreedCount([nil, nil, five], quorum: 2) == 0)
        #expect(CASPaxosPeek.agreedCount([five], quorum: 2) == nil)
        let answers: [CASPaxosAcceptedCount??] = [.none, .some(nil), .some(five), .some(CASPaxosAcceptedCount(ballot: ballot(9), members: 300))]
        #expect(try CASPaxosPeek.decodeManyReply(CASPaxosPeek.encodeManyReply(answers)) == answers)
        var bad = CASPaxosPeek.encodeManyReply([.some(five)])
        bad[1] = 7
        #expect(throws: DecodeError.self) { try CASPaxosPeek.decodeManyReply(bad) }
        let keys = [(key, replicaCount: 3)]
        let decoded = try CASPaxosPeek.decodeManyRequest(CASPaxosPeek.encodeManyRequest(keys, ringEpoch: 4))
        #expect(decoded.count == 1 && decoded[0].0 == key && decoded[0].1 == CASPaxosPlacement(ringEpoch: 4, replicaCount: 3))
    }
}
