/// A 64-bit hash that is the same on every node and every run (unlike `Hasher`,
/// which is seeded per process): FNV-1a over the bytes, then the SplitMix64
/// finaliser so that nearby inputs spread over all 64 bits.
public enum StableHash {
    /// The hash of `bytes`, continuing from `seed`.
    public static func hash(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var state = seed
        for byte in bytes {
            state ^= UInt64(byte)
            state &*= 0x0000_0100_0000_01b3
        }
        return mix(state)
    }

    /// The SplitMix64 finaliser.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A Merkle tree over the keys one replica holds of one table in one partition,
/// kept up to date as writes land (anti-entropy, DESIGN §5).
///
/// The shape is fixed, so two replicas' trees compare node by node: 256 leaves,
/// 16 inner nodes of 16 leaves each, one root. A key belongs to the leaf its
/// stable key hash names; a leaf's hash is the wrapping sum of the entry hashes
/// of its keys (`entryHash(storageKey:value:)`), so a write updates it in O(1) by
/// taking out the old entry and adding the new one. Inner hashes and the root are
/// computed from their children when asked, and cached until a child changes.
///
/// Isolation: a value type; the shell keeps one per table and partition under a lock.
public struct HashTree: Hashable, Sendable {
    /// Leaves of the tree.
    public static let leafCount = 256
    /// Children of every inner node (and inner nodes under the root).
    public static let fanout = 16

    /// The leaf hashes.
    public private(set) var leaves: [UInt64]
    /// The keys counted in the tree.
    public private(set) var keyCount: Int
    private var innerCache: [UInt64?]

    /// An empty tree.
    public init() {
        leaves = Array(repeating: 0, count: Self.leafCount)
        keyCount = 0
        innerCache = Array(repeating: nil, count: Self.fanout)
    }

    /// The leaf a storage key belongs to.
    public static func leaf(of storageKey: [UInt8]) -> Int {
        Int(StableHash.hash(storageKey) >> 56)
    }

    /// The hash a key contributes: its storage key and stored bytes together, so that
    /// the same key holding other bytes contributes something else.
    public static func entryHash(storageKey: [UInt8], value: [UInt8]) -> UInt64 {
        StableHash.hash(value, seed: StableHash.hash(storageKey))
    }

    /// Records a change of one key: `old` is the entry hash it had (nil if absent),
    /// `new` the one it has now (nil if removed).
    public mutating func update(storageKey: [UInt8], old: UInt64?, new: UInt64?) {
        guard old != new else { return }
        let leaf = Self.leaf(of: storageKey)
        if let old {
            leaves[leaf] &-= old
            keyCount -= 1
        }
        if let new {
            leaves[leaf] &+= new
            keyCount += 1
        }
        innerCache[leaf / Self.fanout] = nil
    }

    /// The hash of inner node `index` (0..<16): of its 16 leaves.
    public mutating func inner(_ index: Int) -> UInt64 {
        if let cached = innerCache[index] { return cached }
        let start = index * Self.fanout
        let hash = Self.combine(leaves[start..<(start + Self.fanout)])
        innerCache[index] = hash
        return hash
    }

    /// Every inner hash, in order.
    public mutating func inners() -> [UInt64] {
        (0..<Self.fanout).map { inner($0) }
    }

    /// The root hash: of the inner hashes. Two replicas with the same keys and bytes
    /// have the same root.
    public mutating func root() -> UInt64 {
        Self.combine(inners()[...])
    }

    /// The leaves of inner node `index`.
    public func leaves(under index: Int) -> ArraySlice<UInt64> {
        leaves[(index * Self.fanout)..<((index + 1) * Self.fanout)]
    }

    /// Hashes an ordered list of child hashes into their parent's hash.
    static func combine(_ children: ArraySlice<UInt64>) -> UInt64 {
        var state: UInt64 = 0x6a09_e667_f3bc_c908
        for child in children {
            state = StableHash.mix(state ^ child)
        }
        return state
    }

    /// Indices where two equally long hash lists differ.
    public static func differences(_ mine: some Collection<UInt64>, _ theirs: some Collection<UInt64>) -> [Int] {
        var result: [Int] = []
        for (index, (a, b)) in zip(mine, theirs).enumerated() where a != b { result.append(index) }
        return result
    }

    public static func == (lhs: HashTree, rhs: HashTree) -> Bool {
        lhs.leaves == rhs.leaves && lhs.keyCount == rhs.keyCount
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(leaves)
    }
}
