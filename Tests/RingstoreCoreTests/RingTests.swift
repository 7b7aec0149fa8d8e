import Testing
@testable import RingstoreCore

/// Nodes "n1" … "n`count`".
private func nodes(_ count: Int) -> [NodeID] {
    (1...count).map { NodeID("n\($0)") }
}

/// Partitions per node, every node of `expected` listed even when it owns none.
private func ownershipCounts(_ ring: Ring, expected: [NodeID]) -> [NodeID: Int] {
    var counts = Dictionary(expected.map { ($0, 0) }, uniquingKeysWith: { first, _ in first })
    for owner in ring.owners {
        counts[owner, default: 0] += 1
    }
    return counts
}

/// Whether each node of `members` owns floor(Q/S) or ceil(Q/S) partitions and no
/// other node owns any.
private func isBalanced(_ ring: Ring, members: [NodeID]) -> Bool {
    let partitionCount = ring.partitioning.partitionCount
    let lower = partitionCount / members.count
    let upper = lower + (partitionCount % members.count == 0 ? 0 : 1)
    let counts = ownershipCounts(ring, expected: members)
    return counts.count == members.count && counts.values.allSatisfy { $0 >= lower && $0 <= upper }
}

/// The positions, starting at `partition`, that a walk visits to collect `count`
/// distinct owners.
private func walkSpan(_ ring: Ring, from partition: Int, count: Int) -> [Int] {
    var seen = Set<NodeID>()
    var span: [Int] = []
    var position = partition
    while seen.count < min(count, ring.members.count) {
        seen.insert(ring.owners[position])
        span.append(position)
        position = (position + 1) % ring.owners.count
    }
    return span
}

@Suite struct RingTests {
    // Proves node ids order and print by their names.
    @Test func nodeIDsOrderByName() {
        #expect(NodeID("n1") < NodeID("n2"))
        #expect([NodeID("b"), NodeID("a")].sorted() == [NodeID("a"), NodeID("b")])
        #expect(NodeID("n7").description == "n7")
    }

