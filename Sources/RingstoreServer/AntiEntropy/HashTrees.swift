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
/// when the node starts; and, beside them, the keys whose versions are all
/// tombstones, with when each was first seen, for the purge (`TombstonePurge`).
///
/// Only the replicated data of eventual tables is in them: not the node's own
/// catalogue, and not the acceptor states of linearizable keys (CASPaxos needs no
/// repair: every operation reads a majority).
///
/// Thread safety: all methods may be called from any thread.
final class HashTrees: Sendable {
    private let trees = Mutex<[TreeID: HashTree]>([:])
    private let tombstoneIndex = Mutex(TombstoneIndex())
    private let rebuilds = CoreMetrics.Counter(label: "ringstore_aae_tree_rebuilds_total")

    /// A key that holds only tombstones: the entry hash of those bytes, and since when.
    struct TombstoneSighting: Sendable, Equatable {
        var hash: UInt64
        var since: ContinuousClock.Instant
    }

    /// The keys holding only tombstones, by tree, and how many in all.
    struct TombstoneIndex: Sendable {
        /// The most remembered; more are found again at the next start.
        static let countMax = 1_000_000
        var byTree: [TreeID: [[UInt8]: TombstoneSighting]] = [:]
        var count = 0

        mutating func insert(_ id: TreeID, _ storageKey: [UInt8], _ sighting: TombstoneSighting) {
            if byTree[id]?[storageKey] == nil {
                guard count < Self.countMax else { return }
                count += 1
            }
            byTree[id, default: [:]][storageKey] = sighting
        }

        mutating func remove(_ id: TreeID, _ storageKey: [UInt8]) {
            // Every write of a live value asks; almost always there is nothing to look up.
            guard count > 0, byTree[id]?.removeValue(forKey: storageKey) != nil else { return }
            count -= 1
            if byTree[id]?.isEmpty == true { byTree[id] = nil }
        }
    }

    /// Whether a storage key is replicated data a tree covers; its table if so.
    static func table(of storageKey: [UInt8]) -> String? {
        guard let (table, _) = StorageKeyCodec.decode(storageKey), table != TableCatalog.systemTable else { return nil }
        return table
    }

    /// Records that `storageKey` changed from `old` to `new` bytes (nil: absent);
    /// `deleted` says that the new versions are all tombstones.
    func record(partition: PartitionID, storageKey: [UInt8], old: [UInt8]?, new: [UInt8]?, deleted: Bool, now: ContinuousClock.Instant) {
        guard let table = Self.table(of: storageKey) else { return }
        let oldHash = old.map { HashTree.entryHash(storageKey: storageKey, value: $0) }
        let newHash = new.map { HashTree.entryHash(storageKey: storageKey, value: $0) }
        guard oldHash != newHash else { return }
        let id = TreeID(table: table, partition: partition)
        trees.withLock { trees in
            trees[id, default: HashTree()].update(storageKey: storageKey, old: oldHash, new: newHash)
        }
        tombstoneIndex.withLock { index in
            if let newHash, deleted {
                index.insert(id, storageKey, TombstoneSighting(hash: newHash, since: now))
            } else {
                index.remove(id, storageKey)
            }
        }
    }

    /// The keys of `id` that have held only tombstones since `before` or earlier,
    /// at most `limit` of them, oldest first.
    func tombstones(_ id: TreeID, seenBefore before: ContinuousClock.Instant, limit: Int) -> [(key: [UInt8], hash: UInt64)] {
        let old = tombstoneIndex.withLock { $0.byTree[id] ?? [:] }.filter { $0.value.since <= before }
        return old.sorted { $0.value.since < $1.value.since }.prefix(limit).map { ($0.key, $0.value.hash) }
    }

    /// How many keys hold only tombstones (as far as remembered).
    var tombstoneCount: Int {
        tombstoneIndex.withLock { $0.count }
    }

    /// The trees that have tombstones waiting.
    var treesWithTombstones: [TreeID] {
        tombstoneIndex.withLock { Array($0.byTree.keys) }
    }

    /// Builds every tree again from what `storage` holds (at start, and after a table
    /// was dropped), and finds the keys that hold only tombstones, as seen `now`.
    func rebuild(from storage: StorageEngine, now: ContinuousClock.Instant) {
        var built: [TreeID: HashTree] = [:]
        var found = TombstoneIndex()
        for (partition, _) in storage.keyCountsByPartition() {
            for storageKey in storage.keys(in: partition) {
                guard let table = Self.table(of: storageKey), let value = try? storage.get(partition: partition, key: storageKey) else { continue }
                let id = TreeID(table: table, partition: partition)
                let hash = HashTree.entryHash(storageKey: storageKey, value: value)
                built[id, default: HashTree()].update(storageKey: storageKey, old: nil, new: hash)
                if found.count < TombstoneIndex.countMax, StoredObject.holdsOnlyTombstones(encoded: value) {
                    found.insert(id, storageKey, TombstoneSighting(hash: hash, since: now))
                }
            }
        }
        trees.withLock { $0 = built }
        tombstoneIndex.withLock { $0 = found }
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
