/// A replica a coordinator talks to: a home replica, or a fallback standing in for one.
public struct ReplicaTarget: Hashable, Sendable, CustomStringConvertible {
    public var node: NodeID
    /// The home replica this fallback stands in for; nil for a home replica.
    public var hintFor: NodeID?

    public init(node: NodeID, hintFor: NodeID? = nil) {
        self.node = node
        self.hintFor = hintFor
    }

    public var description: String { hintFor.map { "\(node)(for \($0))" } ?? node.description }
}

/// Riak's get FSM as a state machine, asking only as many replicas as it needs:
/// the first `r` targets (this node first, when it is one), and one more for every
/// target that fails. It answers after `r` replies with the merge of what they
/// hold, keeps listening until every replica it asked has answered or the deadline
/// passes, then repairs the home replicas among them that were behind. Replicas it
/// did not ask are brought up to date by hand-off, by reads that ask them, and by
/// anti-entropy.
struct GetCoordinator: Sendable {
    enum Step: Equatable, Sendable {
        case ask(ReplicaTarget)
        case reply(ClientResult)
        case repair(ReplicaTarget, StoredObject)
        case finished
    }

    let key: ItemKey
    let r: Int
    /// In the order they are asked: this node first, then the preference order.
    let targets: [ReplicaTarget]
    private var asked = 0
    private var replies: [NodeID: StoredObject?] = [:]
    private var failed: Set<NodeID> = []
    private var answered = false

    init(key: ItemKey, r: Int, targets: [ReplicaTarget], local: NodeID) {
        precondition(r >= 1, "internal inconsistency in GetCoordinator: r < 1")
        self.key = key
        self.r = r
        self.targets = targets.filter { $0.node == local } + targets.filter { $0.node != local }
    }

    /// The first requests: `r` of the targets.
    mutating func start() -> [Step] {
        askMore(min(r, targets.count))
    }

    mutating func onReply(from node: NodeID, _ result: Result<StoredObject?, ClientFailure>) -> [Step] {
        guard targets.prefix(asked).contains(where: { $0.node == node }), replies[node] == nil, !failed.contains(node) else { return [] }
        var steps: [Step] = []
        switch result {
        case .success(let object): replies[node] = .some(object)
        case .failure:
            failed.insert(node)
            if !answered { steps += askMore(1) }
        }
        if !answered {
            if replies.count >= r {
                answered = true
                steps.append(.reply(.read(merged)))
            } else if targets.count - failed.count < r {
                answered = true
                steps.append(.reply(.failed(.insufficientReplicas(have: replies.count, need: r))))
            }
        }
        if replies.count + failed.count == asked {
            steps += repairs() + [.finished]
        }
        return steps
    }

    mutating func onTimeout() -> [Step] {
        var steps: [Step] = []
        if !answered {
            answered = true
            steps.append(.reply(.failed(.insufficientReplicas(have: replies.count, need: r))))
        }
        return steps + repairs() + [.finished]
    }

    private mutating func askMore(_ count: Int) -> [Step] {
        let next = targets[asked..<min(targets.count, asked + count)]
        asked += next.count
        return next.map { .ask($0) }
    }

    /// Everything the replies hold, merged in node order (a fixed order keeps runs reproducible).
    private var merged: StoredObject? {
        var result: StoredObject?
        for node in replies.keys.sorted() {
            guard case let object?? = replies[node] else { continue }
            result = result.map { StoredObject.sync($0, object) } ?? object
        }
        return result
    }

    /// Read repair: every home replica that answered with less than the merge gets it.
    private func repairs() -> [Step] {
        guard let merged else { return [] }
        return targets.compactMap { target in
            guard target.hintFor == nil, let reply = replies[target.node] else { return nil }
            if let theirs = reply, theirs == merged { return nil }
            return .repair(target, merged)
        }
    }
}

