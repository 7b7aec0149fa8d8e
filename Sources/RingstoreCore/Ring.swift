/// A storage node's stable name, such as "n1", as rings and preference lists show it.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name itself.
    public var rawValue: String

    /// Wraps a node name.
    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    /// Orders nodes by name, so that rings built from the same set of nodes agree.
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The node's name.
    public var description: String { rawValue }
}

/// Why an ownership table was refused.
public enum RingError: Error, Equatable, Sendable {
    /// The table names `owners` owners for a ring of `partitions` partitions.
    case ownerCountMismatch(owners: Int, partitions: Int)
}

/// Which node owns each of the Q partitions: Dynamo's strategy 3, as in Riak's claim
/// (DESIGN §4).
///
/// Every node owns Q/S or Q/S + 1 partitions (S members), and owners are laid out so
/// that, as far as the numbers allow, any `targetN` consecutive partitions belong to
/// `targetN` different nodes; a partition's preference list then starts with its N
/// home replicas on N distinct nodes. Membership changes move whole partitions, as
/// few as balance requires. A ring is a value: the ring server computes the next one
/// and ships it, nodes and clients only read it.
public struct Ring: Hashable, Sendable {
    /// How keys map to partitions; fixed for the life of a cluster.
    public let partitioning: Partitioning
    /// The owner of each partition; index = partition number.
    public private(set) var owners: [NodeID]
    /// Advances with every membership change. Nodes MUST ignore a ring whose epoch is
    /// lower than the one they hold (DESIGN §8).
    public var epoch: UInt64
    /// The nodes that own at least one partition, sorted, without repeats.
    public private(set) var members: [NodeID]

    /// Wraps an ownership table received from elsewhere (the ring server, a file).
    ///
    /// Throws `.ownerCountMismatch` unless there is exactly one owner per partition.
    public init(partitioning: Partitioning, owners: [NodeID], epoch: UInt64) throws(RingError) {
        guard owners.count == partitioning.partitionCount else {
            throw .ownerCountMismatch(owners: owners.count, partitions: partitioning.partitionCount)
        }
        self.init(checkedPartitioning: partitioning, owners: owners, epoch: epoch)
    }

    private init(checkedPartitioning partitioning: Partitioning, owners: [NodeID], epoch: UInt64) {
        precondition(owners.count == partitioning.partitionCount, "one owner per partition")
        self.partitioning = partitioning
        self.owners = owners
        self.epoch = epoch
        self.members = Array(Set(owners)).sorted()
    }

    /// The node that owns `partition`.
    public func owner(of partition: PartitionID) -> NodeID {
        owners[index(of: partition)]
    }

    /// The partitions `node` owns, in ring order; empty for a node outside the ring.
    public func partitions(ownedBy node: NodeID) -> [PartitionID] {
        owners.indices.filter { owners[$0] == node }.map { PartitionID(rawValue: UInt32($0)) }
    }

    /// The nodes responsible for `partition`, in order: its owner, then the next
    /// distinct owners walking clockwise, until `count` nodes or every member is listed.
    ///
    /// No node appears twice. The first N entries are a key's home replicas; the rest
    /// are its fallbacks for sloppy quorums, in the order they are tried.
    public func preferenceList(for partition: PartitionID, count: Int) -> [NodeID] {
        precondition(count >= 0, "a preference list cannot have \(count) entries")
        let wanted = min(count, members.count)
        var list: [NodeID] = []
        list.reserveCapacity(wanted)
        var position = index(of: partition)
        var steps = 0
        while list.count < wanted {
            let node = owners[position]
            if !list.contains(node) {
                list.append(node)
            }
            position = (position + 1) % owners.count
            steps += 1
            assert(steps <= owners.count, "one lap of the ring lists every member")
        }
        return list
    }

