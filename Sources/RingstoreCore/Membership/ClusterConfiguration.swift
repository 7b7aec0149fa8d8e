/// Bounds on the membership state the ring servers keep and ship to every node.
public enum MembershipLimits {
    /// Registered storage nodes; every configuration carries all of them.
    public static let membersMax = 1 << 10
    /// Tables in the catalogue; every configuration carries all of them.
    public static let tablesMax = 1 << 10
    /// Host names and ring-server ids, in UTF-8 bytes (a DNS name is at most 253).
    public static let hostBytesMax = 255
    /// Changes a primary holds while one is being committed; more are refused.
    public static let changeQueueMax = 64
}

/// Where a registered node stands: waiting to be placed in the ring, in it, or on
/// its way out. Every status but `.joining` makes the node a voter once the ring exists.
public enum MemberStatus: UInt8, Sendable, Hashable {
    /// Registered, not a voter; owns no partition yet (it may appear in a pending ring).
    case joining = 0
    /// A voter: owns partitions in the ring or, while a ring change finishes, in the
    /// pending ring.
    case member = 1
    /// Staged to leave by a committed plan: still a voter and an owner, and a source of
    /// its partitions, until the new ring takes effect; then dropped from the cluster.
    /// A node that accepts a configuration no longer listing it has left: its shell
    /// MUST stop serving and MUST NOT register again under the same id with its old data.
    case leaving = 2
    /// Staged for removal (down for good) by a committed plan: still a voter and an
    /// owner until the new ring takes effect, but never a transfer source; then dropped.
    case removing = 3
}

/// A storage node as the ring servers know it: its name, where to reach it, and its status.
public struct MemberInfo: Hashable, Sendable {
    /// The node's stable name.
    public var id: NodeID
    /// Host of its node-to-node (framed RPC) listener.
    public var rpcHost: String
    /// Port of its node-to-node listener.
    public var rpcPort: UInt16
    /// Host of its HTTP API.
    public var httpHost: String
    /// Port of its HTTP API.
    public var httpPort: UInt16
    /// Whether it owns partitions.
    public var status: MemberStatus

    /// Describes a node.
    public init(id: NodeID, rpcHost: String, rpcPort: UInt16, httpHost: String, httpPort: UInt16, status: MemberStatus = .joining) {
        self.id = id
        self.rpcHost = rpcHost
        self.rpcPort = rpcPort
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.status = status
    }

    /// The same node with a different status.
    func with(status: MemberStatus) -> MemberInfo {
        var copy = self
        copy.status = status
        return copy
    }

    /// Whether two descriptions name the same addresses (status aside).
    func hasSameAddresses(as other: MemberInfo) -> Bool {
        id == other.id && rpcHost == other.rpcHost && rpcPort == other.rpcPort && httpHost == other.httpHost
            && httpPort == other.httpPort
    }
}

/// Why a table description was refused.
public enum TableSpecError: Error, Equatable, Sendable {
    /// The name is not a valid table name (see `Validation.checkTableName`).
    case invalidName(String)
    /// `n` is outside 1...`Limits.replicasMax`, or `r`/`w` outside 1...`n`.
    case invalidQuorum(n: Int, r: Int, w: Int, replicasMax: Int)
    /// The consistency byte is neither `TableSpec.eventual` nor `TableSpec.linearizable`.
    case invalidConsistency(UInt8)
}

/// A table's properties as the cluster configuration carries them (DESIGN §3).
public struct TableSpec: Hashable, Sendable {
    /// Consistency byte of a Dynamo table: always writable, siblings on conflict.
    public static let eventual: UInt8 = 0
    /// Consistency byte of a per-key compare-and-set table.
    public static let linearizable: UInt8 = 1

    /// The table's name.
    public var name: String
    /// Replicas of every key.
    public var n: Int
    /// Default read quorum.
    public var r: Int
    /// Default write quorum.
    public var w: Int
    /// `TableSpec.eventual` or `TableSpec.linearizable`.
    public var consistency: UInt8

