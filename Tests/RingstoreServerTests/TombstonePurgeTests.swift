import NIOCore
import RingstoreCore
import RingstoreRPC
@testable import RingstoreServer
import Testing

@Suite("Tombstone purge")
struct TombstonePurgeTests {
    private static let a = NodeID("a"), b = NodeID("b"), c = NodeID("c"), d = NodeID("d")
    private static let candidates: [(key: [UInt8], hash: UInt64)] = [(Array("t\u{0}k1".utf8), 11), (Array("t\u{0}k2".utf8), 22)]
    private static let mine = [held(11), held(22)]

    private static func held(_ hash: UInt64, hint: Bool = false) -> TombstoneHolding {
        TombstoneHolding(stored: .hash(hash), holdsHint: hint)
    }

    private static func purgeable(replicas: Set<NodeID> = [b, c], members: Set<NodeID> = [b, c, d], mine: [TombstoneHolding] = mine, _ answers: [NodeID: [TombstoneHolding]]) -> [UInt64] {
        TombstonePurge.purgeable(candidates, mine: mine, replicas: replicas, members: members, answers: answers).map(\.hash)
    }

    private static let absent = TombstoneHolding(stored: .absent, holdsHint: false)

    @Test func everyReplicaHoldingTheSameTombstoneAndNoHintPurges() {
        #expect(Self.purgeable([Self.b: Self.mine, Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]) == [11, 22])
    }

    @Test func aReplicaWithOtherBytesKeepsThatKey() {
        #expect(Self.purgeable([Self.b: [Self.held(11), Self.held(99)], Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]) == [11])
    }

    @Test func aReplicaWithoutTheKeyKeepsIt() {
        // It may hold an older version that a hint or a lagging write brings back; the tombstone must reach it first.
        #expect(Self.purgeable([Self.b: Self.mine, Self.c: [Self.absent, Self.held(22)], Self.d: [Self.absent, Self.absent]]) == [22])
    }

    @Test func anUnreadableReplicaKeepsTheKey() {
        let unreadable = TombstoneHolding(stored: .unreadable, holdsHint: false)
        #expect(Self.purgeable([Self.b: [unreadable, Self.held(22)], Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]) == [22])
    }

    @Test func aHintAnywhereKeepsTheKey() {
        // d is no replica, but as a fallback it may carry an older version to its owner.
        let hintAtD = [Self.absent, TombstoneHolding(stored: .absent, holdsHint: true)]
        #expect(Self.purgeable([Self.b: Self.mine, Self.c: Self.mine, Self.d: hintAtD]) == [11])
        #expect(Self.purgeable([Self.b: [Self.held(11, hint: true), Self.held(22)], Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]) == [22])
        #expect(Self.purgeable(mine: [Self.held(11, hint: true), Self.held(22)], [Self.b: Self.mine, Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]) == [22])
    }

    @Test func thisNodeNoLongerHoldingTheTombstoneKeepsTheKey() {
        #expect(Self.purgeable(mine: [Self.held(12), Self.absent], [Self.b: Self.mine, Self.c: Self.mine, Self.d: [Self.absent, Self.absent]]).isEmpty)
    }

    @Test func aMemberThatDidNotAnswerKeepsEverything() {
        #expect(Self.purgeable([Self.b: Self.mine, Self.c: Self.mine]).isEmpty)
        #expect(Self.purgeable([Self.b: Self.mine, Self.c: [Self.held(11)], Self.d: [Self.absent, Self.absent]]).isEmpty)
        // A replica that is not a member of what was asked cannot be vouched for.
        #expect(Self.purgeable(replicas: [Self.b, Self.c], members: [Self.b], [Self.b: Self.mine]).isEmpty)
    }

    @Test func messagesRoundTrip() throws {
        let header = TombstonePurge.Header(id: TreeID(table: "t", partition: PartitionID(rawValue: 7)), ringEpoch: 42, n: 3)
        let (checkHeader, keys) = try TombstonePurge.decodeCheck(TombstonePurge.encodeCheck(header, keys: Self.candidates.map(\.key)))
        #expect(checkHeader == header)
        #expect(keys == Self.candidates.map(\.key))
        let (purgeHeader, purged) = try TombstonePurge.decodePurge(TombstonePurge.encodePurge(header, keys: Self.candidates))
        #expect(purgeHeader == header)
        #expect(purged.map(\.key) == Self.candidates.map(\.key) && purged.map(\.hash) == [11, 22])
        let holdings = [Self.held(5, hint: true), Self.absent, TombstoneHolding(stored: .unreadable, holdsHint: false)]
        #expect(try TombstonePurge.decodeCheckReply(TombstonePurge.encodeCheckReply(holdings)) == holdings)
        #expect(try TombstonePurge.decodeCheckReply(TombstonePurge.encodeCheckReply(nil)) == nil)
        #expect(try TombstonePurge.decodePurgeReply(TombstonePurge.encodePurgeReply(300)) == 300)
    }

