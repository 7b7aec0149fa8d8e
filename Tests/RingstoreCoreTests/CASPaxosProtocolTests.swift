@testable import RingstoreCore
import Testing

private let key = ItemKey(table: "seats", key: Array("comp1000".utf8), partition: PartitionID(rawValue: 3))
private let replicas = [NodeID("n1"), NodeID("n2"), NodeID("n3")]
private let timeout = Duration.milliseconds(500)

private func ballot(_ counter: UInt64, _ proposer: UInt64 = 1) -> Ballot {
    Ballot(counter: counter, proposer: proposer)
}

private func counter(_ version: UInt64, _ value: Int64) -> LinearizableValue {
    LinearizableValue(version: version, content: .counter(value))
}

private func accepted(_ ballot: Ballot, _ value: LinearizableValue?) -> CASPaxosAcceptedValue {
    CASPaxosAcceptedValue(ballot: ballot, value: value)
}

/// The messages a proposer's directives send, by node.
private func sends(_ directives: [CASPaxosProposerDirective]) -> [NodeID: CASPaxosMessage] {
    var messages: [NodeID: CASPaxosMessage] = [:]
    for case .send(let message, let node) in directives { messages[node] = message }
    return messages
}

private func replies(_ directives: [CASPaxosProposerDirective]) -> [CASPaxosResult] {
    var results: [CASPaxosResult] = []
    for case .reply(let result) in directives { results.append(result) }
    return results
}

@Suite("CASPaxos acceptor")
struct CASPaxosAcceptorTests {
    // Proves prepare promises only strictly higher ballots, reports the accepted value, and asks to persist the promise.
    @Test func prepare() {
        let empty = CASPaxosAcceptorState()
        let first = CASPaxosAcceptor.prepare(key, ballot: ballot(2), state: empty)
        #expect(first.reply == .promise(key, ballot: ballot(2), accepted: nil))
        #expect(first.newState == CASPaxosAcceptorState(promised: ballot(2), accepted: nil))
        let promised = CASPaxosAcceptorState(promised: ballot(2), accepted: accepted(ballot(1), counter(1, 1)))
        let equal = CASPaxosAcceptor.prepare(key, ballot: ballot(2), state: promised)
        #expect(equal == CASPaxosAcceptorDecision(newState: nil, reply: .prepareRejected(key, ballot: ballot(2), highest: ballot(2))))
        let lower = CASPaxosAcceptor.prepare(key, ballot: ballot(1, 9), state: promised)
        #expect(lower.reply == .prepareRejected(key, ballot: ballot(1, 9), highest: ballot(2)) && lower.newState == nil)
        let higher = CASPaxosAcceptor.prepare(key, ballot: ballot(3), state: promised)
        #expect(higher.reply == .promise(key, ballot: ballot(3), accepted: accepted(ballot(1), counter(1, 1))))
        #expect(higher.newState?.promised == ballot(3) && higher.newState?.accepted == promised.accepted)
    }

    // Proves accept takes a ballot at or above the promise, rejects a lower one, and a repeated accept changes nothing.
    @Test func accept() {
        let promised = CASPaxosAcceptorState(promised: ballot(5), accepted: nil)
        let lower = CASPaxosAcceptor.accept(key, ballot: ballot(4), value: counter(1, 1), state: promised)
        #expect(lower == CASPaxosAcceptorDecision(newState: nil, reply: .acceptRejected(key, ballot: ballot(4), highest: ballot(5))))
        let equal = CASPaxosAcceptor.accept(key, ballot: ballot(5), value: counter(1, 1), state: promised)
        #expect(equal.reply == .accepted(key, ballot: ballot(5)))
        let stored = CASPaxosAcceptorState(promised: ballot(5), accepted: accepted(ballot(5), counter(1, 1)))
        #expect(equal.newState == stored)
        let again = CASPaxosAcceptor.accept(key, ballot: ballot(5), value: counter(1, 1), state: stored)
        #expect(again == CASPaxosAcceptorDecision(newState: nil, reply: .accepted(key, ballot: ballot(5))))
        // An accept above the promise (a prepare this acceptor missed) is taken and raises the promise.
        let higher = CASPaxosAcceptor.accept(key, ballot: ballot(9), value: nil, state: stored)
        #expect(higher.newState == CASPaxosAcceptorState(promised: ballot(9), accepted: accepted(ballot(9), nil)))
        #expect(CASPaxosAcceptor.handle(.accepted(key, ballot: ballot(1)), state: stored) == nil)
    }

