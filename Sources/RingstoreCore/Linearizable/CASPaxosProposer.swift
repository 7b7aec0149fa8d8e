/// How a CASPaxos operation ended.
public enum CASPaxosResult: Hashable, Sendable {
    /// The change was chosen; the key's value is now this one (for a read, the value read).
    case applied(LinearizableValue?)
    /// The change was refused; `current` is the chosen value it was refused against.
    case refused(LinearizableRefusal, current: LinearizableValue?)
    /// An acceptor had seen `higherBallot`. When `outcomeUnknown` is false nothing of
    /// this attempt was chosen and the shell MAY retry with a ballot above
    /// `higherBallot` (after a backoff); when true the change may have been chosen.
    case conflict(higherBallot: Ballot, outcomeUnknown: Bool)
    /// No majority answered before the timeout (`have` of `need`). When
    /// `outcomeUnknown` is true the change may have been chosen.
    case unavailable(have: Int, need: Int, outcomeUnknown: Bool)

    /// Whether the shell may run the same change again with a new ballot without
    /// risking applying it twice.
    public var isSafeToRetry: Bool {
        switch self {
        case .applied, .refused: false
        case .conflict(_, let outcomeUnknown), .unavailable(_, _, let outcomeUnknown): !outcomeUnknown
        }
    }
}

/// What a proposer asks its shell to do.
public enum CASPaxosProposerDirective: Hashable, Sendable {
    /// Send the message to the acceptor on `node`; feed its reply to `receive(_:from:)`.
    case send(CASPaxosMessage, to: NodeID)
    /// Call `timedOut()` after the duration, unless the operation has finished.
    case startTimer(after: Duration)
    /// Answer the client; the operation is finished and ignores further events.
    case reply(CASPaxosResult)
}

/// A promise a majority of a key's replicas gave a proposer: they will refuse
/// ballots below `ballot`, and `value` was the last value any of them accepted. An
/// accept that carries a `next` ballot earns one (each acceptor that accepts it also
/// promises `next`), so the proposer's next change to the key can skip the prepare
/// phase: the one-round-trip optimisation of CASPaxos. If another proposer has
/// prepared a higher ballot meanwhile, the accept is refused and nothing is lost but
/// the round trip.
public struct CASPaxosPromise: Hashable, Sendable {
    public var ballot: Ballot
    public var value: LinearizableValue?

    public init(ballot: Ballot, value: LinearizableValue?) {
        self.ballot = ballot
        self.value = value
    }
}

/// One CASPaxos operation (one ballot) as a state machine: prepare at the key's
/// home replicas, apply the change to the value with the highest accepted ballot
/// among a majority of promises, accept the result under the same ballot, answer
/// after a majority of accepts.
///
/// A refused change and a read still run the accept phase, re-proposing the value
/// they found, so that what they report was chosen, unless every promise reported
/// the same accepted ballot (then a majority already accepted it: it is chosen).
/// The proposer retries nothing itself: on `conflict` or `unavailable` the shell decides (see
/// `CASPaxosResult.isSafeToRetry`), draws a new ballot from its `BallotGenerator`
/// and starts a new `CASPaxosProposer`.
///
/// Isolation: a value type; the shell calls it from one thread at a time.
public struct CASPaxosProposer: Sendable {
    /// Deliberate protocol bugs the simulator uses to show that its checker catches
    /// them. Never set outside tests.
    enum Fault: Sendable, Equatable {
        case correct
        /// Uses the value of the first promise instead of the highest-ballot one.
        case firstPromiseValue
        /// Counts a quorum one short of a majority.
        case quorumOneShort
    }

    private enum State: Sendable {
        case idle
        /// Promises by node (the value each last accepted), and nodes that rejected.
        case preparing(promises: [NodeID: CASPaxosAcceptedValue?], firstPromise: NodeID?, rejected: Set<NodeID>, highest: Ballot?)
        /// The value proposed, what to answer once it is chosen, and who has accepted or rejected.
        case accepting(proposed: LinearizableValue?, answer: CASPaxosResult, changes: Bool,
                       accepted: Set<NodeID>, rejected: Set<NodeID>, highest: Ballot?)
        case finished
    }