    @Test func malformedMessagesAreRefused() {
        let header = TombstonePurge.Header(id: TreeID(table: "t", partition: PartitionID(rawValue: 7)), ringEpoch: 42, n: 3)
        var check = TombstonePurge.encodeCheck(header, keys: [[1, 2]])
        check.body.writeInteger(UInt8(0))
        #expect(throws: DecodeError.self) { try TombstonePurge.decodeCheck(check) }
        var zeroN = TombstonePurge.encodeCheck(TombstonePurge.Header(id: header.id, ringEpoch: 1, n: 1), keys: [])
        // varint length 1, "t", partition (4 bytes), epoch (8 bytes), then n.
        zeroN.body.setInteger(UInt8(0), at: zeroN.body.readerIndex + 1 + 1 + 4 + 8)
        #expect(throws: DecodeError.self) { try TombstonePurge.decodeCheck(zeroN) }
        var reply = TombstonePurge.encodeCheckReply([Self.absent])
        reply.body.setInteger(UInt8(7), at: reply.body.readerIndex + 2)
        #expect(throws: DecodeError.self) { try TombstonePurge.decodeCheckReply(reply) }
    }
}

@Suite("Hash trees remember tombstones")
struct HashTreeTombstoneTests {
    private static let partition = PartitionID(rawValue: 3)
    private static let id = TreeID(table: "t", partition: partition)

    private static func key(_ name: String) -> [UInt8] { StorageKeyCodec.encode(table: "t", key: Array(name.utf8)) }

    private static func object(deleted: Bool) -> [UInt8] {
        let sibling = deleted ? Sibling.tombstone : Sibling(contentType: "text/plain", data: Array("v".utf8))
        let stored = StoredObject().update(with: StoredObject.fresh(sibling, context: nil), actor: ActorID(rawValue: 1))
        return StoredObject.encodeObject(stored)
    }

    @Test func aKeyIsACandidateWhileItHoldsOnlyTombstones() {
        let trees = HashTrees()
        let start = ContinuousClock.now
        let (value, tombstone) = (Self.object(deleted: false), Self.object(deleted: true))
        #expect(StoredObject.holdsOnlyTombstones(encoded: tombstone))
        #expect(!StoredObject.holdsOnlyTombstones(encoded: value))
        trees.record(partition: Self.partition, storageKey: Self.key("a"), old: nil, new: value, deleted: false, now: start)
        trees.record(partition: Self.partition, storageKey: Self.key("a"), old: value, new: tombstone, deleted: true, now: start)
        trees.record(partition: Self.partition, storageKey: Self.key("b"), old: nil, new: tombstone, deleted: true, now: start + .seconds(5))
        #expect(trees.tombstoneCount == 2)
        #expect(trees.treesWithTombstones == [Self.id])
        // Only those seen long enough ago, oldest first, with the hash of their bytes.
        let old = trees.tombstones(Self.id, seenBefore: start + .seconds(1), limit: 10)
        #expect(old.map(\.key) == [Self.key("a")])
        #expect(old.first?.hash == HashTree.entryHash(storageKey: Self.key("a"), value: tombstone))
        #expect(trees.tombstones(Self.id, seenBefore: start + .seconds(9), limit: 1).map(\.key) == [Self.key("a")])
        // Written again with a value, or removed, a key is no candidate.
        trees.record(partition: Self.partition, storageKey: Self.key("a"), old: tombstone, new: value, deleted: false, now: start)
        trees.record(partition: Self.partition, storageKey: Self.key("b"), old: tombstone, new: nil, deleted: false, now: start)
        #expect(trees.tombstoneCount == 0)
        #expect(trees.treesWithTombstones.isEmpty)
        var tree = trees.tree(Self.id)
        var expected = HashTree()
        expected.update(storageKey: Self.key("a"), old: nil, new: HashTree.entryHash(storageKey: Self.key("a"), value: value))
        #expect(tree.inners() == expected.inners())
    }
}
