/// What a storage node must keep on disk for the ring-server protocol: the highest
/// term it promised, to whom, and the newest configuration it accepted.
///
/// Forgetting a promise could let a deposed primary commit behind a new one's back,
/// so a node MUST write this before it sends any reply that follows a `.persist`.
public struct FollowerDurableState: Hashable, Sendable {
    /// The highest term this node promised; it refuses configurations of lower terms.
    public var promisedTerm: UInt64
    /// The ring server the promise was made to ("" before any).
    public var promisedTo: String
    /// The newest configuration accepted; nil before the node joined a cluster.
    public var configuration: ClusterConfiguration?

    /// Assembles a state.
    public init(promisedTerm: UInt64 = 0, promisedTo: String = "", configuration: ClusterConfiguration? = nil) {
        self.promisedTerm = promisedTerm
        self.promisedTo = promisedTo
        self.configuration = configuration
    }

    /// The state as bytes: promised term, its holder, then the configuration if any.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.writeVarint(promisedTerm)
        writer.writeString(promisedTo)
        if let configuration {
            writer.writeUInt8(1)
            configuration.encode(into: &writer)
        } else {
            writer.writeUInt8(0)
        }
        return writer.bytes
    }

    /// Decodes what `encode()` wrote; throws on malformed or trailing bytes, or when
    /// the configuration's term exceeds the promise (a state no follower writes).
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> FollowerDurableState {
        var reader = ByteReader(bytes)
        let promisedTerm = try reader.readVarint()
        let promisedTo = try ClusterConfiguration.readBoundedString(&reader, what: "ring server id")
        let configuration: ClusterConfiguration?
        switch try reader.readUInt8() {
        case 0: configuration = nil
        case 1: configuration = try ClusterConfiguration.decode(from: &reader)
        case let other: throw DecodeError("configuration presence byte \(other) is neither 0 nor 1")
        }
        try reader.expectEnd()
        if let configuration, configuration.term > promisedTerm {
            throw DecodeError("configuration term \(configuration.term) exceeds the promised term \(promisedTerm)")
        }
        return FollowerDurableState(promisedTerm: promisedTerm, promisedTo: promisedTo, configuration: configuration)
    }
}

/// What a node's `ConfigurationFollower` asks its shell to do, in order.
public enum FollowerDirective: Sendable, Hashable {
    /// Write this state durably before carrying out the directives after it.
    case persist(FollowerDurableState)
    /// Start serving from this configuration: its ring, members and tables.
    case adopt(ClusterConfiguration)
    /// Send this to the ring server whose message caused it.
    case reply(NodeToRingServerMessage)
}

/// A storage node's side of the ring-server protocol: it keeps the newest cluster
/// configuration it accepted, accepts only newer ones from a term it has not
/// promised away, and votes for a candidate ring server only once it too has lost
/// its primary.
///
/// The node shell feeds it every `RingServerMessage` a ring server sends, heartbeats
/// both ring servers with `heartbeatMessage` every heartbeat interval, and carries
/// out the directives in order. Isolation: a value type; call it from one thread at
/// a time.
public struct ConfigurationFollower: Sendable {
    /// Timing.
    public struct Settings: Sendable {
        /// How long without a word from the primary before this node votes for a
        /// candidate. MUST equal the ring servers' `primaryLossTimeout`.
        public var primaryLossTimeout: Duration

        /// Creates settings.
        public init(primaryLossTimeout: Duration = .milliseconds(1500)) {
            precondition(primaryLossTimeout > .zero, "primaryLossTimeout must be positive")
            self.primaryLossTimeout = primaryLossTimeout
        }
    }

    /// The timing this follower was created with.
    public let settings: Settings
    /// Promise and configuration, as last persisted.
    public private(set) var state: FollowerDurableState
    /// When the primary of the promised term was last heard (or a vote last granted).
    public private(set) var lastPrimaryContact: Duration

    /// A follower resuming from `restored` (nil for a node that never joined) at `now`.
    ///
    /// A restarted node counts its start as contact with the primary, so it never
    /// votes before a full `primaryLossTimeout` has passed.
    public init(settings: Settings = Settings(), restoring restored: FollowerDurableState? = nil, now: Duration) {
        self.settings = settings
        self.state = restored ?? FollowerDurableState()
        self.lastPrimaryContact = now
        precondition(state.configuration.map { $0.term <= state.promisedTerm } ?? true, "configuration above the promise")
    }

    /// The newest configuration accepted, if any.
    public var configuration: ClusterConfiguration? { state.configuration }

