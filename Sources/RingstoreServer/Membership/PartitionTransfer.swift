import CoreMetrics
import Foundation
import Logging
import NIOCore
import RingstoreCore
import RingstoreRPC
import RingstoreStorage
import Synchronization

/// Streaming a partition to a node that becomes one of its replicas (DESIGN §8).
///
/// The receiving node pulls: it asks each current replica for the partition's keys
/// page by page, in key order, and merges every version it receives into its own
/// storage (a DVV merge, so pulling twice or from several replicas is harmless). The
/// replicas keep serving meanwhile, and coordinators copy new writes to the receiver
/// (`NodeEngine.pendingReplicas`), so nothing written during the transfer is missed.
/// A transfer interrupted by a crash starts that partition again after the restart.
enum PartitionPages {
    /// Request: varint partition, bytes cursor (the last key received; empty from the
    /// start), varint byte budget, varint epoch of the pending ring the transfer is for.
    static let request: UInt16 = 52
    /// Reply: varint count, count × (bytes key, bytes value), then 1 if the partition is exhausted.
    static let reply: UInt16 = 152
    static let pageBytesMax = 512 << 10

    static func encodeRequest(partition: PartitionID, after cursor: [UInt8], budget: Int, pendingEpoch: UInt64) -> RPCMessage {
        var writer = ByteWriter(capacity: 32 + cursor.count)
        writer.writeVarint(UInt64(partition.rawValue))
        writer.writeBytes(cursor)
        writer.writeVarint(UInt64(budget))
        writer.writeVarint(pendingEpoch)
        return RPCMessage(messageType: request, body: ByteBuffer(bytes: writer.bytes))
    }

    /// Answers a page request from `storage`, once this node knows the pending ring
    /// the request is for. From then on the node's acceptors refuse every CASPaxos
    /// request on the partition's moving keys, so the acceptor states it sends are
    /// final: no value can be chosen among the old replicas after the receiver has
    /// read a majority of them (decision 0009).
    static func answer(_ message: RPCMessage, storage: StorageEngine, partitioning: Partitioning, pendingEpoch: UInt64?) throws -> RPCMessage {
        var reader = ByteReader(Array(message.body.readableBytesView))
        let raw = try reader.readVarint()
        guard raw < UInt64(partitioning.partitionCount) else { throw DecodeError("partition \(raw) is outside the ring") }
        let cursor = try reader.readBytes()
        let budget = min(Int(clamping: try reader.readVarint()), pageBytesMax)
        let wanted = try reader.readVarint()
        try reader.expectEnd()
        guard pendingEpoch == wanted else {
            throw RPCRemoteError(code: 3, message: "this node does not hold the pending ring of epoch \(wanted) yet (it holds \(pendingEpoch.map(String.init) ?? "none")); retry")
        }
        let partition = PartitionID(rawValue: UInt32(raw))
        let keys = storage.keys(in: partition)
        var start = 0
        if !cursor.isEmpty {
            // First key after the cursor (keys are in byte order).
            var low = 0, high = keys.count
            while low < high {
                let middle = (low + high) / 2
                if keys[middle].lexicographicallyPrecedes(cursor) || keys[middle] == cursor { low = middle + 1 } else { high = middle }
            }
            start = low
        }
        var writer = ByteWriter(capacity: min(budget, 64 << 10) + 64)
        var entries: [([UInt8], [UInt8])] = []
        var bytes = 0
        var index = start
        while index < keys.count, bytes < budget || entries.isEmpty {
            // The node's own records (its table catalogue) are not replicated data.
            let isLocal = StorageKeyCodec.decode(keys[index])?.table == TableCatalog.systemTable
            if !isLocal, let value = try storage.get(partition: partition, key: keys[index]) {
                entries.append((keys[index], value))
                bytes += keys[index].count + value.count + 8
            }
            index += 1
        }
        writer.writeVarint(UInt64(entries.count))
        for (key, value) in entries {
            writer.writeBytes(key)
            writer.writeBytes(value)
        }
        writer.writeUInt8(index >= keys.count ? 1 : 0)
        return RPCMessage(messageType: reply, body: ByteBuffer(bytes: writer.bytes))
    }

    static func decodeReply(_ message: RPCMessage) throws -> (entries: [([UInt8], [UInt8])], exhausted: Bool) {
        guard message.messageType == reply else { throw DecodeError("expected a partition page, got message type \(message.messageType)") }
        var reader = ByteReader(Array(message.body.readableBytesView))
        let count = try reader.readCount(elementBytesMin: 2)
        var entries: [([UInt8], [UInt8])] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let key = try reader.readBytes()
            entries.append((key, try reader.readBytes()))
        }
        let exhausted = try reader.readUInt8() == 1
        try reader.expectEnd()
        return (entries, exhausted)
    }
}

/// A node's incoming partition transfers: one task per partition it must receive.
final class PartitionReceiver: Sendable {
    let node: ClusterNode
    let logger: Logger
    /// Tells the ring servers that a partition arrived.
    let report: @Sendable (_ partition: PartitionID, _ pendingEpoch: UInt64) -> Void
    private let running = Mutex<[PartitionID: Task<Void, Never>]>([:])
    private let finished = Mutex<Set<PartitionID>>([])
    /// The pending ring the transfers are for; a new one starts them over.
    private let epoch = Mutex<UInt64>(0)
    private let observed = TransferMetrics()

