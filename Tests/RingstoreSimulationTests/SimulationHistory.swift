import RingstoreCore

/// A dot: the event of one actor that created one version of a key. Counters are
/// per key, so a dot names a version only together with its key.
struct Dot: Hashable, Sendable {
    var actor: ActorID
    var counter: UInt64
}

/// A dot of a particular key.
struct KeyDot: Hashable, Sendable {
    var keyIndex: Int
    var dot: Dot
}

/// What became of a client's call.
enum CallOutcome: Equatable, Sendable {
    case pending
    case replied(ClientResult)
    /// The node was down: the connection was refused, nothing was applied.
    case refused
    /// No reply within the client's timeout: it may or may not have been applied.
    case indeterminate
}

/// One client operation as the client saw it.
struct ClientCall {
    let id: Int
    let client: Int
    let keyIndex: Int
    let node: Int
    let operation: ClientOperation
    /// The index into `writes` for a put.
    let write: Int?
    let invokedAt: SimulatedInstant
    /// For a read-modify-write: the put that follows a successful get.
    let thenWrite: Bool
    var completedAt: SimulatedInstant?
    var outcome: CallOutcome = .pending
    /// Replies that arrived after the client had given up (or been refused).
    var lateReplies = 0

    var isWritten: Bool {
        if case .replied(.written) = outcome { return true }
        return false
    }
}

/// One put (or delete) and everything the run learnt about it.
struct WriteRecord {
    let call: Int
    let client: Int
    let keyIndex: Int
    /// Unique across the run: the client and its sequence number are in it.
    let value: Sibling
    /// The context the client sent (nil: a blind write).
    let context: VersionVector?
    /// Whether the context descends the context of the client's last acknowledged
    /// write of the key (true when it had none); if not, this write may stand beside
    /// the client's own earlier one.
    let descendsOwnLastWrite: Bool
    /// The dots coordinators gave it (two after a forwarded write was retried).
    var dots: [Dot] = []
    /// Nodes that held it durably at some point (bit i = node i).
    var durableHolders: UInt64 = 0
    /// Whether some coordinator's application of it became durable.
    var durablyApplied = false
    /// Whether some client read returned it.
    var observedByClient = false
    var acknowledgedContext: VersionVector?

    /// Whether `context` (another write's) had seen this write: it covers a dot of it.
    func isCovered(by context: VersionVector?, requireAllDots: Bool) -> Bool {
        guard let context, !dots.isEmpty else { return false }
        let covered = { (dot: Dot) in context[dot.actor] >= dot.counter }
        return requireAllDots ? dots.allSatisfy(covered) : dots.contains(where: covered)
    }
}

/// Per key counts behind the sibling bound.
struct KeyWriteCounts {
    var invoked = 0
    var acknowledged = 0
    var writers: Set<Int> = []
    /// Blind writes and writes whose context missed the writer's own last write.
    var unanchored = 0
    /// Writes applied by more than one coordinator.
    var extraApplications = 0

    /// The most siblings the writes so far can explain: one per writing client, plus
    /// one for every write that need not supersede its writer's previous one (blind,
    /// stale context, unacknowledged, or applied twice).
    var siblingBound: Int {
        writers.count + unanchored + (invoked - acknowledged) + extraApplications
    }
}

/// A line of a key's story, for failure reports.
enum KeyLogEntry {
    case invoked(call: Int)
    case completed(call: Int)
    case applied(write: Int, node: Int, Dot, hintFor: NodeID?)
}

/// A broken invariant.
struct Violation: Sendable {
    var time: SimulatedInstant
    var keyIndex: Int?
    var kind: String
    var detail: String
    /// The writes involved, for the trace.
    var writes: [Int] = []

    var line: String {
        "[\(SimulatedTime.format(time))] \(kind)\(keyIndex.map { " key\($0)" } ?? ""): \(detail)"
    }
}

/// Counters printed with every run.
struct SimulationStatistics: Sendable {
    var events = 0
    var calls = 0
    var written = 0
    var found = 0
    var notFound = 0
    var failed = 0
    var refused = 0
    var indeterminate = 0
    var crashes = 0
    var partitions = 0
    var suspicions = 0
    var messagesDropped = 0
    var messagesDuplicated = 0
    var messagesStalled = 0
    /// Writes that more than one coordinator applied (a forwarded put retried elsewhere).
    var writesAppliedTwice = 0
    var readRepairs = 0
    var hintsStored = 0
    var hintsDelivered = 0
    var hintsDropped = 0
    var forwards = 0
    /// Client writes a fallback coordinated into a hint record it had kept for the key
    /// before and no longer has (handed off, dropped or lost in a crash).
    var fallbackRewrites = 0
    /// Client writes whose coordinator lost them unsynced in a crash after they had
    /// reached a client read or another node's disk.
    var lostEscapedWrites = 0
    var siblingsMax = 0
    var timersStarted = 0

    var summary: String {
        "ops=\(calls) written=\(written) found=\(found) notFound=\(notFound) failed=\(failed) refused=\(refused) " +
            "indeterminate=\(indeterminate) crashes=\(crashes) partitions=\(partitions) suspicions=\(suspicions) " +
            "dropped=\(messagesDropped) duplicated=\(messagesDuplicated) stalled=\(messagesStalled) " +
            "appliedTwice=\(writesAppliedTwice) repairs=\(readRepairs) " +
            "hints=\(hintsStored)/\(hintsDelivered)/\(hintsDropped) forwards=\(forwards) " +
            "fallbackRewrites=\(fallbackRewrites) lostEscaped=\(lostEscapedWrites) siblingsMax=\(siblingsMax) events=\(events)"
    }
}

/// What a run hands back: enough to print, compare and replay.
struct SimulationReport: Sendable {
    var parameters: SimulationParameters
    var violations: [Violation]
    var statistics: SimulationStatistics
    var traceHash: TraceHash
    /// The failure explanation with the replay command; nil when the run passed.
    var failureText: String?

    var passed: Bool { violations.isEmpty }
}