    /// The partitions whose owner differs in `other`, with the owner here (`from`) and
    /// there (`to`), in ring order: what must stream before `other` takes effect.
    public func transfers(to other: Ring) -> [(PartitionID, from: NodeID, to: NodeID)] {
        precondition(other.partitioning == partitioning, "rings of different partitionings")
        var moves: [(PartitionID, from: NodeID, to: NodeID)] = []
        for position in owners.indices where owners[position] != other.owners[position] {
            moves.append((PartitionID(rawValue: UInt32(position)), from: owners[position], to: other.owners[position]))
        }
        return moves
    }

    /// How many partitions p have a repeated owner among p, p + 1, …, p + targetN − 1
    /// (clockwise, wrapping): partitions whose N home replicas reach past N positions.
    ///
    /// Zero is the goal; it is unavoidable when fewer than `targetN` nodes exist, or
    /// when Q/S does not divide evenly and S is close to `targetN`.
    public func spacingViolations(targetN: Int) -> Int {
        Self.spacingViolations(in: owners, targetN: targetN)
    }

    private func index(of partition: PartitionID) -> Int {
        let position = Int(partition.rawValue)
        precondition(position < owners.count, "partition \(partition) is outside a ring of \(owners.count) partitions")
        return position
    }
}

// MARK: - Building and changing rings

extension Ring {
    /// The ring of a new cluster, at epoch 1: the same for any order of `members`.
    ///
    /// Sorted members are striped around the ring, so every node owns Q/S or Q/S + 1
    /// partitions and any S consecutive partitions are distinct. When S does not
    /// divide Q, plain striping leaves a short round at the seam between partition
    /// Q − 1 and partition 0; the layout that skips one round slot per light node,
    /// spread evenly around the ring, is used instead whenever it has fewer
    /// `spacingViolations(targetN:)`.
    public static func initial(members: [NodeID], partitioning: Partitioning, targetN: Int = 3) -> Ring {
        precondition(targetN >= 1, "targetN must be at least 1, not \(targetN)")
        let sorted = Array(Set(members)).sorted()
        precondition(!sorted.isEmpty, "a ring needs at least one member")
        let partitionCount = partitioning.partitionCount
        var owners = (0..<partitionCount).map { sorted[$0 % sorted.count] }
        if partitionCount % sorted.count != 0 {
            let spread = spreadOwners(members: sorted, partitionCount: partitionCount)
            if spacingViolations(in: spread, targetN: targetN) < spacingViolations(in: owners, targetN: targetN) {
                owners = spread
            }
        }
        return Ring(checkedPartitioning: partitioning, owners: owners, epoch: 1)
    }

    /// The ring with `node` joined, at the next epoch; unchanged if `node` is a member.
    ///
    /// Only the partitions `node` must take for balance move (on a balanced ring,
    /// floor(Q/S) for the S members after the join), all to `node`, each from an owner
    /// that keeps at least its new share (from owners above their new share whenever
    /// every remaining move is needed to bring them down), choosing partitions where
    /// `node` lands at least `targetN` positions from its other partitions. Afterwards
    /// every node owns floor(Q/S) or ceil(Q/S). With `extraTransfersMax` above 0, up to
    /// that many more partitions may change owner to clear spacing violations (see
    /// `spacingViolations(targetN:)`); balance holds either way. A ring with as many
    /// members as partitions has nothing to give: `node` then owns no partition and
    /// is not a member.
    public func adding(_ node: NodeID, targetN: Int = 3, extraTransfersMax: Int = 0) -> Ring {
        guard !members.contains(node) else { return self }
        return rebalanced(targetMembers: members + [node], targetN: targetN, extraTransfersMax: extraTransfersMax)
    }

    /// The ring with `node` gone, at the next epoch; unchanged if `node` is not a member.
    ///
    /// Only `node`'s partitions move, each to a remaining node below its new share,
    /// preferring one that owns no partition within `targetN − 1` positions. When the
    /// layout leaves no such node (striped rings do, for the departed node's
    /// neighbours), `extraTransfersMax` above 0 lets up to that many more partitions
    /// change owner to clear spacing violations. The last member cannot be removed.
    public func removing(_ node: NodeID, targetN: Int = 3, extraTransfersMax: Int = 0) -> Ring {
        guard members.contains(node) else { return self }
        precondition(members.count > 1, "cannot remove \(node), the ring's last member")
        return rebalanced(
            targetMembers: members.filter { $0 != node }, targetN: targetN, extraTransfersMax: extraTransfersMax)
    }

