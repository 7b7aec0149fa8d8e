/// A CASPaxos ballot number: a counter and the id of the proposer that drew it.
///
/// Ballots are totally ordered by counter, then by proposer id, so two proposers
/// never draw the same ballot as long as their ids differ. A proposer draws each
/// ballot once (see `BallotGenerator`).
public struct Ballot: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Grows with every attempt; the order's most significant part.
    public var counter: UInt64
    /// The proposer's stable id; breaks ties between equal counters.
    public var proposer: UInt64

    /// Creates a ballot.
    public init(counter: UInt64, proposer: UInt64) {
        self.counter = counter
        self.proposer = proposer
    }

    /// Orders by counter, then by proposer id.
    public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
        (lhs.counter, lhs.proposer) < (rhs.counter, rhs.proposer)
    }

    /// `counter.proposer`, as logs show it.
    public var description: String { "\(counter).\(proposer)" }

    /// Appends the counter and the proposer id as varints.
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(counter)
        writer.writeVarint(proposer)
    }

    /// Reads what `encode(into:)` wrote.
    init(from reader: inout ByteReader) throws(DecodeError) {
        let counter = try reader.readVarint()
        guard counter <= CASPaxosLimits.ballotCounterMax else {
            throw DecodeError("ballot counter \(counter) exceeds \(CASPaxosLimits.ballotCounterMax)")
        }
        self.init(counter: counter, proposer: try reader.readVarint())
    }
}

/// Draws a proposer's ballots: each one's counter is one more than the largest
/// counter this proposer has drawn or seen in a rejection.
///
/// Isolation: a value type; a shell keeps one per proposer (one per node) and uses
/// it from one thread at a time. A shell SHOULD give every proposer incarnation a
/// fresh `proposer` id (for example one drawn when the process starts). Reusing an
/// id after a restart is still safe, because an acceptor promises a ballot only
/// when it is strictly higher than every ballot it has seen, but the restarted
/// proposer then loses a round trip to rejections until it has caught up.
public struct BallotGenerator: Sendable {
    /// The id every ballot drawn here carries.
    public let proposer: UInt64
    /// The largest counter drawn or observed so far.
    public private(set) var highestCounterSeen: UInt64

    /// Creates a generator that has seen nothing yet (or `highestCounterSeen`, when
    /// the shell kept it).
    public init(proposer: UInt64, highestCounterSeen: UInt64 = 0) {
        self.proposer = proposer
        self.highestCounterSeen = min(highestCounterSeen, CASPaxosLimits.ballotCounterMax - 1)
    }

    /// Draws the next ballot, higher than every ballot drawn or observed before.
    public mutating func next() -> Ballot {
        precondition(highestCounterSeen < CASPaxosLimits.ballotCounterMax, "ballot counters exhausted")
        highestCounterSeen += 1
        return Ballot(counter: highestCounterSeen, proposer: proposer)
    }

    /// Remembers a ballot some other proposer used (from a rejection), so that the
    /// next ballot drawn is higher.
    public mutating func observe(_ ballot: Ballot) {
        highestCounterSeen = max(highestCounterSeen, min(ballot.counter, CASPaxosLimits.ballotCounterMax - 1))
    }
}

/// Bounds of the linearizable tables' data, named with the unit last.
public enum CASPaxosLimits {
    /// Ballot counters stop here; at one ballot per microsecond that is 146,000 years.
    public static let ballotCounterMax: UInt64 = 1 << 62
    /// Value versions stop here, so that a version plus one never overflows.
    public static let versionMax: UInt64 = 1 << 62
    /// A member of a set value is a short name (a student id, a seat).
    public static let setMemberBytesMax = 256
    /// The most members a set value holds; a set larger than this is refused on decode.
    public static let setMembersMax = 1 << 16
}
