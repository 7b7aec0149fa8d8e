import CoreMetrics
import Foundation
import Logging
import NIOCore
import RingstoreCore
import RingstoreRPC
import RingstoreStorage
import Synchronization

/// The anti-entropy messages between replicas (types 60 and 61, replies 160 and 161).
///
/// A request names a tree (table and partition) and the asker's ring epoch and n;
/// the answerer serves it only when its ring has the same epoch and puts it among
/// the first n replicas of the partition, so two nodes with different rings never
/// repair each other into the wrong places.
enum AntiEntropyWire {
    static let request: UInt16 = 60
    static let reply: UInt16 = 160
    /// A ring server asks a node for a full round now (`ringstore admin repair`). Body empty; reply JSON.
    static let repairNow: UInt16 = 61
    static let repairReply: UInt16 = 161

    /// What every request about one tree starts with: the tree (table and partition)
    /// and the asker's ring epoch and n.
    struct Header: Sendable, Equatable {
        var id: TreeID
        var ringEpoch: UInt64
        var n: Int

        func write(into writer: inout ByteWriter) {
            writer.writeString(id.table)
            writer.writeUInt32BE(id.partition.rawValue)
            writer.writeUInt64BE(ringEpoch)
            writer.writeUInt8(UInt8(clamping: n))
        }

        init(id: TreeID, ringEpoch: UInt64, n: Int) {
            self.id = id
            self.ringEpoch = ringEpoch
            self.n = n
        }

        init(from reader: inout ByteReader) throws(DecodeError) {
            let table = try reader.readString()
            let partition = PartitionID(rawValue: try reader.readUInt32BE())
            let epoch = try reader.readUInt64BE()
            self.init(id: TreeID(table: table, partition: partition), ringEpoch: epoch, n: Int(try reader.readUInt8()))
        }
    }

    enum Query: Sendable {
        /// The 16 inner hashes of the tree.
        case inners
        /// The 16 leaf hashes under each of these inner nodes.
        case leaves([Int])
        /// The keys in these leaves with their entry hashes.
        case entries([Int])
        /// The stored bytes of these keys (absent ones are left out).
        case objects([[UInt8]])
    }

