import CoreMetrics
import RingstoreCore
import RingstoreStorage
import Synchronization

/// A table's keys in one partition: the unit anti-entropy compares.
struct TreeID: Hashable, Sendable {
    var table: String
    var partition: PartitionID
}

/// A node's Merkle trees, one per table and partition it holds keys of, kept up to
/// date by the write path (`ClusterNode.write`) and built from the storage engine
/// when the node starts.
///
/// Only the replicated data of eventual tables is in them: not the node's own
/// catalogue, and not the acceptor states of linearizable keys (CASPaxos needs no
/// repair: every operation reads a majority).
///
/// Thread safety: all methods may be called from any thread.
final class HashTrees: Sendable {
    private let trees = Mutex<[TreeID: HashTree]>([:])
    private let rebuilds = CoreMetrics.Counter(label: "ringstore_aae_tree_rebuilds_total")

    /// Whether a storage key is replicated data a tree covers; its table if so.
    static func table(of storageKey: [UInt8]) -> String? {
        guard let (table, _) = StorageKeyCodec.decode(storageKey), table != TableCatalog.systemTable else { return nil }
        return table
    }

    /// Records that `storageKey` changed from `old` to `new` bytes (nil: absent).
    func record(partition: PartitionID, storageKey: [UInt8], old: [UInt8]?, new: [UInt8]?) {
        guard let table = Self.table(of: storageKey) else { return }
        let oldHash = old.map { HashTree.entryHash(storageKey: storageKey, value: $0) }
        let newHash = new.map { HashTree.entryHash(storageKey: storageKey, value: $0) }
        guard oldHash != newHash else { return }
        trees.withLock { trees in
            trees[TreeID(table: table, partition: partition), default: HashTree()].update(storageKey: storageKey, old: oldHash, new: newHash)
        }
    }

    /// Builds every tree again from what `storage` holds (at start, and after a table was dropped).
    func rebuild(from storage: StorageEngine) {
        var built: [TreeID: HashTree] = [:]
        for (partition, _) in storage.keyCountsByPartition() {
            for storageKey in storage.keys(in: partition) {
                guard let table = Self.table(of: storageKey), let value = try? storage.get(partition: partition, key: storageKey) else { continue }
                built[TreeID(table: table, partition: partition), default: HashTree()]
                    .update(storageKey: storageKey, old: nil, new: HashTree.entryHash(storageKey: storageKey, value: value))
            }
        }
        trees.withLock { $0 = built }
        rebuilds.increment()
    }

    /// A copy of one tree (empty if the node holds no key of it).
    func tree(_ id: TreeID) -> HashTree {
        trees.withLock { $0[id] } ?? HashTree()
    }

    /// The keys of `id` in the given leaves that `storage` holds, with their entry hashes.
    static func entries(_ id: TreeID, leaves: Set<Int>, storage: StorageEngine) -> [(key: [UInt8], hash: UInt64)] {
        var result: [(key: [UInt8], hash: UInt64)] = []
        for storageKey in storage.keys(in: id.partition) where leaves.contains(HashTree.leaf(of: storageKey)) {
            guard table(of: storageKey) == id.table, let value = try? storage.get(partition: id.partition, key: storageKey) else { continue }
            result.append((storageKey, HashTree.entryHash(storageKey: storageKey, value: value)))
        }
        return result
    }
}
