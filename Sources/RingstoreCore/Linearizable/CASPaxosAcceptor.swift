/// A value an acceptor accepted, with the ballot it was accepted under. A nil
/// value records that the key had never been written when it was accepted.
public struct CASPaxosAcceptedValue: Hashable, Sendable {
    /// The ballot of the accept.
    public var ballot: Ballot
    /// The value accepted.
    public var value: LinearizableValue?

    /// Creates an accepted value.
    public init(ballot: Ballot, value: LinearizableValue?) {
        self.ballot = ballot
        self.value = value
    }
}

/// What a counting look reports of an accepted value: its ballot and how many
/// members it holds (`LinearizableValue.memberCount`).
public struct CASPaxosAcceptedCount: Hashable, Sendable {
    public var ballot: Ballot
    public var members: Int

    public init(ballot: Ballot, members: Int) {
        self.ballot = ballot
        self.members = members
    }

    /// The count of an accepted value.
    public init(_ accepted: CASPaxosAcceptedValue) {
        self.init(ballot: accepted.ballot, members: accepted.value?.memberCount ?? 0)
    }
}

/// What one acceptor stores for one key: the highest ballot it promised and the
/// last value it accepted. The accepted ballot is never above the promised one.
///
/// A key an acceptor has never heard of has the empty state (`init()`).
public struct CASPaxosAcceptorState: Hashable, Sendable {
    /// The highest ballot promised (by a prepare or an accept).
    public private(set) var promised: Ballot?
    /// The last value accepted, with its ballot.
    public private(set) var accepted: CASPaxosAcceptedValue?

    /// The first byte of `encode()`, so that the format can change later.
    static let formatVersion: UInt8 = 1
    private static let promisedFlag: UInt8 = 0x01
    private static let acceptedFlag: UInt8 = 0x02

    /// The state of a key never seen.
    public init() {}

    /// Creates a state; `accepted.ballot` MUST NOT be above `promised`.
    public init(promised: Ballot?, accepted: CASPaxosAcceptedValue?) {
        precondition(Self.isConsistent(promised: promised, accepted: accepted),
                     "internal inconsistency in CASPaxosAcceptorState: accepted above promised")
        self.promised = promised
        self.accepted = accepted
    }

    private static func isConsistent(promised: Ballot?, accepted: CASPaxosAcceptedValue?) -> Bool {
        guard let accepted else { return true }
        guard let promised else { return false }
        return accepted.ballot <= promised
    }

    /// The compact encoding a shell stores durably: a format byte (1), a flags byte
    /// (bit 0 promised, bit 1 accepted), the promised ballot, then the accepted
    /// ballot and optional value.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.writeUInt8(Self.formatVersion)
        writer.writeUInt8((promised == nil ? 0 : Self.promisedFlag) | (accepted == nil ? 0 : Self.acceptedFlag))
        promised?.encode(into: &writer)
        if let accepted {
            accepted.ballot.encode(into: &writer)
            LinearizableValue.encodeOptional(accepted.value, into: &writer)
        }
        return writer.bytes
    }

    /// Reads what `encode()` wrote, refusing unknown formats and flags, trailing
    /// bytes, and an accepted ballot above the promised one.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let format = try reader.readUInt8()
        guard format == Self.formatVersion else { throw DecodeError("unknown acceptor state format \(format)") }
        let flags = try reader.readUInt8()
        guard flags & ~(Self.promisedFlag | Self.acceptedFlag) == 0 else {
            throw DecodeError("unknown acceptor state flags \(flags)")
        }
        var promised: Ballot?
        if flags & Self.promisedFlag != 0 {
            promised = try Ballot(from: &reader)
        }
        var accepted: CASPaxosAcceptedValue?
        if flags & Self.acceptedFlag != 0 {
            let ballot = try Ballot(from: &reader)
            accepted = CASPaxosAcceptedValue(ballot: ballot, value: try LinearizableValue.decodeOptional(&reader))
        }
        try reader.expectEnd()
        guard Self.isConsistent(promised: promised, accepted: accepted) else {
            throw DecodeError("acceptor state has an accepted ballot above its promised ballot")
        }
        self.promised = promised
        self.accepted = accepted
    }
}

