import RingstoreCore

/// What one node stores for one key: the main copy (a home replica's) and the hint
/// record (a fallback's), as `ReplicaStore` defines them.
struct KeySlot: Equatable, Sendable {
    var main: StoredObject?
    var hint: HintRecord?

    var isEmpty: Bool { main == nil && hint == nil }
    /// What a read of this node returns.
    var object: StoredObject? { ReplicaStore.read(main: main, hint: hint) }
}

/// A write that is visible but not yet durable.
struct UnsyncedWrite {
    var sequence: UInt64
    var key: ItemKey
    /// The key's slot after the write.
    var slot: KeySlot
    /// The index of the client write this applied (`.clientWrite`), if any.
    var clientWrite: Int?
}

/// One node's disk: writes are visible at once and durable after their fsync.
///
/// Group commit: fsyncs complete in the order the writes were issued, and a
/// completed fsync covers every earlier write. A crash keeps only durable state.
struct SimulatedDisk {
    private(set) var visible: [ItemKey: KeySlot] = [:]
    private(set) var durable: [ItemKey: KeySlot] = [:]
    private var unsynced: [UnsyncedWrite] = []
    private var nextSequence: UInt64 = 0
    private let defect: ShellDefect
    private var syncedWriteCount = 0

    init(defect: ShellDefect) {
        self.defect = defect
    }

    var unsyncedCount: Int { unsynced.count }

    func visibleSlot(_ key: ItemKey) -> KeySlot { visible[key] ?? KeySlot() }
    func durableSlot(_ key: ItemKey) -> KeySlot { durable[key] ?? KeySlot() }

    /// Applies `operation` to the visible state under the key's (implicit) lock:
    /// one thread runs the simulation, so nothing interleaves with it. Returns the
    /// key's slot after the write too: a hinted client write's version is issued
    /// under the actor of the hint record it leaves behind.
    mutating func apply(_ operation: StorageOperation, to key: ItemKey, clientWrite: Int?) -> (sequence: UInt64, result: StorageResult, slot: KeySlot) {
        var slot = visibleSlot(key)
        let result: StorageResult
        if defect == .mergeOverwrites, case .merge(let incoming) = operation {
            slot.main = incoming
            result = .object(incoming)
        } else {
            let outcome = ReplicaStore.apply(operation, main: slot.main, hint: slot.hint)
            if case .some(let main) = outcome.main { slot.main = main }
            if case .some(let hint) = outcome.hint { slot.hint = hint }
            result = outcome.result
        }
        visible[key] = slot.isEmpty ? nil : slot
        nextSequence += 1
        // A refused client write (too many siblings) changed nothing and applied nothing.
        let applied: Int? = if case .object(_?) = result { clientWrite } else { nil }
        unsynced.append(UnsyncedWrite(sequence: nextSequence, key: key, slot: slot, clientWrite: applied))
        return (nextSequence, result, slot)
    }

    /// The fsync of write `sequence` completed: it and every earlier write are
    /// durable. Returns the writes that just became durable, oldest first.
    mutating func sync(through sequence: UInt64) -> [UnsyncedWrite] {
        let count = unsynced.prefix { $0.sequence <= sequence }.count
        guard count > 0 else { return [] }
        let synced = Array(unsynced.prefix(count))
        unsynced.removeFirst(count)
        var persisted: [UnsyncedWrite] = []
        for write in synced {
            syncedWriteCount += 1
            if defect == .forgetEveryOtherSync && syncedWriteCount % 2 == 0 { continue }
            durable[write.key] = write.slot.isEmpty ? nil : write.slot
            persisted.append(write)
        }
        assert(defect != .none || unsynced.isEmpty || unsynced[0].sequence > sequence)
        return persisted
    }

    /// Power loss: everything not yet durable is gone. Returns the lost writes.
    mutating func crash() -> [UnsyncedWrite] {
        let lost = unsynced
        visible = durable
        unsynced.removeAll()
        return lost
    }
}

/// The links between nodes: partitions cut directed links until they heal.
struct SimulatedNetwork {
    private struct Cut {
        var id: Int
        var links: [(from: Int, to: Int)]
    }

    let nodeCount: Int
    private var cuts: [Cut] = []
    private var blocked: [[Bool]]

    init(nodeCount: Int) {
        self.nodeCount = nodeCount
        blocked = Array(repeating: Array(repeating: false, count: nodeCount), count: nodeCount)
    }

    /// Whether messages from `from` to `to` are lost.
    func isBlocked(from: Int, to: Int) -> Bool { blocked[from][to] }

    func isActive(id: Int) -> Bool { cuts.contains { $0.id == id } }

    mutating func cut(id: Int, links: [(from: Int, to: Int)]) {
        cuts.append(Cut(id: id, links: links))
        recompute()
    }

    mutating func heal(id: Int) {
        cuts.removeAll { $0.id == id }
        recompute()
    }

    mutating func healAll() {
        cuts.removeAll()
        recompute()
    }

    private mutating func recompute() {
        blocked = Array(repeating: Array(repeating: false, count: nodeCount), count: nodeCount)
        for cut in cuts {
            for link in cut.links { blocked[link.from][link.to] = true }
        }
    }
}
