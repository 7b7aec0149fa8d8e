/// Why a node refused to vote for a candidate ring server.
public enum VoteRefusal: UInt8, Sendable, Hashable {
    /// The node already promised this term or a higher one to someone else.
    case termNotNewer = 1
    /// The node still hears from its primary; it has not lost it for `primaryLossTimeout`.
    case primaryAlive = 2
}

/// What a ring server sends: to a storage node, or to the other ring server.
///
/// Message types 200...219 on the framed protocol (the data path uses 1...199).
public enum RingServerMessage: Sendable, Hashable {
    /// To a node: adopt this configuration if it is newer than yours.
    case offer(ClusterConfiguration)
    /// To a node: promise `term` to `candidate` if you too have lost the primary.
    case voteRequest(term: UInt64, candidate: String)
    /// To a node, from the primary, answering its heartbeat: the primary of `version.term` is alive.
    case primaryHeartbeat(ConfigurationVersion)
    /// To a node whose registration reached a ring server that is not primary;
    /// `primary` is the issuer of the newest configuration it knows ("" if none).
    case notPrimary(primary: String, term: UInt64)
    /// To the other ring server: the primary's newest committed configuration.
    case stateSync(ClusterConfiguration)
    /// To the other ring server, every heartbeat interval: the term of the newest
    /// configuration the sender holds (never a term it only stood for), the version
    /// of its newest committed one, and whether it acts as primary.
    case peerHeartbeat(term: UInt64, committed: ConfigurationVersion, isPrimary: Bool)
    /// To the other ring server: send me your configuration.
    case stateRequest
}

/// What a storage node sends a ring server.
///
/// Message types 220...239 on the framed protocol.
public enum NodeToRingServerMessage: Sendable, Hashable {
    /// Add me to the cluster (or update my addresses).
    case register(MemberInfo)
    /// Periodic, to both ring servers: the highest term I promised and the version
    /// of the configuration I hold (0, 0 when none).
    case heartbeat(promisedTerm: UInt64, version: ConfigurationVersion)
    /// An offer was adopted, or was already held.
    case offerAccepted(ConfigurationVersion)
    /// An offer was refused: this is what I promised and what I hold.
    case offerRejected(promisedTerm: UInt64, version: ConfigurationVersion)
    /// I promise `term` to the candidate; this is the configuration I hold (nil when
    /// I have accepted none yet: a voter whose first offer never arrived still promises).
    case voteGranted(term: UInt64, configuration: ClusterConfiguration?)
    /// I will not vote for `term`; I have promised `promisedTerm`.
    case voteRefused(term: UInt64, promisedTerm: UInt64, reason: VoteRefusal)
    /// I hold `partition`'s data as the pending ring of epoch `pendingRingEpoch` needs
    /// it. The node MUST send this only after the data is durable, SHOULD send it to
    /// both ring servers, and MUST repeat it every heartbeat interval until a
    /// configuration it accepted lists the transfer as done or no longer pends that ring.
    case transferDone(partition: PartitionID, pendingRingEpoch: UInt64)
}

// MARK: - Wire encoding

extension RingServerMessage {
    /// The message's type number and body.
    public func encode() -> (type: UInt16, body: [UInt8]) {
        var writer = ByteWriter(capacity: 32)
        switch self {
        case .offer(let configuration):
            configuration.encode(into: &writer)
            return (200, writer.bytes)
        case .voteRequest(let term, let candidate):
            writer.writeVarint(term)
            writer.writeString(candidate)
            return (201, writer.bytes)
        case .primaryHeartbeat(let version):
            version.encode(into: &writer)
            return (202, writer.bytes)
        case .notPrimary(let primary, let term):
            writer.writeString(primary)
            writer.writeVarint(term)
            return (203, writer.bytes)
        case .stateSync(let configuration):
            configuration.encode(into: &writer)
            return (204, writer.bytes)
        case .peerHeartbeat(let term, let committed, let isPrimary):
            writer.writeVarint(term)
            committed.encode(into: &writer)
            writer.writeUInt8(isPrimary ? 1 : 0)
            return (205, writer.bytes)
        case .stateRequest:
            return (206, [])
        }
    }

    /// Decodes a message of type `type`; throws on unknown types, malformed or trailing bytes.
    public static func decode(type: UInt16, body: [UInt8]) throws(DecodeError) -> RingServerMessage {
        var reader = ByteReader(body)
        let message: RingServerMessage
        switch type {
        case 200: message = .offer(try ClusterConfiguration.decode(from: &reader))
        case 201:
            let term = try reader.readVarint()
            message = .voteRequest(term: term, candidate: try ClusterConfiguration.readBoundedString(&reader, what: "candidate id"))
        case 202: message = .primaryHeartbeat(try ConfigurationVersion(from: &reader))
        case 203:
            let primary = try ClusterConfiguration.readBoundedString(&reader, what: "ring server id")
            message = .notPrimary(primary: primary, term: try reader.readVarint())
        case 204: message = .stateSync(try ClusterConfiguration.decode(from: &reader))
        case 205:
            let term = try reader.readVarint()
            let committed = try ConfigurationVersion(from: &reader)
            message = .peerHeartbeat(term: term, committed: committed, isPrimary: try readFlag(&reader))
        case 206: message = .stateRequest
        default: throw DecodeError("unknown ring server message type \(type)")
        }
        try reader.expectEnd()
        return message
    }
}