    /// The key.
    public let key: ItemKey
    /// The change to apply.
    public let change: LinearizableChange
    /// The key's N home replicas (never fallbacks).
    public let replicas: [NodeID]
    /// This attempt's ballot, drawn once from the shell's `BallotGenerator`.
    public let ballot: Ballot
    /// How long the attempt waits for majorities.
    public let timeout: Duration
    /// Replies needed in each phase.
    public let quorum: Int
    /// A ballot above `ballot` that the accepts ask the acceptors to promise.
    public let next: Ballot?
    /// The value a majority promised `ballot` with, when the attempt starts from a
    /// promise and skips the prepare phase.
    private let promised: LinearizableValue??
    var fault: Fault
    private var state: State = .idle
    /// The value the change was applied to (the highest accepted among a majority of
    /// promises), once the accept phase began; `.none` before. With a batch, the shell
    /// replays the changes from it to tell each its own outcome.
    public private(set) var found: LinearizableValue??
    /// The promise this attempt leaves for the key's next change: of `next`, when a
    /// majority accepted an accept that carried it (the value is the one accepted);
    /// or of `ballot` itself, when the attempt answered after its prepare phase
    /// without sending accepts (a read or refusal that found a chosen value): a
    /// majority promised `ballot`, nothing was accepted under it, and a change that
    /// starts from it runs the phase 2 this attempt skipped.
    public private(set) var promiseOfNext: CASPaxosPromise?

    /// Creates an operation; `replicas` MUST be the key's distinct home replicas. With
    /// `next` (above `ballot`), its accepts ask for a promise of `next`.
    public init(key: ItemKey, change: LinearizableChange, replicas: [NodeID], ballot: Ballot, timeout: Duration, next: Ballot? = nil) {
        self.init(key: key, change: change, replicas: replicas, ballot: ballot, timeout: timeout, next: next, fault: .correct)
    }

    /// Creates an operation that starts from `promise`, which a majority of exactly
    /// these `replicas` gave this proposer: it goes straight to the accept phase
    /// under `promise.ballot`, applying the change to `promise.value`.
    public init(key: ItemKey, change: LinearizableChange, replicas: [NodeID], promise: CASPaxosPromise, timeout: Duration, next: Ballot? = nil) {
        self.init(key: key, change: change, replicas: replicas, ballot: promise.ballot, timeout: timeout, next: next, promised: .some(promise.value), fault: .correct)
    }

    init(
        key: ItemKey, change: LinearizableChange, replicas: [NodeID], ballot: Ballot, timeout: Duration, next: Ballot? = nil,
        promised: LinearizableValue?? = .none, fault: Fault
    ) {
        precondition(!replicas.isEmpty, "internal inconsistency in CASPaxosProposer: no replicas")
        precondition(Set(replicas).count == replicas.count, "internal inconsistency in CASPaxosProposer: a replica twice")
        precondition(next.map { $0 > ballot } ?? true, "internal inconsistency in CASPaxosProposer: next ballot not above the ballot")
        self.key = key
        self.change = change
        self.replicas = replicas
        self.ballot = ballot
        self.timeout = timeout
        self.next = next
        self.promised = promised
        self.fault = fault
        let majority = replicas.count / 2 + 1
        self.quorum = fault == .quorumOneShort ? Swift.max(1, majority - 1) : majority
    }

    /// Whether the change may have been chosen if the operation is abandoned now
    /// (the shell stops, or the client gives up): true once an accept that changes
    /// the value was sent and no answer was given.
    public var mayHaveTakenEffect: Bool {
        if case .accepting(_, _, let changes, _, _, _) = state { return changes }
        return false
    }

    /// Whether the operation has answered.
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Starts phase 1 (a prepare to every replica), or phase 2 when the attempt
    /// starts from a promise; and the timer.
    public mutating func start() -> [CASPaxosProposerDirective] {
        guard case .idle = state else { fatalError("internal inconsistency in CASPaxosProposer: start when not idle") }
        if case .some(let current) = promised {
            // Even a read or a refusal runs the accept phase here: the promise says
            // nothing of ballots above it that other proposers may have prepared since.
            return beginAccept(current: current, mayFinishWithoutAccepts: false) + [.startTimer(after: timeout)]
        }
        state = .preparing(promises: [:], firstPromise: nil, rejected: [], highest: nil)
        return replicas.map { .send(.prepare(key, ballot: ballot), to: $0) } + [.startTimer(after: timeout)]
    }

