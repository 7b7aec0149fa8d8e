import Foundation
import HTTPTypes
import CoreMetrics
import Logging
import NIOCore
import RingstoreCore
import RingstoreRPC
import RingstoreStorage
import Synchronization

/// A storage node's side of ring-server membership: the shell around RingstoreCore's
/// `ConfigurationFollower`.
///
/// It registers with both ring servers until the configuration names this node with
/// its current addresses, heartbeats both, answers their offers and vote requests
/// (persisting its promise before any answer that follows one), and hands every
/// configuration it accepts to the `ClusterNode` and the table catalogue. With both
/// ring servers gone the node keeps serving from the configuration it holds.
final class MembershipAgent: Sendable {
    let me: MemberInfo
    let node: ClusterNode
    let catalog: TableCatalog
    let service: ClusterKeyValueService
    let logger: Logger
    private let follower: Mutex<ConfigurationFollower>
    private let ringServers: [RPCClient]
    private let statePath: String
    private let heartbeatInterval: Duration
    private let started = ContinuousClock.now
    private let adoptLock = AsyncLock()
    private let adopted = Mutex<ConfigurationVersion>(ConfigurationVersion(term: 0, epoch: 0))
    private let repeatedTask = Mutex<RepeatedTask?>(nil)
    /// Partitions this node must receive while the ring changes.
    private let receiver: PartitionReceiver
    private let stateWriteFailures = CoreMetrics.Counter(label: "ringstore_state_write_failures_total", dimensions: [("process", "node")])

    init(
        me: MemberInfo, node: ClusterNode, catalog: TableCatalog, service: ClusterKeyValueService, ringServers: [RingServerAddress],
        restored: FollowerDurableState?, statePath: String, heartbeatInterval: Duration, primaryLossTimeout: Duration, logger: Logger
    ) {
        self.me = me
        self.node = node
        self.catalog = catalog
        self.service = service
        self.logger = logger
        self.statePath = statePath
        self.heartbeatInterval = heartbeatInterval
        follower = Mutex(ConfigurationFollower(settings: .init(primaryLossTimeout: primaryLossTimeout), restoring: restored, now: .zero))
        let clients = ringServers.map { RPCClient(host: $0.host, port: $0.port, group: node.engineLoop, configuration: node.settings.rpcClient) }
        self.ringServers = clients
        let id = me.id
        receiver = PartitionReceiver(node: node, logger: logger) { partition, epoch in
            for client in clients {
                _ = client.callFuture(MembershipWire.message(.transferDone(partition: partition, pendingRingEpoch: epoch), from: id), timeout: .seconds(1))
            }
        }
    }

    /// The follower state saved in `path`, if any.
    static func loadState(_ path: String) throws -> FollowerDurableState? {
        guard let body = try StateFile.read(path) else { return nil }
        do {
            return try FollowerDurableState.decode(body)
        } catch {
            throw StateFileError(path: path, reason: error.reason)
        }
    }

    private func now() -> Duration { ContinuousClock.now - started }

    // MARK: Lifecycle

    /// Applies the configuration held on disk, then starts registering and heartbeating.
    func start() async {
        if let configuration = follower.withLock({ $0.configuration }) { await adopt(configuration) }
        // Ring servers route requests here from the first heartbeat on.
        await node.pingPeersAndWait()
        let task = node.engineLoop.scheduleRepeatedTask(initialDelay: .zero, delay: TimeAmount(heartbeatInterval)) { [self] _ in
            heartbeat()
        }
        repeatedTask.withLock { $0 = task }
    }

    func stop() async {
        repeatedTask.withLock { $0 }?.cancel()
        receiver.stopAll()
        for client in ringServers { await client.shutdown() }
    }

    private func heartbeat() {
        guard !node.hasLeft else { return }
        let (message, registered, configuration) = follower.withLock { follower in
            (follower.heartbeatMessage, follower.configuration?.member(me.id).map { Self.sameAddresses($0, me) } ?? false, follower.configuration)
        }
        // Transfers finished here and not yet recorded are reported again until they
        // are, and any that should run and does not (its task ended early) starts again.
        if let configuration, let pending = configuration.pendingRing, adopted.withLock({ $0 }) == configuration.version {
            let mine = configuration.pendingTransfers(to: me.id)
            receiver.reportFinished(among: Set(mine.map(\.partition)), pendingEpoch: pending.epoch)
            receiver.update(wanted: Self.wanted(mine, in: configuration), pendingEpoch: pending.epoch)
        }
        for client in ringServers {
            if !registered {
                _ = client.callFuture(MembershipWire.message(.register(me), from: me.id), timeout: TimeAmount(heartbeatInterval * 2))
            }
            _ = client.callFuture(MembershipWire.message(message, from: me.id), timeout: TimeAmount(heartbeatInterval * 2))
        }
    }

    /// The partitions to receive and where to pull each from.
    private static func wanted(_ transfers: [Transfer], in configuration: ClusterConfiguration) -> [PartitionID: [NodeID]] {
        var wanted: [PartitionID: [NodeID]] = [:]
        for transfer in transfers { wanted[transfer.partition] = configuration.transferSources(for: transfer) }
        return wanted
    }

    private static func sameAddresses(_ one: MemberInfo, _ other: MemberInfo) -> Bool {
        one.rpcHost == other.rpcHost && one.rpcPort == other.rpcPort && one.httpHost == other.httpHost && one.httpPort == other.httpPort
    }

    // MARK: Messages from ring servers

