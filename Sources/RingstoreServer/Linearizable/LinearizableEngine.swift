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
    /// Runs `body` after `delay` or somewhat later: for time limits, which the work
    /// they guard usually beats (`body` then does nothing).
    func scheduleTimeout(after delay: Duration, _ body: @escaping @Sendable () -> Void)
    /// Whether this node's failure detector believes every one of `nodes` answers.
    func allReachable(_ nodes: [NodeID]) -> Bool
    /// Asks another node's acceptor what it accepted for `key` (`CASPaxosPeek`);
    /// `reply` gets nil when it did not answer or refused.
    func peek(_ key: ItemKey, placement: CASPaxosPlacement, at node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosAcceptedValue??) -> Void)
}

extension CASPaxosNetwork {
    func scheduleTimeout(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        schedule(after: delay, body)
    }
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
    /// Promises earned by this node's last accept of each key (the one-round-trip
    /// optimisation), with the placement they were earned under. An entry is used
    /// once, by the key's next attempt; any other outcome drops it.
    private let promises = Mutex<[ItemKey: HeldPromise]>([:])
    private let batches = KeyBatches()
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
    ///
    /// Operations that arrive while one is running on their key are batched: the
    /// next attempt applies all of them in arrival order under one ballot, each to
    /// the value the previous one left, and each gets its own outcome. A hot key (a
    /// popular subject's roster) then costs one round of CASPaxos per batch, not per
    /// operation.
    ///
    /// Nothing waits in a task: the operation moves on in the callbacks of the
    /// messages it sends and of the storage engine, on whichever thread delivers
    /// them, and `done` is called on one of those threads.
    ///
    /// A read looks at the replicas first (one round trip, nothing written), unless
    /// it is `forUpdate` and this node holds no promise for the key: then it runs as
    /// an operation, whose prepare leaves the promise for the change that follows.
    func run(_ request: LinearizableRequest, done: @escaping @Sendable (LinearizableAnswer) -> Void) {
        guard request.change == .read else { return enqueue(request, done) }
        if request.forUpdate, promises.withLock({ $0[request.key] == nil }) { return enqueue(request, done) }
        peekRead(request) { [self] found in
            if case .some(let value) = found {
                metrics.peekReads.increment()
                return done(.applied(value))
            }
            enqueue(request, done)
        }
    }

    /// `run(_:done:)` for a caller that waits.
    func run(_ request: LinearizableRequest) async -> LinearizableAnswer {
        await withCheckedContinuation { continuation in
            run(request) { continuation.resume(returning: $0) }
        }
    }

    private func enqueue(_ request: LinearizableRequest, _ done: @escaping @Sendable (LinearizableAnswer) -> Void) {
        if batches.enqueue(request, done) { drive(request.key) }
    }

    /// A read in one round trip without writing anything (`CASPaxosPeek`): the value
    /// when a majority of the key's replicas agree on their accepted ballot; nil when
    /// they do not (or do not answer in time), and the read must run as an operation.
    private func peekRead(_ request: LinearizableRequest, done: @escaping @Sendable (LinearizableValue??) -> Void) {
        guard let placement = network.placement(of: request.key, replicaCount: request.replicaCount), !placement.moving else { return done(.none) }
        let wire = CASPaxosPlacement(ringEpoch: placement.ringEpoch, replicaCount: request.replicaCount)
        let quorum = placement.replicas.count / 2 + 1
        let gathered = PeekGathering(expected: placement.replicas.count, quorum: quorum, done: done)
        for node in placement.replicas {
            let deliver: @Sendable (CASPaxosAcceptedValue??) -> Void = { answer in gathered.receive(answer) }
            if node == network.me {
                handlePeek(request.key, placement: wire) { deliver($0) }
            } else {
                network.peek(request.key, placement: wire, at: node, timeout: settings.attemptTimeout, reply: deliver)
            }
        }
    }

    /// Answers a peek: the accepted value (once durable), or nil when this node does
    /// not place the key as the asker does or cannot read its state.
    func handlePeek(_ key: ItemKey, placement wire: CASPaxosPlacement, reply: @escaping @Sendable (CASPaxosAcceptedValue??) -> Void) {
        guard let placement = network.placement(of: key, replicaCount: wire.replicaCount), placement.ringEpoch == wire.ringEpoch,
              !placement.moving, placement.replicas.contains(network.me)
        else { return reply(.none) }
        acceptors.peek(key) { result in
            switch result {
            case .success(let accepted): reply(.some(accepted))
            case .failure: reply(.none)
            }
        }
    }