extension ClientResult {
    /// What a read answers when its replies merge to `object`.
    public static func read(_ object: StoredObject?) -> ClientResult {
        guard let object, !object.isEmpty else { return .notFound(context: nil) }
        return object.isDeleted ? .notFound(context: object.context) : .found(object)
    }
}

/// Riak's put FSM as a state machine: the coordinator (itself a target) applies the
/// write locally under its actor, sends the resulting object to the other targets
/// as soon as it is appended (its own fsync runs meanwhile), and answers after `w`
/// durable acknowledgements, its own counted once its fsync is done.
struct PutCoordinator: Sendable {
    enum Step: Equatable, Sendable {
        case replicate(ReplicaTarget, StoredObject)
        case reply(ClientResult)
        case finished
    }

    let key: ItemKey
    let w: Int
    let targets: [ReplicaTarget]
    let local: NodeID
    /// Replicas a ring transition is adding: they get a copy of the write, which does
    /// not count toward `w` (see `NodeEngine.pendingReplicas`).
    var copies: [NodeID] = []
    private(set) var object: StoredObject?
    private var acknowledged: Set<NodeID> = []
    private var failed: Set<NodeID> = []
    private var answered = false

    init(key: ItemKey, w: Int, targets: [ReplicaTarget], local: NodeID) {
        precondition(targets.contains { $0.node == local }, "internal inconsistency in PutCoordinator: coordinator is not a target")
        precondition(w >= 1, "internal inconsistency in PutCoordinator: w < 1")
        self.key = key
        self.w = w
        self.targets = targets
        self.local = local
    }

    /// The coordinator's own write finished: appended and durable, or failed.
    mutating func onLocalApplied(_ result: Result<StoredObject, ClientFailure>) -> [Step] {
        switch result {
        case .failure(let failure):
            guard object == nil else { return onLocalDurable(.failure(failure)) }
            answered = true
            return [.reply(.failed(failure)), .finished]
        case .success(let object):
            guard self.object == nil else { return onLocalDurable(.success(())) }
            return onLocalAppended(object) + onLocalDurable(.success(()))
        }
    }

    /// The coordinator's own write is appended (not yet durable): the new object goes
    /// to the other targets now. A version sent before the local fsync is safe: a node
    /// that crashes takes a fresh actor when it restarts, so the version's dot is never
    /// issued again (decision 0005).
    mutating func onLocalAppended(_ object: StoredObject) -> [Step] {
        guard self.object == nil, !answered else { return [] }
        self.object = object
        return targets.filter { $0.node != local }.map { Step.replicate($0, object) } + progress()
    }

    /// The coordinator's own appended write is durable, or its fsync failed.
    mutating func onLocalDurable(_ result: Result<Void, ClientFailure>) -> [Step] {
        guard object != nil, !acknowledged.contains(local), !failed.contains(local) else { return [] }
        switch result {
        case .success: acknowledged.insert(local)
        case .failure: failed.insert(local)
        }
        return progress()
    }

    mutating func onReply(from node: NodeID, _ result: Result<Void, ClientFailure>) -> [Step] {
        guard object != nil, node != local, targets.contains(where: { $0.node == node }),
              !acknowledged.contains(node), !failed.contains(node)
        else { return [] }
        switch result {
        case .success: acknowledged.insert(node)
        case .failure: failed.insert(node)
        }
        return progress()
    }

    mutating func onTimeout() -> [Step] {
        guard !answered else { return [.finished] }
        answered = true
        return [.reply(.failed(.insufficientReplicas(have: acknowledged.count, need: w))), .finished]
    }

    private mutating func progress() -> [Step] {
        var steps: [Step] = []
        if !answered, let object {
            if acknowledged.count >= w {
                answered = true
                steps.append(.reply(.written(context: object.context)))
            } else if targets.count - failed.count < w {
                answered = true
                steps.append(.reply(.failed(.insufficientReplicas(have: acknowledged.count, need: w))))
            }
        }
        if acknowledged.count + failed.count == targets.count { steps.append(.finished) }
        return steps
    }
}
