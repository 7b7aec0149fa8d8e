import CoreMetrics
import Logging
import RingstoreCore
import Synchronization

/// How a node places a key right now.
struct KeyPlacement: Sendable, Equatable {
    /// The epoch of the ring it routes by.
    var ringEpoch: UInt64
    /// The key's home replicas in that ring.
    var replicas: [NodeID]
    /// Whether a pending ring gives the key other home replicas (the partition is moving).
    var moving: Bool
}

/// What the CASPaxos shell needs from the node it runs in: who it is, how it places
/// keys, how it reaches other acceptors, and a clock for timers.
protocol CASPaxosNetwork: Sendable {
    /// This node's id.
    var me: NodeID { get }
    /// How this node places `key` with `replicaCount` replicas; nil without a ring.
    func placement(of key: ItemKey, replicaCount: Int) -> KeyPlacement?
    /// Sends a request to another node's acceptor; `reply` gets its answer, or nil when
    /// none came (not sent, timed out, or the acceptor failed to store its state).
    func send(_ request: CASPaxosRequest, to node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosReply?) -> Void)
    /// Runs `body` after `delay`.
    func schedule(after delay: Duration, _ body: @escaping @Sendable () -> Void)
}

/// A node's linearizable data path (decision 0009): the acceptors of the keys it is
/// a home replica of, and a proposer for every operation it coordinates.
///
/// An operation is one or more CASPaxos attempts, each a `CASPaxosProposer` with a
/// fresh ballot. An attempt that failed without changing anything (a higher ballot
/// seen during prepare, no majority) is run again after a randomised backoff until
/// `operationTimeout` has passed; so is an idempotent change whose attempt may have
/// been applied. Anything else ends the operation with the honest answer: applied,
/// refused, not applied, or outcome unknown.
///
/// Thread safety: all methods may be called from any thread.
final class LinearizableEngine: Sendable {
    struct Settings: Sendable {
        /// How long one attempt waits for majorities.
        var attemptTimeout: Duration = .milliseconds(800)
        /// How long an operation keeps retrying attempts that changed nothing.
        var operationTimeout: Duration = .seconds(2)
    }

    let network: any CASPaxosNetwork
    let acceptors: AcceptorStore
    let settings: Settings
    let logger: Logger
    private let ballots: Mutex<BallotGenerator>
    private let keyQueues = KeyQueues()
    private let random = Mutex(SplitMixGenerator(seed: UInt64.random(in: 0...UInt64.max)))
    private let metrics = LinearizableMetrics()

    init(network: any CASPaxosNetwork, acceptors: AcceptorStore, settings: Settings = Settings(), logger: Logger) {
        self.network = network
        self.acceptors = acceptors
        self.settings = settings
        self.logger = logger
        // A fresh proposer id per process: ballots of a restarted node never repeat.
        self.ballots = Mutex(BallotGenerator(proposer: UInt64.random(in: 1...UInt64.max)))
    }

    // MARK: Acceptor

    /// Answers a prepare or accept from a proposer (another node's, or this one's):
    /// refuses to take part unless this node places the key exactly as the proposer
    /// does and is one of its home replicas; otherwise decides and answers once the
    /// decision is durable. `reply` gets nil when the state could not be stored.
    func handle(_ request: CASPaxosRequest, reply: @escaping @Sendable (CASPaxosReply?) -> Void) {
        let message = request.message
        let refusal: (CASPaxosPlacementRefusal, UInt64)? = {
            guard let placement = network.placement(of: message.key, replicaCount: request.placement.replicaCount) else {
                return (.otherRingEpoch, 0)
            }
            if placement.ringEpoch != request.placement.ringEpoch { return (.otherRingEpoch, placement.ringEpoch) }
            if placement.moving { return (.partitionMoving, placement.ringEpoch) }
            if !placement.replicas.contains(network.me) { return (.notAReplica, placement.ringEpoch) }
            return nil
        }()
        if let (reason, epoch) = refusal {
            metrics.placementRefusals.increment()
            return reply(.placementRefused(message.key, ballot: message.ballot, ringEpoch: epoch, reason: reason))
        }
        acceptors.decide(message) { [logger] result in
            switch result {
            case .success(let answer):
                reply(.message(answer))
            case .failure(let error):
                logger.error("an acceptor could not store its state; it does not answer", metadata: ["key": "\(message.key)", "error": "\(error)"])
                reply(nil)
            }
        }
    }

    // MARK: Proposer

    /// Runs a linearizable operation with this node as proposer. Operations on one
    /// key run one after another on a node, so that they never compete for ballots
    /// with each other (a competing ballot can leave a change's outcome unknown).
    func run(_ request: LinearizableRequest) async -> LinearizableAnswer {
        await keyQueues.acquire(request.key)
        defer { keyQueues.release(request.key) }
        return await propose(request)
    }

