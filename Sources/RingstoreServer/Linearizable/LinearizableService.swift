import CoreMetrics
import NIOCore
import NIOPosix
public import RingstoreCore
import RingstoreRPC
import Synchronization

/// The linearizable data path as the HTTP API sees it: runs one change on one key of
/// a linearizable table and answers what happened.
public protocol LinearizableService: Sendable {
    /// Runs `change` and answers through `done`, once, on any thread (the HTTP fast
    /// path calls it from an event loop: nothing here waits). `forUpdate` marks a
    /// read that the caller follows with a change (`LinearizableRequest.forUpdate`).
    func run(
        table: TableDefinition, key: [UInt8], change: LinearizableChange, forUpdate: Bool,
        done: @escaping @Sendable (Result<LinearizableAnswer, any Error>) -> Void)
    /// How many members each key's set holds, each read linearizably; in the order
    /// of `keys`.
    func memberCounts(table: TableDefinition, keys: [[UInt8]]) async throws -> [MemberCount]
}

/// A set's member count as `LinearizableService.memberCounts` reads it.
public enum MemberCount: Sendable, Equatable {
    /// How many members the set holds (0 for an absent key or one that is not a set).
    case counted(Int)
    /// The read was refused (as `LinearizableAnswer.refused`).
    case refused(LinearizableRefusal)
    /// The key could not be read (as `LinearizableAnswer.failed`).
    case failed(LinearizableFailure, message: String)

    init(_ answer: LinearizableAnswer) {
        switch answer {
        case .applied(let value): self = .counted(value?.memberCount ?? 0)
        case .refused(let reason, _): self = .refused(reason)
        case .failed(let failure, let message): self = .failed(failure, message: message)
        }
    }
}

extension LinearizableService {
    public func run(table: TableDefinition, key: [UInt8], change: LinearizableChange, done: @escaping @Sendable (Result<LinearizableAnswer, any Error>) -> Void) {
        run(table: table, key: key, change: change, forUpdate: false, done: done)
    }

    /// `run(table:key:change:forUpdate:done:)` for a caller that waits.
    public func run(table: TableDefinition, key: [UInt8], change: LinearizableChange, forUpdate: Bool = false) async throws -> LinearizableAnswer {
        try await withCheckedThrowingContinuation { continuation in
            run(table: table, key: key, change: change, forUpdate: forUpdate) { continuation.resume(with: $0) }
        }
    }

    /// Each key read on its own, all at once.
    public func memberCounts(table: TableDefinition, keys: [[UInt8]]) async throws -> [MemberCount] {
        try await readEach(table: table, keys: keys).map(MemberCount.init)
    }

    /// Each key read as its own operation, all at once; answers in the order of `keys`.
    func readEach(table: TableDefinition, keys: [[UInt8]]) async throws -> [LinearizableAnswer] {
        try await withThrowingTaskGroup(of: (Int, LinearizableAnswer).self) { group in
            for (index, key) in keys.enumerated() {
                group.addTask { (index, try await self.run(table: table, key: key, change: .read)) }
            }
            var answers = Array(repeating: LinearizableAnswer.applied(nil), count: keys.count)
            for try await (index, answer) in group { answers[index] = answer }
            return answers
        }
    }
}

/// A node's linearizable data path. In a cluster the node hands each operation to
/// the key's first reachable home replica (its leader), which proposes; so do ring
/// servers. One proposer per key means operations on a key queue up instead of
/// competing for ballots, which would leave changes with unknown outcomes. When the
/// leader cannot be reached the node proposes itself: any proposer is correct.
final class NodeLinearizableService: LinearizableService {
    let engine: LinearizableEngine
    let partitioning: Partitioning
    /// The cluster node, for finding and reaching a key's leader; nil for a node alone.
    let node: ClusterNode?
    /// Longer than the leader's whole operation, its retries included.
    static let answerTimeout: TimeAmount = .seconds(4)

    init(engine: LinearizableEngine, partitioning: Partitioning, node: ClusterNode? = nil) {
        self.engine = engine
        self.partitioning = partitioning
        self.node = node
    }

    func run(
        table: TableDefinition, key: [UInt8], change: LinearizableChange, forUpdate: Bool,
        done: @escaping @Sendable (Result<LinearizableAnswer, any Error>) -> Void
    ) {
        let item = ItemKey(table: table.name, key: key, partitioning: partitioning)
        let request = LinearizableRequest(key: item, replicaCount: table.n, change: change, forUpdate: forUpdate)
        let propose: @Sendable () -> Void = { [engine] in engine.run(request) { done(.success($0)) } }
        node?.operationsServed.add(1, ordering: .relaxed)
        guard let node, let leader = leader(of: request, in: node), leader != node.id, let client = node.client(for: leader) else {
            return propose()
        }
        let message = RPCMessage(messageType: LinearizableRequest.type, body: ByteBuffer(bytes: request.encode()))
        client.callFuture(message, timeout: Self.answerTimeout).whenComplete { result in
            let failure: String
            switch result {
            case .success(let reply):
                if reply.messageType == LinearizableRequest.replyType,
                   let answer = try? LinearizableAnswer(decoding: Array(reply.body.readableBytesView)) {
                    if case .failed(.notReady, _) = answer { return propose() }
                    return done(.success(answer))
                }
                failure = "an answer of message type \(reply.messageType) that could not be read"
            case .failure(RPCError.connectionFailed), .failure(RPCError.overloaded):
                return propose()  // never sent
            case .failure(let error):
                failure = "\(error)"
            }
            // Sent, and not answered: it may have been applied.
            guard change.isIdempotent else {
                return done(.success(.failed(.outcomeUnknown, message: "the key's leader \(leader) did not answer in time (\(failure)); the change may or may not have been applied")))
            }
            propose()
        }
    }

