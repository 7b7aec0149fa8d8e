import NIOCore
import RingstoreCore
import RingstoreRPC

/// What one node holds of a key the purge asks about.
struct TombstoneHolding: Sendable, Equatable {
    enum Stored: Sendable, Equatable {
        case absent
        /// The entry hash of the stored bytes (`HashTree.entryHash`).
        case hash(UInt64)
        /// A record that failed its checksum: what it held is unknown.
        case unreadable
    }

    var stored: Stored
    /// Whether the node keeps a hint for the key (as a fallback, for another node).
    var holdsHint: Bool
}

/// Purging tombstones (DESIGN §5). A deleted key keeps its tombstone until a purge
/// proves that nothing older can come back:
///
/// 1. The first home replica of a partition remembers the keys it holds only as
///    tombstones (`HashTrees`), and considers those it has held so for the grace period.
/// 2. With the ring settled (no transition) and every member reachable, it asks every
///    member what it holds of those keys: the stored bytes' hash and whether it keeps a
///    hint for them.
/// 3. A key is purged only if every home replica holds the very same bytes (so the
///    same tombstone and no older version) and no member keeps a hint for it (a hint may
///    carry an older version to an owner). Anything short of that, a member that did
///    not answer included, keeps the tombstone.
/// 4. Each replica then removes the key only if its bytes still have that hash and it
///    keeps no hint, under the key's lock, so a write that lands meanwhile wins.
///
/// The grace period covers what no store can show: a message already in flight, or a
/// stalled process holding an older version in memory.
enum TombstonePurge {
    /// Message types: a check (reply: holdings) and a purge (reply: how many removed).
    static let check: UInt16 = 64
    static let checkReply: UInt16 = 164
    static let purge: UInt16 = 65
    static let purgeReply: UInt16 = 165

    /// The keys of `candidates` (with this node's hash of each) that every replica
    /// holds with the same hash and that no member keeps a hint for. `answers` must
    /// hold every one of `members` (every other member of the cluster, the other
    /// replicas among them), each with one holding per candidate; otherwise nothing is
    /// purged.
    static func purgeable(
        _ candidates: [(key: [UInt8], hash: UInt64)], mine: [TombstoneHolding],
        replicas: Set<NodeID>, members: Set<NodeID>, answers: [NodeID: [TombstoneHolding]]
    ) -> [(key: [UInt8], hash: UInt64)] {
        guard replicas.isSubset(of: members), mine.count == candidates.count,
              members.allSatisfy({ answers[$0]?.count == candidates.count })
        else { return [] }
        return candidates.indices.compactMap { index in
            let candidate = candidates[index]
            guard mine[index] == TombstoneHolding(stored: .hash(candidate.hash), holdsHint: false) else { return nil }
            for member in members {
                let holding = answers[member]![index]
                if holding.holdsHint { return nil }
                if replicas.contains(member), holding.stored != .hash(candidate.hash) { return nil }
            }
            return candidate
        }
    }

    // MARK: Wire

    /// A request starts as anti-entropy's do: the tree, the asker's ring epoch and n.
    typealias Header = AntiEntropyWire.Header

    static func encodeCheck(_ header: Header, keys: [[UInt8]]) -> RPCMessage {
        var writer = headerWriter(header, count: keys.count)
        for key in keys { writer.writeBytes(key) }
        return RPCMessage(messageType: check, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decodeCheck(_ message: RPCMessage) throws(DecodeError) -> (Header, keys: [[UInt8]]) {
        var reader = ByteReader(Array(message.body.readableBytesView))
        let header = try readHeader(&reader)
        var keys: [[UInt8]] = []
        for _ in 0..<(try reader.readCount(elementBytesMin: 1)) { keys.append(try reader.readBytes()) }
        try reader.expectEnd()
        return (header, keys)
    }

    static func encodePurge(_ header: Header, keys: [(key: [UInt8], hash: UInt64)]) -> RPCMessage {
        var writer = headerWriter(header, count: keys.count)
        for (key, hash) in keys {
            writer.writeBytes(key)
            writer.writeUInt64BE(hash)
        }
        return RPCMessage(messageType: purge, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decodePurge(_ message: RPCMessage) throws(DecodeError) -> (Header, keys: [(key: [UInt8], hash: UInt64)]) {
        var reader = ByteReader(Array(message.body.readableBytesView))
        let header = try readHeader(&reader)
        var keys: [(key: [UInt8], hash: UInt64)] = []
        for _ in 0..<(try reader.readCount(elementBytesMin: 9)) {
            let key = try reader.readBytes()
            keys.append((key, try reader.readUInt64BE()))
        }
        try reader.expectEnd()
        return (header, keys)
    }

    /// A check's answer: nil when the node refused (another ring, a transition, not ready).
    static func encodeCheckReply(_ holdings: [TombstoneHolding]?) -> RPCMessage {
        var writer = ByteWriter(capacity: 16 + 10 * (holdings?.count ?? 0))
        if let holdings {
            writer.writeUInt8(0)
            writer.writeVarint(UInt64(holdings.count))
            for holding in holdings {
                switch holding.stored {
                case .absent: writer.writeUInt8(0)
                case .hash(let hash):
                    writer.writeUInt8(1)
                    writer.writeUInt64BE(hash)
                case .unreadable: writer.writeUInt8(2)
                }
                writer.writeUInt8(holding.holdsHint ? 1 : 0)
            }
        } else {
            writer.writeUInt8(1)
        }
        return RPCMessage(messageType: checkReply, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decodeCheckReply(_ message: RPCMessage) throws(DecodeError) -> [TombstoneHolding]? {
        var reader = ByteReader(Array(message.body.readableBytesView))
        guard try reader.readUInt8() == 0 else {
            try reader.expectEnd()
            return nil
        }
        var holdings: [TombstoneHolding] = []
        for _ in 0..<(try reader.readCount(elementBytesMin: 2)) {
            let stored: TombstoneHolding.Stored
            switch try reader.readUInt8() {
            case 0: stored = .absent
            case 1: stored = .hash(try reader.readUInt64BE())
            case 2: stored = .unreadable
            case let other: throw DecodeError("unknown stored kind \(other)")
            }
            let hint = try reader.readUInt8()
            guard hint <= 1 else { throw DecodeError("hint flag \(hint)") }
            holdings.append(TombstoneHolding(stored: stored, holdsHint: hint == 1))
        }
        try reader.expectEnd()
        return holdings
    }

    static func encodePurgeReply(_ purged: Int) -> RPCMessage {
        var writer = ByteWriter(capacity: 10)
        writer.writeVarint(UInt64(purged))
        return RPCMessage(messageType: purgeReply, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decodePurgeReply(_ message: RPCMessage) throws(DecodeError) -> Int {
        var reader = ByteReader(Array(message.body.readableBytesView))
        let purged = try reader.readVarint()
        try reader.expectEnd()
        return Int(clamping: purged)
    }

    private static func headerWriter(_ header: Header, count: Int) -> ByteWriter {
        var writer = ByteWriter(capacity: 64)
        header.write(into: &writer)
        writer.writeVarint(UInt64(count))
        return writer
    }

    private static func readHeader(_ reader: inout ByteReader) throws(DecodeError) -> Header {
        let header = try Header(from: &reader)
        guard (1...Limits.replicasMax).contains(header.n) else { throw DecodeError("n \(header.n) out of range") }
        return header
    }
}