extension CASPaxosAcceptorState {
    /// The state of an acceptor that has seen everything this one and `other` have:
    /// the higher promise and the accepted value with the higher ballot. A node that
    /// becomes a replica of a partition merges the states of a majority of the
    /// previous replicas into its own, so that it knows every chosen value.
    public func merged(with other: CASPaxosAcceptorState) -> CASPaxosAcceptorState {
        let promised = [self.promised, other.promised].compactMap { $0 }.max()
        let accepted: CASPaxosAcceptedValue?
        switch (self.accepted, other.accepted) {
        case (let mine?, let theirs?): accepted = theirs.ballot > mine.ballot ? theirs : mine
        case (let mine, let theirs): accepted = mine ?? theirs
        }
        return CASPaxosAcceptorState(promised: promised, accepted: accepted)
    }

    /// The value a read at this acceptor alone would find (for diagnostics, never for
    /// answering clients: it may not be chosen).
    public var acceptedValue: LinearizableValue? { accepted?.value }
}

/// What an acceptor decided about one request: the state to store and the reply.
///
/// The shell MUST write `newState` durably (fsync) before it sends `reply`; when
/// `newState` is nil nothing changed and the reply may go at once. A crash between
/// the two is harmless: the request is as good as lost. The one exception is a
/// promise that a durably stored `CASPaxosPromiseFloor` covers.
public struct CASPaxosAcceptorDecision: Hashable, Sendable {
    /// The key's new state, to persist before replying; nil when unchanged.
    public var newState: CASPaxosAcceptorState?
    /// The reply to send to the proposer once `newState` is durable.
    public var reply: CASPaxosMessage

    /// Creates a decision.
    public init(newState: CASPaxosAcceptorState?, reply: CASPaxosMessage) {
        self.newState = newState
        self.reply = reply
    }
}

/// The CASPaxos acceptor as pure functions over one key's stored state.
///
/// Isolation: stateless. The shell MUST serialise calls per key (the decision for
/// one request must be stored before the next request on that key is decided)
/// and MUST persist a decision's new state before replying, unless the promise
/// floor covers it (`CASPaxosPromiseFloor`).
public enum CASPaxosAcceptor {
    /// Phase 1: promises `ballot` when it is strictly higher than every ballot seen,
    /// answering with the accepted value; otherwise rejects with the highest ballot seen.
    public static func prepare(_ key: ItemKey, ballot: Ballot, state: CASPaxosAcceptorState) -> CASPaxosAcceptorDecision {
        if let highest = state.promised, ballot <= highest {
            return CASPaxosAcceptorDecision(newState: nil, reply: .prepareRejected(key, ballot: ballot, highest: highest))
        }
        let newState = CASPaxosAcceptorState(promised: ballot, accepted: state.accepted)
        return CASPaxosAcceptorDecision(newState: newState, reply: .promise(key, ballot: ballot, accepted: state.accepted))
    }

    /// Phase 2: accepts `value` under `ballot` unless a higher ballot was promised;
    /// otherwise rejects with the highest ballot seen. Accepting the same ballot and
    /// value again (a duplicated message) changes nothing and answers again.
    ///
    /// With `next` (above `ballot`), an accepted request also promises `next`, in
    /// the same stored state: the reply then tells the proposer both that `value`
    /// was accepted and that ballots below `next` are refused from now on, with
    /// `value` as the last accepted, which is what a promise of `next` would have
    /// answered.
    public static func accept(
        _ key: ItemKey, ballot: Ballot, value: LinearizableValue?, next: Ballot? = nil, state: CASPaxosAcceptorState
    ) -> CASPaxosAcceptorDecision {
        if let highest = state.promised, ballot < highest {
            // A repeated accept this acceptor already took (it has promised a higher
            // ballot since, such as the `next` of that accept): it did accept it.
            if state.accepted == CASPaxosAcceptedValue(ballot: ballot, value: value) {
                return CASPaxosAcceptorDecision(newState: nil, reply: .accepted(key, ballot: ballot))
            }
            return CASPaxosAcceptorDecision(newState: nil, reply: .acceptRejected(key, ballot: ballot, highest: highest))
        }
        let promised = next.map { Swift.max($0, ballot) } ?? ballot
        let newState = CASPaxosAcceptorState(promised: promised, accepted: CASPaxosAcceptedValue(ballot: ballot, value: value))
        return CASPaxosAcceptorDecision(newState: newState == state ? nil : newState, reply: .accepted(key, ballot: ballot))
    }