    /// Runs the batches of one key until its queue is empty. A batch that finishes
    /// within the call (a node without a ring answers at once) lets the loop take
    /// the next one; one that finishes later drives the key again from its callback.
    private func drive(_ key: ItemKey) {
        while let waiting = batches.take(key) {
            let changes = waiting.map(\.request.change)
            let request = LinearizableRequest(
                key: key, replicaCount: waiting[0].request.replicaCount, change: changes.count == 1 ? changes[0] : .batch(changes))
            let progress = BatchProgress()
            propose(request) { [self] answer, found in
                deliver(waiting, changes: changes, request: request, answer: answer, found: found)
                if progress.finish() { drive(key) }
            }
            if progress.goOnLater() { return }
        }
    }

    /// Gives each operation of a finished batch its own answer.
    private func deliver(_ waiting: [KeyBatches.Waiter], changes: [LinearizableChange], request: LinearizableRequest, answer: LinearizableAnswer, found: LinearizableValue??) {
        let answers: [LinearizableAnswer]
        switch answer {
        case .applied where changes.count > 1:
            guard case .some(let start) = found else {
                answers = Array(repeating: .failed(.noQuorum, message: "internal inconsistency: a batch was applied without the value it started from"), count: changes.count)
                break
            }
            answers = request.change.outcomes(from: start).map { outcome in
                switch outcome {
                case .applied(let value): .applied(value)
                case .refused(let reason, let current): .refused(reason, current: current)
                }
            }
        case .failed(.outcomeUnknown, let message) where changes.count > 1:
            // A read in a batch whose outcome is unknown changed nothing: it was not applied.
            answers = changes.map { $0.isRead ? .failed(.noQuorum, message: message) : answer }
        default:
            answers = Array(repeating: answer, count: changes.count)
        }
        metrics.batchSize.record(changes.count)
        for (waiter, answer) in zip(waiting, answers) { waiter.done(answer) }
    }

    /// Runs attempts until one answers, or until `operationTimeout` when they keep
    /// failing without having changed anything.
    private func propose(_ request: LinearizableRequest, done: @escaping @Sendable (LinearizableAnswer, LinearizableValue??) -> Void) {
        let started = ContinuousClock.now
        let finish: @Sendable (LinearizableAnswer, LinearizableValue??) -> Void = { [metrics] answer, found in
            metrics.latency.recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
            done(answer, found)
        }
        attempt(request, number: 1, deadline: started + settings.operationTimeout, done: finish)
    }

    private func attempt(
        _ request: LinearizableRequest, number: Int, deadline: ContinuousClock.Instant,
        done: @escaping @Sendable (LinearizableAnswer, LinearizableValue??) -> Void
    ) {
        guard let placement = network.placement(of: request.key, replicaCount: request.replicaCount) else {
            return done(.failed(.notReady, message: "this node has no ring yet (the cluster has not formed, or the node left it)"), .none)
        }
        let moving = (LinearizableFailure.partitionMoving, "the key's partition is moving to other nodes; linearizable operations on it resume when the new ring takes effect")
        guard !placement.moving else {
            return retry(request, after: number, deadline: deadline, failure: moving, done: done)
        }
        runAttempt(request, placement: placement) { [self] outcome in
            switch outcome.result {
            case .applied(let value):
                metrics.applied.increment()
                done(.applied(value), outcome.found)
            case .refused(let reason, let current):
                metrics.refused.increment()
                done(.refused(reason, current: current), outcome.found)
            case .conflict(let higher, let unknown):
                ballots.withLock { $0.observe(higher) }
                metrics.conflicts.increment()
                if unknown && !request.change.isIdempotent {
                    return done(unknownOutcome("an acceptor promised a higher ballot while the change was being accepted"), .none)
                }
                retry(request, after: number, deadline: deadline, failure: (.noQuorum, "other coordinators kept winning the key (contention)"), done: done)
            case .unavailable(let have, let need, let unknown):
                if unknown && !request.change.isIdempotent {
                    return done(unknownOutcome("only \(have) of the \(need) replicas needed confirmed the change"), .none)
                }
                let failure = outcome.sawMoving
                    ? moving
                    : (.noQuorum, "only \(have) of the \(need) replicas needed answered (of \(placement.replicas.map(\.rawValue).joined(separator: ", ")))")
                retry(request, after: number, deadline: deadline, failure: failure, done: done)
            }
        }
    }