    /// Moves the fewest partitions that bring every target member within one of Q/S
    /// and strip every other node of its partitions, then swaps owners of partition
    /// pairs to clear spacing violations, at the next epoch.
    ///
    /// A swap must leave both partitions free of conflicts. Swaps that cost no transfer
    /// (between two partitions that move anyway, or one that undoes a move) are made
    /// whenever they help; swaps that cost one or two only within `extraTransfersMax`.
    /// There is no fallback to a fresh stripe: re-striping moves most partitions to fix
    /// a few violations, and a violation only makes one preference list reach one
    /// position further for its N distinct nodes, which costs replica balance, not
    /// durability.
    private func rebalanced(targetMembers: [NodeID], targetN: Int, extraTransfersMax: Int) -> Ring {
        precondition(targetN >= 1, "targetN must be at least 1, not \(targetN)")
        precondition(extraTransfersMax >= 0, "extraTransfersMax cannot be negative")
        precondition(epoch < UInt64.max, "ring epoch exhausted")
        var rebalancer = Rebalancer(owners: owners, targetMembers: targetMembers, targetN: targetN)
        let transfersMinimum = rebalancer.run()
        rebalancer.repairSpacing(transfersMax: transfersMinimum + extraTransfersMax)
        return Ring(checkedPartitioning: partitioning, owners: rebalancer.owners, epoch: epoch + 1)
    }

    /// Striping over k + 1 rounds of the sorted members with one slot skipped for each
    /// of the S − (Q mod S) light nodes, the skips spread evenly so that no stretch of
    /// the ring loses many slots. Each heavy node appears k + 1 times, each light node
    /// k times, and the layout wraps without a seam because it spans whole rounds.
    static func spreadOwners(members: [NodeID], partitionCount: Int) -> [NodeID] {
        let memberCount = members.count
        let walkLength = (partitionCount / memberCount + 1) * memberCount
        let skipCount = memberCount - partitionCount % memberCount
        precondition(skipCount > 0 && skipCount < memberCount, "spread layout needs Q mod S != 0")
        var skippedNodes = [Bool](repeating: false, count: memberCount)
        var skippedSlots = [Bool](repeating: false, count: walkLength)
        for skip in 0..<skipCount {
            // The middle of the skip's equal share of the walk, then the next slot of
            // a node not yet skipped.
            var slot = (2 * skip + 1) * walkLength / (2 * skipCount)
            while skippedNodes[slot % memberCount] {
                slot = (slot + 1) % walkLength
            }
            skippedNodes[slot % memberCount] = true
            skippedSlots[slot] = true
        }
        let owners = (0..<walkLength).filter { !skippedSlots[$0] }.map { members[$0 % memberCount] }
        assert(owners.count == partitionCount)
        return owners
    }

    static func spacingViolations(in owners: [NodeID], targetN: Int) -> Int {
        precondition(targetN >= 1, "targetN must be at least 1, not \(targetN)")
        let window = min(targetN, owners.count)
        var violations = 0
        for start in owners.indices {
            var seen = Set<NodeID>()
            for offset in 0..<window where !seen.insert(owners[(start + offset) % owners.count]).inserted {
                violations += 1
                break
            }
        }
        return violations
    }
}