    // Proves the promise floor covers only decisions that change nothing but the promise, to a ballot whose counter is at most the floor's; raises keep headroom and never lower it; a state is raised to the floor's ballot, which is above every covered ballot and below every higher counter; the floor round-trips and bad bytes are refused.
    @Test func promiseFloor() throws {
        let floor = CASPaxosPromiseFloor(counter: 10)
        let empty = CASPaxosAcceptorState()
        let covered = CASPaxosAcceptor.prepare(key, ballot: ballot(10, 99), state: empty)
        #expect(floor.covers(covered, previous: empty))
        #expect(!floor.covers(CASPaxosAcceptor.prepare(key, ballot: ballot(11, 1), state: empty), previous: empty))
        #expect(!CASPaxosPromiseFloor.none.covers(covered, previous: empty))
        // An accept changes the accepted value: never covered, whatever its ballot.
        let promised = CASPaxosAcceptorState(promised: ballot(2), accepted: nil)
        #expect(!floor.covers(CASPaxosAcceptor.accept(key, ballot: ballot(2), value: counter(1, 1), state: promised), previous: promised))
        // A rejection changes nothing.
        #expect(!floor.covers(CASPaxosAcceptor.prepare(key, ballot: ballot(1), state: promised), previous: promised))

        #expect(floor.raised(toCover: ballot(40)) == CASPaxosPromiseFloor(counter: 40 + CASPaxosPromiseFloor.headroom))
        #expect(CASPaxosPromiseFloor(counter: 1 << 40).raised(toCover: ballot(40)) == CASPaxosPromiseFloor(counter: 1 << 40))
        let top = Ballot(counter: CASPaxosLimits.ballotCounterMax - 1, proposer: 1)
        #expect(try #require(floor.raised(toCover: top).ballot).counter <= CASPaxosLimits.ballotCounterMax)

        let floorBallot = try #require(floor.ballot)
        #expect(floorBallot > ballot(10, .max) && floorBallot < ballot(11, 1))
        let holding = CASPaxosAcceptorState(promised: ballot(5), accepted: accepted(ballot(4), counter(1, 1)))
        #expect(holding.raisingPromise(to: floor) == CASPaxosAcceptorState(promised: floorBallot, accepted: accepted(ballot(4), counter(1, 1))))
        let above = CASPaxosAcceptorState(promised: ballot(12), accepted: nil)
        #expect(above.raisingPromise(to: floor) == above)
        #expect(empty.raisingPromise(to: .none) == empty)

        #expect(try CASPaxosPromiseFloor(decoding: floor.encode()) == floor)
        #expect(throws: DecodeError.self) { try CASPaxosPromiseFloor(decoding: [1, 2, 3]) }
        #expect(throws: DecodeError.self) { try CASPaxosPromiseFloor(decoding: [0xFF, 0, 0, 0, 0, 0, 0, 0]) }
    }
}

