/// Identifies one piece of work a node's engine has in flight (a coordinated
/// request, a replica command, a hand-off); replies and storage results come back
/// with it.
public struct OperationID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "op\(rawValue)" }
}

/// Why a message to a peer got no reply.
public enum TransportFailure: Error, Sendable, Equatable {
    case unreachable
    case timedOut
    case rejected(String)
}

/// Something worth a log line or a metric; the engine does neither itself.
public enum NodeObservation: Sendable, Equatable {
    case readRepair(ItemKey, to: NodeID)
    case hintStored(ItemKey, owner: NodeID)
    case hintDelivered(ItemKey, owner: NodeID)
    case hintDropped(ItemKey, owner: NodeID)
    case siblingsOverWarning(ItemKey, count: Int)
    case forwarded(ItemKey, to: NodeID)
}

/// What the engine asks its shell to do. A shell MUST carry out every directive and
/// report its outcome with the matching `NodeEngine` method and operation id.
public enum NodeDirective: Sendable, Equatable {
    /// Send a request; report the reply (or failure) with `peerReplied(_:operation:from:)`.
    case send(PeerRequest, to: NodeID, operation: OperationID)
    /// Answer a peer's request received with `peerRequested(_:from:token:)`.
    case replyToPeer(token: UInt64, PeerReply)
    /// Answer a client's request received with `clientRequested(_:token:)`.
    case replyToClient(token: UInt64, ClientResult)
    /// Read the key (`ReplicaStore.read`); report with `storageCompleted(_:operation:)`.
    case read(ItemKey, operation: OperationID)
    /// Apply the operation under the key's lock (`ReplicaStore.apply`), durably;
    /// report with `storageCompleted(_:operation:)` (and, for a client write, with
    /// `storageAppended(_:operation:)` as soon as it is appended).
    case write(ItemKey, StorageOperation, operation: OperationID)
    /// Call `timerFired(_:)` with this operation after the duration.
    case startTimer(OperationID, after: Duration)
    case observe(NodeObservation)
}

/// A storage node's data path as a deterministic state machine: coordination of
/// gets and puts (sloppy quorum over the first N reachable nodes of the preference
/// list), replica commands, read repair and hinted hand-off. It performs no I/O,
/// reads no clock and draws no randomness; real and simulated shells drive it.
///
/// Isolation: a value type; a shell keeps one per node and calls it from one
/// thread at a time (under a lock, or on the simulator's single thread).
public struct NodeEngine: Sendable {
    public struct Configuration: Sendable {
        public var node: NodeID
        public var actor: ActorID
        /// How long a coordinator waits for its quorum.
        public var requestTimeout: Duration
        /// Hand-offs in flight at once.
        public var handoffConcurrencyMax: Int
        /// Hints kept before the oldest are dropped (anti-entropy repairs what they leave).
        public var hintsMax: Int
        /// Bytes of hinted values kept before the oldest are dropped.
        public var hintBytesMax: Int
        /// Seeds the generator of fresh actors for writes coordinated as a fallback.
        /// Shells pass real randomness; the simulator passes its seed.
        public var randomSeed: UInt64

        public init(
            node: NodeID, actor: ActorID, requestTimeout: Duration = .seconds(2), handoffConcurrencyMax: Int = 16,
            hintsMax: Int = 100_000, hintBytesMax: Int = Limits.hintBytesMax, randomSeed: UInt64 = 0
        ) {
            self.node = node
            self.actor = actor
            self.requestTimeout = requestTimeout
            self.handoffConcurrencyMax = handoffConcurrencyMax
            self.hintsMax = hintsMax
            self.hintBytesMax = hintBytesMax
            self.randomSeed = randomSeed
        }
    }

    enum Requester: Sendable, Equatable {
        case client(UInt64)
        case peer(UInt64)
    }