    static func encode(_ id: TreeID, ringEpoch: UInt64, n: Int, query: Query) -> RPCMessage {
        var writer = ByteWriter(capacity: 64)
        Header(id: id, ringEpoch: ringEpoch, n: n).write(into: &writer)
        switch query {
        case .inners:
            writer.writeUInt8(1)
        case .leaves(let indices), .entries(let indices):
            if case .leaves = query { writer.writeUInt8(2) } else { writer.writeUInt8(3) }
            writer.writeVarint(UInt64(indices.count))
            for index in indices { writer.writeUInt8(UInt8(clamping: index)) }
        case .objects(let keys):
            writer.writeUInt8(4)
            writer.writeVarint(UInt64(keys.count))
            for key in keys { writer.writeBytes(key) }
        }
        return RPCMessage(messageType: request, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decode(_ message: RPCMessage) throws(DecodeError) -> (TreeID, ringEpoch: UInt64, n: Int, query: Query) {
        var reader = ByteReader(Array(message.body.readableBytesView))
        let header = try Header(from: &reader)
        let query: Query
        switch try reader.readUInt8() {
        case 1:
            query = .inners
        case let kind where kind == 2 || kind == 3:
            let count = try reader.readCount(elementBytesMin: 1)
            var indices: [Int] = []
            for _ in 0..<count {
                let index = Int(try reader.readUInt8())
                indices.append(index)
            }
            if kind == 2 {
                guard indices.allSatisfy({ $0 < HashTree.fanout }) else { throw DecodeError("inner index out of range") }
                query = .leaves(indices)
            } else {
                query = .entries(indices)
            }
        case 4:
            let count = try reader.readCount(elementBytesMin: 1)
            var keys: [[UInt8]] = []
            for _ in 0..<count { keys.append(try reader.readBytes()) }
            query = .objects(keys)
        case let other:
            throw DecodeError("unknown anti-entropy query \(other)")
        }
        try reader.expectEnd()
        return (header.id, header.ringEpoch, header.n, query)
    }
}

/// Active anti-entropy (DESIGN §5): every node compares, one after another, each
/// table-partition it is a home replica of with the next home replica of the
/// partition (so that the N replicas form a cycle and every pair is compared
/// within a round), walking their Merkle trees from the top and repairing only
/// the keys under differing leaves, both ways, by merging versions (a DVV merge:
/// nothing concurrent is overwritten).
///
/// Exchanges run one at a time, `pause` apart, and repair at most
/// `keysPerExchangeMax` keys each, so that foreground requests keep their latency.
final class AntiEntropy: Sendable {
    struct Settings: Sendable {
        /// The pause between two exchanges.
        var pause: Duration = .milliseconds(100)
        /// The most keys one exchange repairs; the rest wait for the next round.
        var keysPerExchangeMax = 500
        /// How long a key must have held only tombstones here before a purge is tried
        /// (`TombstonePurge`); nil keeps tombstones for ever.
        var tombstoneGrace: Duration? = .seconds(300)
    }

    /// What a round (or an exchange) did.
    struct Tally: Sendable, Equatable {
        var exchanges = 0
        var differing = 0
        var keysRepaired = 0
        var failed = 0
        /// Keys this node removed because every replica held the same tombstone.
        var tombstonesPurged = 0

        static func += (lhs: inout Tally, rhs: Tally) {
            lhs.exchanges += rhs.exchanges
            lhs.differing += rhs.differing
            lhs.keysRepaired += rhs.keysRepaired
            lhs.failed += rhs.failed
            lhs.tombstonesPurged += rhs.tombstonesPurged
        }

        var json: String {
            "{\"exchanges\":\(exchanges),\"differing\":\(differing),\"keys_repaired\":\(keysRepaired),\"failed\":\(failed),\"tombstones_purged\":\(tombstonesPurged)}"
        }
    }

    let node: ClusterNode
    let tables: @Sendable () -> [TableDefinition]
    let settings: Settings
    let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let rounds = AsyncLock()
    private let lastRoundEnded = Mutex<ContinuousClock.Instant?>(nil)
    /// When each tree last completed an exchange.
    private let lastExchanged = Mutex<[TreeID: ContinuousClock.Instant]>([:])
    private let started = ContinuousClock.now
    private let metrics = AntiEntropyMetrics()
    private let compared = Mutex<ComparedTrees?>(nil)
    /// Per tree this node compares: seconds since its last completed exchange.
    private let exchangeAges = Mutex<[TreeID: CoreMetrics.Gauge]>([:])

    /// The trees this node compares, for the ring and tables they were worked out from.
    private struct ComparedTrees: Sendable {
        struct Key: Sendable, Equatable {
            var ringEpoch: UInt64
            var members: [NodeID]
            var tables: [TableDefinition]
        }

        var key: Key
        var trees: [TreeID]
    }

    init(node: ClusterNode, tables: @escaping @Sendable () -> [TableDefinition], settings: Settings = Settings(), logger: Logger) {
        self.node = node
        self.tables = tables
        self.settings = settings
        self.logger = logger
    }

    // MARK: Running

    /// Starts rounds in the background, one after another.
    func start() {
        let loop = Task { [self] in
            try? await Task.sleep(for: .seconds(2))
            while !Task.isCancelled {
                _ = try? await round(pausing: true)
                try? await Task.sleep(for: settings.pause)
            }
        }
        task.withLock { $0 = loop }
        node.engineLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            let now = ContinuousClock.now
            let since = lastRoundEnded.withLock { $0 } ?? started
            metrics.sinceLastRound.record((now - since) / .seconds(1))
            let exchanged = lastExchanged.withLock { $0 }
            let trees = comparedTrees()
            let oldest = trees.map { exchanged[$0] ?? started }.min() ?? now
            metrics.oldestExchange.record((now - oldest) / .seconds(1))
            recordExchangeAges(trees, exchanged: exchanged, now: now)
            metrics.tombstonesPending.record(node.trees.tombstoneCount)
        }
    }

    func stop() {
        task.withLock { $0 }?.cancel()
    }

    /// One full round over every tree this node compares; with `pausing`, exchanges
    /// are `settings.pause` apart. Rounds never overlap.
    func round(pausing: Bool) async throws -> Tally {
        try await rounds.withLock {
            var tally = Tally()
            for (id, n, peer) in work() {
                if Task.isCancelled { break }
                let result = await exchange(id, n: n, with: peer)
                if result.failed == 0 { lastExchanged.withLock { $0[id] = ContinuousClock.now } }
                tally += result
                if pausing { try? await Task.sleep(for: settings.pause) }
            }
            if !Task.isCancelled { tally.tombstonesPurged += await purgeTombstones() }
            lastRoundEnded.withLock { $0 = ContinuousClock.now }
            metrics.rounds.increment()
            if tally.keysRepaired > 0 || tally.failed > 0 || tally.tombstonesPurged > 0 {
                logger.info("anti-entropy round", metadata: [
                    "exchanges": "\(tally.exchanges)", "differing": "\(tally.differing)", "keysRepaired": "\(tally.keysRepaired)", "failed": "\(tally.failed)",
                    "tombstonesPurged": "\(tally.tombstonesPurged)",
                ])
            }
            return tally
        }
    }

    /// The trees this node compares this round, and with whom: for every eventual
    /// table with n ≥ 2 and every partition this node is among the first n replicas
    /// of, the next of those replicas (cyclically) that is reachable.
    private func work() -> [(TreeID, Int, NodeID)] {
        guard node.isReady else { return [] }
        let (members, unreachable, _) = node.membership
        guard members.count > 1 else { return [] }
        return pairs(ring: node.engine.withLock { $0.ring }).filter { !unreachable.contains($0.2) }
    }

    /// Every tree this node compares with the next replica of its partition, reachable or not.
    private func pairs(ring: Ring) -> [(TreeID, Int, NodeID)] {
        var items: [(TreeID, Int, NodeID)] = []
        for table in tables() where table.consistency == .eventual && table.n >= 2 {
            for raw in 0..<UInt32(node.partitioning.partitionCount) {
                let partition = PartitionID(rawValue: raw)
                let replicas = ring.preferenceList(for: partition, count: table.n)
                guard let mine = replicas.firstIndex(of: node.id) else { continue }
                let next = replicas[(mine + 1) % replicas.count]
                guard next != node.id else { continue }
                items.append((TreeID(table: table.name, partition: partition), table.n, next))
            }
        }
        return items
    }

    /// Sets `ringstore_aae_exchange_age_seconds{table,partition}` for every tree this
    /// node compares, and drops the gauges of trees it no longer compares.
    private func recordExchangeAges(_ trees: [TreeID], exchanged: [TreeID: ContinuousClock.Instant], now: ContinuousClock.Instant) {
        let dropped = exchangeAges.withLock { gauges -> [CoreMetrics.Gauge] in
            var kept: [TreeID: CoreMetrics.Gauge] = [:]
            for id in trees {
                let gauge = gauges[id] ?? CoreMetrics.Gauge(
                    label: "ringstore_aae_exchange_age_seconds", dimensions: [("table", id.table), ("partition", String(id.partition.rawValue))])
                gauge.record((now - (exchanged[id] ?? started)) / .seconds(1))
                kept[id] = gauge
            }
            defer { gauges = kept }
            return gauges.filter { kept[$0.key] == nil }.map(\.value)
        }
        for gauge in dropped { gauge.destroy() }
    }

    /// The trees this node compares, reachable peer or not (for the gauge of the
    /// oldest exchange), worked out again only when the ring or the tables change.
    private func comparedTrees() -> [TreeID] {
        guard node.isReady else { return [] }
        let ring = node.engine.withLock { $0.ring }
        let key = ComparedTrees.Key(ringEpoch: ring.epoch, members: ring.members, tables: tables())
        if let cached = compared.withLock({ $0 }), cached.key == key { return cached.trees }
        let trees = pairs(ring: ring).map(\.0)
        compared.withLock { $0 = ComparedTrees(key: key, trees: trees) }
        return trees
    }

    // MARK: One exchange

    /// Compares one tree with `peer`'s and repairs what differs.
    private func exchange(_ id: TreeID, n: Int, with peer: NodeID) async -> Tally {
        var tally = Tally(exchanges: 1)
        metrics.exchanges.increment()
        guard let client = node.client(for: peer) else { return Tally(failed: 1) }
        let epoch = node.engine.withLock { $0.ring.epoch }
        do {
            var tree = node.trees.tree(id)
            // Top down: inner nodes, then the leaves under those that differ, then keys.
            guard let theirInners = try await ask(client, id, epoch, n, .inners, expecting: HashTree.fanout) else { return Tally(failed: 1) }
            let inners = HashTree.differences(tree.inners(), theirInners)
            guard !inners.isEmpty else { return tally }
            tally.differing = 1
            guard let theirLeaves = try await ask(client, id, epoch, n, .leaves(inners), expecting: inners.count * HashTree.fanout) else { return Tally(failed: 1) }
            var leaves: [Int] = []
            for (position, inner) in inners.enumerated() {
                let mine = tree.leaves(under: inner)
                let theirs = theirLeaves[(position * HashTree.fanout)..<((position + 1) * HashTree.fanout)]
                leaves += HashTree.differences(mine, theirs).map { inner * HashTree.fanout + $0 }
            }
            guard !leaves.isEmpty else { return tally }
            tally.keysRepaired = try await repair(id, leaves: leaves, epoch: epoch, n: n, client: client, peer: peer)
            metrics.keysRepaired.increment(by: Int64(tally.keysRepaired))
            return tally
        } catch {
            logger.debug("an anti-entropy exchange failed; the next round tries again", metadata: ["peer": "\(peer)", "table": "\(id.table)", "partition": "\(id.partition.rawValue)", "error": "\(error)"])
            return Tally(exchanges: 1, failed: 1)
        }
    }

    /// Asks for hashes; nil when the peer refused (it places the tree differently).
    private func ask(_ client: RPCClient, _ id: TreeID, _ epoch: UInt64, _ n: Int, _ query: AntiEntropyWire.Query, expecting count: Int) async throws -> [UInt64]? {
        let reply = try await client.call(AntiEntropyWire.encode(id, ringEpoch: epoch, n: n, query: query), timeout: .seconds(5))
        var reader = ByteReader(Array(reply.body.readableBytesView))
        guard try reader.readUInt8() == 0 else { return nil }
        var hashes: [UInt64] = []
        for _ in 0..<count { hashes.append(try reader.readUInt64BE()) }
        try reader.expectEnd()
        return hashes
    }

    /// Exchanges the keys under differing leaves: pulls the peer's versions of keys
    /// that differ and merges them here, then sends this node's versions of the same
    /// keys to the peer to merge there. Returns the keys repaired (on either side).
    private func repair(_ id: TreeID, leaves: [Int], epoch: UInt64, n: Int, client: RPCClient, peer: NodeID) async throws -> Int {
        let reply = try await client.call(AntiEntropyWire.encode(id, ringEpoch: epoch, n: n, query: .entries(leaves)), timeout: .seconds(10))
        var reader = ByteReader(Array(reply.body.readableBytesView))
        guard try reader.readUInt8() == 0 else { return 0 }
        var theirs: [[UInt8]: UInt64] = [:]
        for _ in 0..<(try reader.readCount(elementBytesMin: 9)) {
            let key = try reader.readBytes()
            theirs[key] = try reader.readUInt64BE()
        }
        try reader.expectEnd()
        let mine = Dictionary(HashTrees.entries(id, leaves: Set(leaves), storage: node.storage).map { ($0.key, $0.hash) }, uniquingKeysWith: { first, _ in first })
        var differing = Set(theirs.keys).union(mine.keys).filter { theirs[$0] != mine[$0] }.sorted { $0.lexicographicallyPrecedes($1) }
        if differing.count > settings.keysPerExchangeMax { differing = Array(differing.prefix(settings.keysPerExchangeMax)) }
        guard !differing.isEmpty else { return 0 }

        // Pull: the peer's versions of the keys it holds.
        let wanted = differing.filter { theirs[$0] != nil }
        if !wanted.isEmpty {
            let objects = try await client.call(AntiEntropyWire.encode(id, ringEpoch: epoch, n: n, query: .objects(wanted)), timeout: .seconds(10))
            var reader = ByteReader(Array(objects.body.readableBytesView))
            guard try reader.readUInt8() == 0 else { return 0 }
            var page: [(ItemKey, StoredObject)] = []
            for _ in 0..<(try reader.readCount(elementBytesMin: 2)) {
                let storageKey = try reader.readBytes()
                let bytes = try reader.readBytes()
                guard let (table, key) = StorageKeyCodec.decode(storageKey), table == id.table else { continue }
                page.append((ItemKey(table: table, key: key, partition: id.partition), try StoredObject.decodeObject(bytes)))
            }
            try reader.expectEnd()
            try await node.merge(page: page)
        }
        // Push: this node's versions, merged at the peer like any replica write.
        for storageKey in differing where mine[storageKey] != nil {
            // A record that fails its checksum is not sent; the pull above replaced it if the peer had the key.
            guard let (table, key) = StorageKeyCodec.decode(storageKey),
                  let bytes = try? node.storage.get(partition: id.partition, key: storageKey)
            else { continue }
            let object = try StoredObject.decodeObject(bytes)
            let (type, body) = PeerCodec.encode(PeerRequest.replicaWrite(ItemKey(table: table, key: key, partition: id.partition), object: object, hintFor: nil))
            _ = try await client.call(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)), timeout: .seconds(5))
        }
        return differing.count
    }

    // MARK: Answering

    /// Answers a peer's anti-entropy query from this node's trees and storage.
    func answer(_ message: RPCMessage) throws -> RPCMessage {
        let (id, epoch, n, query) = try AntiEntropyWire.decode(message)
        var writer = ByteWriter(capacity: 256)
        let (ring, ready) = (node.engine.withLock { $0.ring }, node.isReady)
        guard ready, ring.epoch == epoch, (1...Limits.replicasMax).contains(n),
              ring.preferenceList(for: id.partition, count: n).contains(node.id)
        else {
            writer.writeUInt8(1)
            return RPCMessage(messageType: AntiEntropyWire.reply, body: ByteBuffer(bytes: writer.bytes))
        }
        writer.writeUInt8(0)
        var tree = node.trees.tree(id)
        switch query {
        case .inners:
            for hash in tree.inners() { writer.writeUInt64BE(hash) }
        case .leaves(let inners):
            for inner in inners {
                for hash in tree.leaves(under: inner) { writer.writeUInt64BE(hash) }
            }
        case .entries(let leaves):
            let entries = HashTrees.entries(id, leaves: Set(leaves), storage: node.storage)
            writer.writeVarint(UInt64(entries.count))
            for (key, hash) in entries {
                writer.writeBytes(key)
                writer.writeUInt64BE(hash)
            }
        case .objects(let keys):
            var found: [([UInt8], [UInt8])] = []
            for key in keys where HashTrees.table(of: key) == id.table {
                // A record that fails its checksum is left out, as if absent.
                if let bytes = try? node.storage.get(partition: id.partition, key: key) { found.append((key, bytes)) }
            }
            writer.writeVarint(UInt64(found.count))
            for (key, bytes) in found {
                writer.writeBytes(key)
                writer.writeBytes(bytes)
            }
        }
        return RPCMessage(messageType: AntiEntropyWire.reply, body: ByteBuffer(bytes: writer.bytes))
    }
}

