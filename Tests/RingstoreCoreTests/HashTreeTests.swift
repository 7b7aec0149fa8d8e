@testable import RingstoreCore
import Testing

@Suite("Merkle trees")
struct HashTreeTests {
    private func key(_ index: Int) -> [UInt8] { StorageKeyCodec.encode(table: "t", key: Array("key\(index)".utf8)) }
    private func value(_ index: Int, _ version: Int = 0) -> [UInt8] { Array("value \(index) v\(version)".utf8) }

    private func tree(_ entries: [(Int, Int)]) -> HashTree {
        var tree = HashTree()
        for (index, version) in entries {
            tree.update(storageKey: key(index), old: nil, new: HashTree.entryHash(storageKey: key(index), value: value(index, version)))
        }
        return tree
    }

    // Proves the same keys give the same root in any order, and that updating a tree in place gives the tree built afresh.
    @Test func incrementalEqualsRebuilt() {
        var forward = tree((0..<500).map { ($0, 0) })
        var backward = tree((0..<500).reversed().map { ($0, 0) })
        #expect(forward.root() == backward.root())
        // Rewrite key 7 and remove key 9 in place.
        forward.update(storageKey: key(7), old: HashTree.entryHash(storageKey: key(7), value: value(7)), new: HashTree.entryHash(storageKey: key(7), value: value(7, 1)))
        forward.update(storageKey: key(9), old: HashTree.entryHash(storageKey: key(9), value: value(9)), new: nil)
        var rebuilt = tree((0..<500).filter { $0 != 9 }.map { ($0, $0 == 7 ? 1 : 0) })
        #expect(forward == rebuilt)
        #expect(forward.root() == rebuilt.root())
        #expect(forward.keyCount == 499)
    }

    // Proves one differing key shows in exactly one inner node and one leaf, the one its key hashes to.
    @Test func differencesNameTheLeaf() {
        var mine = tree((0..<300).map { ($0, 0) })
        var theirs = tree((0..<300).map { ($0, $0 == 42 ? 1 : 0) })
        #expect(mine.root() != theirs.root())
        let inners = HashTree.differences(mine.inners(), theirs.inners())
        let leaf = HashTree.leaf(of: key(42))
        #expect(inners == [leaf / HashTree.fanout])
        #expect(HashTree.differences(mine.leaves(under: inners[0]), theirs.leaves(under: inners[0])) == [leaf % HashTree.fanout])
    }

    // Proves the stable hash is fixed across runs (the value is pinned), unlike Hasher.
    @Test func stableHashIsPinned() {
        // FNV-1a 64 of "ringstore", then the SplitMix64 finaliser, computed independently.
        #expect(StableHash.hash(Array("ringstore".utf8)) == 0x9098_32fd_d5b6_f6a5)
        #expect(StableHash.hash([]) == StableHash.mix(0xcbf2_9ce4_8422_2325))
        #expect(StableHash.hash(Array("a".utf8)) != StableHash.hash(Array("b".utf8)))
    }
}
