/// One partition's data that one node must receive before a staged ring takes effect
/// (DESIGN §8, Dynamo §4.8): `to` is among the first `transferSpan` entries of the
/// partition's preference list in the target ring but not in the current one.
///
/// The receiving node pulls the data from the partition's surviving replicas
/// (`ClusterConfiguration.transferSources(for:)`) and then reports
/// `.transferDone(partition:pendingRingEpoch:)`.
public struct Transfer: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The partition whose keys move.
    public var partition: PartitionID
    /// The node that must hold them.
    public var to: NodeID

    /// Names one transfer.
    public init(partition: PartitionID, to: NodeID) {
        self.partition = partition
        self.to = to
    }

    /// By partition, then by receiving node: the order encodings and listings use.
    public static func < (lhs: Transfer, rhs: Transfer) -> Bool {
        (lhs.partition, lhs.to) < (rhs.partition, rhs.to)
    }

    /// `p<partition>→<node>`, as logs show it.
    public var description: String { "p\(partition)→\(to)" }
}

/// One staged membership change of a ring plan.
public enum PlanAction: Hashable, Sendable {
    /// A registered node that owns no partition takes its share.
    case join(NodeID)
    /// A ring member hands its partitions over, then leaves the cluster; it stays a
    /// source of its data until the new ring takes effect.
    case leave(NodeID)
    /// A ring member that is down for good is taken out; its partitions are rebuilt
    /// from the other replicas, never read from it.
    case remove(NodeID)

    /// The node the action is about.
    public var node: NodeID {
        switch self {
        case .join(let node), .leave(let node), .remove(let node): node
        }
    }

    var isJoin: Bool {
        if case .join = self { return true }
        return false
    }
}

/// A staged plan as the primary ring server computes it against the committed
/// configuration: what the ring becomes and which transfers that takes.
public struct RingPlan: Hashable, Sendable {
    /// The staged actions, in the order they were staged.
    public var actions: [PlanAction]
    /// The ring once every transfer is done, at the next ring epoch.
    public var ring: Ring
    /// Preference-list entries per partition whose holders must have the data (see
    /// `ClusterConfiguration.transferSpan`).
    public var transferSpan: Int
    /// Every transfer the plan needs, sorted.
    public var transfers: [Transfer]
}

/// Progress of a committed ring change, for an admin status view.
public struct RingTransitionStatus: Hashable, Sendable {
    /// The ring being moved to; nil once it took effect while departed nodes are
    /// still being dropped from the voters, one per configuration.
    public var targetRing: Ring?
    /// Transfers the change needs.
    public var transfersRequired: Int
    /// Transfers their receivers reported complete.
    public var transfersDone: Int
    /// Nodes staged to leave or to be removed that are still registered.
    public var departing: [NodeID]

    /// Transfers still to report.
    public var transfersPending: Int { transfersRequired - transfersDone }
}

extension ClusterConfiguration {
    /// The transfers that moving from `old` to `new` requires: for every partition,
    /// each node among the first `span` entries of its preference list in `new` that
    /// is not among the first `span` in `old`. Sorted by partition, then node.
    ///
    /// `span` is the largest replica count any table uses (at least the ring's
    /// target N), so that every table's home replicas hold their data before `new`
    /// routes to them.
    public static func requiredTransfers(from old: Ring, to new: Ring, span: Int) -> [Transfer] {
        precondition(old.partitioning == new.partitioning, "rings of different partitionings")
        precondition(span >= 1, "a transfer span is at least 1, not \(span)")
        var transfers: [Transfer] = []
        for partition in new.partitioning.allPartitions {
            let before = old.preferenceList(for: partition, count: span)
            for node in new.preferenceList(for: partition, count: span) where !before.contains(node) {
                transfers.append(Transfer(partition: partition, to: node))
            }
        }
        return transfers
    }

    /// Whether `transfer` is one the ring change in progress requires; O(span).
    public func requires(_ transfer: Transfer) -> Bool {
        guard let ring, let pendingRing, Int(transfer.partition.rawValue) < ring.partitioning.partitionCount else {
            return false
        }
        return pendingRing.preferenceList(for: transfer.partition, count: transferSpan).contains(transfer.to)
            && !ring.preferenceList(for: transfer.partition, count: transferSpan).contains(transfer.to)
    }

    /// Every transfer the ring change in progress requires; empty when none is.
    public var requiredTransfers: [Transfer] {
        guard let ring, let pendingRing else { return [] }
        return Self.requiredTransfers(from: ring, to: pendingRing, span: transferSpan)
    }

    /// Required transfers not yet reported done; those to `node` only, when given.
    public func pendingTransfers(to node: NodeID? = nil) -> [Transfer] {
        requiredTransfers.filter { !transfersDone.contains($0) && (node == nil || $0.to == node) }
    }

