import CoreMetrics
import Foundation
import HTTPTypes
import NIOCore
import RingstoreCore
import RingstoreRPC
import RingstoreStorage

/// The client data path as a ring server serves it: each request goes to a healthy
/// coordinator from the key's preference list, over the framed protocol.
///
/// A request that could not be sent (no connection) moves on to the next node. One
/// that was sent and not answered (timed out, or its connection closed: the node
/// died or hangs) moves on too when it is a read, which changes nothing; a write is
/// answered 503, since it may have been applied.
final class RoutingKeyValueService: KeyValueService {
    let server: RingServer
    /// Requests that arrived over the node protocol (`forwardClientRequest`), by outcome.
    private let forwarded = ForwardedRequestCounters()

    init(server: RingServer) {
        self.server = server
    }

    func get(table: TableDefinition, key: [UInt8], r: Int?, done: @escaping @Sendable (Result<ReadResult, any Error>) -> Void) {
        let routing = server.routing
        let item = ItemKey(table: table.name, key: key, partitioning: routing.partitioning)
        coordinate(.get(item, r: r ?? table.r, n: table.n), routing: routing) { result in
            done(Result { try ClusterKeyValueService.readResult(result.get()) })
        }
    }

    func put(table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        let routing = server.routing
        let item = ItemKey(table: table.name, key: key, partitioning: routing.partitioning)
        coordinate(.put(item, sibling: sibling, context: context, w: w ?? table.w, n: table.n), routing: routing) { result in
            done(Result { try ClusterKeyValueService.writtenContext(result.get()) })
        }
    }

    func delete(table: TableDefinition, key: [UInt8], context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        put(table: table, key: key, sibling: .tombstone, context: context, w: w, done: done)
    }

    /// Nothing to do: a ring server holds no keys; every node drops its own.
    func removeAllKeys(of table: String) async throws {}

    /// Sends the operation to the first coordinator of the key that can be reached.
    /// Runs on the RPC connections' event loops, without a task, so that the HTTP
    /// fast path never leaves them.
    private func coordinate(_ operation: ClientOperation, routing: RoutingSnapshot, done: @escaping @Sendable (Result<ClientResult, any Error>) -> Void) {
        let (type, body) = PeerCodec.encode(PeerRequest.coordinate(operation))
        let request = RPCMessage(messageType: type, body: ByteBuffer(bytes: body))
        forward(request, partition: operation.key.partition, isRead: operation.isRead, routing: routing) { result in
            done(Result {
                let reply = try result.get()
                switch try PeerCodec.decodeReply(type: reply.messageType, body: Array(reply.body.readableBytesView)) {
                case .coordinated(let result): return result
                case .failed(let failure): return .failed(failure)
                case .replicaRead, .replicaWritten, .pong:
                    throw APIError.internalError("a node answered a coordination request with another message")
                }
            })
        }
    }