@Suite("CASPaxos proposer")
struct CASPaxosProposerTests {
    // Proves the happy path: prepare to all, accept of the change applied to the highest-ballot value after a majority, reply after a majority of accepts.
    @Test func appliesChangeToHighestAcceptedValue() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 10), replicas: replicas,
                                        ballot: ballot(7), timeout: timeout)
        let started = proposer.start()
        #expect(sends(started) == Dictionary(uniqueKeysWithValues: replicas.map { ($0, CASPaxosMessage.prepare(key, ballot: ballot(7))) }))
        #expect(started.contains(.startTimer(after: timeout)))
        #expect(proposer.receive(.promise(key, ballot: ballot(7), accepted: accepted(ballot(3), counter(1, 1))), from: replicas[0]).isEmpty)
        #expect(proposer.receive(.promise(key, ballot: ballot(7), accepted: accepted(ballot(3), counter(1, 1))), from: replicas[0]).isEmpty,
                "a duplicated promise does not count twice")
        let accepts = proposer.receive(.promise(key, ballot: ballot(7), accepted: accepted(ballot(5), counter(2, 4))), from: replicas[1])
        #expect(sends(accepts) == Dictionary(uniqueKeysWithValues: replicas.map { ($0, CASPaxosMessage.accept(key, ballot: ballot(7), value: counter(3, 5))) }))
        #expect(proposer.mayHaveTakenEffect)
        #expect(proposer.receive(.accepted(key, ballot: ballot(7)), from: replicas[2]).isEmpty)
        #expect(proposer.receive(.accepted(key, ballot: ballot(8)), from: replicas[0]).isEmpty, "another ballot's reply is ignored")
        #expect(replies(proposer.receive(.accepted(key, ballot: ballot(7)), from: replicas[0])) == [.applied(counter(3, 5))])
        #expect(proposer.isFinished)
        #expect(proposer.receive(.accepted(key, ballot: ballot(7)), from: replicas[1]).isEmpty)
    }

    // Proves a refused change still runs the accept phase with the value it found, and reports the refusal only once that is chosen.
    @Test func refusalReproposesCurrentValue() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 1), replicas: replicas,
                                        ballot: ballot(4), timeout: timeout)
        _ = proposer.start()
        _ = proposer.receive(.promise(key, ballot: ballot(4), accepted: accepted(ballot(2), counter(1, 1))), from: replicas[0])
        let accepts = proposer.receive(.promise(key, ballot: ballot(4), accepted: nil), from: replicas[2])
        #expect(Set(sends(accepts).values) == [.accept(key, ballot: ballot(4), value: counter(1, 1))])
        #expect(!proposer.mayHaveTakenEffect, "re-proposing the value found changes nothing")
        #expect(proposer.receive(.accepted(key, ballot: ballot(4)), from: replicas[0]).isEmpty)
        #expect(replies(proposer.receive(.accepted(key, ballot: ballot(4)), from: replicas[1]))
            == [.refused(.counterOutOfBounds(value: 1, delta: 1, min: 0, max: 1), current: counter(1, 1))])
    }

    // Proves rejections end the attempt with a conflict once a majority is impossible, carrying the highest ballot, and say whether an accept that changes the value was sent.
    @Test func conflicts() {
        var preparing = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(2), timeout: timeout)
        _ = preparing.start()
        #expect(preparing.receive(.prepareRejected(key, ballot: ballot(2), highest: ballot(6, 3)), from: replicas[0]).isEmpty)
        let conflict = replies(preparing.receive(.prepareRejected(key, ballot: ballot(2), highest: ballot(9, 2)), from: replicas[1]))
        #expect(conflict == [.conflict(higherBallot: ballot(9, 2), outcomeUnknown: false)])
        #expect(conflict.first?.isSafeToRetry == true)

        var accepting = CASPaxosProposer(key: key, change: .setAdd(member: "ann", cap: 5), replicas: replicas, ballot: ballot(2), timeout: timeout)
        _ = accepting.start()
        _ = accepting.receive(.promise(key, ballot: ballot(2), accepted: nil), from: replicas[0])
        _ = accepting.receive(.promise(key, ballot: ballot(2), accepted: nil), from: replicas[1])
        #expect(accepting.mayHaveTakenEffect)
        #expect(accepting.receive(.accepted(key, ballot: ballot(2)), from: replicas[0]).isEmpty)
        #expect(accepting.receive(.acceptRejected(key, ballot: ballot(2), highest: ballot(3, 2)), from: replicas[1]).isEmpty)
        let unknown = replies(accepting.receive(.acceptRejected(key, ballot: ballot(2), highest: ballot(5, 2)), from: replicas[2]))
        #expect(unknown == [.conflict(higherBallot: ballot(5, 2), outcomeUnknown: true)])
        #expect(unknown.first?.isSafeToRetry == false)
    }

    // Proves a timeout answers unavailable with the counts, unknown only after an accept that changes the value, and nothing after the answer.
    @Test func timeouts() {
        var preparing = CASPaxosProposer(key: key, change: .delete(precondition: .none), replicas: replicas, ballot: ballot(1), timeout: timeout)
        _ = preparing.start()
        _ = preparing.receive(.promise(key, ballot: ballot(1), accepted: nil), from: replicas[0])
        #expect(replies(preparing.timedOut()) == [.unavailable(have: 1, need: 2, outcomeUnknown: false)])
        #expect(preparing.timedOut().isEmpty)

        var accepting = CASPaxosProposer(key: key, change: .put(contentType: "a/b", data: [1], precondition: .none),
                                         replicas: replicas, ballot: ballot(1), timeout: timeout)
        _ = accepting.start()
        _ = accepting.receive(.promise(key, ballot: ballot(1), accepted: nil), from: replicas[0])
        _ = accepting.receive(.promise(key, ballot: ballot(1), accepted: nil), from: replicas[2])
        _ = accepting.receive(.accepted(key, ballot: ballot(1)), from: replicas[2])
        #expect(replies(accepting.timedOut()) == [.unavailable(have: 1, need: 2, outcomeUnknown: true)])
    }

    // Proves quorums are majorities of the home replicas: 3 of 5, and 1 of 1.
    @Test func majorities() {
        let five = (1...5).map { NodeID("n\($0)") }
        #expect(CASPaxosProposer(key: key, change: .read, replicas: five, ballot: ballot(1), timeout: timeout).quorum == 3)
        #expect(CASPaxosProposer(key: key, change: .read, replicas: [NodeID("n1")], ballot: ballot(1), timeout: timeout).quorum == 1)
        #expect(CASPaxosProposer(key: key, change: .read, replicas: Array(five.prefix(4)), ballot: ballot(1), timeout: timeout).quorum == 3)
    }

    // Proves a rejection of a duplicated prepare (naming the proposer's own ballot) neither counts against the attempt nor hides the promise that follows.
    @Test func duplicatedPrepareRejectionIsIgnored() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas, ballot: ballot(4), timeout: timeout)
        _ = proposer.start()
        for node in replicas {
            #expect(proposer.receive(.prepareRejected(key, ballot: ballot(4), highest: ballot(4)), from: node).isEmpty)
        }
        _ = proposer.receive(.promise(key, ballot: ballot(4), accepted: nil), from: replicas[0])
        #expect(sends(proposer.receive(.promise(key, ballot: ballot(4), accepted: nil), from: replicas[1])).count == 3)
        #expect(proposer.receive(.prepareRejected(key, ballot: ballot(4), highest: ballot(4)), from: replicas[2]).isEmpty)
        #expect(proposer.receive(.accepted(key, ballot: ballot(4)), from: replicas[0]).isEmpty)
        #expect(replies(proposer.receive(.accepted(key, ballot: ballot(4)), from: replicas[2])) == [.applied(counter(1, 1))])
    }

    // Proves a read skips the accept phase only when every promise reported the same accepted ballot (the value is chosen).
    @Test func readsOfAChosenValueNeedNoAcceptPhase() {
        var agreeing = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(9), timeout: timeout)
        _ = agreeing.start()
        let chosen = accepted(ballot(5), counter(2, 3))
        _ = agreeing.receive(.promise(key, ballot: ballot(9), accepted: chosen), from: replicas[0])
        #expect(agreeing.receive(.promise(key, ballot: ballot(9), accepted: chosen), from: replicas[1]) == [.reply(.applied(counter(2, 3)))])
        var differing = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(9), timeout: timeout)
        _ = differing.start()
        _ = differing.receive(.promise(key, ballot: ballot(9), accepted: chosen), from: replicas[0])
        let older = accepted(ballot(4), counter(1, 2))
        #expect(sends(differing.receive(.promise(key, ballot: ballot(9), accepted: older), from: replicas[1])).count == 3)
    }

    // Proves the proposer ignores replies from nodes that are not replicas and about other keys.
    @Test func ignoresStrangers() {
        var proposer = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas, ballot: ballot(1), timeout: timeout)
        _ = proposer.start()
        let other = ItemKey(table: "seats", key: [9], partition: PartitionID(rawValue: 3))
        #expect(proposer.receive(.promise(key, ballot: ballot(1), accepted: nil), from: NodeID("n9")).isEmpty)
        #expect(proposer.receive(.promise(other, ballot: ballot(1), accepted: nil), from: replicas[0]).isEmpty)
        _ = proposer.receive(.promise(key, ballot: ballot(1), accepted: nil), from: replicas[0])
        #expect(sends(proposer.receive(.promise(key, ballot: ballot(1), accepted: nil), from: replicas[1])).count == 3)
    }
}