    /// The version of the configuration held; (0, 0) when none.
    public var version: ConfigurationVersion {
        state.configuration?.version ?? ConfigurationVersion(term: 0, epoch: 0)
    }

    /// What to send both ring servers every heartbeat interval.
    public var heartbeatMessage: NodeToRingServerMessage {
        .heartbeat(promisedTerm: state.promisedTerm, version: version)
    }

    /// Handles any message a ring server sent this node.
    public mutating func receive(_ message: RingServerMessage, now: Duration) -> [FollowerDirective] {
        switch message {
        case .offer(let configuration):
            return offer(configuration, now: now)
        case .voteRequest(let term, let candidate):
            return voteRequest(term: term, candidate: candidate, now: now)
        case .primaryHeartbeat(let version):
            primaryHeartbeat(version, now: now)
            return []
        case .notPrimary, .stateSync, .peerHeartbeat, .stateRequest:
            return []
        }
    }

    /// A ring server offers `offered`.
    ///
    /// Accepted when its term is at least the promised term and its version is above
    /// the one held (an offer equal to the held configuration is acknowledged again,
    /// so a primary that lost the first answer still counts it). An issuer other than
    /// the one the promised term was promised to is refused: one term has one primary. On refusal the answer
    /// carries the promise and the version held, so a stale sender learns it is stale.
    public mutating func offer(_ offered: ClusterConfiguration, now: Duration) -> [FollowerDirective] {
        let promisedTerm = state.promisedTerm
        if let held = state.configuration, offered.version == held.version, offered == held {
            touchPrimary(term: offered.term, now: now)
            return [.reply(.offerAccepted(held.version))]
        }
        let secondIssuer = offered.term == promisedTerm && offered.primary != state.promisedTo
        guard offered.term >= promisedTerm, offered.version > version, !secondIssuer else {
            return [.reply(.offerRejected(promisedTerm: promisedTerm, version: version))]
        }
        if offered.term > state.promisedTerm {
            state.promisedTerm = offered.term
            state.promisedTo = offered.primary
        }
        state.configuration = offered
        touchPrimary(term: offered.term, now: now)
        assert(state.promisedTerm >= offered.term, "accepted a configuration below the promise")
        return [.persist(state), .adopt(offered), .reply(.offerAccepted(offered.version))]
    }

    /// The primary of `version.term` answered this node's heartbeat. Counts as contact
    /// only when that term is the one promised (or, before the node accepted any
    /// configuration, above it): a deposed primary's heartbeats do not stop this
    /// node from voting.
    public mutating func primaryHeartbeat(_ version: ConfigurationVersion, now: Duration) {
        touchPrimary(term: version.term, now: now)
    }

    /// `candidate` asks for a promise of `term`.
    ///
    /// Granted when `term` is above every term the node promised and it has not heard
    /// from its primary for `primaryLossTimeout`; the grant carries the configuration
    /// held (nil when none), so the candidate can continue from the newest one a
    /// majority saw. A node that holds no configuration grants too: it may be a voter
    /// whose first offer was lost, and its promise is what lets a candidate win
    /// without it. A repeated request from the candidate already promised `term` is
    /// granted again (its first answer may have been lost). Granting restarts the
    /// silence clock, so a node promises at most one term per `primaryLossTimeout`
    /// and two candidates cannot keep outbidding each other.
    public mutating func voteRequest(term: UInt64, candidate: String, now: Duration) -> [FollowerDirective] {
        let held = state.configuration
        if term == state.promisedTerm, candidate == state.promisedTo, (held?.term ?? 0) < term {
            return [.reply(.voteGranted(term: term, configuration: held))]
        }
        guard term > state.promisedTerm else {
            return [.reply(.voteRefused(term: term, promisedTerm: state.promisedTerm, reason: .termNotNewer))]
        }
        guard now - lastPrimaryContact >= settings.primaryLossTimeout else {
            return [.reply(.voteRefused(term: term, promisedTerm: state.promisedTerm, reason: .primaryAlive))]
        }
        state.promisedTerm = term
        state.promisedTo = candidate
        lastPrimaryContact = now
        return [.persist(state), .reply(.voteGranted(term: term, configuration: held))]
    }

    private mutating func touchPrimary(term: UInt64, now: Duration) {
        let isPromisedPrimary = state.configuration != nil ? term == state.promisedTerm : term >= state.promisedTerm
        guard isPromisedPrimary, term > 0 else { return }
        lastPrimaryContact = max(lastPrimaryContact, now)
    }
}