    /// Where `transfer`'s receiver pulls from, in the order to try: the partition's
    /// current replicas (the first `transferSpan` of its preference list), without
    /// the receiver and without nodes being removed. Empty when every current
    /// replica is being removed: nothing survives to pull, and the receiver reports
    /// the transfer done at once.
    public func transferSources(for transfer: Transfer) -> [NodeID] {
        guard let ring, transferSpan > 0 else { return [] }
        return ring.preferenceList(for: transfer.partition, count: transferSpan).filter { node in
            node != transfer.to && member(node)?.status != .removing
        }
    }

    /// Whether every required transfer is reported done (true when no change is in progress).
    public var areTransfersComplete: Bool {
        guard ring != nil, pendingRing != nil else { return true }
        return pendingTransfers().isEmpty
    }

    /// Registered nodes staged to leave or to be removed.
    public var departingMembers: [NodeID] {
        members.filter { $0.status == .leaving || $0.status == .removing }.map(\.id)
    }

    /// Progress of the ring change in progress; nil when none is.
    public var transition: RingTransitionStatus? {
        let departing = departingMembers
        guard pendingRing != nil || !departing.isEmpty else { return nil }
        return RingTransitionStatus(
            targetRing: pendingRing, transfersRequired: requiredTransfers.count, transfersDone: transfersDone.count,
            departing: departing)
    }

    /// The span a ring change started now must fill: the largest table n, at least `targetN`.
    static func transferSpan(tables: [TableSpec], targetN: Int) -> Int {
        max(targetN, tables.map(\.n).max() ?? 1)
    }
}

// MARK: - Encoding of the ring change in progress

extension ClusterConfiguration {
    /// A presence byte, then the pending ring, the span, and the done transfers sorted,
    /// each as a partition and an index into the pending ring's members.
    func encodeTransition(into writer: inout ByteWriter) {
        guard let pendingRing else {
            writer.writeUInt8(0)
            return
        }
        writer.writeUInt8(1)
        Self.encode(pendingRing, into: &writer)
        writer.writeVarint(UInt64(transferSpan))
        let indices = Dictionary(uniqueKeysWithValues: pendingRing.members.enumerated().map { ($0.element, $0.offset) })
        writer.writeVarint(UInt64(transfersDone.count))
        for transfer in transfersDone.sorted() {
            guard let index = indices[transfer.to] else {
                fatalError("internal inconsistency in ClusterConfiguration: \(transfer) goes to no member of the pending ring")
            }
            writer.writeVarint(UInt64(transfer.partition.rawValue))
            writer.writeVarint(UInt64(index))
        }
    }

    /// Reads what `encodeTransition(into:)` wrote. Throws on a span outside
    /// 1...`Limits.replicasMax`, unsorted or repeated transfers, or indices out of range;
    /// `checkTransition()` then checks the transfers against the rings.
    static func decodeTransition(_ reader: inout ByteReader) throws(DecodeError) -> (Ring, Int, Set<Transfer>)? {
        switch try reader.readUInt8() {
        case 0: return nil
        case 1: break
        case let other: throw DecodeError("pending ring presence byte \(other) is neither 0 nor 1")
        }
        let pendingRing = try decodeRing(&reader)
        let spanValue = try reader.readVarint()
        guard spanValue >= 1, spanValue <= UInt64(Limits.replicasMax) else {
            throw DecodeError("transfer span \(spanValue) is outside 1...\(Limits.replicasMax)")
        }
        let span = Int(spanValue)
        let count = try reader.readCount(elementBytesMin: 2)
        guard count <= pendingRing.partitioning.partitionCount * span else {
            throw DecodeError("\(count) done transfers exceed \(pendingRing.partitioning.partitionCount) partitions × span \(span)")
        }
        var done = Set<Transfer>()
        var previous: Transfer?
        for _ in 0..<count {
            let partition = try reader.readVarint()
            guard partition < UInt64(pendingRing.partitioning.partitionCount) else {
                throw DecodeError("transfer partition \(partition) is outside \(pendingRing.partitioning.partitionCount)")
            }
            let index = try reader.readVarint()
            guard index < UInt64(pendingRing.members.count) else {
                throw DecodeError("transfer node index \(index) out of \(pendingRing.members.count)")
            }
            let transfer = Transfer(partition: PartitionID(rawValue: UInt32(partition)), to: pendingRing.members[Int(index)])
            if let previous, !(previous < transfer) {
                throw DecodeError("done transfers are not sorted and distinct at \(transfer)")
            }
            previous = transfer
            done.insert(transfer)
        }
        return (pendingRing, span, done)
    }

    /// The pending ring continues the current one, and every done transfer is required.
    func checkTransition() throws(DecodeError) {
        guard let pendingRing else { return }
        guard let ring else { throw DecodeError("a pending ring without a current ring") }
        guard pendingRing.partitioning == ring.partitioning else {
            throw DecodeError("the pending ring has \(pendingRing.partitioning.partitionCount) partitions, not \(ring.partitioning.partitionCount)")
        }
        guard pendingRing.epoch > ring.epoch else {
            throw DecodeError("pending ring epoch \(pendingRing.epoch) is not above the current \(ring.epoch)")
        }
        if let stray = transfersDone.first(where: { !requires($0) }) {
            throw DecodeError("done transfer \(stray) is not one the pending ring requires")
        }
    }
}