    /// Describes a table; `validate()` checks it.
    public init(name: String, n: Int, r: Int, w: Int, consistency: UInt8 = TableSpec.eventual) {
        self.name = name
        self.n = n
        self.r = r
        self.w = w
        self.consistency = consistency
    }

    /// Throws unless the name is valid, 1 ≤ r, w ≤ n ≤ `Limits.replicasMax`, and the
    /// consistency byte is known.
    public func validate() throws(TableSpecError) {
        do {
            try Validation.checkTableName(name)
        } catch {
            throw .invalidName(name)
        }
        guard n >= 1, n <= Limits.replicasMax, r >= 1, r <= n, w >= 1, w <= n else {
            throw .invalidQuorum(n: n, r: r, w: w, replicasMax: Limits.replicasMax)
        }
        guard consistency == Self.eventual || consistency == Self.linearizable else {
            throw .invalidConsistency(consistency)
        }
    }
}

/// Orders configurations: by leadership term, then by epoch within it.
///
/// Epochs of committed configurations strictly increase, but an offer that never
/// committed in a dead term may share its epoch with a later configuration of a
/// higher term; the pair names one configuration, the epoch alone does not.
public struct ConfigurationVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The leadership term of the ring server that issued it.
    public var term: UInt64
    /// The configuration's number within the cluster's history.
    public var epoch: UInt64

    /// Pairs a term and an epoch.
    public init(term: UInt64, epoch: UInt64) {
        self.term = term
        self.epoch = epoch
    }

    /// Term first, then epoch.
    public static func < (lhs: ConfigurationVersion, rhs: ConfigurationVersion) -> Bool {
        (lhs.term, lhs.epoch) < (rhs.term, rhs.epoch)
    }

    /// `t<term>e<epoch>`, as logs show it.
    public var description: String { "t\(term)e\(epoch)" }
}

/// Everything the ring servers agree on about the cluster: who the nodes are and
/// where they listen, the ring (and the ring it is moving to), the table catalogue,
/// and which ring server issued it.
///
/// A value: the primary ring server builds the next one and offers it to every node
/// (see `RingServerEngine`); nodes keep the newest they accepted (see
/// `ConfigurationFollower`) and serve from it when both ring servers are down.
public struct ClusterConfiguration: Hashable, Sendable {
    /// The term of the primary that issued it; a node refuses configurations of a
    /// term below the one it promised.
    public var term: UInt64
    /// Advances by one with every change; never reused by a committed configuration.
    public var epoch: UInt64
    /// Partition owners; nil until the cluster has formed.
    public var ring: Ring?
    /// Every registered node, in registration order, without repeated ids.
    public var members: [MemberInfo]
    /// The table catalogue, in creation order, without repeated names.
    public var tables: [TableSpec]
    /// The id of the ring server that issued it.
    public var primary: String
    /// The ring a committed plan moves to while partitions stream to their new
    /// replicas; nil when no ring change is in progress. Reads and writes keep
    /// following `ring` until this one takes effect.
    public var pendingRing: Ring?
    /// How many entries of each partition's preference list must hold its data before
    /// `pendingRing` takes effect: the largest table n when the plan was committed, at
    /// least the ring's target N; 0 without a pending ring.
    public var transferSpan: Int
    /// The transfers to `pendingRing` that their receivers reported complete; empty
    /// without a pending ring.
    public var transfersDone: Set<Transfer>

    /// Assembles a configuration.
    public init(
        term: UInt64, epoch: UInt64, ring: Ring?, members: [MemberInfo], tables: [TableSpec], primary: String,
        pendingRing: Ring? = nil, transferSpan: Int = 0, transfersDone: Set<Transfer> = []
    ) {
        precondition((pendingRing == nil) == (transferSpan == 0), "a transfer span goes with a pending ring")
        precondition(pendingRing != nil || transfersDone.isEmpty, "done transfers go with a pending ring")
        self.term = term
        self.epoch = epoch
        self.ring = ring
        self.members = members
        self.tables = tables
        self.primary = primary
        self.pendingRing = pendingRing
        self.transferSpan = transferSpan
        self.transfersDone = transfersDone
    }

