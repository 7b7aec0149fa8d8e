/// One of the Q equal slices of the 64-bit hash space (DESIGN §4), numbered
/// clockwise from 0 at hash 0.
public struct PartitionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The partition's number, in 0..<Q.
    public var rawValue: UInt32

    /// Wraps a partition number; `Partitioning` checks it against Q where it matters.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Orders partitions clockwise around the ring.
    public static func < (lhs: PartitionID, rhs: PartitionID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The partition number in decimal, as logs, metrics and the admin API show it.
    public var description: String { String(rawValue) }
}

/// Why a partition count was refused.
public enum PartitioningError: Error, Equatable, Sendable {
    /// The count is not a power of two in 1...`max`.
    case invalidPartitionCount(count: Int, max: Int)
}

/// How keys map to partitions: Dynamo's strategy 3 (DESIGN §4).
///
/// A key's position is the first 8 bytes, big-endian, of MD5(`table` UTF-8 + 0x00 +
/// partition key), so that any language can compute it. The 64-bit space is cut
/// into `partitionCount` equal ranges; a partition is the top log2(Q) bits of the
/// position. The count is fixed when a cluster is created.
public struct Partitioning: Sendable, Hashable {
    /// Q, the number of partitions: a power of two in 1...`Limits.partitionCountMax`.
    public let partitionCount: Int
    /// log2(Q): how many top bits of a hash name its partition.
    private let partitionBits: Int

    /// Creates a partitioning of `partitionCount` partitions.
    ///
    /// Throws `.invalidPartitionCount` unless the count is a power of two in
    /// 1...`Limits.partitionCountMax`.
    public init(partitionCount: Int) throws(PartitioningError) {
        guard partitionCount >= 1,
              partitionCount <= Limits.partitionCountMax,
              partitionCount & (partitionCount - 1) == 0
        else {
            throw .invalidPartitionCount(count: partitionCount, max: Limits.partitionCountMax)
        }
        self.partitionCount = partitionCount
        self.partitionBits = partitionCount.trailingZeroBitCount
        assert(1 << partitionBits == partitionCount)
    }

    /// Every partition, in ring order.
    public var allPartitions: [PartitionID] {
        (0..<partitionCount).map { PartitionID(rawValue: UInt32($0)) }
    }

    /// The partition whose range holds `hash`: its top log2(Q) bits (0 when Q is 1).
    public func partition(forHash hash: UInt64) -> PartitionID {
        guard partitionBits > 0 else { return PartitionID(rawValue: 0) }
        let index = hash >> UInt64(64 - partitionBits)
        assert(index < UInt64(partitionCount))
        return PartitionID(rawValue: UInt32(truncatingIfNeeded: index))
    }

    /// The partition of `key` in `table`.
    public func partition(table: String, key: [UInt8]) -> PartitionID {
        partition(forHash: Self.hash(table: table, key: key))
    }

    /// The ring position of `key` in `table`: the first 8 bytes, big-endian, of
    /// MD5(UTF-8 of `table` + 0x00 + `key`).
    public static func hash(table: String, key: some Collection<UInt8>) -> UInt64 {
        hash(storageKey: StorageKeyCodec.encode(table: table, key: Array(key)))
    }

    /// The ring position of a key already combined by `StorageKeyCodec.encode`;
    /// equal to `hash(table:key:)` of its parts.
    public static func hash(storageKey: [UInt8]) -> UInt64 {
        let digest = MD5.digest(storageKey)
        var position: UInt64 = 0
        for byte in digest.prefix(8) {
            position = position << 8 | UInt64(byte)
        }
        return position
    }

    /// The hashes `partition` covers: `partition << (64 - log2 Q)` up to just
    /// before the next partition's first hash. The ranges of all partitions tile
    /// 0...UInt64.max without gaps or overlaps.
    public func range(of partition: PartitionID) -> ClosedRange<UInt64> {
        precondition(
            Int(partition.rawValue) < partitionCount,
            "partition \(partition) is outside a ring of \(partitionCount) partitions"
        )
        guard partitionBits > 0 else { return 0...UInt64.max }
        let lower = UInt64(partition.rawValue) << UInt64(64 - partitionBits)
        let upper = lower | (UInt64.max >> UInt64(partitionBits))
        return lower...upper
    }
}

/// The key the storage engine stores for an eventual-table entry: UTF-8 of the
/// table name, a 0x00 separator, then the client's key bytes.
///
/// Table names never contain 0x00 (`Validation.checkTableName`), so the first zero
/// byte always ends the table name even when the key itself holds zeros.
/// `Partitioning.hash(storageKey:)` of the combined key is the entry's ring position.
public enum StorageKeyCodec: Sendable {
    /// Combines a table name and a key into one storage key.
    public static func encode(table: String, key: [UInt8]) -> [UInt8] {
        assert(!table.utf8.contains(0), "table names never contain a zero byte")
        var combined: [UInt8] = []
        combined.reserveCapacity(table.utf8.count + 1 + key.count)
        combined.append(contentsOf: table.utf8)
        combined.append(0x00)
        combined.append(contentsOf: key)
        return combined
    }

    /// The first byte of the storage key under which an acceptor of a linearizable
    /// table keeps a key's CASPaxos state; no table name starts with it.
    public static let acceptorMarker: UInt8 = 0x01

    /// The storage key of a linearizable key's acceptor state: the marker, then what
    /// `encode` gives. It sorts apart from every table's own keys and lives in the
    /// key's partition, so it moves and is dropped with the partition.
    public static func encodeAcceptor(table: String, key: [UInt8]) -> [UInt8] {
        [acceptorMarker] + encode(table: table, key: key)
    }

    /// The table and key of an acceptor state's storage key; nil for any other key.
    public static func decodeAcceptor(_ bytes: [UInt8]) -> (table: String, key: [UInt8])? {
        guard bytes.first == acceptorMarker else { return nil }
        return decode(Array(bytes.dropFirst()), allowingMarker: true)
    }

    /// Splits a storage key into its table name and key, or returns nil when it has
    /// no separator, the table part is not UTF-8, or it is an acceptor state's key.
    public static func decode(_ bytes: [UInt8]) -> (table: String, key: [UInt8])? {
        decode(bytes, allowingMarker: false)
    }

    private static func decode(_ bytes: [UInt8], allowingMarker: Bool) -> (table: String, key: [UInt8])? {
        guard allowingMarker || bytes.first != acceptorMarker else { return nil }
        guard let separator = bytes.firstIndex(of: 0x00) else { return nil }
        let tableBytes = Array(bytes[..<separator])
        guard UTF8.isValid(tableBytes) else { return nil }
        let table = String(decoding: tableBytes, as: UTF8.self)
        return (table, Array(bytes[(separator + 1)...]))
    }
}