@Suite("CASPaxos encoding")
struct CASPaxosEncodingTests {
    static let values: [LinearizableValue?] = [
        nil,
        LinearizableValue(version: 1, content: .bytes(contentType: "application/json", data: Array("{}".utf8))),
        LinearizableValue(version: 2, content: .bytes(contentType: "", data: [])),
        LinearizableValue(version: 3, content: .deleted),
        LinearizableValue(version: 4, content: .counter(-17)),
        LinearizableValue(version: CASPaxosLimits.versionMax, content: .counter(.min)),
        LinearizableValue(version: 5, content: .set([])),
        LinearizableValue(version: 6, content: .set(["ann", "bob", "zoë"])),
    ]

    static var messages: [CASPaxosMessage] {
        let high = Ballot(counter: CASPaxosLimits.ballotCounterMax, proposer: .max)
        return [
            .prepare(key, ballot: ballot(1)),
            .promise(key, ballot: ballot(3), accepted: nil),
            .accept(key, ballot: high, value: nil),
            .accepted(key, ballot: ballot(300, 7)),
            .prepareRejected(key, ballot: ballot(1), highest: high),
            .acceptRejected(key, ballot: ballot(1), highest: ballot(2)),
        ] + values.map { .promise(key, ballot: ballot(9), accepted: accepted(ballot(8, 2), $0)) }
            + values.map { .accept(key, ballot: ballot(9), value: $0) }
    }