    /// A client's request over the node protocol (a `coordinate` message, as the
    /// partition-aware client sends a node): sent on to a coordinator of the key as
    /// an HTTP request is, and the coordinator's reply passed back unchanged.
    ///
    /// When no coordinator could take it, the reply is `unavailable`, which a client
    /// may take to the other ring server. A write that was sent and not answered fails
    /// with `PeerCodec.outcomeUnknownCode`: it may have been applied, so it must
    /// not be sent again.
    func forwardClientRequest(_ request: RPCMessage) -> RPCDispatch {
        let operation: ClientOperation
        do {
            guard case .coordinate(let decoded) = try PeerCodec.decodeRequest(type: request.messageType, body: Array(request.body.readableBytesView)) else {
                return .fail(RPCRemoteError(code: 1, message: "a ring server takes only coordinate requests of the data path"))
            }
            operation = decoded
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable request: \(error.reason)"))
        }
        let routing = server.routing
        // The partition is the ring server's to compute, whatever the sender put in it.
        let partition = routing.partitioning.partition(table: operation.key.table, key: operation.key.key)
        let promise = server.engineLoop.makePromise(of: RPCMessage.self)
        let counters = forwarded
        forward(request, partition: partition, isRead: operation.isRead, routing: routing) { result in
            switch result {
            case .success(let reply):
                counters.answered.increment()
                promise.succeed(reply)
            case .failure(let error as APIError) where error.code == "coordinator_unavailable":
                counters.outcomeUnknown.increment()
                promise.fail(RPCRemoteError(code: PeerCodec.outcomeUnknownCode, message: error.message))
            case .failure(let error):
                counters.unavailable.increment()
                let message = (error as? APIError)?.message ?? "\(error)"
                let (type, body) = PeerCodec.encode(PeerReply.failed(.unavailable(message)))
                promise.succeed(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)))
            }
        }
        return .later(promise.futureResult)
    }

    /// Sends `request` to the coordinators of `partition` in turn.
    private func forward(
        _ request: RPCMessage, partition: PartitionID, isRead: Bool, routing: RoutingSnapshot,
        done: @escaping @Sendable (Result<RPCMessage, any Error>) -> Void
    ) {
        let candidates = routing.coordinators(for: partition)
        guard !candidates.isEmpty else { return done(.failure(Self.notFormed)) }
        attempt(request, isRead: isRead, candidates: candidates[...], reasons: [], done: done)
    }

    private func attempt(
        _ request: RPCMessage, isRead: Bool, candidates: ArraySlice<NodeID>, reasons: [String],
        done: @escaping @Sendable (Result<RPCMessage, any Error>) -> Void
    ) {
        guard let node = candidates.first else {
            return done(.failure(APIError.unavailable(code: "no_coordinator", message: "No node of the key's preference list could be reached (\(reasons.joined(separator: "; "))). Retry.")))
        }
        guard let client = server.client(for: node) else {
            return attempt(request, isRead: isRead, candidates: candidates.dropFirst(), reasons: reasons + ["\(node): address unknown"], done: done)
        }
        client.callFuture(request, timeout: TimeAmount(server.options.requestTimeout)).whenComplete { result in
            switch result {
            case .success(let reply):
                done(.success(reply))
            case .failure(let error as RPCError):
                switch error {
                case .connectionFailed, .overloaded:  // never sent: the next node may take it
                    self.attempt(request, isRead: isRead, candidates: candidates.dropFirst(), reasons: reasons + ["\(node): \(error)"], done: done)
                case .timedOut where isRead, .connectionClosed where isRead:  // a read changed nothing: the next node may answer it
                    self.attempt(request, isRead: isRead, candidates: candidates.dropFirst(), reasons: reasons + ["\(node): \(error)"], done: done)
                case .timedOut, .connectionClosed, .shutdown, .remote, .malformedFrame, .frameTooLarge:
                    done(.failure(APIError.unavailable(code: "coordinator_unavailable", message: "Coordinator \(node) did not answer in time (\(error)); the request may or may not have taken effect. Retry.")))
                }
            case .failure(let error):
                done(.failure(error))
            }
        }
    }

    static var notFormed: APIError {
        return APIError.unavailable(code: "cluster_not_formed", message: "The cluster has not formed yet: not enough nodes have registered with the ring servers. Retry shortly.")
    }
}

/// `ringstore_ring_forwarded_requests_total`: clients' requests a ring server took
/// over the node protocol, by outcome (`answered`: a coordinator's reply passed back;
/// `unavailable`: no coordinator could take it; `outcome_unknown`: a write whose
/// coordinator did not answer).
final class ForwardedRequestCounters: Sendable {
    let answered = CoreMetrics.Counter(label: "ringstore_ring_forwarded_requests_total", dimensions: [("outcome", "answered")])
    let unavailable = CoreMetrics.Counter(label: "ringstore_ring_forwarded_requests_total", dimensions: [("outcome", "unavailable")])
    let outcomeUnknown = CoreMetrics.Counter(label: "ringstore_ring_forwarded_requests_total", dimensions: [("outcome", "outcome_unknown")])
}

/// The linearizable data path as a ring server serves it: each operation goes to a
/// node of the key's preference list (a home replica, so one acceptor is local),
/// which runs CASPaxos as proposer.
///
/// An operation that could not be sent moves on to the next node. One that was sent
/// and not answered may have been applied: it moves on only when running it twice
/// is harmless (`LinearizableChange.isIdempotent`), and is otherwise answered as an
/// unknown outcome.
final class RoutingLinearizableService: LinearizableService {
    let server: RingServer
    /// Longer than a node's whole operation (its retries included), so that a slow
    /// answer is not mistaken for a lost one.
    static let answerTimeout: TimeAmount = .seconds(4)

    init(server: RingServer) {
        self.server = server
    }