    enum Operation: Sendable {
        case get(GetCoordinator, Requester)
        case put(PutCoordinator, Requester)
        case forward(ClientOperation, remaining: [NodeID], Requester)
        case replicaRead(peer: UInt64)
        case replicaWrite(peer: UInt64, ItemKey, hintFor: NodeID?, bytes: Int)
        case handoffRead(ItemKey, owner: NodeID)
        case handoffSend(ItemKey, owner: NodeID, delivered: StoredObject)
        case handoffSettle(ItemKey, owner: NodeID)
    }

    public let configuration: Configuration
    public private(set) var ring: Ring
    /// Nodes the failure detector says are down; everything else counts as reachable.
    public private(set) var unreachable: Set<NodeID> = []
    private var operations: [OperationID: Operation] = [:]
    private var nextOperation: UInt64 = 0
    private var hints: HintIndex
    private var handoffsInFlight: Set<HintIndex.Entry> = []
    /// Draws fresh actors; seeded by the shell, never by a clock.
    private var random: SplitMixGenerator

    public init(configuration: Configuration, ring: Ring) {
        self.configuration = configuration
        self.ring = ring
        self.hints = HintIndex(countMax: configuration.hintsMax, bytesMax: configuration.hintBytesMax)
        self.random = SplitMixGenerator(seed: configuration.randomSeed)
    }

    var node: NodeID { configuration.node }

    /// Work in flight (for tests and metrics).
    public var operationsInFlight: Int { operations.count }
    /// Hints waiting for their home replica.
    public var hintCount: Int { hints.count }

    // MARK: Membership and health

    /// Adopts a new ring (a membership change). `pending` is the ring a transition
    /// is moving to, while partitions stream: writes are copied to the replicas it
    /// adds, so that nothing written during the transfer is missing once it takes over.
    public mutating func replaceRing(_ ring: Ring, pending: Ring? = nil) {
        self.ring = ring
        self.pendingRing = pending
    }

    /// The ring a transition is moving to, if one is under way.
    public private(set) var pendingRing: Ring?

    /// Nodes that will be home replicas of `key` once the pending ring takes over and
    /// are not now: they receive copies of writes, which do not count toward W.
    public func pendingReplicas(for key: ItemKey, n: Int) -> [NodeID] {
        guard let pendingRing else { return [] }
        let now = Set(ring.preferenceList(for: key.partition, count: n))
        return pendingRing.preferenceList(for: key.partition, count: n).filter { !now.contains($0) && $0 != node }
    }

    /// Marks a node reachable or not; a node coming back gets its hints.
    public mutating func setReachable(_ peer: NodeID, _ reachable: Bool) -> [NodeDirective] {
        guard peer != node else { return [] }
        if reachable {
            guard unreachable.remove(peer) != nil else { return [] }
            return startHandoffs()
        }
        unreachable.insert(peer)
        return []
    }

    /// The targets of a key: the first `n` home replicas that are reachable, and for
    /// each one that is not, the next reachable fallback (sloppy quorum).
    public func targets(for key: ItemKey, n: Int) -> [ReplicaTarget] {
        let preference = ring.preferenceList(for: key.partition, count: ring.members.count)
        let homes = preference.prefix(n)
        var fallbacks = preference.dropFirst(n).filter { !unreachable.contains($0) }.makeIterator()
        var targets: [ReplicaTarget] = []
        for home in homes {
            if !unreachable.contains(home) {
                targets.append(ReplicaTarget(node: home))
            } else if let fallback = fallbacks.next() {
                targets.append(ReplicaTarget(node: fallback, hintFor: home))
            }
        }
        return targets
    }

    // MARK: Clients

    /// A client request arrived at this node.
    public mutating func clientRequested(_ operation: ClientOperation, token: UInt64) -> [NodeDirective] {
        coordinate(operation, for: .client(token), forwardAllowed: true)
    }