/// One membership change's partition moves: the smallest number that brings every
/// target member's count within [floor(Q/S), ceil(Q/S)] and every other node's to 0.
///
/// `excess` counts partitions above nodes' upper bounds, `deficit` slots below lower
/// bounds; each move cuts whichever equals the moves left, so exactly
/// max(excess, deficit) moves happen, which no plan can beat. Nodes are numbered by
/// their sorted order so that the inner loops compare integers, not strings.
private struct Rebalancer {
    /// Eligible partitions a move looks at before settling for the best seen, when
    /// none is free of conflicts; bounds a change to O(moves × this × S × targetN).
    static let moveCandidatesMax = 256
    /// Partners a spacing repair tries for one partition: this many partitions that
    /// move anyway, and this many clockwise from it.
    static let swapCandidatesMax = 512
    /// Sweeps of the ring a spacing repair makes at most.
    static let repairPassesMax = 4

    /// Every node that owns a partition or is a target member, sorted.
    private let nodes: [NodeID]
    /// Each partition's owner, as an index into `nodes`.
    private var slots: [Int]
    /// `slots` before any move.
    private let originalSlots: [Int]
    /// Partitions per node, indexed like `nodes`.
    private var counts: [Int]
    private let isTargetMember: [Bool]
    private let shareLower: Int
    private let shareUpper: Int
    private let targetN: Int
    private var excess = 0
    private var deficit = 0