    /// Counts the members of many keys with one counting look per node
    /// (`CASPaxosPeek` many): a key whose replicas' majority agrees on the accepted
    /// ballot is answered from the look; the others are read as operations.
    func memberCounts(table: TableDefinition, keys: [[UInt8]]) async throws -> [MemberCount] {
        let routing = server.routing
        guard let ring = routing.configuration.ring, !keys.isEmpty, keys.count <= CASPaxosPeek.manyKeysMax else {
            return try await readEach(table: table, keys: keys).map(MemberCount.init)
        }
        let items = keys.map { ItemKey(table: table.name, key: $0, partitioning: routing.partitioning) }
        let replicas = items.map { ring.preferenceList(for: $0.partition, count: table.n) }
        var byNode: [NodeID: [Int]] = [:]
        for (index, list) in replicas.enumerated() {
            for node in list { byNode[node, default: []].append(index) }
        }
        // One call per node, all in flight at once, awaited together (no task per node).
        var asked: [(indices: [Int], reply: EventLoopFuture<RPCMessage>)] = []
        for (node, indices) in byNode {
            guard routing.available.contains(node), let client = server.client(for: node) else { continue }
            let body = CASPaxosPeek.encodeManyRequest(indices.map { (items[$0], table.n) }, ringEpoch: ring.epoch)
            asked.append((indices, client.callFuture(RPCMessage(messageType: CASPaxosPeek.manyRequestType, body: ByteBuffer(bytes: body)), timeout: .milliseconds(500))))
        }
        var looks: [([Int], [CASPaxosAcceptedCount??])] = []
        if let loop = asked.first?.reply.eventLoop {
            let replies = (try? await EventLoopFuture.whenAllComplete(asked.map(\.reply), on: loop).get()) ?? []
            for ((indices, _), result) in zip(asked, replies) {
                guard case .success(let reply) = result, reply.messageType == CASPaxosPeek.manyReplyType,
                      let answers = try? CASPaxosPeek.decodeManyReply(Array(reply.body.readableBytesView)), answers.count == indices.count
                else { continue }
                looks.append((indices, answers))
            }
        }
        var answered = Array(repeating: [CASPaxosAcceptedCount?](), count: keys.count)
        for (indices, answers) in looks {
            for (position, index) in indices.enumerated() {
                if case .some(let accepted) = answers[position] { answered[index].append(accepted) }
            }
        }
        let quorum = table.n / 2 + 1
        var results: [MemberCount?] = answered.map { answers in
            CASPaxosPeek.agreedCount(answers, quorum: quorum).map(MemberCount.counted)
        }
        let missing = results.indices.filter { results[$0] == nil }
        if !missing.isEmpty {
            let read = try await readEach(table: table, keys: missing.map { keys[$0] })
            for (position, index) in missing.enumerated() { results[index] = MemberCount(read[position]) }
        }
        return results.map { $0! }
    }

    func run(
        table: TableDefinition, key: [UInt8], change: LinearizableChange, forUpdate: Bool,
        done: @escaping @Sendable (Result<LinearizableAnswer, any Error>) -> Void
    ) {
        let routing = server.routing
        let item = ItemKey(table: table.name, key: key, partitioning: routing.partitioning)
        let candidates = routing.coordinators(for: item.partition)
        guard !candidates.isEmpty else { return done(.failure(RoutingKeyValueService.notFormed)) }
        let request = RPCMessage(
            messageType: LinearizableRequest.type,
            body: ByteBuffer(bytes: LinearizableRequest(key: item, replicaCount: table.n, change: change, forUpdate: forUpdate).encode()))
        attempt(request, change: change, candidates: candidates[...], reasons: [], done: done)
    }

    /// Sends the operation to the first candidate; moves on to the next when it was
    /// not sent, or when it was sent and not answered and running it twice is harmless.
    private func attempt(
        _ request: RPCMessage, change: LinearizableChange, candidates: ArraySlice<NodeID>, reasons: [String],
        done: @escaping @Sendable (Result<LinearizableAnswer, any Error>) -> Void
    ) {
        guard let node = candidates.first else {
            return done(.success(.failed(.noQuorum, message: "no node of the key's preference list could run the operation (\(reasons.joined(separator: "; ")))")))
        }
        let next: @Sendable (String) -> Void = { [self] reason in
            attempt(request, change: change, candidates: candidates.dropFirst(), reasons: reasons + ["\(node): \(reason)"], done: done)
        }
        guard let client = server.client(for: node) else { return next("address unknown") }
        client.callFuture(request, timeout: Self.answerTimeout).whenComplete { result in
            switch result {
            case .success(let reply):
                guard reply.messageType == LinearizableRequest.replyType else {
                    return done(.failure(APIError.internalError("node \(node) answered a linearizable operation with message type \(reply.messageType)")))
                }
                let answer: LinearizableAnswer
                do {
                    answer = try LinearizableAnswer(decoding: Array(reply.body.readableBytesView))
                } catch {
                    return done(.failure(error))
                }
                // A node without a ring (it left, or has not formed yet) applied nothing.
                if case .failed(.notReady, let message) = answer { return next(message) }
                done(.success(answer))
            case .failure(let error as RPCError):
                switch error {
                case .connectionFailed, .overloaded:
                    next("\(error)")  // never sent: the next node may take it
                case .timedOut, .connectionClosed, .shutdown, .remote, .malformedFrame, .frameTooLarge:
                    guard change.isIdempotent else {
                        return done(.success(.failed(.outcomeUnknown, message: "coordinator \(node) did not answer in time (\(error)); the change may or may not have been applied")))
                    }
                    next("\(error)")
                }
            case .failure(let error):
                done(.failure(error))
            }
        }
    }
}