    private mutating func coordinate(_ operation: ClientOperation, for requester: Requester, forwardAllowed: Bool) -> [NodeDirective] {
        switch operation {
        case .get(let key, let r, let n):
            let targets = targets(for: key, n: n)
            guard targets.count >= r else {
                return [reply(requester, .failed(.insufficientReplicas(have: targets.count, need: r)))]
            }
            var coordinator = GetCoordinator(key: key, r: r, targets: targets, local: node)
            let steps = coordinator.start()
            let id = newOperation(.get(coordinator, requester))
            return [.startTimer(id, after: configuration.requestTimeout)] + run(steps, of: coordinator, id: id, requester: requester)
        case .put(let key, let sibling, let context, let w, let n):
            let targets = targets(for: key, n: n)
            guard targets.count >= w else {
                return [reply(requester, .failed(.insufficientReplicas(have: targets.count, need: w)))]
            }
            guard let local = targets.first(where: { $0.node == node }) else {
                guard forwardAllowed else { return [reply(requester, .failed(.unavailable("\(node) is not a replica of \(key)")))] }
                return forward(operation, to: targets.map(\.node), for: requester)
            }
            var coordinator = PutCoordinator(key: key, w: w, targets: targets, local: node)
            let targeted = Set(targets.map(\.node))
            coordinator.copies = pendingReplicas(for: key, n: n).filter { !targeted.contains($0) }
            let id = newOperation(.put(coordinator, requester))
            // As a fallback, a node issues versions under an actor of the hint record,
            // fresh for each record (see HintRecord.actor).
            let hinted = local.hintFor.map { HintedWrite(owner: $0, freshActor: ActorID(rawValue: random.next())) }
            return [
                .startTimer(id, after: configuration.requestTimeout),
                .write(key, .clientWrite(sibling, context: context, actor: configuration.actor, hint: hinted), operation: id),
            ]
        }
    }

    /// Sends a put to the first remaining target that will coordinate it.
    private mutating func forward(_ operation: ClientOperation, to candidates: [NodeID], for requester: Requester) -> [NodeDirective] {
        guard let next = candidates.first else {
            return [reply(requester, .failed(.unavailable("no replica of \(operation.key) could coordinate the write")))]
        }
        let id = newOperation(.forward(operation, remaining: Array(candidates.dropFirst()), requester))
        return [.send(.coordinate(operation), to: next, operation: id), .observe(.forwarded(operation.key, to: next))]
    }

    // MARK: Peers

    /// A peer's request arrived.
    public mutating func peerRequested(_ request: PeerRequest, from peer: NodeID, token: UInt64) -> [NodeDirective] {
        switch request {
        case .ping:
            return [.replyToPeer(token: token, .pong)]
        case .replicaRead(let key), .homeRead(let key, _):
            // A client that holds a stale ring must not read a node that no longer
            // holds the key: it could find the same old version on two of them.
            if case .homeRead(_, let n) = request, !ring.preferenceList(for: key.partition, count: n).contains(node) {
                return [.replyToPeer(token: token, .failed(.unavailable("\(node) is not one of the first \(n) replicas of \(key)")))]
            }
            let id = newOperation(.replicaRead(peer: token))
            return [.read(key, operation: id)]
        case .replicaWrite(let key, let object, let hintFor):
            let id = newOperation(.replicaWrite(peer: token, key, hintFor: hintFor, bytes: Self.approximateBytes(key, object)))
            let operation: StorageOperation = hintFor.map { .mergeHint(object, owner: $0) } ?? .merge(object)
            return [.write(key, operation, operation: id)]
        case .coordinate(let operation):
            return coordinate(operation, for: .peer(token), forwardAllowed: false)
        }
    }