    /// A ring server's message; the reply is the follower's answer, or an ack.
    func receive(_ request: RPCMessage) -> RPCDispatch {
        let message: RingServerMessage
        do {
            message = try MembershipWire.decodeRingServerMessage(request)
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable ring server message: \(error.reason)"))
        }
        let now = now()
        // The message runs on a copy of the follower, and its promise is written before
        // the copy replaces the follower and before any answer leaves, under the lock so
        // two messages cannot persist out of order. When the promise cannot be written
        // (a full disk), the message is dropped whole and not answered, as if it had been
        // lost; the ring server sends it again.
        let outcome: Result<[FollowerDirective], any Error> = follower.withLock { follower in
            var next = follower
            let directives = next.receive(message, now: now)
            do {
                for case .persist(let state) in directives { try StateFile.write(state.encode(), to: statePath) }
            } catch {
                return .failure(error)
            }
            follower = next
            return .success(directives)
        }
        let directives: [FollowerDirective]
        switch outcome {
        case .success(let done): directives = done
        case .failure(let error):
            stateWriteFailures.increment()
            logger.error("could not write the membership state file; the ring server's message is not answered", metadata: ["path": "\(statePath)", "error": "\(error)"])
            return .fail(RPCRemoteError(code: 2, message: "the node could not store its membership state: \(error)"))
        }
        var reply = MembershipWire.ackMessage
        for directive in directives {
            switch directive {
            case .persist: break
            case .adopt(let configuration):
                Task { await self.adopt(configuration) }
            case .reply(let answer):
                reply = MembershipWire.reply(answer)
            }
        }
        return .reply(reply)
    }

    // MARK: Adopting configurations

    /// Serves from `configuration`: its ring and members, and exactly its tables.
    private func adopt(_ configuration: ClusterConfiguration) async {
        try? await adoptLock.withLock {
            guard configuration.version > adopted.withLock({ $0 }) else { return }
            if let ring = configuration.ring {
                let members = configuration.members.map { PeerAddress(id: $0.id, host: $0.rpcHost, port: Int($0.rpcPort)) }
                await node.adopt(ring: ring, pending: configuration.pendingRing, members: members)
                node.markReady()
                if configuration.member(me.id) == nil {
                    // A configuration reaches a node it does not list only after the node left.
                    node.markLeft()
                    logger.warning("the cluster's configuration no longer lists this node: it has left (or was removed). It answers no client requests; stop it, and do not restart it on this data folder")
                }
            }
            receiver.update(wanted: Self.wanted(configuration.pendingTransfers(to: me.id), in: configuration), pendingEpoch: configuration.pendingRing?.epoch ?? 0)
            let tables = configuration.tables.map(TableDefinition.init(spec:))
            if !tables.isEmpty {
                do {
                    for dropped in try await catalog.replace(with: tables) {
                        try await service.removeAllKeys(of: dropped)
                        logger.info("dropped a table the cluster dropped", metadata: ["table": "\(dropped)"])
                    }
                } catch {
                    logger.error("could not apply the configuration's tables", metadata: ["error": "\(error)"])
                }
            }
            adopted.withLock { $0 = configuration.version }
            logger.info("adopted a cluster configuration", metadata: [
                "version": "\(configuration.version)", "ringEpoch": "\(configuration.ring?.epoch ?? 0)",
                "members": "\(configuration.members.count)", "primary": "\(configuration.primary)",
            ])
        }
    }

    // MARK: Table changes asked of this node

    /// Sends a table change to the ring servers (the first that takes it) and returns its answer.
    func requestTableChange(_ change: TableChangeRequest) async throws -> TableDefinition? {
        let body = try JSONEncoder().encode(change)
        var lastError: (any Error)?
        for client in ringServers {
            do {
                let reply = try await client.call(RPCMessage(messageType: MembershipWire.tableChange, body: ByteBuffer(bytes: body)), timeout: .seconds(10))
                if change.action == "drop" { return nil }
                return try JSONDecoder().decode(TableDefinition.self, from: Data(reply.body.readableBytesView))
            } catch let error as RPCError {
                if case .remote(let code, let message) = error, code == TableChangeErrors.apiErrorCode {
                    let apiError = TableChangeErrors.decode(message)
                    if apiError.code != "no_primary" { throw apiError }
                }
                lastError = error
            }
        }
        throw APIError(.serviceUnavailable, code: "no_ring_server",
                       message: "No ring server took the table change (\(lastError.map { "\($0)" } ?? "none answered")); tables change only through a primary ring server. Retry shortly.")
    }
}

/// The tables of a node that belongs to a ring-server cluster: read from the local
/// catalogue (the configuration's tables), changed through the ring servers.
final class JoinedTableDirectory: TableDirectory {
    let catalog: TableCatalog
    let agent: MembershipAgent

    init(catalog: TableCatalog, agent: MembershipAgent) {
        self.catalog = catalog
        self.agent = agent
    }

    func table(named name: String) -> TableDefinition? { catalog.table(named: name) }

    var all: [TableDefinition] { catalog.all }

    func create(name: String, request: TableRequest) async throws -> (TableDefinition, created: Bool) {
        do { try Validation.checkTableName(name) } catch { throw APIError(error) }
        if let existing = catalog.table(named: name), request.isEmpty { return (existing, false) }
        let before = catalog.table(named: name)
        let change = TableChangeRequest(action: "create", name: name, n: request.n, r: request.r, w: request.w, consistency: request.consistency)
        guard let definition = try await agent.requestTableChange(change) else {
            throw APIError.internalError("a ring server confirmed a table without describing it")
        }
        try await catalog.adopt([definition])
        return (definition, before == nil)
    }

    func remove(name: String) async throws -> TableDefinition {
        guard name != TableCatalog.defaultTableName else { throw TableCatalog.protectedDefault }
        guard let existing = catalog.table(named: name) else { throw APIError.tableNotFound(name) }
        _ = try await agent.requestTableChange(TableChangeRequest(action: "drop", name: name))
        _ = try? await catalog.remove(name: name)
        return existing
    }
}