// MARK: Purging tombstones

extension AntiEntropy {
    /// Purges, for every tree this node is the first home replica of, the keys that
    /// have held only tombstones for the grace period and that every replica holds
    /// alike, with no hint for them anywhere (`TombstonePurge`). Returns how many keys
    /// this node removed (each replica counts its own).
    func purgeTombstones() async -> Int {
        guard let grace = settings.tombstoneGrace, node.isReady else { return 0 }
        let (ring, pending, unreachable) = node.engine.withLock { ($0.ring, $0.pendingRing, $0.unreachable) }
        let members = Set(ring.members).union(node.addresses.map(\.id)).subtracting([node.id])
        // A member that cannot be asked may keep a hint or an older replica.
        guard pending == nil, unreachable.isDisjoint(with: members) else { return 0 }
        let tables = Dictionary(tables().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let seenBefore = ContinuousClock.now - grace
        var purged = 0
        for id in node.trees.treesWithTombstones {
            guard let table = tables[id.table], table.consistency == .eventual, table.n >= 2 else { continue }
            let replicas = ring.preferenceList(for: id.partition, count: table.n)
            guard replicas.first == node.id else { continue }
            let candidates = node.trees.tombstones(id, seenBefore: seenBefore, limit: settings.keysPerExchangeMax)
            guard !candidates.isEmpty else { continue }
            let header = AntiEntropyWire.Header(id: id, ringEpoch: ring.epoch, n: table.n)
            do {
                purged += try await purge(candidates, header: header, replicas: Set(replicas).subtracting([node.id]), members: members)
            } catch {
                logger.debug("a tombstone purge failed; the next round tries again", metadata: ["table": "\(id.table)", "partition": "\(id.partition.rawValue)", "error": "\(error)"])
            }
        }
        return purged
    }

    private func purge(
        _ candidates: [(key: [UInt8], hash: UInt64)], header: AntiEntropyWire.Header, replicas: Set<NodeID>, members: Set<NodeID>
    ) async throws -> Int {
        let keys = candidates.map(\.key)
        var answers: [NodeID: [TombstoneHolding]] = [:]
        for member in members {
            guard let client = node.client(for: member) else { return 0 }
            let reply = try await client.call(TombstonePurge.encodeCheck(header, keys: keys), timeout: .seconds(5))
            guard let holdings = try TombstonePurge.decodeCheckReply(reply) else { return 0 }
            answers[member] = holdings
        }
        let chosen = TombstonePurge.purgeable(
            candidates, mine: holdings(of: keys, in: header.id), replicas: replicas, members: members, answers: answers)
        guard !chosen.isEmpty else { return 0 }
        for replica in replicas {
            guard let client = node.client(for: replica) else { continue }
            _ = try TombstonePurge.decodePurgeReply(try await client.call(TombstonePurge.encodePurge(header, keys: chosen), timeout: .seconds(10)))
        }
        return try await purgeHere(chosen, in: header.id)
    }

    /// What this node holds of `keys`: their stored hashes and whether it keeps hints for them.
    private func holdings(of keys: [[UInt8]], in id: TreeID) -> [TombstoneHolding] {
        keys.map { storageKey in
            let stored: TombstoneHolding.Stored
            do {
                stored = try node.storage.get(partition: id.partition, key: storageKey)
                    .map { .hash(HashTree.entryHash(storageKey: storageKey, value: $0)) } ?? .absent
            } catch {
                stored = .unreadable
            }
            let hint = StorageKeyCodec.decode(storageKey).map { node.holdsHint(for: ItemKey(table: $0.0, key: $0.1, partition: id.partition)) } ?? true
            return TombstoneHolding(stored: stored, holdsHint: hint)
        }
    }

    /// Removes the keys still holding exactly the tombstones that were checked.
    private func purgeHere(_ keys: [(key: [UInt8], hash: UInt64)], in id: TreeID) async throws -> Int {
        var purged = 0
        for (storageKey, hash) in keys {
            guard let (table, key) = StorageKeyCodec.decode(storageKey), table == id.table else { continue }
            if try await node.purgeTombstone(ItemKey(table: table, key: key, partition: id.partition), expected: hash) { purged += 1 }
        }
        metrics.tombstonesPurged.increment(by: Int64(purged))
        return purged
    }

    /// Answers a purge's check: what this node holds of the keys (any member answers).
    func answerCheck(_ message: RPCMessage) throws -> RPCMessage {
        let (header, keys) = try TombstonePurge.decodeCheck(message)
        guard settled(at: header.ringEpoch) else { return TombstonePurge.encodeCheckReply(nil) }
        return TombstonePurge.encodeCheckReply(holdings(of: keys, in: header.id))
    }

    /// Carries out a purge a replica's check decided (only a home replica of the tree removes anything).
    func answerPurge(_ message: RPCMessage) async throws -> RPCMessage {
        let (header, keys) = try TombstonePurge.decodePurge(message)
        let ring = node.engine.withLock { $0.ring }
        guard settled(at: header.ringEpoch), ring.preferenceList(for: header.id.partition, count: header.n).contains(node.id) else {
            return TombstonePurge.encodePurgeReply(0)
        }
        return TombstonePurge.encodePurgeReply(try await purgeHere(keys, in: header.id))
    }

    /// Whether this node is ready, on ring `epoch`, with no transition under way.
    private func settled(at epoch: UInt64) -> Bool {
        let (ring, pending) = node.engine.withLock { ($0.ring, $0.pendingRing) }
        return node.isReady && ring.epoch == epoch && pending == nil
    }
}

/// Anti-entropy's metrics.
struct AntiEntropyMetrics: Sendable {
    let exchanges = CoreMetrics.Counter(label: "ringstore_aae_exchanges_total")
    let keysRepaired = CoreMetrics.Counter(label: "ringstore_aae_keys_repaired_total")
    let rounds = CoreMetrics.Counter(label: "ringstore_aae_rounds_total")
    let sinceLastRound = CoreMetrics.Gauge(label: "ringstore_aae_seconds_since_last_round")
    /// The longest any table-partition this node compares has gone without a completed exchange.
    let oldestExchange = CoreMetrics.Gauge(label: "ringstore_aae_oldest_exchange_seconds")
    /// Keys this node removed because every replica held the same tombstone.
    let tombstonesPurged = CoreMetrics.Counter(label: "ringstore_aae_tombstones_purged_total")
    /// Keys this node holds only as tombstones, waiting to be purged.
    let tombstonesPending = CoreMetrics.Gauge(label: "ringstore_aae_tombstones_pending")
}