    init(owners: [NodeID], targetMembers: [NodeID], targetN: Int) {
        let memberSet = Set(targetMembers)
        precondition(!memberSet.isEmpty, "a ring needs at least one member")
        nodes = Array(memberSet.union(owners)).sorted()
        let numbers = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($0.element, $0.offset) })
        slots = owners.map { numbers[$0]! }
        originalSlots = slots
        isTargetMember = nodes.map { memberSet.contains($0) }
        self.targetN = targetN
        shareLower = owners.count / memberSet.count
        shareUpper = shareLower + (owners.count % memberSet.count == 0 ? 0 : 1)
        counts = [Int](repeating: 0, count: nodes.count)
        for slot in slots {
            counts[slot] += 1
        }
        for node in nodes.indices {
            excess += max(0, counts[node] - upperBound(node))
            deficit += max(0, lowerBound(node) - counts[node])
        }
    }

    /// The ownership table as it stands.
    var owners: [NodeID] { slots.map { nodes[$0] } }

    private func lowerBound(_ node: Int) -> Int { isTargetMember[node] ? shareLower : 0 }
    private func upperBound(_ node: Int) -> Int { isTargetMember[node] ? shareUpper : 0 }

    /// Applies the moves and returns how many there were. After each one the cursor
    /// jumps about Q / moves ahead, so a joining node's partitions spread around the
    /// ring instead of bunching up.
    mutating func run() -> Int {
        let movesTotal = max(excess, deficit)
        var movesLeft = movesTotal
        let stride = max(1, slots.count / max(1, movesLeft))
        var cursor = 0
        while movesLeft > 0 {
            let (partition, receiver) = chooseMove(
                from: cursor, mustShed: excess == movesLeft, mustFill: deficit == movesLeft)
            let donor = slots[partition]
            if counts[donor] > upperBound(donor) { excess -= 1 }
            if counts[receiver] < lowerBound(receiver) { deficit -= 1 }
            counts[donor] -= 1
            counts[receiver] += 1
            slots[partition] = receiver
            movesLeft -= 1
            precondition(max(excess, deficit) == movesLeft, "internal inconsistency in Rebalancer: move cut nothing")
            cursor = (partition + stride) % slots.count
        }
        assert(nodes.indices.allSatisfy { counts[$0] >= lowerBound($0) && counts[$0] <= upperBound($0) })
        return movesTotal
    }

    /// The first partition clockwise from `start` that an eligible donor can hand to an
    /// eligible receiver without a spacing conflict, or else the move with fewest
    /// conflicts among the first `moveCandidatesMax` eligible partitions.
    private func chooseMove(from start: Int, mustShed: Bool, mustFill: Bool) -> (partition: Int, receiver: Int) {
        let receivers = nodes.indices.filter { node in
            counts[node] < upperBound(node) && (!mustFill || counts[node] < lowerBound(node))
        }.sorted { (counts[$0], $0) < (counts[$1], $1) }
        var best: (partition: Int, receiver: Int, conflicts: Int)?
        var examined = 0
        for step in slots.indices {
            let partition = (start + step) % slots.count
            let donor = slots[partition]
            guard counts[donor] > lowerBound(donor), !mustShed || counts[donor] > upperBound(donor) else { continue }
            if examined == Self.moveCandidatesMax, best != nil { break }
            examined += 1
            for receiver in receivers where receiver != donor {
                let conflicts = conflicts(of: receiver, around: partition)
                if conflicts == 0 { return (partition, receiver) }
                if conflicts < best?.conflicts ?? Int.max {
                    best = (partition, receiver, conflicts)
                }
            }
        }
        guard let best else {
            fatalError("internal inconsistency in Rebalancer: no move left with excess \(excess), deficit \(deficit)")
        }
        return (best.partition, best.receiver)
    }

    /// Swaps the owners of partition pairs, each swap clearing every conflict at both
    /// partitions, until no swap helps, `repairPassesMax` sweeps are done, or a swap
    /// would leave more than `transfersMax` partitions owned differently from the
    /// start. Counts never change, so balance holds.
    mutating func repairSpacing(transfersMax: Int) {
        var transfers = slots.indices.count(where: { slots[$0] != originalSlots[$0] })
        precondition(transfers <= transfersMax, "the minimal moves already exceed the budget")
        var swapped = true
        var passes = 0
        while swapped && passes < Self.repairPassesMax {
            swapped = false
            passes += 1
            // Swaps that cost at most one transfer involve a partition that moves anyway,
            // so those are tried wherever they are; others only near the conflict.
            let moved = Array(slots.indices.filter { slots[$0] != originalSlots[$0] }.prefix(Self.swapCandidatesMax))
            for partition in slots.indices where conflicts(of: slots[partition], around: partition) > 0 {
                let nearby = (1..<min(slots.count, Self.swapCandidatesMax + 1)).map { (partition + $0) % slots.count }
                guard let (partner, cost) = cheapestClearingSwap(
                    for: partition, among: moved + nearby, costMax: transfersMax - transfers)
                else { continue }
                slots.swapAt(partition, partner)
                transfers += cost
                swapped = true
            }
        }
        assert(slots.indices.count(where: { slots[$0] != originalSlots[$0] }) == transfers)
    }

    /// Among `partners`, the first whose swap with `partition` leaves neither with a
    /// conflict at the lowest cost in transfers (−2…2), no higher than `costMax`; a
    /// free swap ends the search.
    private mutating func cheapestClearingSwap(
        for partition: Int, among partners: [Int], costMax: Int
    ) -> (partner: Int, cost: Int)? {
        var best: (partner: Int, cost: Int)?
        for partner in partners where slots[partner] != slots[partition] {
            let before = (slots[partition] != originalSlots[partition] ? 1 : 0)
                + (slots[partner] != originalSlots[partner] ? 1 : 0)
            let after = (slots[partner] != originalSlots[partition] ? 1 : 0)
                + (slots[partition] != originalSlots[partner] ? 1 : 0)
            let cost = after - before
            guard cost <= costMax, cost < best?.cost ?? Int.max else { continue }
            slots.swapAt(partition, partner)
            let clears = conflicts(of: slots[partition], around: partition) == 0
                && conflicts(of: slots[partner], around: partner) == 0
            slots.swapAt(partition, partner)
            if clears {
                best = (partner, cost)
                if cost <= 0 { break }
            }
        }
        return best
    }

    /// How many of the `targetN − 1` partitions on either side of `partition` `node` owns.
    private func conflicts(of node: Int, around partition: Int) -> Int {
        let count = slots.count
        var found = 0
        for distance in 1..<targetN {
            let after = (partition + distance) % count
            let before = (partition + count - distance % count) % count
            if after != partition && slots[after] == node { found += 1 }
            if before != partition && before != after && slots[before] == node { found += 1 }
        }
        return found
    }
}