    // Proves every message survives encode and decode, with a type number in 300...319.
    @Test func messagesRoundTrip() throws {
        var types: Set<UInt16> = []
        for message in Self.messages {
            let (type, body) = message.encode()
            #expect(CASPaxosMessage.typeRange.contains(type))
            types.insert(type)
            #expect(try CASPaxosMessage.decode(type: type, body: body) == message)
        }
        #expect(types == Set(300...305))
    }

    // Proves decoding refuses every truncation, trailing bytes, unknown types and kinds, and a promise whose accepted ballot is not below it.
    @Test func messagesRejectMalformedInput() {
        for message in Self.messages {
            let (type, body) = message.encode()
            for length in 0..<body.count {
                #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: type, body: Array(body.prefix(length))) }
            }
            #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: type, body: body + [0]) }
            #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: 306, body: body) }
            #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: 299, body: body) }
        }
        let forged = CASPaxosMessage.promise(key, ballot: ballot(3), accepted: accepted(ballot(3), nil)).encode()
        #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: forged.type, body: forged.body) }
        // Kind byte 9 in an accept's value: the body ends key, ballot, presence 1, version 1, kind.
        var accept = CASPaxosMessage.accept(key, ballot: ballot(1), value: LinearizableValue(version: 1, content: .deleted)).encode()
        accept.body[accept.body.count - 1] = 9
        #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: accept.type, body: accept.body) }
    }