    /// Runs the next attempt after a randomised backoff, or answers `failure` when the
    /// operation's time would run out first.
    private func retry(
        _ request: LinearizableRequest, after number: Int, deadline: ContinuousClock.Instant, failure: (LinearizableFailure, String),
        done: @escaping @Sendable (LinearizableAnswer, LinearizableValue??) -> Void
    ) {
        let backoff = Duration.milliseconds(random.withLock { Int($0.next() % UInt64(min(200, 5 << min(number, 6)))) } + 1)
        guard ContinuousClock.now + backoff < deadline else {
            metrics.failed.increment()
            return done(.failed(failure.0, message: failure.1), .none)
        }
        network.schedule(after: backoff) { [self] in attempt(request, number: number + 1, deadline: deadline, done: done) }
    }

    private func unknownOutcome(_ reason: String) -> LinearizableAnswer {
        metrics.unknown.increment()
        return .failed(.outcomeUnknown, message: "\(reason); the change may or may not have been applied. Read the key before trying again.")
    }

    /// One ballot: drives a `CASPaxosProposer` until it answers. Its accepts ask for
    /// a promise of the next ballot; with a promise from the key's previous attempt
    /// (under the same placement) it skips the prepare phase.
    private func runAttempt(_ request: LinearizableRequest, placement: KeyPlacement, done: @escaping @Sendable (AttemptOutcome) -> Void) {
        let held = promises.withLock { $0.removeValue(forKey: request.key) }
        let proposer: CASPaxosProposer
        // The held promise is used only while every replica answers: an accept that
        // reaches too few of them may have been taken by one and leave the outcome
        // unknown, where a prepare would have failed cleanly as not applied.
        if let held, held.ringEpoch == placement.ringEpoch, held.replicas == placement.replicas, network.allReachable(placement.replicas) {
            metrics.onePhaseAttempts.increment()
            proposer = CASPaxosProposer(
                key: request.key, change: request.change, replicas: placement.replicas, promise: held.promise,
                timeout: settings.attemptTimeout, next: ballots.withLock { $0.next() })
        } else {
            let (ballot, next) = ballots.withLock { ($0.next(), $0.next()) }
            proposer = CASPaxosProposer(
                key: request.key, change: request.change, replicas: placement.replicas, ballot: ballot, timeout: settings.attemptTimeout, next: next)
        }
        let wire = CASPaxosPlacement(ringEpoch: placement.ringEpoch, replicaCount: request.replicaCount)
        let attempt = Attempt(proposer: proposer, placement: wire) { [self] outcome in
            if let promise = outcome.promiseOfNext {
                let held = HeldPromise(promise: promise, ringEpoch: placement.ringEpoch, replicas: placement.replicas)
                promises.withLock { promises in
                    if promises.count >= Self.heldPromisesMax { promises.removeAll(keepingCapacity: true) }
                    promises[request.key] = held
                }
            }
            done(outcome)
        }
        execute(attempt.step { $0.start() }, attempt)
    }

    /// Keys whose promise a node keeps at most; past it, it forgets them all (a
    /// forgotten promise costs the key's next change one round trip).
    static let heldPromisesMax = 100_000

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
                network.scheduleTimeout(after: delay) { [self] in execute(attempt.step { $0.timedOut() }, attempt) }
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
    /// The value the change was applied to, once the accept phase began.
    var found: LinearizableValue??
    /// The promise of the next ballot that a majority gave with their accepts.
    var promiseOfNext: CASPaxosPromise?
}

/// A promise a majority gave this node for a key, and the placement it holds for.
private struct HeldPromise: Sendable {
    var promise: CASPaxosPromise
    var ringEpoch: UInt64
    var replicas: [NodeID]
}

/// One attempt's proposer and what waits for its answer.
private final class Attempt: Sendable {
    private struct State {
        var proposer: CASPaxosProposer
        var done: (@Sendable (AttemptOutcome) -> Void)?
        var sawMoving = false
    }

    let placement: CASPaxosPlacement
    private let state: Mutex<State>

    init(proposer: CASPaxosProposer, placement: CASPaxosPlacement, done: @escaping @Sendable (AttemptOutcome) -> Void) {
        self.placement = placement
        self.state = Mutex(State(proposer: proposer, done: done))
    }