    /// Decides a request message (`prepare` or `accept`) against the key's state;
    /// nil for a message that is not a request to an acceptor.
    public static func handle(_ message: CASPaxosMessage, state: CASPaxosAcceptorState) -> CASPaxosAcceptorDecision? {
        switch message {
        case .prepare(let key, let ballot):
            prepare(key, ballot: ballot, state: state)
        case .accept(let key, let ballot, let value, let next):
            accept(key, ballot: ballot, value: value, next: next, state: state)
        case .promise, .accepted, .prepareRejected, .acceptRejected:
            nil
        }
    }
}

/// A node-wide bound under which an acceptor's promises need not be fsynced before
/// it replies (decision 0015).
///
/// A promise that changes nothing but the promised ballot is needed again only if
/// the acceptor could later take a lower ballot. An acceptor that, after every
/// restart, holds every key as promised at this floor's ballot never does, as long
/// as every promise it made without an fsync was at or under a floor already stored
/// durably. Raising a promise is always safe in Paxos (it only refuses more), so the
/// restarted acceptor is at least as strict as the one that crashed.
///
/// The shell stores the floor durably, raises it (durably, before replying) when a
/// promise would go above it, and applies the floor it read at start-up to every key
/// (`CASPaxosAcceptorState.raisingPromise(to:)`). A prepare then costs no fsync,
/// and a key's first change one fsync instead of two.
public struct CASPaxosPromiseFloor: Hashable, Sendable, Comparable {
    /// Every ballot whose counter is at most this is covered. Zero covers nothing.
    public var counter: UInt64

    /// The floor that covers nothing (a node that never stored one).
    public static let none = CASPaxosPromiseFloor(counter: 0)

    /// How far above a promise a raised floor goes, so that raises (each an fsync)
    /// stay rare: a node draws one ballot per attempt, so this lasts a long while.
    public static let headroom: UInt64 = 1 << 20

    /// Creates a floor, capped so that its ballot's counter stays a valid counter.
    public init(counter: UInt64) {
        self.counter = min(counter, CASPaxosLimits.ballotCounterMax - 1)
    }

    public static func < (lhs: CASPaxosPromiseFloor, rhs: CASPaxosPromiseFloor) -> Bool { lhs.counter < rhs.counter }

    /// The promise a restarted acceptor holds for every key: above every ballot the
    /// floor covers, and below every ballot with a higher counter (proposer ids are
    /// never 0). Nil for `none`.
    public var ballot: Ballot? {
        counter == 0 ? nil : Ballot(counter: counter + 1, proposer: 0)
    }

    /// Whether `decision`, taken on `previous`, may reply before its new state is
    /// durable: it changes only the promise, to a ballot this floor covers.
    public func covers(_ decision: CASPaxosAcceptorDecision, previous: CASPaxosAcceptorState) -> Bool {
        guard let promiseOnly = Self.promiseOnly(decision, previous: previous) else { return false }
        return promiseOnly.counter <= counter
    }

    /// The floor to store durably so that promises up to `ballot` and well beyond
    /// need no fsync: `ballot`'s counter plus the headroom, never lower than this one.
    public func raised(toCover ballot: Ballot) -> CASPaxosPromiseFloor {
        let wanted = ballot.counter > CASPaxosLimits.ballotCounterMax - Self.headroom
            ? CASPaxosLimits.ballotCounterMax : ballot.counter + Self.headroom
        return Swift.max(self, CASPaxosPromiseFloor(counter: wanted))
    }

    /// The new promise of a decision that changes nothing else; nil for any other.
    public static func promiseOnly(_ decision: CASPaxosAcceptorDecision, previous: CASPaxosAcceptorState) -> Ballot? {
        guard let newState = decision.newState, newState.accepted == previous.accepted,
              let promised = newState.promised, promised != previous.promised
        else { return nil }
        return promised
    }

    /// Eight bytes, big-endian.
    public func encode() -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * $0)) }
    }

    /// Reads what `encode()` wrote.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count == 8 else { throw DecodeError("a promise floor is 8 bytes, not \(bytes.count)") }
        let counter = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard counter < CASPaxosLimits.ballotCounterMax else { throw DecodeError("promise floor \(counter) out of range") }
        self.init(counter: counter)
    }
}

extension CASPaxosAcceptorState {
    /// This state with its promise raised to `floor`'s ballot when it is lower: what a
    /// restarted acceptor decides on, since a promise it made under the floor may not
    /// have been stored.
    public func raisingPromise(to floor: CASPaxosPromiseFloor) -> CASPaxosAcceptorState {
        guard let floorBallot = floor.ballot, promised.map({ $0 < floorBallot }) ?? true else { return self }
        return CASPaxosAcceptorState(promised: floorBallot, accepted: accepted)
    }
}
