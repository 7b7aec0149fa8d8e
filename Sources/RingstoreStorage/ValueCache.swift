/// Recently written and read values, by the sequence number of the record holding
/// them, bounded in bytes; oldest first out.
///
/// A sequence number names one record for good (merging keeps it, a new write gets a
/// new one), so an entry can never go stale: a key's directory entry leads to the
/// cached value exactly while that record is the key's newest. Entries of records
/// that were superseded are removed at once, so that overwrites do not crowd out live
/// values. A hit saves the read of a node's read-modify-write (every replica reads a
/// key before it writes it) its system call and checksum.
struct ValueCache {
    /// Counted for each entry on top of its value: the dictionary slot, the array
    /// header and the place in the eviction order.
    static let entryOverheadBytes = 64

    let capacityBytes: Int
    private(set) var bytes = 0
    private var values: [UInt64: [UInt8]] = [:]
    /// Sequence numbers in insertion order from `head` on; some may have been removed
    /// from `values` since.
    private var order: [UInt64] = []
    private var head = 0

    init(capacityBytes: Int) {
        self.capacityBytes = max(0, capacityBytes)
    }

    var count: Int { values.count }
    /// Entries of the eviction order still to visit, removed ones included.
    var orderCount: Int { order.count - head }

    func value(for sequence: UInt64) -> [UInt8]? {
        values[sequence]
    }

    /// What an entry holding `value` counts against the capacity.
    private static func cost(of value: [UInt8]) -> Int { value.count + entryOverheadBytes }

    mutating func insert(_ value: [UInt8], for sequence: UInt64) {
        let size = Self.cost(of: value)
        guard size <= capacityBytes, values[sequence] == nil else { return }
        // A copy of exactly the value's size: the caller's array may have room to spare.
        values[sequence] = [UInt8](unsafeUninitializedCapacity: value.count) { buffer, initialized in
            initialized = buffer.initialize(fromContentsOf: value)
        }
        order.append(sequence)
        bytes += size
        while bytes > capacityBytes { evictOldest() }
        compactOrderIfSparse()
    }

    /// Removes the entry of `sequence`; returns whether there was one.
    @discardableResult
    mutating func remove(_ sequence: UInt64) -> Bool {
        guard let value = values.removeValue(forKey: sequence) else { return false }
        bytes -= Self.cost(of: value)
        return true
    }

    private mutating func evictOldest() {
        while head < order.count {
            head += 1
            if remove(order[head - 1]) { return }
        }
    }

    /// Drops the consumed and removed part of `order` once it outweighs the live part,
    /// so that a key overwritten forever does not grow it without end.
    private mutating func compactOrderIfSparse() {
        let unused = order.count - values.count
        guard unused > 1024, unused > values.count else { return }
        order = order[head...].filter { values[$0] != nil }
        head = 0
    }
}