    /// Feeds one event to the proposer under the lock.
    func step(_ event: (inout CASPaxosProposer) -> [CASPaxosProposerDirective]) -> [CASPaxosProposerDirective] {
        state.withLock { event(&$0.proposer) }
    }

    func sawMoving() {
        state.withLock { $0.sawMoving = true }
    }

    /// Answers once.
    func finish(_ result: CASPaxosResult) {
        let (done, moving, found, promise) = state.withLock { state in
            defer { state.done = nil }
            return (state.done, state.sawMoving, state.proposer.found, state.proposer.promiseOfNext)
        }
        done?(AttemptOutcome(result: result, sawMoving: moving, found: found, promiseOfNext: promise))
    }
}

/// Whether a key's batch finished within the call that proposed it (the driver's
/// loop takes the next batch) or later (its callback drives the key again).
private final class BatchProgress: Sendable {
    private static let running = 0, finishedInline = 1, finishesLater = 2
    private let state = Atomic<Int>(BatchProgress.running)

    /// Called when the batch finished; true when the caller must drive the key again.
    func finish() -> Bool {
        !state.compareExchange(expected: Self.running, desired: Self.finishedInline, ordering: .acquiringAndReleasing).exchanged
    }

    /// Called after proposing; true when the batch has not finished yet (the driver
    /// returns, and the batch's callback drives the key again).
    func goOnLater() -> Bool {
        state.compareExchange(expected: Self.running, desired: Self.finishesLater, ordering: .acquiringAndReleasing).exchanged
    }
}

/// The operations waiting on each key, and whether a batch of the key is running.
final class KeyBatches: Sendable {
    struct Waiter: Sendable {
        let request: LinearizableRequest
        let done: @Sendable (LinearizableAnswer) -> Void
    }

    private struct Queue {
        var waiting: [Waiter] = []
    }

    /// Keys with a running driver, and what waits for their next batch.
    private let queues = Mutex<[ItemKey: Queue]>([:])

    /// Queues an operation; true when no batch of the key is running, so the caller
    /// must start a driver.
    func enqueue(_ request: LinearizableRequest, _ done: @escaping @Sendable (LinearizableAnswer) -> Void) -> Bool {
        queues.withLock { queues in
            let start = queues[request.key] == nil
            queues[request.key, default: Queue()].waiting.append(Waiter(request: request, done: done))
            return start
        }
    }

    /// The next batch of a key (at most `LinearizableChange.batchMax`), or nil when
    /// nothing waits, which ends the key's driver.
    func take(_ key: ItemKey) -> [Waiter]? {
        queues.withLock { queues in
            guard var queue = queues[key], !queue.waiting.isEmpty else {
                queues[key] = nil
                return nil
            }
            let batch = Array(queue.waiting.prefix(LinearizableChange.batchMax))
            queue.waiting.removeFirst(batch.count)
            queues[key] = queue
            return batch
        }
    }
}

/// The answers to one peek read: finishes as soon as a majority agrees, or once
/// every replica answered (or failed to) without agreement.
private final class PeekGathering: Sendable {
    private struct State {
        var answers: [CASPaxosAcceptedValue?] = []
        var received = 0
        var done: (@Sendable (LinearizableValue??) -> Void)?
    }

    let expected: Int
    let quorum: Int
    private let state: Mutex<State>

    init(expected: Int, quorum: Int, done: @escaping @Sendable (LinearizableValue??) -> Void) {
        self.expected = expected
        self.quorum = quorum
        self.state = Mutex(State(done: done))
    }

    func receive(_ answer: CASPaxosAcceptedValue??) {
        let finished: (@Sendable (LinearizableValue??) -> Void, LinearizableValue??)? = state.withLock { state in
            state.received += 1
            if case .some(let accepted) = answer { state.answers.append(accepted) }
            let agreed = CASPaxosPeek.agreedValue(state.answers, quorum: quorum)
            guard case .some = agreed else {
                // Done once no ballot can reach a quorum even with every answer still out.
                let best = Dictionary(grouping: state.answers, by: { $0?.ballot }).values.map(\.count).max() ?? 0
                guard best + (expected - state.received) < quorum, let done = state.done else { return nil }
                state.done = nil
                return (done, .none)
            }
            guard let done = state.done else { return nil }
            state.done = nil
            return (done, agreed)
        }
        if let (done, value) = finished { done(value) }
    }
}