    private func propose(_ request: LinearizableRequest) async -> LinearizableAnswer {
        let started = ContinuousClock.now
        let deadline = started + settings.operationTimeout
        var attempt = 0
        var lastFailure: (LinearizableFailure, String) = (.noQuorum, "no attempt ran")
        defer { metrics.latency.recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1))) }
        while true {
            attempt += 1
            guard let placement = network.placement(of: request.key, replicaCount: request.replicaCount) else {
                return .failed(.notReady, message: "this node has no ring yet (the cluster has not formed, or the node left it)")
            }
            if placement.moving {
                lastFailure = (.partitionMoving, "the key's partition is moving to other nodes; linearizable operations on it resume when the new ring takes effect")
            } else {
                let outcome = await runAttempt(request, placement: placement)
                switch outcome.result {
                case .applied(let value):
                    metrics.applied.increment()
                    return .applied(value)
                case .refused(let reason, let current):
                    metrics.refused.increment()
                    return .refused(reason, current: current)
                case .conflict(let higher, let unknown):
                    ballots.withLock { $0.observe(higher) }
                    metrics.conflicts.increment()
                    if unknown && !request.change.isIdempotent {
                        return unknownOutcome("an acceptor promised a higher ballot while the change was being accepted")
                    }
                    lastFailure = (.noQuorum, "other coordinators kept winning the key (contention)")
                case .unavailable(let have, let need, let unknown):
                    if unknown && !request.change.isIdempotent {
                        return unknownOutcome("only \(have) of the \(need) replicas needed confirmed the change")
                    }
                    if outcome.sawMoving {
                        lastFailure = (.partitionMoving, "the key's partition is moving to other nodes; linearizable operations on it resume when the new ring takes effect")
                    } else {
                        lastFailure = (.noQuorum, "only \(have) of the \(need) replicas needed answered (of \(placement.replicas.map(\.rawValue).joined(separator: ", ")))")
                    }
                }
            }
            let backoff = Duration.milliseconds(random.withLock { Int($0.next() % UInt64(min(200, 5 << min(attempt, 6)))) } + 1)
            guard ContinuousClock.now + backoff < deadline else {
                metrics.failed.increment()
                return .failed(lastFailure.0, message: lastFailure.1)
            }
            try? await Task.sleep(for: backoff)
        }
    }

    private func unknownOutcome(_ reason: String) -> LinearizableAnswer {
        metrics.unknown.increment()
        return .failed(.outcomeUnknown, message: "\(reason); the change may or may not have been applied. Read the key before trying again.")
    }

    /// One ballot: drives a `CASPaxosProposer` until it answers.
    private func runAttempt(_ request: LinearizableRequest, placement: KeyPlacement) async -> AttemptOutcome {
        let ballot = ballots.withLock { $0.next() }
        let proposer = CASPaxosProposer(
            key: request.key, change: request.change, replicas: placement.replicas, ballot: ballot, timeout: settings.attemptTimeout)
        let wire = CASPaxosPlacement(ringEpoch: placement.ringEpoch, replicaCount: request.replicaCount)
        return await withCheckedContinuation { continuation in
            let attempt = Attempt(proposer: proposer, placement: wire, continuation: continuation)
            execute(attempt.step { $0.start() }, attempt)
        }
    }

    private func execute(_ directives: [CASPaxosProposerDirective], _ attempt: Attempt) {
        for directive in directives {
            switch directive {
            case .send(let message, let node):
                let request = CASPaxosRequest(message: message, placement: attempt.placement)
                let deliver: @Sendable (CASPaxosReply?) -> Void = { [self] reply in
                    switch reply {
                    case .message(let answer)?:
                        execute(attempt.step { $0.receive(answer, from: node) }, attempt)
                    case .placementRefused(_, _, _, let reason)?:
                        if reason == .partitionMoving { attempt.sawMoving() }
                        execute(attempt.step { $0.noAnswer(from: node) }, attempt)
                    case nil:
                        execute(attempt.step { $0.noAnswer(from: node) }, attempt)
                    }
                }
                if node == network.me {
                    handle(request, reply: deliver)
                } else {
                    network.send(request, to: node, timeout: settings.attemptTimeout, reply: deliver)
                }
            case .startTimer(let delay):
                network.schedule(after: delay) { [self] in execute(attempt.step { $0.timedOut() }, attempt) }
            case .reply(let result):
                attempt.finish(result)
            }
        }
    }
}

/// The result of one attempt, and whether an acceptor refused it because the partition moves.
private struct AttemptOutcome: Sendable {
    var result: CASPaxosResult
    var sawMoving: Bool
}

/// One attempt's proposer and the task waiting for its answer.
private final class Attempt: Sendable {
    private struct State {
        var proposer: CASPaxosProposer
        var continuation: CheckedContinuation<AttemptOutcome, Never>?
        var sawMoving = false
    }

    let placement: CASPaxosPlacement
    private let state: Mutex<State>

    init(proposer: CASPaxosProposer, placement: CASPaxosPlacement, continuation: CheckedContinuation<AttemptOutcome, Never>) {
        self.placement = placement
        self.state = Mutex(State(proposer: proposer, continuation: continuation))
    }

    /// Feeds one event to the proposer under the lock.
    func step(_ event: (inout CASPaxosProposer) -> [CASPaxosProposerDirective]) -> [CASPaxosProposerDirective] {
        state.withLock { event(&$0.proposer) }
    }

    func sawMoving() {
        state.withLock { $0.sawMoving = true }
    }

    /// Resumes the waiting task once.
    func finish(_ result: CASPaxosResult) {
        let (continuation, moving) = state.withLock { state in
            defer { state.continuation = nil }
            return (state.continuation, state.sawMoving)
        }
        continuation?.resume(returning: AttemptOutcome(result: result, sawMoving: moving))
    }
}

/// One turn at a time per key: `acquire` suspends while another operation on the
/// key runs; `release` hands the turn to the next waiter in arrival order.
final class KeyQueues: Sendable {
    private let waiting = Mutex<[ItemKey: [CheckedContinuation<Void, Never>]]>([:])

    func acquire(_ key: ItemKey) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let mine = waiting.withLock { waiting -> Bool in
                if waiting[key] == nil {
                    waiting[key] = []
                    return true
                }
                waiting[key]!.append(continuation)
                return false
            }
            if mine { continuation.resume() }
        }
    }

    func release(_ key: ItemKey) {
        let next = waiting.withLock { waiting -> CheckedContinuation<Void, Never>? in
            guard var queue = waiting[key], !queue.isEmpty else {
                waiting[key] = nil
                return nil
            }
            let next = queue.removeFirst()
            waiting[key] = queue
            return next
        }
        next?.resume()
    }
}
