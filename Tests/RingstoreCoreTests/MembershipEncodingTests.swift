@testable import RingstoreCore
import Testing

/// A configuration in the middle of a ring change: five nodes, n5 joining into the
/// pending ring, n2 leaving it, some transfers done.
private func configurationInTransition() -> ClusterConfiguration {
    let partitioning = try! Partitioning(partitionCount: 32)
    let ids = (1...5).map { NodeID("n\($0)") }
    let ring = Ring.initial(members: Array(ids.prefix(4)), partitioning: partitioning)
    var pending = ring.adding(ids[4]).removing(ids[1])
    pending.epoch = ring.epoch + 1
    let members = ids.map { id in
        MemberInfo(id: id, rpcHost: "host-\(id)", rpcPort: 7000, httpHost: "host-\(id)", httpPort: 8080,
                   status: id == ids[4] ? .joining : id == ids[1] ? .leaving : .member)
    }
    let required = ClusterConfiguration.requiredTransfers(from: ring, to: pending, span: 3)
    return ClusterConfiguration(
        term: 4, epoch: 17, ring: ring, members: members, tables: [TableSpec(name: "users", n: 3, r: 2, w: 2)],
        primary: "rs-b", pendingRing: pending, transferSpan: 3, transfersDone: Set(required.prefix(5)))
}

/// Decoding `bytes` must fail, for a reason that mentions `because` when given.
private func expectRefused(
    _ bytes: [UInt8], _ what: String, because: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        _ = try ClusterConfiguration.decode(bytes)
        Issue.record("\(what) was accepted", sourceLocation: sourceLocation)
    } catch {
        if let because {
            #expect(error.reason.contains(because), "\(what) was refused for another reason: \(error.reason)",
                    sourceLocation: sourceLocation)
        }
    }
}

@Suite("Membership encoding")
struct MembershipEncodingTests {
    // Proves that a configuration with a pending ring, a transfer span, done transfers and leaving and joining members survives encoding unchanged, and so does one without a ring change.
    @Test func configurationInTransitionRoundTrips() throws {
        let configuration = configurationInTransition()
        #expect(try ClusterConfiguration.decode(configuration.encode()) == configuration)
        var settled = configuration
        settled.pendingRing = nil
        settled.transferSpan = 0
        settled.transfersDone = []
        settled.members = settled.members.map { $0.with(status: $0.id == NodeID("n5") ? .joining : .member) }
        #expect(try ClusterConfiguration.decode(settled.encode()) == settled)
        let state = RingServerPersistentState(configuration: configuration, isCommitted: false, term: 6)
        #expect(try RingServerPersistentState.decode(state.encode()) == state)
    }

    // Proves that the encoding does not depend on the order a set happens to iterate in: equal configurations encode to equal bytes.
    @Test func encodingIsCanonical() {
        let configuration = configurationInTransition()
        var rebuilt = configuration
        rebuilt.transfersDone = Set(configuration.transfersDone.sorted().reversed())
        #expect(rebuilt.encode() == configuration.encode())
    }

    // Proves that every truncation and any trailing byte of a valid encoding is refused.
    @Test func truncatedOrTrailingBytesAreRefused() {
        let bytes = configurationInTransition().encode()
        for length in 0..<bytes.count {
            expectRefused(Array(bytes.prefix(length)), "a prefix of \(length) of \(bytes.count) bytes")
        }
        expectRefused(bytes + [0], "a trailing byte")
    }

    // Proves that decoding refuses ring changes that no ring server writes: a span outside 1...replicasMax, repeated or unsorted transfers, a transfer the rings do not require, a pending ring that does not advance the epoch or changes the partition count, and statuses that contradict the rings.
    @Test func malformedTransitionsAreRefused() {
        let base = configurationInTransition()
        let pending = base.pendingRing!
        let ring = base.ring!

        var badSpan = base
        badSpan.transferSpan = Limits.replicasMax + 1
        badSpan.transfersDone = []
        expectRefused(badSpan.encode(), "a span above replicasMax", because: "transfer span")

        var notRequired = base
        let stray = pending.members.flatMap { node in
            pending.partitioning.allPartitions.map { Transfer(partition: $0, to: node) }
        }.first { !base.requires($0) }!
        notRequired.transfersDone.insert(stray)
        expectRefused(notRequired.encode(), "a done transfer the rings do not require", because: "not one the pending ring requires")

        var staleEpoch = base
        staleEpoch.pendingRing?.epoch = ring.epoch
        expectRefused(staleEpoch.encode(), "a pending ring at the current epoch", because: "is not above the current")

        var otherPartitioning = base
        otherPartitioning.pendingRing = Ring.initial(members: pending.members, partitioning: try! Partitioning(partitionCount: 64))
        otherPartitioning.pendingRing?.epoch = ring.epoch + 1
        otherPartitioning.transfersDone = []
        expectRefused(otherPartitioning.encode(), "a pending ring of another partition count", because: "partitions, not")

        var leavingButKept = base
        leavingButKept.members[3].status = .leaving
        expectRefused(leavingButKept.encode(), "a leaving node that the pending ring keeps", because: "has status leaving")

        var joiningOwner = base
        joiningOwner.members[0].status = .joining
        expectRefused(joiningOwner.encode(), "a ring owner marked joining", because: "has status joining")

        var pendingWithoutRing = base
        pendingWithoutRing.ring = nil
        pendingWithoutRing.members = pendingWithoutRing.members.map { $0.with(status: .joining) }
        pendingWithoutRing.transfersDone = []
        expectRefused(pendingWithoutRing.encode(), "a pending ring before the ring formed", because: "without a current ring")
    }