    init(node: ClusterNode, logger: Logger, report: @escaping @Sendable (PartitionID, UInt64) -> Void) {
        self.node = node
        self.logger = logger
        self.report = report
    }

    /// Partitions still being received, for status views.
    var inProgress: Int { running.withLock { $0.count } }

    /// Brings the running transfers in line with `wanted` (partition → the nodes that
    /// hold it now): starts the missing ones, re-reports the finished ones, cancels
    /// the ones no longer wanted.
    func update(wanted: [PartitionID: [NodeID]], pendingEpoch: UInt64) {
        let changed = epoch.withLock { current in
            defer { current = pendingEpoch }
            return current != pendingEpoch
        }
        if changed {
            finished.withLock { $0.removeAll() }
            let stale = running.withLock { running in
                defer { running.removeAll() }
                return Array(running.values)
            }
            for task in stale { task.cancel() }
        }
        let done = finished.withLock { finished in
            finished.formIntersection(wanted.keys)
            return finished
        }
        let stale: [Task<Void, Never>] = running.withLock { running in
            var stale: [Task<Void, Never>] = []
            for (partition, task) in running where wanted[partition] == nil {
                stale.append(task)
                running[partition] = nil
            }
            for (partition, sources) in wanted where running[partition] == nil && !done.contains(partition) {
                running[partition] = Task { await self.receive(partition, from: sources, pendingEpoch: pendingEpoch) }
            }
            return stale
        }
        for task in stale { task.cancel() }
    }

    /// Reports again the finished partitions among `pending` (the ones the ring servers have not recorded).
    func reportFinished(among pending: Set<PartitionID>, pendingEpoch: UInt64) {
        for partition in finished.withLock({ $0 }).intersection(pending) { report(partition, pendingEpoch) }
    }

    func stopAll() {
        for task in running.withLock({ Array($0.values) }) { task.cancel() }
    }

    /// Pulls `partition` from its current holders until enough of them (two and a
    /// majority, or all there are) were read to the end, then reports it. A majority
    /// holds every chosen value of the partition's linearizable keys.
    private func receive(_ partition: PartitionID, from sources: [NodeID], pendingEpoch: UInt64) async {
        let needed = min(sources.count, max(2, sources.count / 2 + 1))
        var completed: Set<NodeID> = []
        let started = ContinuousClock.now
        var keys = 0
        while !Task.isCancelled && completed.count < needed {
            for source in sources where !completed.contains(source) && !Task.isCancelled {
                guard let client = node.client(for: source) else { continue }
                do {
                    keys += try await pull(partition, from: client, pendingEpoch: pendingEpoch)
                    completed.insert(source)
                    if completed.count >= needed { break }
                } catch {
                    logger.notice("a partition transfer will retry", metadata: ["partition": "\(partition.rawValue)", "source": "\(source)", "error": "\(error)"])
                }
            }
            if completed.count < needed { try? await Task.sleep(for: .seconds(1)) }
        }
        guard !Task.isCancelled else { return }
        observed.partitions.increment()
        logger.info("received a partition", metadata: [
            "partition": "\(partition.rawValue)", "sources": "\(completed.sorted().map(\.rawValue))", "keys": "\(keys)",
            "seconds": "\(ContinuousClock.now - started)",
        ])
        finished.withLock { _ = $0.insert(partition) }
        running.withLock { $0[partition] = nil }
        report(partition, pendingEpoch)
    }

    private func pull(_ partition: PartitionID, from client: RPCClient, pendingEpoch: UInt64) async throws -> Int {
        var cursor: [UInt8] = []
        var count = 0
        while true {
            try Task.checkCancellation()
            let request = PartitionPages.encodeRequest(partition: partition, after: cursor, budget: PartitionPages.pageBytesMax, pendingEpoch: pendingEpoch)
            let reply = try await client.call(request, timeout: .seconds(10))
            let (entries, exhausted) = try PartitionPages.decodeReply(reply)
            var page: [(ItemKey, StoredObject)] = []
            var acceptorStates: [(ItemKey, CASPaxosAcceptorState)] = []
            page.reserveCapacity(entries.count)
            for (storageKey, value) in entries {
                if let (table, key) = StorageKeyCodec.decodeAcceptor(storageKey) {
                    acceptorStates.append((ItemKey(table: table, key: key, partition: partition), try CASPaxosAcceptorState(decoding: value)))
                    continue
                }
                guard let (table, key) = StorageKeyCodec.decode(storageKey), table != TableCatalog.systemTable else { continue }
                page.append((ItemKey(table: table, key: key, partition: partition), try StoredObject.decodeObject(value)))
            }
            // One page shares its fsyncs; the cursor moves only once the page is durable.
            try await node.merge(page: page)
            try await node.acceptors.merge(acceptorStates)
            count += page.count + acceptorStates.count
            observed.keys.increment(by: Int64(page.count))
            if let last = entries.last { cursor = last.0 }
            if exhausted { return count }
        }
    }
}

struct TransferMetrics: Sendable {
    let partitions = CoreMetrics.Counter(label: "ringstore_partitions_received_total")
    let keys = CoreMetrics.Counter(label: "ringstore_transfer_keys_received_total")
}
