/// Which keys this node holds hints for, per home replica, oldest first, bounded in
/// count and in (approximate) bytes. The hints themselves are on disk (`HintRecord`s); this index is rebuilt
/// from them when the node starts.
struct HintIndex: Sendable {
    struct Entry: Hashable, Sendable {
        var key: ItemKey
        var owner: NodeID
    }

    let countMax: Int
    let bytesMax: Int
    private(set) var bytes = 0
    private var sizes: [Entry: Int] = [:]
    /// Insertion order, oldest first; entries removed since are skipped lazily.
    private var order: [Entry] = []
    private var orderStart = 0
    private var live: [Entry: UInt64] = [:]
    private var byOwner: [NodeID: Set<ItemKey>] = [:]
    private var nextStamp: UInt64 = 0
    /// Stamps of live entries in `order`, so a re-added entry is not dropped for its old position.
    private var stampsInOrder: [UInt64] = []

    init(countMax: Int, bytesMax: Int) {
        precondition(countMax > 0 && bytesMax > 0)
        self.countMax = countMax
        self.bytesMax = bytesMax
    }

    var count: Int { live.count }

    /// The keys hinted for `owner`, in a fixed order (storage key bytes).
    func keys(for owner: NodeID) -> [ItemKey] {
        (byOwner[owner] ?? []).sorted { $0.storageKey.lexicographicallyPrecedes($1.storageKey) }
    }

    var owners: [NodeID] { byOwner.keys.sorted() }

    /// Records a hint of about `size` bytes; returns the entries dropped to stay
    /// within the bounds (oldest first).
    mutating func add(_ key: ItemKey, owner: NodeID, size: Int) -> [Entry] {
        let entry = Entry(key: key, owner: owner)
        bytes += size - (sizes[entry] ?? 0)
        sizes[entry] = size
        guard live[entry] == nil else { return [] }
        nextStamp += 1
        live[entry] = nextStamp
        order.append(entry)
        stampsInOrder.append(nextStamp)
        byOwner[owner, default: []].insert(key)
        var dropped: [Entry] = []
        while live.count > countMax || bytes > bytesMax, let oldest = popOldest() {
            remove(oldest)
            dropped.append(oldest)
        }
        compactIfSparse()
        return dropped
    }

    mutating func remove(_ key: ItemKey, owner: NodeID) {
        remove(Entry(key: key, owner: owner))
        compactIfSparse()
    }

    private mutating func remove(_ entry: Entry) {
        guard live.removeValue(forKey: entry) != nil else { return }
        bytes -= sizes.removeValue(forKey: entry) ?? 0
        byOwner[entry.owner]?.remove(entry.key)
        if byOwner[entry.owner]?.isEmpty == true { byOwner[entry.owner] = nil }
    }

    /// The oldest entry still live, removed from the order.
    private mutating func popOldest() -> Entry? {
        while orderStart < order.count {
            let entry = order[orderStart]
            let stamp = stampsInOrder[orderStart]
            orderStart += 1
            if live[entry] == stamp { return entry }
        }
        return nil
    }

    /// Keeps the order array within twice the live entries (plus slack) as entries come and go.
    private mutating func compactIfSparse() {
        guard order.count > 2 * live.count + 1024 else { return }
        var keptEntries: [Entry] = []
        var keptStamps: [UInt64] = []
        for index in orderStart..<order.count where live[order[index]] == stampsInOrder[index] {
            keptEntries.append(order[index])
            keptStamps.append(stampsInOrder[index])
        }
        order = keptEntries
        stampsInOrder = keptStamps
        orderStart = 0
    }
}