    /// An empty configuration (no nodes, no ring, no tables) at epoch 0.
    public static func empty(term: UInt64, primary: String) -> ClusterConfiguration {
        ClusterConfiguration(term: term, epoch: 0, ring: nil, members: [], tables: [], primary: primary)
    }

    /// Term and epoch together.
    public var version: ConfigurationVersion { ConfigurationVersion(term: term, epoch: epoch) }

    /// The nodes whose majority commits a configuration and elects a primary: once
    /// the ring exists, the registered nodes whose status is not `.joining` (the ring's
    /// members, plus at most the nodes a finishing ring change is moving in or out);
    /// every registered node before.
    public var voters: [NodeID] {
        guard ring != nil else { return members.map(\.id) }
        return members.filter { $0.status != .joining }.map(\.id)
    }

    /// Accepting voters needed for a majority: ⌊voters / 2⌋ + 1 (1 when there are none,
    /// so that nothing commits and nobody is elected without nodes).
    public var quorumSize: Int { voters.count / 2 + 1 }

    /// The registered node named `id`, if any.
    public func member(_ id: NodeID) -> MemberInfo? {
        members.first { $0.id == id }
    }

    /// The table named `name`, if any.
    public func table(named name: String) -> TableSpec? {
        tables.first { $0.name == name }
    }

    /// Whether two configurations say the same thing, whoever issued them and when.
    public func hasSameContent(as other: ClusterConfiguration) -> Bool {
        ring == other.ring && members == other.members && tables == other.tables && pendingRing == other.pendingRing
            && transferSpan == other.transferSpan && transfersDone == other.transfersDone
    }
}

// MARK: - Binary encoding

extension ClusterConfiguration {
    /// The first byte of every encoding; a decoder refuses any other. Format 2 added
    /// the ring change in progress.
    static let formatVersion: UInt8 = 2

    /// The configuration as bytes: a format byte, term, epoch, issuer, ring, the ring
    /// change in progress, members, tables.
    public func encode() -> [UInt8] {
        let ringBytes = (ring?.owners.count ?? 0) * 2 + (pendingRing?.owners.count ?? 0) * 2 + transfersDone.count * 3
        var writer = ByteWriter(capacity: 128 + members.count * 48 + ringBytes)
        encode(into: &writer)
        return writer.bytes
    }