    // Proves the acceptor state round-trips and every malformed variant is refused: truncated, trailing, unknown format or flags, unsorted set, version 0, accepted above promised.
    @Test func acceptorStateRoundTripAndRejects() throws {
        var states = [CASPaxosAcceptorState(), CASPaxosAcceptorState(promised: ballot(4), accepted: nil)]
        states += Self.values.map { CASPaxosAcceptorState(promised: ballot(9, 3), accepted: accepted(ballot(8, 2), $0)) }
        for state in states {
            let bytes = state.encode()
            #expect(try CASPaxosAcceptorState(decoding: bytes) == state)
            for length in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: Array(bytes.prefix(length))) }
            }
            #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: bytes + [0]) }
        }
        #expect(try CASPaxosAcceptorState(decoding: [1, 0]) == CASPaxosAcceptorState())
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [2, 0]) }
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 4]) }
        // Accepted without promised: flags 2, ballot 1.1, no value.
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 2, 1, 1, 0]) }
        // Accepted 2.1 above promised 1.1.
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 2, 1, 0]) }
        // Promised 1.1, accepted 1.1 with version 0, deleted.
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 1, 1, 1, 0, 2]) }
        #expect(try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 1, 1, 1, 1, 2]).accepted?.value?.content == .deleted)
        // A set ["b", "a"]: not ascending; and ["a", "a"]: a duplicate.
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 1, 1, 1, 1, 4, 2, 1, 98, 1, 97]) }
        #expect(throws: DecodeError.self) { try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 1, 1, 1, 1, 4, 2, 1, 97, 1, 97]) }
        #expect(try CASPaxosAcceptorState(decoding: [1, 3, 1, 1, 1, 1, 1, 1, 4, 2, 1, 97, 1, 98]).accepted?.value?.content == .set(["a", "b"]))
    }

    // Proves random bytes never crash the decoders (they throw or decode to something that re-encodes to the same bytes).
    @Test func randomBytesNeverTrap() {
        var random = SplitMix64(seed: 0xCA5)
        for _ in 0..<3_000 {
            let bytes = random.bytes(count: Int.random(in: 0...40, using: &random))
            if let state = try? CASPaxosAcceptorState(decoding: bytes) {
                #expect(state.encode() == bytes)
            }
            let type = UInt16.random(in: 300...306, using: &random)
            if let message = try? CASPaxosMessage.decode(type: type, body: bytes) {
                #expect(message.encode().body == bytes)
            }
        }
    }
}