/// A ring server's tables: those of the newest committed configuration. Changes go
/// through the primary (the secondary passes them on), and are answered once a
/// majority of the nodes accepted them.
final class RingServerTables: TableDirectory {
    let server: RingServer
    /// Sends a table change to the other ring server; nil when it cannot be reached.
    let forward: @Sendable (TableChangeRequest) async throws -> TableDefinition?

    init(server: RingServer, forward: @escaping @Sendable (TableChangeRequest) async throws -> TableDefinition?) {
        self.server = server
        self.forward = forward
    }

    func table(named name: String) -> TableDefinition? {
        server.routing.configuration.table(named: name).map(TableDefinition.init(spec:))
    }

    var all: [TableDefinition] {
        server.routing.configuration.tables.map(TableDefinition.init(spec:)).sorted { $0.name < $1.name }
    }

    func create(name: String, request: TableRequest) async throws -> (TableDefinition, created: Bool) {
        do { try Validation.checkTableName(name) } catch { throw APIError(error) }
        let configuration = server.routing.configuration
        guard let ring = configuration.ring else { throw RoutingKeyValueService.notFormed }
        let definition = try TableCatalog.validated(name: name, request: request, clusterSize: ring.members.count)
        if let existing = table(named: name) {
            guard existing == definition || request.isEmpty else { throw TableCatalog.conflict(existing) }
            return (existing, false)
        }
        let spec = definition.spec
        switch await server.change({ engine, token, now in engine.createTable(spec, token: token, now: now) }) {
        case .success: return (definition, true)
        case .failure(.notPrimary):
            let quorums = definition.consistency == .eventual
            let forwarded = TableChangeRequest(
                action: "create", name: name, n: definition.n, r: quorums ? definition.r : nil, w: quorums ? definition.w : nil,
                consistency: definition.consistency)
            guard let created = try await forward(forwarded) else { throw Self.noPrimary }
            return (created, true)
        case .failure(let failure): throw Self.apiError(failure)
        }
    }

    func remove(name: String) async throws -> TableDefinition {
        guard name != TableCatalog.defaultTableName else { throw TableCatalog.protectedDefault }
        guard let existing = table(named: name) else { throw APIError.tableNotFound(name) }
        switch await server.change({ engine, token, now in engine.dropTable(named: name, token: token, now: now) }) {
        case .success: return existing
        case .failure(.notPrimary):
            _ = try await forward(TableChangeRequest(action: "drop", name: name))
            return existing
        case .failure(let failure): throw Self.apiError(failure)
        }
    }

    static var noPrimary: APIError {
        return APIError.unavailable(code: "no_primary", message: "Neither ring server is primary at the moment (a failover may be under way); retry shortly.")
    }

    static func apiError(_ failure: ChangeFailure) -> APIError {
        switch failure {
        case .notPrimary: return noPrimary
        case .queueFull(let limit):
            return APIError.unavailable(code: "busy", message: "\(limit) cluster changes are already waiting; retry shortly.")
        case .timedOut(let after):
            return APIError.unavailable(code: "change_timed_out", message: "The change waited \(after) without being offered to the nodes; it was not applied. Retry.")
        case .outcomeUnknown(let reason):
            return APIError.unavailable(code: "change_outcome_unknown", message: "The change was offered to the nodes but not confirmed by a majority (\(reason)); read the tables to see whether it took effect.")
        case .invalid(let reason):
            return APIError(.conflict, code: "invalid_change", message: reason)
        case .stateNotStored:
            return APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "disk_full",
                            message: "The ring server could not write its state file (its disk is full); the change was not applied. Retry once space is freed.")
        }
    }
}