    /// Appends the encoding to `writer`.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt8(Self.formatVersion)
        writer.writeVarint(term)
        writer.writeVarint(epoch)
        writer.writeString(primary)
        if let ring {
            writer.writeUInt8(1)
            Self.encode(ring, into: &writer)
        } else {
            writer.writeUInt8(0)
        }
        encodeTransition(into: &writer)
        writer.writeVarint(UInt64(members.count))
        for member in members {
            writer.writeString(member.id.rawValue)
            writer.writeString(member.rpcHost)
            writer.writeVarint(UInt64(member.rpcPort))
            writer.writeString(member.httpHost)
            writer.writeVarint(UInt64(member.httpPort))
            writer.writeUInt8(member.status.rawValue)
        }
        writer.writeVarint(UInt64(tables.count))
        for table in tables {
            writer.writeString(table.name)
            writer.writeVarint(UInt64(table.n))
            writer.writeVarint(UInt64(table.r))
            writer.writeVarint(UInt64(table.w))
            writer.writeUInt8(table.consistency)
        }
    }

    /// Decodes what `encode()` wrote, refusing trailing bytes.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ClusterConfiguration {
        var reader = ByteReader(bytes)
        let configuration = try decode(from: &reader)
        try reader.expectEnd()
        return configuration
    }

    /// Decodes one configuration from `reader`.
    ///
    /// Throws on truncation, an unknown format, repeated member ids or table names,
    /// counts above `MembershipLimits`, invalid tables, ports above 65535, member
    /// statuses that disagree with the rings, or a ring change in progress that does
    /// not continue the current ring.
    public static func decode(from reader: inout ByteReader) throws(DecodeError) -> ClusterConfiguration {
        let format = try reader.readUInt8()
        guard format == formatVersion else { throw DecodeError("unknown cluster configuration format \(format)") }
        let term = try reader.readVarint()
        let epoch = try reader.readVarint()
        let primary = try readBoundedString(&reader, what: "ring server id")
        let ring: Ring?
        switch try reader.readUInt8() {
        case 0: ring = nil
        case 1: ring = try decodeRing(&reader)
        case let other: throw DecodeError("ring presence byte \(other) is neither 0 nor 1")
        }
        let transition = try decodeTransition(&reader)
        let members = try decodeMembers(&reader)
        let tables = try decodeTables(&reader)
        let configuration = ClusterConfiguration(
            term: term, epoch: epoch, ring: ring, members: members, tables: tables, primary: primary,
            pendingRing: transition?.0, transferSpan: transition?.1 ?? 0, transfersDone: transition?.2 ?? [])
        try configuration.checkTransition()
        try configuration.checkStatuses()
        return configuration
    }

    /// Every owner of either ring is registered; each status agrees with the rings
    /// (see `MemberStatus`): before the ring exists every node is joining; after,
    /// owners are voters, members own partitions in one of the rings, and departing
    /// nodes own none in the pending ring (or, once it took effect, in the ring).
    private func checkStatuses() throws(DecodeError) {
        let registered = Set(members.map(\.id))
        let owners = Set(ring?.members ?? []).union(pendingRing?.members ?? [])
        if let stranger = owners.sorted().first(where: { !registered.contains($0) }) {
            throw DecodeError("ring owner \(stranger) is not a registered member")
        }
        let ringMembers = Set(ring?.members ?? [])
        let pendingMembers = Set(pendingRing?.members ?? [])
        for member in members {
            let inRing = ringMembers.contains(member.id)
            let agrees = switch member.status {
            case .joining: !inRing
            case .member: inRing || pendingMembers.contains(member.id)
            case .leaving, .removing: ring != nil && !pendingMembers.contains(member.id) && inRing == (pendingRing != nil)
            }
            guard agrees else {
                throw DecodeError("member \(member.id) has status \(member.status) but the rings say otherwise")
            }
        }
    }

    /// The distinct owners, sorted, then each partition's owner as an index into them.
    static func encode(_ ring: Ring, into writer: inout ByteWriter) {
        writer.writeVarint(UInt64(ring.partitioning.partitionCount))
        writer.writeVarint(ring.epoch)
        writer.writeVarint(UInt64(ring.members.count))
        for member in ring.members {
            writer.writeString(member.rawValue)
        }
        let indices = Dictionary(uniqueKeysWithValues: ring.members.enumerated().map { ($0.element, $0.offset) })
        for owner in ring.owners {
            guard let index = indices[owner] else {
                fatalError("internal inconsistency in Ring: owner \(owner) missing from its members")
            }
            writer.writeVarint(UInt64(index))
        }
    }

    static func decodeRing(_ reader: inout ByteReader) throws(DecodeError) -> Ring {
        let countValue = try reader.readVarint()
        guard countValue <= UInt64(Limits.partitionCountMax) else {
            throw DecodeError("partition count \(countValue) exceeds \(Limits.partitionCountMax)")
        }
        let partitioning: Partitioning
        do {
            partitioning = try Partitioning(partitionCount: Int(countValue))
        } catch {
            throw DecodeError("partition count \(countValue) is not a power of two in 1...\(Limits.partitionCountMax)")
        }
        let ringEpoch = try reader.readVarint()
        let ownerCount = try reader.readCount(elementBytesMin: 2)
        guard ownerCount >= 1, ownerCount <= min(MembershipLimits.membersMax, partitioning.partitionCount) else {
            throw DecodeError("ring lists \(ownerCount) owners for \(partitioning.partitionCount) partitions")
        }
        var names: [NodeID] = []
        for _ in 0..<ownerCount {
            let name = NodeID(try readBoundedString(&reader, what: "node id"))
            if let previous = names.last, !(previous < name) {
                throw DecodeError("ring owners are not sorted and distinct at \(name)")
            }
            names.append(name)
        }
        var owners: [NodeID] = []
        owners.reserveCapacity(min(partitioning.partitionCount, reader.remainingCount))
        for _ in 0..<partitioning.partitionCount {
            let index = try reader.readVarint()
            guard index < UInt64(names.count) else { throw DecodeError("owner index \(index) out of \(names.count)") }
            owners.append(names[Int(index)])
        }
        let ring: Ring
        do {
            ring = try Ring(partitioning: partitioning, owners: owners, epoch: ringEpoch)
        } catch {
            throw DecodeError("ring refused: \(error)")
        }
        guard ring.members == names else { throw DecodeError("ring lists owners that own no partition") }
        return ring
    }

    static func decodeMembers(_ reader: inout ByteReader) throws(DecodeError) -> [MemberInfo] {
        let count = try reader.readCount(elementBytesMin: 6)
        guard count <= MembershipLimits.membersMax else {
            throw DecodeError("\(count) members exceed \(MembershipLimits.membersMax)")
        }
        var members: [MemberInfo] = []
        var seen = Set<NodeID>()
        for _ in 0..<count {
            let id = NodeID(try readBoundedString(&reader, what: "node id"))
            guard !id.rawValue.isEmpty, seen.insert(id).inserted else {
                throw DecodeError("member id '\(id)' is empty or repeated")
            }
            let rpcHost = try readBoundedString(&reader, what: "host")
            let rpcPort = try readPort(&reader)
            let httpHost = try readBoundedString(&reader, what: "host")
            let httpPort = try readPort(&reader)
            let statusByte = try reader.readUInt8()
            guard let status = MemberStatus(rawValue: statusByte) else {
                throw DecodeError("member status \(statusByte) is unknown")
            }
            members.append(MemberInfo(id: id, rpcHost: rpcHost, rpcPort: rpcPort, httpHost: httpHost, httpPort: httpPort, status: status))
        }
        return members
    }

    static func decodeTables(_ reader: inout ByteReader) throws(DecodeError) -> [TableSpec] {
        let count = try reader.readCount(elementBytesMin: 5)
        guard count <= MembershipLimits.tablesMax else {
            throw DecodeError("\(count) tables exceed \(MembershipLimits.tablesMax)")
        }
        var tables: [TableSpec] = []
        var seen = Set<String>()
        for _ in 0..<count {
            let name = try readBoundedString(&reader, what: "table name")
            let n = Int(clamping: try reader.readVarint())
            let r = Int(clamping: try reader.readVarint())
            let w = Int(clamping: try reader.readVarint())
            let table = TableSpec(name: name, n: n, r: r, w: w, consistency: try reader.readUInt8())
            do {
                try table.validate()
            } catch {
                throw DecodeError("table '\(name)' is invalid: \(error)")
            }
            guard seen.insert(name).inserted else { throw DecodeError("table '\(name)' is listed twice") }
            tables.append(table)
        }
        return tables
    }

    static func readBoundedString(_ reader: inout ByteReader, what: String) throws(DecodeError) -> String {
        let text = try reader.readString()
        guard text.utf8.count <= MembershipLimits.hostBytesMax else {
            throw DecodeError("\(what) of \(text.utf8.count) bytes exceeds \(MembershipLimits.hostBytesMax)")
        }
        return text
    }

    static func readPort(_ reader: inout ByteReader) throws(DecodeError) -> UInt16 {
        let value = try reader.readVarint()
        guard value <= UInt64(UInt16.max) else { throw DecodeError("port \(value) exceeds 65535") }
        return UInt16(value)
    }
}