    /// The reply to a request this node sent, or why there was none.
    public mutating func peerReplied(_ result: Result<PeerReply, TransportFailure>, operation id: OperationID, from peer: NodeID) -> [NodeDirective] {
        // Taken out while it advances, so that its coordinator is not shared with the
        // table and mutates in place; every case that goes on puts it back.
        guard let operation = operations.removeValue(forKey: id) else { return [] }
        switch consume operation {
        case .get(var coordinator, let requester):
            let outcome: Result<StoredObject?, ClientFailure> = switch result {
            case .success(.replicaRead(let object)): .success(object)
            case .success(.failed(let failure)): .failure(failure)
            default: .failure(.unavailable("\(peer) did not answer the read"))
            }
            let steps = coordinator.onReply(from: peer, outcome)
            operations[id] = .get(coordinator, requester)
            return run(steps, of: coordinator, id: id, requester: requester)
        case .put(var coordinator, let requester):
            let outcome: Result<Void, ClientFailure> = switch result {
            case .success(.replicaWritten): .success(())
            case .success(.failed(let failure)): .failure(failure)
            default: .failure(.unavailable("\(peer) did not acknowledge the write"))
            }
            let steps = coordinator.onReply(from: peer, outcome)
            operations[id] = .put(coordinator, requester)
            return run(steps, of: coordinator, id: id, requester: requester)
        case .forward(let clientOperation, let remaining, let requester):
            operations[id] = nil
            switch result {
            case .success(.coordinated(let clientResult)):
                return [reply(requester, clientResult)]
            case .failure(.unreachable), .success(.failed(.unavailable)):
                // The request never ran there: the next target may coordinate it.
                return forward(clientOperation, to: remaining, for: requester)
            case .failure, .success:
                // It may have run there; running it again would write it twice.
                return [reply(requester, .failed(.unavailable("\(peer) did not answer; the write may or may not have been applied")))]
            }
        case .handoffSend(let key, let owner, let delivered):
            operations[id] = nil
            guard case .success(.replicaWritten) = result else {
                handoffsInFlight.remove(HintIndex.Entry(key: key, owner: owner))
                return []
            }
            let settle = newOperation(.handoffSettle(key, owner: owner))
            return [.write(key, .settleHint(owner: owner, delivered: delivered), operation: settle)]
        case .replicaRead, .replicaWrite, .handoffRead, .handoffSettle:
            fatalError("internal inconsistency in NodeEngine: a peer reply for a local operation \(id)")
        }
    }

    // MARK: Storage

    /// A client write's `write` directive has appended its object and waits for its
    /// fsync: the coordinator sends the object to the other targets now, so that their
    /// fsyncs run alongside its own. A shell MAY report this (before
    /// `storageCompleted` of the same operation); one that does not gets the sends at
    /// `storageCompleted`. Any other operation ignores it.
    public mutating func storageAppended(_ result: StorageResult, operation id: OperationID) -> [NodeDirective] {
        // Taken out while it advances, as in `peerReplied`.
        guard case .object(let object?) = result, let operation = operations.removeValue(forKey: id) else { return [] }
        switch consume operation {
        case .put(var coordinator, let requester) where coordinator.object == nil:
            let directives = appended(object, by: coordinator)
            let steps = coordinator.onLocalAppended(object)
            operations[id] = .put(coordinator, requester)
            return directives + run(steps, of: coordinator, id: id, requester: requester)
        case let other:
            operations[id] = other
            return []
        }
    }

    /// What a client write's appended object asks besides its coordinator's steps: a
    /// warning when it holds many siblings, and copies to the replicas a pending ring adds.
    private mutating func appended(_ object: StoredObject, by coordinator: PutCoordinator) -> [NodeDirective] {
        var directives: [NodeDirective] = []
        if object.siblingCount > Limits.siblingsWarn {
            directives.append(.observe(.siblingsOverWarning(coordinator.key, count: object.siblingCount)))
        }
        for copy in coordinator.copies {
            directives.append(.send(.replicaWrite(coordinator.key, object: object, hintFor: nil), to: copy, operation: newOperationID()))
        }
        return directives
    }

