/// Where the newest record of a key lives. 24 bytes per key in the directory.
struct Location: Equatable {
    var segment: UInt32
    var offset: UInt32
    /// Header, key and value together; zero marks a tombstone, which exists only while recovering.
    var recordBytes: UInt32
    var sequence: UInt64

    var isTombstone: Bool { recordBytes == 0 }
}

/// The in-memory index: for every partition, every live key and where its newest
/// record is. One dictionary per partition so that a partition can be listed,
/// streamed and dropped without touching the others.
struct KeyDirectory {
    typealias Entries = [[UInt8]: Location]

    private(set) var partitions: [UInt32: Entries] = [:]
    private(set) var count = 0

    func location(partition: UInt32, key: [UInt8]) -> Location? {
        partitions[partition]?[key]
    }

    /// Stores `location` for the key and returns what it replaced.
    @discardableResult
    mutating func set(partition: UInt32, key: [UInt8], location: Location) -> Location? {
        let previous = withEntries(of: partition) { $0.updateValue(location, forKey: key) }
        if previous == nil { count += 1 }
        return previous
    }

    /// Stores `location` only if the key has no entry with an equal or higher sequence
    /// (recovery reads files in an order unrelated to sequence). Returns whether it was
    /// stored and the entry it replaced.
    mutating func setIfNewer(partition: UInt32, key: [UInt8], location: Location) -> (stored: Bool, replaced: Location?) {
        let result: (stored: Bool, replaced: Location?) = withEntries(of: partition) { entries in
            let current = entries[key]
            guard current.map({ $0.sequence < location.sequence }) ?? true else { return (false, nil) }
            entries[key] = location
            return (true, current)
        }
        if result.stored && result.replaced == nil { count += 1 }
        return result
    }

    /// Replaces the entry for `key` only if it still equals `expected`; merge uses this
    /// so that a write that raced with it is never undone.
    mutating func replace(partition: UInt32, key: [UInt8], expected: Location, with location: Location) -> Bool {
        withEntries(of: partition) { entries in
            guard entries[key] == expected else { return false }
            entries[key] = location
            return true
        }
    }

    @discardableResult
    mutating func remove(partition: UInt32, key: [UInt8]) -> Location? {
        guard let previous = partitions[partition]?.removeValue(forKey: key) else { return nil }
        count -= 1
        if partitions[partition]?.isEmpty == true { partitions[partition] = nil }
        return previous
    }

    /// Removes the entries of `partition` whose sequence is below `sequence`; returns them.
    mutating func removeEntries(of partition: UInt32, olderThan sequence: UInt64) -> [Location] {
        removeEntries { entryPartition, location in entryPartition == partition && location.sequence < sequence }
    }

    /// Removes every entry for which `shouldRemove` holds; returns them.
    mutating func removeEntries(where shouldRemove: (UInt32, Location) -> Bool) -> [Location] {
        var removed: [Location] = []
        for partition in Array(partitions.keys) {
            var entries = partitions.removeValue(forKey: partition)!
            entries = entries.filter { _, location in
                if shouldRemove(partition, location) { removed.append(location); return false }
                return true
            }
            if !entries.isEmpty { partitions[partition] = entries }
        }
        count -= removed.count
        return removed
    }

    /// Runs `body` on the entries of one partition in place (no copy of the dictionary).
    private mutating func withEntries<R>(of partition: UInt32, _ body: (inout Entries) -> R) -> R {
        body(&partitions[partition, default: [:]])
    }
}