extension MemberInfo {
    /// `"id":…,"rpc":"host:port","http":"host:port"`, as `/v1/cluster` and `/v1/cluster/ring` list members.
    var addressFieldsJSON: String {
        "\"id\":\(JSONText.quote(id.rawValue)),\"rpc\":\(JSONText.quote("\(rpcHost):\(rpcPort)")),\"http\":\(JSONText.quote("\(httpHost):\(httpPort)"))"
    }
}

extension TableDefinition {
    init(spec: TableSpec) {
        self.init(name: spec.name, n: spec.n, r: spec.r, w: spec.w, consistency: spec.consistency == TableSpec.linearizable ? .linearizable : .eventual)
    }

    var spec: TableSpec {
        TableSpec(name: name, n: n, r: r, w: w, consistency: consistency == .linearizable ? TableSpec.linearizable : TableSpec.eventual)
    }
}

extension TableCatalog {
    static func conflict(_ existing: TableDefinition) -> APIError {
        APIError(.conflict, code: "table_exists", message: "Table '\(existing.name)' exists with other properties (n=\(existing.n), r=\(existing.r), w=\(existing.w), \(existing.consistency.rawValue)); a table's properties cannot change.")
    }

    static var protectedDefault: APIError {
        APIError(.conflict, code: "table_protected", message: "The default table always exists and cannot be deleted.")
    }
}

/// `/v1/cluster…` as a ring server answers it.
struct RingServerView: ClusterView {
    let server: RingServer
    /// This ring server's node-protocol address (`host:port`), which clients may send
    /// their requests to; listed in the ring with the other ring server's.
    let rpcAddress: String

    func clusterJSON() -> String {
        let routing = server.routing
        let configuration = routing.configuration
        let members = configuration.members.sorted { $0.id < $1.id }.map { member in
            "{\(member.addressFieldsJSON),\"status\":\"\(member.status.label)\",\"reachable\":\(routing.available.contains(member.id))}"
        }.joined(separator: ",")
        return "{\"mode\":\"ring\",\"ring_server\":\(JSONText.quote(server.options.id)),\"role\":\"\(routing.role.label)\",\"term\":\(routing.term),\"primary\":\(JSONText.quote(configuration.primary)),\"configuration\":{\"term\":\(configuration.term),\"epoch\":\(configuration.epoch)},\"partitions\":\(routing.partitioning.partitionCount),\"ring_epoch\":\(configuration.ring?.epoch ?? 0),\"members\":[\(members)]}"
    }

    func ringJSON() -> String {
        let configuration = server.routing.configuration
        let owners = (configuration.ring?.owners ?? []).map { JSONText.quote($0.rawValue) }.joined(separator: ",")
        let members = configuration.members.sorted { $0.id < $1.id }.map { member in
            "{\(member.addressFieldsJSON)}"
        }.joined(separator: ",")
        let peer = server.options.peer
        let ringServers = [(server.options.id, rpcAddress), (server.options.peerID, "\(peer.host):\(peer.port)")].map { id, rpc in
            "{\"id\":\(JSONText.quote(id)),\"rpc\":\(JSONText.quote(rpc))}"
        }.joined(separator: ",")
        return "{\"partitions\":\(server.partitioning.partitionCount),\"epoch\":\(configuration.ring?.epoch ?? 0),\"owners\":[\(owners)],\"members\":[\(members)],\"ring_servers\":[\(ringServers)]}"
    }

    func locateJSON(table: TableDefinition, key: [UInt8]) -> String {
        let routing = server.routing
        let partition = routing.partitioning.partition(table: table.name, key: key)
        let preference = routing.configuration.ring?.preferenceList(for: partition, count: routing.configuration.ring?.members.count ?? 0) ?? []
        var targets: [(String, String?)] = []
        var spare = preference.dropFirst(table.n).filter(routing.available.contains).makeIterator()
        for node in preference.prefix(table.n) {
            if routing.available.contains(node) {
                targets.append((node.rawValue, nil))
            } else if let fallback = spare.next() {
                targets.append((fallback.rawValue, node.rawValue))
            }
        }
        let unreachable = preference.filter { !routing.available.contains($0) }.map(\.rawValue).sorted()
        return LocateJSON.render(table: table.name, key: key, partition: partition, preference: preference.map(\.rawValue), targets: targets, unreachable: unreachable)
    }
}