    /// A `read` or `write` directive finished.
    public mutating func storageCompleted(_ result: StorageResult, operation id: OperationID) -> [NodeDirective] {
        // Taken out while it advances, as in `peerReplied`.
        guard let operation = operations.removeValue(forKey: id) else { return [] }
        switch consume operation {
        case .get(var coordinator, let requester):
            let outcome: Result<StoredObject?, ClientFailure> = switch result {
            case .object(let object): .success(object)
            case .failed(let failure): .failure(failure)
            case .hint: fatalError("internal inconsistency in NodeEngine: hint result for a read")
            }
            let steps = coordinator.onReply(from: node, outcome)
            operations[id] = .get(coordinator, requester)
            return run(steps, of: coordinator, id: id, requester: requester)
        case .put(var coordinator, let requester):
            let outcome: Result<StoredObject, ClientFailure> = switch result {
            case .object(let object?): .success(object)
            case .failed(let failure): .failure(failure)
            case .object(nil), .hint: fatalError("internal inconsistency in NodeEngine: a client write stored nothing")
            }
            var directives: [NodeDirective] = []
            if case .success(let object) = outcome {
                // Not reported appended: the sends of `storageAppended` go now.
                if coordinator.object == nil { directives += appended(object, by: coordinator) }
                if let hintFor = coordinator.targets.first(where: { $0.node == node })?.hintFor {
                    directives += recordHint(coordinator.key, owner: hintFor, bytes: Self.approximateBytes(coordinator.key, object))
                }
            }
            let steps = coordinator.onLocalApplied(outcome)
            operations[id] = .put(coordinator, requester)
            return directives + run(steps, of: coordinator, id: id, requester: requester)
        case .replicaRead(let peer):
            operations[id] = nil
            switch result {
            case .object(let object): return [.replyToPeer(token: peer, .replicaRead(object))]
            case .failed(let failure): return [.replyToPeer(token: peer, .failed(failure))]
            case .hint: fatalError("internal inconsistency in NodeEngine: hint result for a replica read")
            }
        case .replicaWrite(let peer, let key, let hintFor, let bytes):
            operations[id] = nil
            if case .failed(let failure) = result { return [.replyToPeer(token: peer, .failed(failure))] }
            let recorded = hintFor.map { recordHint(key, owner: $0, bytes: bytes) } ?? []
            return recorded + [.replyToPeer(token: peer, .replicaWritten)]
        case .handoffRead(let key, let owner):
            operations[id] = nil
            guard case .object(let object?) = result else {
                handoffsInFlight.remove(HintIndex.Entry(key: key, owner: owner))
                hints.remove(key, owner: owner)
                return []
            }
            let send = newOperation(.handoffSend(key, owner: owner, delivered: object))
            return [.send(.replicaWrite(key, object: object, hintFor: nil), to: owner, operation: send)]
        case .handoffSettle(let key, let owner):
            operations[id] = nil
            handoffsInFlight.remove(HintIndex.Entry(key: key, owner: owner))
            guard case .hint(let record) = result else { return [] }
            if record?.owners.contains(owner) != true {
                hints.remove(key, owner: owner)
                return [.observe(.hintDelivered(key, owner: owner))]
            }
            return []
        case .forward, .handoffSend:
            fatalError("internal inconsistency in NodeEngine: a storage result for a remote operation \(id)")
        }
    }

    // MARK: Timers and hand-off

    /// A `startTimer` directive's time is up.
    public mutating func timerFired(_ id: OperationID) -> [NodeDirective] {
        // Taken out while it advances, as in `peerReplied`.
        guard let operation = operations.removeValue(forKey: id) else { return [] }
        switch consume operation {
        case .get(var coordinator, let requester):
            let steps = coordinator.onTimeout()
            operations[id] = .get(coordinator, requester)
            return run(steps, of: coordinator, id: id, requester: requester)
        case .put(var coordinator, let requester):
            let steps = coordinator.onTimeout()
            operations[id] = .put(coordinator, requester)
            return run(steps, of: coordinator, id: id, requester: requester)
        case let other:
            operations[id] = other
            return []
        }
    }

    /// Periodic work: hand hints to reachable home replicas. Call about once a second.
    public mutating func tick() -> [NodeDirective] {
        startHandoffs()
    }