@Suite("CASPaxos in one round trip")
struct CASPaxosOnePhaseTests {
    // Proves an accept carrying a next ballot stores the accepted value and the promise of the next ballot together.
    @Test func acceptPromisesTheNextBallot() {
        let promised = CASPaxosAcceptorState(promised: ballot(5), accepted: nil)
        let decision = CASPaxosAcceptor.accept(key, ballot: ballot(5), value: counter(1, 1), next: ballot(6), state: promised)
        #expect(decision.reply == .accepted(key, ballot: ballot(5)))
        #expect(decision.newState == CASPaxosAcceptorState(promised: ballot(6), accepted: accepted(ballot(5), counter(1, 1))))
        let stored = decision.newState!
        // Ballots below the promise are refused, also the prepare of another proposer between the two.
        #expect(CASPaxosAcceptor.prepare(key, ballot: ballot(6), state: stored).reply == .prepareRejected(key, ballot: ballot(6), highest: ballot(6)))
        #expect(CASPaxosAcceptor.accept(key, ballot: ballot(5, 2), value: nil, state: stored).reply
                == .acceptRejected(key, ballot: ballot(5, 2), highest: ballot(6)))
        // The same accept again is answered again: the acceptor did take it.
        #expect(CASPaxosAcceptor.accept(key, ballot: ballot(5), value: counter(1, 1), next: ballot(6), state: stored)
                == CASPaxosAcceptorDecision(newState: nil, reply: .accepted(key, ballot: ballot(5))))
        // The promised ballot's own accept is taken.
        let next = CASPaxosAcceptor.accept(key, ballot: ballot(6), value: counter(2, 2), next: ballot(7), state: stored)
        #expect(next.newState == CASPaxosAcceptorState(promised: ballot(7), accepted: accepted(ballot(6), counter(2, 2))))
    }

    // Proves the next ballot travels on the wire, and a next ballot not above the accept's is refused.
    @Test func theNextBallotIsEncoded() throws {
        let message = CASPaxosMessage.accept(key, ballot: ballot(5), value: counter(1, 1), next: ballot(6))
        let (type, body) = message.encode()
        #expect(type == 302)
        #expect(try CASPaxosMessage.decode(type: type, body: body) == message)
        let plain = CASPaxosMessage.accept(key, ballot: ballot(5), value: nil)
        #expect(try CASPaxosMessage.decode(type: 302, body: plain.encode().body) == plain)
        var writer = ByteWriter(capacity: 32)
        key.encode(into: &writer)
        ballot(5).encode(into: &writer)
        LinearizableValue.encodeOptional(nil, into: &writer)
        writer.writeUInt8(1)
        ballot(5).encode(into: &writer)
        #expect(throws: DecodeError.self) { try CASPaxosMessage.decode(type: 302, body: writer.bytes) }
    }

    // Proves a proposer asks for the next ballot's promise and reports it once a majority accepted; one started from that promise skips the prepare.
    @Test func aPromiseLetsTheNextChangeSkipThePrepare() {
        var first = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas,
                                     ballot: ballot(4), timeout: timeout, next: ballot(5))
        _ = first.start()
        _ = first.receive(.promise(key, ballot: ballot(4), accepted: nil), from: replicas[0])
        let accepts = first.receive(.promise(key, ballot: ballot(4), accepted: nil), from: replicas[1])
        #expect(Set(sends(accepts).values) == [.accept(key, ballot: ballot(4), value: counter(1, 1), next: ballot(5))])
        _ = first.receive(.accepted(key, ballot: ballot(4)), from: replicas[0])
        #expect(first.promiseOfNext == nil, "one accept is not a majority")
        #expect(replies(first.receive(.accepted(key, ballot: ballot(4)), from: replicas[2])) == [.applied(counter(1, 1))])
        let promise = try! #require(first.promiseOfNext)
        #expect(promise == CASPaxosPromise(ballot: ballot(5), value: counter(1, 1)))

        var second = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas,
                                      promise: promise, timeout: timeout, next: ballot(6))
        let started = second.start()
        #expect(Set(sends(started).values) == [.accept(key, ballot: ballot(5), value: counter(2, 2), next: ballot(6))])
        #expect(started.contains(.startTimer(after: timeout)))
        #expect(second.found == .some(counter(1, 1)))
        _ = second.receive(.accepted(key, ballot: ballot(5)), from: replicas[1])
        #expect(replies(second.receive(.accepted(key, ballot: ballot(5)), from: replicas[2])) == [.applied(counter(2, 2))])
        #expect(second.promiseOfNext == CASPaxosPromise(ballot: ballot(6), value: counter(2, 2)))
    }

    // Proves a read that answers after its prepare (the promises agree) leaves the promise of its own ballot, and a change from it accepts under that ballot; a read that re-proposes leaves the promise of next instead.
    @Test func aReadThatOnlyPreparedLeavesItsOwnBallotsPromise() {
        var read = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(4), timeout: timeout, next: ballot(5))
        _ = read.start()
        let agreed = CASPaxosAcceptedValue(ballot: ballot(2), value: counter(3, 7))
        _ = read.receive(.promise(key, ballot: ballot(4), accepted: agreed), from: replicas[0])
        #expect(read.promiseOfNext == nil, "one promise is not a majority")
        #expect(replies(read.receive(.promise(key, ballot: ballot(4), accepted: agreed), from: replicas[1])) == [.applied(counter(3, 7))])
        let promise = try! #require(read.promiseOfNext)
        #expect(promise == CASPaxosPromise(ballot: ballot(4), value: counter(3, 7)))

        var change = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas,
                                      promise: promise, timeout: timeout, next: ballot(6))
        #expect(Set(sends(change.start()).values) == [.accept(key, ballot: ballot(4), value: counter(4, 8), next: ballot(6))])

        var split = CASPaxosProposer(key: key, change: .read, replicas: replicas, ballot: ballot(7), timeout: timeout, next: ballot(8))
        _ = split.start()
        _ = split.receive(.promise(key, ballot: ballot(7), accepted: agreed), from: replicas[0])
        let accepts = split.receive(.promise(key, ballot: ballot(7), accepted: nil), from: replicas[1])
        #expect(Set(sends(accepts).values) == [.accept(key, ballot: ballot(7), value: counter(3, 7), next: ballot(8))])
        #expect(split.promiseOfNext == nil, "nothing is promised until a majority accepts")
        _ = split.receive(.accepted(key, ballot: ballot(7)), from: replicas[0])
        _ = split.receive(.accepted(key, ballot: ballot(7)), from: replicas[1])
        #expect(split.promiseOfNext == CASPaxosPromise(ballot: ballot(8), value: counter(3, 7)))
    }

    // Proves a read from a promise still runs the accept phase, and another proposer's higher promise ends it as a conflict.
    @Test func aStalePromiseEndsInAConflict() {
        var read = CASPaxosProposer(key: key, change: .read, replicas: replicas, promise: CASPaxosPromise(ballot: ballot(5), value: counter(1, 1)),
                                    timeout: timeout)
        let started = read.start()
        #expect(Set(sends(started).values) == [.accept(key, ballot: ballot(5), value: counter(1, 1))])
        _ = read.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[0])
        #expect(replies(read.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[1]))
                == [.conflict(higherBallot: ballot(8, 2), outcomeUnknown: false)])
        #expect(read.promiseOfNext == nil)
    }
}