    // Proves an ownership table must name exactly one owner per partition.
    @Test func ownerTableMustCoverEveryPartition() throws {
        let partitioning = try Partitioning(partitionCount: 8)
        #expect(throws: RingError.ownerCountMismatch(owners: 3, partitions: 8)) {
            try Ring(partitioning: partitioning, owners: nodes(3), epoch: 1)
        }
        let owners = (0..<8).map { NodeID("n\($0 % 2)") }
        let ring = try Ring(partitioning: partitioning, owners: owners, epoch: 9)
        #expect(ring.owners == owners)
        #expect(ring.members == [NodeID("n0"), NodeID("n1")])
        #expect(ring.epoch == 9)
    }

    // Proves an even ring is a plain stripe of the sorted members, starting at epoch 1.
    @Test func evenRingIsAStripe() throws {
        let ring = Ring.initial(members: [NodeID("c"), NodeID("a"), NodeID("b"), NodeID("d")],
                                partitioning: try Partitioning(partitionCount: 8))
        #expect(ring.owners.map(\.rawValue) == ["a", "b", "c", "d", "a", "b", "c", "d"])
        #expect(ring.epoch == 1)
        #expect(ring.owner(of: PartitionID(rawValue: 6)) == NodeID("c"))
        #expect(ring.partitions(ownedBy: NodeID("b")) == [PartitionID(rawValue: 1), PartitionID(rawValue: 5)])
        #expect(ring.partitions(ownedBy: NodeID("z")).isEmpty)
        #expect(ring.preferenceList(for: PartitionID(rawValue: 7), count: 3).map(\.rawValue) == ["d", "a", "b"])
    }

    // Proves preference lists hold min(count, S) distinct nodes, start at the owner,
    // and that a longer list extends a shorter one (fallbacks follow home replicas).
    @Test func preferenceListsNeverRepeatANode() throws {
        var generator = SplitMix64(seed: 0x5eed_0001)
        for round in 0..<60 {
            let partitionCount = [8, 64, 256].randomElement(using: &generator)!
            let memberCount = Int.random(in: 1...12, using: &generator)
            var ring = Ring.initial(members: nodes(memberCount), partitioning: try Partitioning(partitionCount: partitionCount))
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                ring = ring.adding(NodeID("extra\(Int.random(in: 0...99, using: &generator))"))
            }
            for partition in ring.partitioning.allPartitions {
                let count = Int.random(in: 0...(ring.members.count + 3), using: &generator)
                let list = ring.preferenceList(for: partition, count: count)
                let longer = ring.preferenceList(for: partition, count: count + 1)
                #expect(list.count == min(count, ring.members.count), "round \(round), seed 0x5eed_0001")
                #expect(Set(list).count == list.count, "round \(round): \(list) repeats a node")
                #expect(list.isEmpty || list.first == ring.owner(of: partition))
                #expect(Array(longer.prefix(list.count)) == list)
            }
        }
    }

    // Proves initial rings give every node Q/S or Q/S + 1 partitions.
    @Test(arguments: [8, 64, 256, 1024])
    func initialRingsAreBalanced(partitionCount: Int) throws {
        let partitioning = try Partitioning(partitionCount: partitionCount)
        for memberCount in 1...16 {
            let members = nodes(memberCount)
            let ring = Ring.initial(members: members, partitioning: partitioning)
            #expect(isBalanced(ring, members: members), "Q \(partitionCount), S \(memberCount)")
            #expect(ring.members.count == min(memberCount, partitionCount))
            #expect(ring.owners.count == partitionCount)
        }
    }

    // Proves initial rings put targetN distinct nodes on any targetN consecutive
    // partitions whenever the counts allow it (ceil(Q/S) × targetN ≤ Q). Otherwise a node
    // owning c partitions has c gaps summing to Q and must break spacing in at least
    // c × targetN − Q windows; the total stays within the sum of those shortfalls.
    @Test(arguments: [2, 3, 4, 5])
    func initialRingsKeepSpacing(targetN: Int) throws {
        for partitionCount in [8, 64, 256, 1024] {
            let partitioning = try Partitioning(partitionCount: partitionCount)
            for memberCount in targetN...16 {
                let ring = Ring.initial(members: nodes(memberCount), partitioning: partitioning, targetN: targetN)
                let violations = ring.spacingViolations(targetN: targetN)
                let shortfall = ownershipCounts(ring, expected: []).values.reduce(0) {
                    $0 + max(0, $1 * targetN - partitionCount)
                }
                let context = "Q \(partitionCount), S \(memberCount), N \(targetN): \(violations) violations"
                #expect(violations <= shortfall, "\(context), shortfall \(shortfall)")
            }
        }
    }

    // Proves the initial ring depends only on the set of members, not their order or repeats.
    @Test func initialRingIgnoresMemberOrder() throws {
        var generator = SplitMix64(seed: 0x5eed_0002)
        for partitionCount in [8, 64, 256] {
            let partitioning = try Partitioning(partitionCount: partitionCount)
            for memberCount in 1...12 {
                let members = nodes(memberCount)
                let reference = Ring.initial(members: members, partitioning: partitioning)
                let shuffled = (members + members.prefix(2)).shuffled(using: &generator)
                #expect(Ring.initial(members: shuffled, partitioning: partitioning) == reference)
            }
        }
    }

    // Proves a join moves floor(Q/(S+1)) partitions, all to the new node, leaves the
    // ring balanced and, for S ≥ 3, without spacing violations.
    @Test(arguments: [64, 256, 1024])
    func joinMovesOnlyWhatTheNewNodeNeeds(partitionCount: Int) throws {
        let partitioning = try Partitioning(partitionCount: partitionCount)
        for memberCount in 1...16 {
            let ring = Ring.initial(members: nodes(memberCount), partitioning: partitioning)
            let newcomer = NodeID("new")
            let joined = ring.adding(newcomer)
            let transfers = ring.transfers(to: joined)
            let context = "Q \(partitionCount), S \(memberCount)"
            #expect(transfers.count == partitionCount / (memberCount + 1), "\(context)")
            #expect(transfers.count <= (partitionCount + memberCount) / (memberCount + 1), "\(context)")
            #expect(transfers.allSatisfy { $0.to == newcomer }, "\(context)")
            #expect(isBalanced(joined, members: nodes(memberCount) + [newcomer]), "\(context)")
            #expect(joined.epoch == ring.epoch + 1)
            if memberCount >= 3 {
                #expect(joined.spacingViolations(targetN: 3) == 0, "\(context)")
            }
        }
    }

    // Proves a leave moves exactly the leaver's partitions, each to another member,
    // and leaves the ring balanced.
    @Test(arguments: [64, 256, 1024])
    func leaveMovesOnlyTheLeaversPartitions(partitionCount: Int) throws {
        let partitioning = try Partitioning(partitionCount: partitionCount)
        for memberCount in 2...16 {
            let ring = Ring.initial(members: nodes(memberCount), partitioning: partitioning)
            let leaver = NodeID("n\(memberCount / 2 + 1)")
            let left = ring.removing(leaver)
            let transfers = ring.transfers(to: left)
            let context = "Q \(partitionCount), S \(memberCount)"
            #expect(transfers.map { $0.0 } == ring.partitions(ownedBy: leaver), "\(context)")
            #expect(transfers.allSatisfy { $0.from == leaver && $0.to != leaver }, "\(context)")
            #expect(isBalanced(left, members: nodes(memberCount).filter { $0 != leaver }), "\(context)")
            #expect(!left.members.contains(leaver))
            #expect(left.epoch == ring.epoch + 1)
        }
    }

    // Proves an extra transfer budget is never exceeded, keeps balance, still moves every
    // leaver partition, and repairs spacing at least as well as the minimal plan.
    @Test(arguments: [256, 1024])
    func extraTransfersRepairSpacingWithinBudget(partitionCount: Int) throws {
        let partitioning = try Partitioning(partitionCount: partitionCount)
        for memberCount in 5...16 {
            let ring = Ring.initial(members: nodes(memberCount), partitioning: partitioning)
            let leaver = NodeID("n2")
            let minimal = ring.removing(leaver)
            let budget = ring.transfers(to: minimal).count / 4
            let repaired = ring.removing(leaver, extraTransfersMax: budget)
            let context = "Q \(partitionCount), S \(memberCount), budget \(budget)"
            #expect(ring.transfers(to: repaired).count <= ring.transfers(to: minimal).count + budget, "\(context)")
            #expect(repaired.partitions(ownedBy: leaver).isEmpty, "\(context)")
            #expect(isBalanced(repaired, members: nodes(memberCount).filter { $0 != leaver }), "\(context)")
            #expect(repaired.spacingViolations(targetN: 3) <= minimal.spacingViolations(targetN: 3), "\(context)")
        }
        let sixteen = Ring.initial(members: nodes(16), partitioning: partitioning)
        #expect(sixteen.removing(NodeID("n2"), extraTransfersMax: partitionCount / 64).spacingViolations(targetN: 3) <= 3)
    }

    // Proves repeated random joins and leaves keep every node within one of Q/S, move
    // joins' partitions only to the joiner and leaves' only from the leaver.
    @Test(arguments: [64, 256])
    func randomChurnKeepsBalance(partitionCount: Int) throws {
        let seed: UInt64 = 0x5eed_0003
        var generator = SplitMix64(seed: seed)
        var ring = Ring.initial(members: nodes(4), partitioning: try Partitioning(partitionCount: partitionCount))
        var nextName = 5
        for step in 0..<150 {
            let joins = ring.members.count < 2 || (ring.members.count < 20 && Bool.random(using: &generator))
            let extra = Int.random(in: 0...1, using: &generator) * 8
            let next: Ring
            if joins {
                let newcomer = NodeID("n\(nextName)")
                nextName += 1
                next = ring.adding(newcomer, extraTransfersMax: extra)
                #expect(extra > 0 || ring.transfers(to: next).allSatisfy { $0.to == newcomer }, "seed \(seed) step \(step)")
            } else {
                let leaver = ring.members.randomElement(using: &generator)!
                next = ring.removing(leaver, extraTransfersMax: extra)
                #expect(extra > 0 || ring.transfers(to: next).allSatisfy { $0.from == leaver }, "seed \(seed) step \(step)")
                #expect(next.partitions(ownedBy: leaver).isEmpty)
            }
            #expect(isBalanced(next, members: next.members), "seed \(seed) step \(step)")
            #expect(next.epoch == ring.epoch + 1)
            ring = next
        }
    }

    // Proves a key's preference list survives a join wherever no partition its walk
    // crosses changed owner, and otherwise only gains the new node.
    @Test func preferenceListsSurviveJoinsWhereOwnershipHolds() throws {
        var generator = SplitMix64(seed: 0x5eed_0004)
        let partitioning = try Partitioning(partitionCount: 256)
        for memberCount in [3, 5, 8] {
            let ring = Ring.initial(members: nodes(memberCount), partitioning: partitioning)
            let newcomer = NodeID("new")
            let joined = ring.adding(newcomer)
            let moved = Set(ring.transfers(to: joined).map { Int($0.0.rawValue) })
            for _ in 0..<500 {
                let key = generator.bytes(count: 12)
                let partition = partitioning.partition(table: "default", key: key)
                let before = ring.preferenceList(for: partition, count: 5)
                let after = joined.preferenceList(for: partition, count: 5)
                let span = walkSpan(ring, from: Int(partition.rawValue), count: 5)
                if moved.isDisjoint(with: span) && after.count == before.count {
                    #expect(after == before, "key \(hexString(key)), S \(memberCount)")
                }
                let homeBefore = Set(before.prefix(3))
                #expect(after.prefix(3).allSatisfy { homeBefore.contains($0) || $0 == newcomer })
            }
        }
    }

    // Proves transfers(to:) lists exactly the partitions whose owner differs, with both owners.
    @Test func transfersListExactlyTheDifferences() throws {
        let partitioning = try Partitioning(partitionCount: 64)
        let ring = Ring.initial(members: nodes(5), partitioning: partitioning)
        #expect(ring.transfers(to: ring).isEmpty)
        let other = ring.adding(NodeID("n6")).removing(NodeID("n1"))
        let transfers = ring.transfers(to: other)
        let expected = (0..<64).filter { ring.owners[$0] != other.owners[$0] }
        #expect(transfers.map { Int($0.0.rawValue) } == expected)
        for transfer in transfers {
            #expect(transfer.from == ring.owner(of: transfer.0))
            #expect(transfer.to == other.owner(of: transfer.0))
        }
    }

    // Proves joining a member or removing a stranger changes nothing, and that a ring
    // with as many members as partitions has nothing to give a newcomer.
    @Test func redundantChangesAreNoOps() throws {
        let small = Ring.initial(members: nodes(8), partitioning: try Partitioning(partitionCount: 8))
        #expect(small.adding(NodeID("n3")) == small)
        #expect(small.removing(NodeID("stranger")) == small)
        let crowded = small.adding(NodeID("n9"))
        #expect(crowded.owners == small.owners)
        #expect(crowded.epoch == small.epoch + 1)
        #expect(!crowded.members.contains(NodeID("n9")))
    }
}