    /// Hints found on disk when the node starts, with their approximate sizes.
    public mutating func recoverHints(_ recovered: [(ItemKey, owners: [NodeID], bytes: Int)]) -> [NodeDirective] {
        var directives: [NodeDirective] = []
        for (key, owners, bytes) in recovered {
            for owner in owners { directives += recordHint(key, owner: owner, bytes: bytes, observe: false) }
        }
        return directives
    }

    /// What a hint costs the bounds: the key and the siblings' bytes.
    static func approximateBytes(_ key: ItemKey, _ object: StoredObject) -> Int {
        object.values.reduce(key.storageKey.count + 32) { $0 + $1.data.count + $1.contentType.utf8.count + 16 }
    }

    private mutating func recordHint(_ key: ItemKey, owner: NodeID, bytes: Int, observe: Bool = true) -> [NodeDirective] {
        var directives: [NodeDirective] = observe ? [.observe(.hintStored(key, owner: owner))] : []
        for dropped in hints.add(key, owner: owner, size: bytes) {
            let id = newOperation(.handoffSettle(dropped.key, owner: dropped.owner))
            directives.append(.write(dropped.key, .dropHint(owner: dropped.owner), operation: id))
            directives.append(.observe(.hintDropped(dropped.key, owner: dropped.owner)))
        }
        return directives
    }

    private mutating func startHandoffs() -> [NodeDirective] {
        var directives: [NodeDirective] = []
        for owner in hints.owners where !unreachable.contains(owner) {
            for key in hints.keys(for: owner) {
                guard handoffsInFlight.count < configuration.handoffConcurrencyMax else { return directives }
                let entry = HintIndex.Entry(key: key, owner: owner)
                guard !handoffsInFlight.contains(entry) else { continue }
                handoffsInFlight.insert(entry)
                let id = newOperation(.handoffRead(key, owner: owner))
                directives.append(.read(key, operation: id))
            }
        }
        return directives
    }

    // MARK: Steps to directives

    private mutating func run(_ steps: [GetCoordinator.Step], of coordinator: GetCoordinator, id: OperationID, requester: Requester) -> [NodeDirective] {
        var directives: [NodeDirective] = []
        for step in steps {
            switch step {
            case .ask(let target):
                let key = coordinator.key
                directives.append(target.node == node ? .read(key, operation: id) : .send(.replicaRead(key), to: target.node, operation: id))
            case .reply(let result):
                directives.append(reply(requester, result))
            case .repair(let target, let object):
                directives.append(.observe(.readRepair(coordinator.key, to: target.node)))
                let repair = newOperationID()
                directives.append(target.node == node
                    ? .write(coordinator.key, .merge(object), operation: repair)
                    : .send(.replicaWrite(coordinator.key, object: object, hintFor: nil), to: target.node, operation: repair))
            case .finished:
                operations[id] = nil
            }
        }
        return directives
    }

    private mutating func run(_ steps: [PutCoordinator.Step], of coordinator: PutCoordinator, id: OperationID, requester: Requester) -> [NodeDirective] {
        var directives: [NodeDirective] = []
        for step in steps {
            switch step {
            case .replicate(let target, let object):
                directives.append(.send(.replicaWrite(coordinator.key, object: object, hintFor: target.hintFor), to: target.node, operation: id))
            case .reply(let result):
                directives.append(reply(requester, result))
            case .finished:
                operations[id] = nil
            }
        }
        return directives
    }

    private func reply(_ requester: Requester, _ result: ClientResult) -> NodeDirective {
        switch requester {
        case .client(let token): .replyToClient(token: token, result)
        case .peer(let token): .replyToPeer(token: token, .coordinated(result))
        }
    }

    private mutating func newOperation(_ operation: Operation) -> OperationID {
        let id = newOperationID()
        operations[id] = operation
        return id
    }

    /// An id no operation is registered under: replies to it are ignored.
    private mutating func newOperationID() -> OperationID {
        nextOperation += 1
        return OperationID(rawValue: nextOperation)
    }
}