@Suite("CASPaxos refusals of a whole accept")
struct CASPaxosAllRefusedTests {
    // Proves a change refused by every replica (from a promise) is a conflict that may be retried, not an unknown outcome.
    @Test func aChangeEveryReplicaRefusedWasNotApplied() {
        var change = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas,
                                      promise: CASPaxosPromise(ballot: ballot(5), value: counter(1, 1)), timeout: timeout)
        _ = change.start()
        #expect(change.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[0]).isEmpty)
        #expect(change.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(9, 2)), from: replicas[1]).isEmpty,
                "it waits for the last replica: had it accepted, the outcome would be unknown")
        let result = replies(change.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[2]))
        #expect(result == [.conflict(higherBallot: ballot(9, 2), outcomeUnknown: false)])
        #expect(result[0].isSafeToRetry)
    }

    // Proves that when one replica accepted, the same refusals leave the outcome unknown.
    @Test func oneAcceptLeavesTheOutcomeUnknown() {
        var change = CASPaxosProposer(key: key, change: .counterAdd(delta: 1, min: 0, max: 9), replicas: replicas,
                                      promise: CASPaxosPromise(ballot: ballot(5), value: counter(1, 1)), timeout: timeout)
        _ = change.start()
        _ = change.receive(.accepted(key, ballot: ballot(5)), from: replicas[0])
        _ = change.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[1])
        let result = replies(change.receive(.acceptRejected(key, ballot: ballot(5), highest: ballot(8, 2)), from: replicas[2]))
        #expect(result == [.conflict(higherBallot: ballot(8, 2), outcomeUnknown: true)])
    }
}