    /// The first home replica of the key that this node can reach.
    private func leader(of request: LinearizableRequest, in node: ClusterNode) -> NodeID? {
        guard let placement = engine.network.placement(of: request.key, replicaCount: request.replicaCount) else { return nil }
        let unreachable = node.membership.unreachable
        return placement.replicas.first { $0 == node.id || !unreachable.contains($0) }
    }
}

/// CASPaxos inside a cluster node: placement from the node's ring (and the ring it
/// is moving to), acceptors reached over the node-to-node protocol, timers on the
/// node's engine loop.
struct ClusterCASPaxosNetwork: CASPaxosNetwork {
    let node: ClusterNode
    let timeouts: CoarseTimeouts

    init(node: ClusterNode) {
        self.node = node
        self.timeouts = CoarseTimeouts(loop: node.engineLoop)
    }

    var me: NodeID { node.id }

    func placement(of key: ItemKey, replicaCount: Int) -> KeyPlacement? {
        guard node.isReady else { return nil }
        let placed = node.partitioning.partition(table: key.table, key: key.key) == key.partition
        return node.engine.withLock { engine in
            let ring = engine.ring
            // A key sent with the wrong partition has no replicas: nobody takes part.
            guard placed else { return KeyPlacement(ringEpoch: ring.epoch, replicas: [], moving: false) }
            let replicas = ring.preferenceList(for: key.partition, count: replicaCount)
            let moving = engine.pendingRing.map { Set($0.preferenceList(for: key.partition, count: replicaCount)) != Set(replicas) } ?? false
            return KeyPlacement(ringEpoch: ring.epoch, replicas: replicas, moving: moving)
        }
    }

    func send(_ request: CASPaxosRequest, to peer: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosReply?) -> Void) {
        guard let client = node.client(for: peer) else { return reply(nil) }
        let (type, body) = request.encode()
        client.callFuture(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)), timeout: TimeAmount(timeout)).whenComplete { result in
            guard case .success(let message) = result,
                  let decoded = try? CASPaxosReply.decode(type: message.messageType, body: Array(message.body.readableBytesView))
            else { return reply(nil) }
            reply(decoded)
        }
    }

    func allReachable(_ nodes: [NodeID]) -> Bool {
        let unreachable = node.engine.withLock { $0.unreachable }
        return nodes.allSatisfy { !unreachable.contains($0) }
    }

    func schedule(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        node.engineLoop.scheduleTask(in: TimeAmount(delay), body)
    }

    func scheduleTimeout(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        timeouts.schedule(after: TimeAmount(delay), body)
    }

    func peek(_ key: ItemKey, placement: CASPaxosPlacement, at peer: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosAcceptedValue??) -> Void) {
        guard let client = node.client(for: peer) else { return reply(.none) }
        let message = RPCMessage(messageType: CASPaxosPeek.requestType, body: ByteBuffer(bytes: CASPaxosPeek.encodeRequest(key, placement: placement)))
        client.callFuture(message, timeout: TimeAmount(timeout)).whenComplete { result in
            guard case .success(let answer) = result, answer.messageType == CASPaxosPeek.replyType,
                  let (answered, accepted) = try? CASPaxosPeek.decodeReply(Array(answer.body.readableBytesView)), answered == key
            else { return reply(.none) }
            reply(.some(accepted))
        }
    }
}

/// CASPaxos on a node that is a cluster of one: every key's only replica is this node.
struct LocalCASPaxosNetwork: CASPaxosNetwork {
    let me = NodeID("local")
    let loop: any EventLoop
    let timeouts: CoarseTimeouts

    init(loop: any EventLoop) {
        self.loop = loop
        self.timeouts = CoarseTimeouts(loop: loop)
    }

    func scheduleTimeout(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        timeouts.schedule(after: TimeAmount(delay), body)
    }

    func placement(of key: ItemKey, replicaCount: Int) -> KeyPlacement? {
        KeyPlacement(ringEpoch: 1, replicas: [me], moving: false)
    }

    func send(_ request: CASPaxosRequest, to node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosReply?) -> Void) {
        reply(nil)
    }

    func allReachable(_ nodes: [NodeID]) -> Bool { true }

    func schedule(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        loop.scheduleTask(in: TimeAmount(delay), body)
    }

    func peek(_ key: ItemKey, placement: CASPaxosPlacement, at node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosAcceptedValue??) -> Void) {
        reply(.none)
    }
}

/// The linearizable data path's metrics.
struct LinearizableMetrics: Sendable {
    let applied = CoreMetrics.Counter(label: "ringstore_linearizable_applied_total")
    let refused = CoreMetrics.Counter(label: "ringstore_linearizable_refused_total")
    let conflicts = CoreMetrics.Counter(label: "ringstore_linearizable_ballot_conflicts_total")
    let unknown = CoreMetrics.Counter(label: "ringstore_linearizable_outcome_unknown_total")
    let failed = CoreMetrics.Counter(label: "ringstore_linearizable_not_applied_total")
    let placementRefusals = CoreMetrics.Counter(label: "ringstore_linearizable_placement_refusals_total")
    let latency = CoreMetrics.Timer(label: "ringstore_linearizable_operation_seconds")
    let batchSize = CoreMetrics.Recorder(label: "ringstore_linearizable_batch_size")
    let peekReads = CoreMetrics.Counter(label: "ringstore_linearizable_one_round_reads_total")
    let onePhaseAttempts = CoreMetrics.Counter(label: "ringstore_linearizable_one_round_attempts_total")
}