    // Proves that done transfers must be listed sorted and once: a repeated or out-of-order entry is refused even though a set would absorb it, and a node index beyond the pending ring's owners is refused.
    @Test func doneTransfersMustBeSortedAndDistinct() throws {
        let configuration = configurationInTransition()
        let pending = configuration.pendingRing!
        let done = configuration.transfersDone.sorted()
        func section(_ entries: [(partition: UInt64, index: UInt64)]) -> [UInt8] {
            var writer = ByteWriter()
            writer.writeUInt8(1)
            ClusterConfiguration.encode(pending, into: &writer)
            writer.writeVarint(3)
            writer.writeVarint(UInt64(entries.count))
            for entry in entries {
                writer.writeVarint(entry.partition)
                writer.writeVarint(entry.index)
            }
            return writer.bytes
        }
        func entry(_ transfer: Transfer) -> (partition: UInt64, index: UInt64) {
            (UInt64(transfer.partition.rawValue), UInt64(pending.members.firstIndex(of: transfer.to)!))
        }
        var reader = ByteReader(section(done.map(entry)))
        let decoded = try ClusterConfiguration.decodeTransition(&reader)
        #expect(decoded?.2 == configuration.transfersDone)
        let malformed: [(entries: [(partition: UInt64, index: UInt64)], what: String)] = [
            ([entry(done[0]), entry(done[0])], "a repeated transfer"),
            ([entry(done[1]), entry(done[0])], "transfers out of order"),
            ([(0, UInt64(pending.members.count))], "a node index beyond the owners"),
        ]
        for (entries, what) in malformed {
            #expect(throws: DecodeError.self, "\(what) was accepted") {
                var reader = ByteReader(section(entries))
                _ = try ClusterConfiguration.decodeTransition(&reader)
            }
        }
    }

    // Proves that the node messages round-trip, including a vote from a node without a configuration and a transfer report, and that malformed ones are refused.
    @Test func nodeMessagesRoundTripAndRefuseMalformed() throws {
        let messages: [NodeToRingServerMessage] = [
            .transferDone(partition: PartitionID(rawValue: 31), pendingRingEpoch: 9),
            .voteGranted(term: 6, configuration: nil),
            .voteGranted(term: 6, configuration: configurationInTransition()),
            .voteRefused(term: 6, promisedTerm: 8, reason: .primaryAlive),
        ]
        for message in messages {
            let (type, body) = message.encode()
            #expect(try NodeToRingServerMessage.decode(type: type, body: body) == message)
            #expect(throws: DecodeError.self) { try NodeToRingServerMessage.decode(type: type, body: body + [0]) }
        }
        let (transferType, _) = NodeToRingServerMessage.transferDone(partition: PartitionID(rawValue: 0), pendingRingEpoch: 1).encode()
        #expect(transferType == 226)
        var tooLarge = ByteWriter()
        tooLarge.writeVarint(UInt64(Limits.partitionCountMax))
        tooLarge.writeVarint(1)
        #expect(throws: DecodeError.self) { try NodeToRingServerMessage.decode(type: 226, body: tooLarge.bytes) }
        #expect(throws: DecodeError.self) { try NodeToRingServerMessage.decode(type: 224, body: [6, 2]) }
        #expect(throws: DecodeError.self) { try NodeToRingServerMessage.decode(type: 227, body: []) }
    }

    // Proves that with a span of 1 the required transfers are exactly the partitions whose owner changes, that an unchanged ring needs none, and that a wider span adds every node that enters a preference list and nothing else.
    @Test func requiredTransfersFollowPreferenceLists() {
        let partitioning = try! Partitioning(partitionCount: 64)
        let ids = (1...6).map { NodeID("n\($0)") }
        let ring = Ring.initial(members: Array(ids.prefix(5)), partitioning: partitioning)
        for next in [ring.adding(ids[5]), ring.removing(ids[2])] {
            let ownerMoves = ring.transfers(to: next).map { Transfer(partition: $0.0, to: $0.to) }
            #expect(ClusterConfiguration.requiredTransfers(from: ring, to: next, span: 1) == ownerMoves)
            let wide = ClusterConfiguration.requiredTransfers(from: ring, to: next, span: 3)
            #expect(wide == wide.sorted() && Set(wide).count == wide.count)
            for partition in partitioning.allPartitions {
                let entering = Set(next.preferenceList(for: partition, count: 3))
                    .subtracting(ring.preferenceList(for: partition, count: 3))
                #expect(Set(wide.filter { $0.partition == partition }.map(\.to)) == entering)
            }
        }
        #expect(ClusterConfiguration.requiredTransfers(from: ring, to: ring, span: 3).isEmpty)
    }
}