    /// Feeds a reply from an acceptor. Replies for another key or ballot, from a
    /// node that is not a replica, or repeated from the same node, are ignored; so
    /// is a rejection naming this operation's own ballot (a duplicated prepare).
    public mutating func receive(_ message: CASPaxosMessage, from node: NodeID) -> [CASPaxosProposerDirective] {
        guard message.key == key, message.ballot == ballot, replicas.contains(node) else { return [] }
        switch message {
        case .prepareRejected(_, _, let seen), .acceptRejected(_, _, let seen):
            // An acceptor rejects a repeated prepare of the ballot it promised us: that
            // says nothing about other proposers, so it is not a rejection.
            guard seen > ballot else { return [] }
        case .prepare, .promise, .accept, .accepted:
            break
        }
        switch (state, message) {
        case (.preparing(var promises, var first, let rejected, let highest), .promise(_, _, let accepted)):
            guard promises[node] == nil, !rejected.contains(node) else { return [] }
            promises[node] = .some(accepted)
            first = first ?? node
            state = .preparing(promises: promises, firstPromise: first, rejected: rejected, highest: highest)
            guard promises.count >= quorum else { return [] }
            return beginAccept(promises: promises, firstPromise: first)
        case (.preparing(let promises, let first, var rejected, var highest), .prepareRejected(_, _, let seen)):
            guard promises[node] == nil, !rejected.contains(node) else { return [] }
            rejected.insert(node)
            highest = Swift.max(highest ?? seen, seen)
            state = .preparing(promises: promises, firstPromise: first, rejected: rejected, highest: highest)
            return finishIfHopeless(rejected: rejected, highest: highest, have: promises.count, outcomeUnknown: false)
        case (.accepting(let proposed, let answer, let changes, var accepted, let rejected, let highest), .accepted):
            guard !accepted.contains(node), !rejected.contains(node) else { return [] }
            accepted.insert(node)
            state = .accepting(proposed: proposed, answer: answer, changes: changes, accepted: accepted, rejected: rejected, highest: highest)
            guard accepted.count >= quorum else { return [] }
            state = .finished
            if let next { promiseOfNext = CASPaxosPromise(ballot: next, value: proposed) }
            return [.reply(answer)]
        case (.accepting(let proposed, let answer, let changes, let accepted, var rejected, var highest), .acceptRejected(_, _, let seen)),
             (.accepting(let proposed, let answer, let changes, let accepted, var rejected, var highest), .prepareRejected(_, _, let seen)):
            // A late prepare rejection means the node promised a higher ballot: it
            // would reject the accept too.
            guard !accepted.contains(node), !rejected.contains(node) else { return [] }
            rejected.insert(node)
            highest = Swift.max(highest ?? seen, seen)
            state = .accepting(proposed: proposed, answer: answer, changes: changes, accepted: accepted, rejected: rejected, highest: highest)
            if accepted.isEmpty && rejected.count == replicas.count {
                // Every replica refused the accept: nothing of it can ever be chosen.
                state = .finished
                return [.reply(.conflict(higherBallot: highest ?? seen, outcomeUnknown: false))]
            }
            if case .some = promised, accepted.isEmpty, changes {
                // From a promise, a refusal most likely means another proposer prepared
                // since: wait for the other replicas (or the timer), so that a refusal
                // by all of them can be retried instead of being an unknown outcome.
                return []
            }
            return finishIfHopeless(rejected: rejected, highest: highest, have: accepted.count, outcomeUnknown: changes)
        case (.idle, _), (.finished, _), (.preparing, _), (.accepting, _):
            return []
        }
    }

    /// An acceptor will not answer this attempt: its request could not be sent, or it
    /// refused to take part (it does not place the key as this proposer does). Once too
    /// few acceptors are left for a majority, the operation ends at once instead of
    /// waiting for the timer: with a conflict if an acceptor had seen a higher ballot,
    /// otherwise as unavailable.
    public mutating func noAnswer(from node: NodeID) -> [CASPaxosProposerDirective] {
        guard replicas.contains(node) else { return [] }
        switch state {
        case .idle, .finished:
            return []
        case .preparing(let promises, let first, var rejected, let highest):
            guard promises[node] == nil, !rejected.contains(node) else { return [] }
            rejected.insert(node)
            state = .preparing(promises: promises, firstPromise: first, rejected: rejected, highest: highest)
            return finishIfHopeless(rejected: rejected, highest: highest, have: promises.count, outcomeUnknown: false)
        case .accepting(let proposed, let answer, let changes, let accepted, var rejected, let highest):
            guard !accepted.contains(node), !rejected.contains(node) else { return [] }
            rejected.insert(node)
            state = .accepting(proposed: proposed, answer: answer, changes: changes, accepted: accepted, rejected: rejected, highest: highest)
            return finishIfHopeless(rejected: rejected, highest: highest, have: accepted.count, outcomeUnknown: changes)
        }
    }

