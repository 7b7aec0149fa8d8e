/// What a ring server is doing.
public enum RingServerRole: Sendable, Hashable {
    /// Issues configurations in its term; the only one that commits changes.
    case primary
    /// Follows the primary's state; takes over if the primary is lost.
    case secondary
    /// Lost the primary and is asking the nodes for their votes.
    case candidate
}

/// What a ring server must keep on disk: the newest configuration it holds, whether
/// it knows that one to be committed, and the highest term it has claimed.
///
/// A ring server restarted from this state resumes as primary only if the
/// configuration is its own and of the term it last claimed; it never claims a term
/// twice.
public struct RingServerPersistentState: Hashable, Sendable {
    /// The newest configuration this ring server issued or learned.
    public var configuration: ClusterConfiguration
    /// Whether a majority of voters is known to have accepted `configuration`.
    public var isCommitted: Bool
    /// The highest term this ring server has stood for or served in; at least
    /// `configuration.term`.
    public var term: UInt64

    /// Assembles a state.
    public init(configuration: ClusterConfiguration, isCommitted: Bool, term: UInt64) {
        precondition(term >= configuration.term, "a ring server's term is at least its configuration's")
        self.configuration = configuration
        self.isCommitted = isCommitted
        self.term = term
    }

    /// The state as bytes.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.writeVarint(term)
        writer.writeUInt8(isCommitted ? 1 : 0)
        configuration.encode(into: &writer)
        return writer.bytes
    }

    /// Decodes what `encode()` wrote; throws on malformed or trailing bytes.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> RingServerPersistentState {
        var reader = ByteReader(bytes)
        let term = try reader.readVarint()
        let committedByte = try reader.readUInt8()
        guard committedByte <= 1 else { throw DecodeError("committed flag \(committedByte) is neither 0 nor 1") }
        let configuration = try ClusterConfiguration.decode(from: &reader)
        try reader.expectEnd()
        guard term >= configuration.term else {
            throw DecodeError("term \(term) is below the configuration's term \(configuration.term)")
        }
        return RingServerPersistentState(configuration: configuration, isCommitted: committedByte == 1, term: term)
    }
}

/// Why a requested configuration change did not (or may not have) taken effect.
public enum ChangeFailure: Error, Sendable, Hashable {
    /// This ring server is not primary; ask `primary` ("" when unknown).
    case notPrimary(primary: String)
    /// `limit` changes are already waiting.
    case queueFull(limit: Int)
    /// Still waiting behind other changes after this long: never offered, not applied.
    case timedOut(after: Duration)
    /// Offered to the nodes but not confirmed by a majority; it may still commit.
    /// Read the configuration to find out.
    case outcomeUnknown(String)
    /// The change makes no sense against the committed configuration.
    case invalid(String)
    /// The ring server could not write its state file (a full disk): not applied.
    case stateNotStored
}

/// What a `RingServerEngine` asks its shell to do.
///
/// The shell MUST carry directives out in the order given, and MUST finish a
/// `.persist` durably before carrying out any directive after it.
public enum RingServerDirective: Sendable, Hashable {
    /// Write this state durably (the ring server's state file).
    case persist(RingServerPersistentState)
    /// Send a message to a storage node.
    case sendToNode(NodeID, RingServerMessage)
    /// Send a message to the other ring server.
    case sendToPeer(RingServerMessage)
    /// The change requested with `token` is committed at `epoch`.
    case committed(token: UInt64, epoch: UInt64)
    /// The change requested with `token` failed, or its outcome is unknown.
    case changeFailed(token: UInt64, ChangeFailure)
    /// This ring server now acts in `role` (for logs and metrics).
    case roleChanged(RingServerRole, term: UInt64)
    /// A newer committed configuration is this ring server's view: route with it.
    case configurationCommitted(ClusterConfiguration)
}