extension NodeToRingServerMessage {
    /// The message's type number and body.
    public func encode() -> (type: UInt16, body: [UInt8]) {
        var writer = ByteWriter(capacity: 32)
        switch self {
        case .register(let member):
            writer.writeString(member.id.rawValue)
            writer.writeString(member.rpcHost)
            writer.writeVarint(UInt64(member.rpcPort))
            writer.writeString(member.httpHost)
            writer.writeVarint(UInt64(member.httpPort))
            return (220, writer.bytes)
        case .heartbeat(let promisedTerm, let version):
            writer.writeVarint(promisedTerm)
            version.encode(into: &writer)
            return (221, writer.bytes)
        case .offerAccepted(let version):
            version.encode(into: &writer)
            return (222, writer.bytes)
        case .offerRejected(let promisedTerm, let version):
            writer.writeVarint(promisedTerm)
            version.encode(into: &writer)
            return (223, writer.bytes)
        case .voteGranted(let term, let configuration):
            writer.writeVarint(term)
            if let configuration {
                writer.writeUInt8(1)
                configuration.encode(into: &writer)
            } else {
                writer.writeUInt8(0)
            }
            return (224, writer.bytes)
        case .voteRefused(let term, let promisedTerm, let reason):
            writer.writeVarint(term)
            writer.writeVarint(promisedTerm)
            writer.writeUInt8(reason.rawValue)
            return (225, writer.bytes)
        case .transferDone(let partition, let pendingRingEpoch):
            writer.writeVarint(UInt64(partition.rawValue))
            writer.writeVarint(pendingRingEpoch)
            return (226, writer.bytes)
        }
    }

    /// Decodes a message of type `type`; throws on unknown types, malformed or trailing bytes.
    public static func decode(type: UInt16, body: [UInt8]) throws(DecodeError) -> NodeToRingServerMessage {
        var reader = ByteReader(body)
        let message: NodeToRingServerMessage
        switch type {
        case 220: message = .register(try decodeRegistration(&reader))
        case 221:
            let promisedTerm = try reader.readVarint()
            message = .heartbeat(promisedTerm: promisedTerm, version: try ConfigurationVersion(from: &reader))
        case 222: message = .offerAccepted(try ConfigurationVersion(from: &reader))
        case 223:
            let promisedTerm = try reader.readVarint()
            message = .offerRejected(promisedTerm: promisedTerm, version: try ConfigurationVersion(from: &reader))
        case 224:
            let term = try reader.readVarint()
            let configuration: ClusterConfiguration? = try readFlag(&reader) ? try ClusterConfiguration.decode(from: &reader) : nil
            message = .voteGranted(term: term, configuration: configuration)
        case 225:
            let term = try reader.readVarint()
            let promisedTerm = try reader.readVarint()
            let reasonByte = try reader.readUInt8()
            guard let reason = VoteRefusal(rawValue: reasonByte) else {
                throw DecodeError("unknown vote refusal \(reasonByte)")
            }
            message = .voteRefused(term: term, promisedTerm: promisedTerm, reason: reason)
        case 226:
            let partition = try reader.readVarint()
            guard partition < UInt64(Limits.partitionCountMax) else {
                throw DecodeError("partition \(partition) exceeds \(Limits.partitionCountMax)")
            }
            let pendingRingEpoch = try reader.readVarint()
            message = .transferDone(partition: PartitionID(rawValue: UInt32(partition)), pendingRingEpoch: pendingRingEpoch)
        default: throw DecodeError("unknown node-to-ring-server message type \(type)")
        }
        try reader.expectEnd()
        return message
    }

    private static func decodeRegistration(_ reader: inout ByteReader) throws(DecodeError) -> MemberInfo {
        let id = try ClusterConfiguration.readBoundedString(&reader, what: "node id")
        guard !id.isEmpty else { throw DecodeError("a registering node has an empty id") }
        let rpcHost = try ClusterConfiguration.readBoundedString(&reader, what: "host")
        let rpcPort = try ClusterConfiguration.readPort(&reader)
        let httpHost = try ClusterConfiguration.readBoundedString(&reader, what: "host")
        let httpPort = try ClusterConfiguration.readPort(&reader)
        return MemberInfo(id: NodeID(id), rpcHost: rpcHost, rpcPort: rpcPort, httpHost: httpHost, httpPort: httpPort)
    }
}

extension ConfigurationVersion {
    /// Appends term then epoch, as varints.
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(term)
        writer.writeVarint(epoch)
    }

    /// Reads what `encode(into:)` wrote.
    init(from reader: inout ByteReader) throws(DecodeError) {
        let term = try reader.readVarint()
        self.init(term: term, epoch: try reader.readVarint())
    }
}

private func readFlag(_ reader: inout ByteReader) throws(DecodeError) -> Bool {
    switch try reader.readUInt8() {
    case 0: return false
    case 1: return true
    case let other: throw DecodeError("flag byte \(other) is neither 0 nor 1")
    }
}