    /// The timer fired: without a majority the operation is unavailable, or in
    /// conflict when an acceptor rejected it for a higher ballot (so that the shell
    /// learns that ballot and its next attempt is not rejected again).
    public mutating func timedOut() -> [CASPaxosProposerDirective] {
        let result: CASPaxosResult
        switch state {
        case .idle, .finished:
            return []
        case .preparing(let promises, _, _, let highest):
            result = highest.map { .conflict(higherBallot: $0, outcomeUnknown: false) }
                ?? .unavailable(have: promises.count, need: quorum, outcomeUnknown: false)
        case .accepting(_, _, let changes, let accepted, _, let highest):
            result = highest.map { .conflict(higherBallot: $0, outcomeUnknown: changes) }
                ?? .unavailable(have: accepted.count, need: quorum, outcomeUnknown: changes)
        }
        state = .finished
        return [.reply(result)]
    }

    /// A majority promised: applies the change to the value of the highest accepted
    /// ballot among the promises and proposes the result (or, for a read or a
    /// refusal, the value as found).
    private mutating func beginAccept(
        promises: [NodeID: CASPaxosAcceptedValue?], firstPromise: NodeID?
    ) -> [CASPaxosProposerDirective] {
        let current: LinearizableValue?
        if fault == .firstPromiseValue, let firstPromise, let first = promises[firstPromise] {
            current = first?.value
        } else {
            current = Self.highestAccepted(promises)?.value
        }
        // A read or a refusal needs no accept phase when every promise reported the
        // same accepted ballot: a majority accepted it, so the value is already chosen.
        let agreed = fault == .correct && Set(promises.values.map { $0?.ballot }).count == 1
        return beginAccept(current: current, mayFinishWithoutAccepts: agreed)
    }

    /// Applies the change to `current` and proposes the result (or, for a read or a
    /// refusal, `current` itself); answers at once instead when nothing changes and
    /// `mayFinishWithoutAccepts`.
    private mutating func beginAccept(current: LinearizableValue?, mayFinishWithoutAccepts: Bool) -> [CASPaxosProposerDirective] {
        let proposed: LinearizableValue?
        let answer: CASPaxosResult
        switch change.apply(to: current) {
        case .applied(let value):
            proposed = value
            answer = .applied(value)
        case .refused(let reason, let found):
            proposed = found
            answer = .refused(reason, current: found)
        }
        found = .some(current)
        let changes = proposed != current
        if !changes, mayFinishWithoutAccepts {
            state = .finished
            promiseOfNext = CASPaxosPromise(ballot: ballot, value: current)
            return [.reply(answer)]
        }
        state = .accepting(proposed: proposed, answer: answer, changes: changes, accepted: [], rejected: [], highest: nil)
        return replicas.map { .send(.accept(key, ballot: ballot, value: proposed, next: next), to: $0) }
    }

    /// The accepted value with the highest ballot among the promises; nil when none
    /// of them accepted anything.
    static func highestAccepted(_ promises: [NodeID: CASPaxosAcceptedValue?]) -> CASPaxosAcceptedValue? {
        var best: CASPaxosAcceptedValue?
        for case let accepted? in promises.values where best.map({ accepted.ballot > $0.ballot }) ?? true {
            best = accepted
        }
        return best
    }

    /// Ends the operation once too many replicas rejected or will not answer for a
    /// majority to remain possible: a conflict when one of them had seen a higher
    /// ballot, otherwise unavailable with `have` answers.
    private mutating func finishIfHopeless(rejected: Set<NodeID>, highest: Ballot?, have: Int, outcomeUnknown: Bool) -> [CASPaxosProposerDirective] {
        guard replicas.count - rejected.count < quorum else { return [] }
        state = .finished
        if let highest {
            return [.reply(.conflict(higherBallot: highest, outcomeUnknown: outcomeUnknown))]
        }
        return [.reply(.unavailable(have: have, need: quorum, outcomeUnknown: outcomeUnknown))]
    }
}
