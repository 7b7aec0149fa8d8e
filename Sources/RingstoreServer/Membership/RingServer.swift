import Foundation
public import Logging
import CoreMetrics
public import NIOCore
import NIOPosix
public import RingstoreCore
public import RingstoreRPC
import RingstoreStorage
import Synchronization

/// A ring server: the shell around RingstoreCore's `RingServerEngine`.
///
/// Every event — a node's or the other ring server's message, a timer, a change an
/// administrator asked for — is handed to one event loop, the engine loop, and fed
/// to the engine there; its directives are carried out on that loop in order, so a
/// `.persist` is on disk before anything after it is sent. HTTP handlers read a
/// `RoutingSnapshot` that the loop refreshes; they never wait for the loop except
/// to ask for a change.
public final class RingServer: Sendable {
    /// What a ring server runs with.
    public struct Options: Sendable {
        public var id: String
        public var peerID: String
        public var initialRole: RingServerEngine.InitialRole
        public var peer: RingServerAddress
        /// Folder of the state file; created if missing.
        public var dataDirectory: String
        public var initialNodeCount: Int
        public var partitionCount: Int
        public var heartbeatInterval: Duration = .milliseconds(250)
        public var primaryLossTimeout: Duration = .milliseconds(1500)
        public var voteTimeout: Duration = .seconds(1)
        /// How long a forwarded client request may take before it is answered 503.
        public var requestTimeout: Duration = .seconds(3)
        /// How connections to nodes and the other ring server are made.
        public var rpcClient = RPCClientConfiguration()

        public init(
            id: String, peerID: String, initialRole: RingServerEngine.InitialRole, peer: RingServerAddress,
            dataDirectory: String, initialNodeCount: Int, partitionCount: Int
        ) {
            self.id = id
            self.peerID = peerID
            self.initialRole = initialRole
            self.peer = peer
            self.dataDirectory = dataDirectory
            self.initialNodeCount = initialNodeCount
            self.partitionCount = partitionCount
        }
    }

    public let options: Options
    let partitioning: Partitioning
    let engineLoop: any EventLoop
    let logger: Logger
    private let engine: Mutex<RingServerEngine>
    private let snapshot: Mutex<RoutingSnapshot>
    private let nodeClients = Mutex<[NodeID: RPCClient]>([:])
    private let nodeAddresses = Mutex<[NodeID: (host: String, port: UInt16)]>([:])
    private let peerClient: RPCClient
    private let waiting = Mutex<[UInt64: CheckedContinuation<Result<UInt64, ChangeFailure>, Never>]>([:])
    private let nextToken = Atomic<UInt64>(0)
    private let started = ContinuousClock.now
    private let repeatedTask = Mutex<RepeatedTask?>(nil)
    private let statePath: String
    private let roleGauge = CoreMetrics.Gauge(label: "ringstore_ring_server_primary")
    private let termGauge = CoreMetrics.Gauge(label: "ringstore_ring_server_term")
    private let stateWriteFailures = CoreMetrics.Counter(label: "ringstore_state_write_failures_total", dimensions: [("process", "ring_server")])

    /// Loads the state file (if any) and builds the engine; call `start()` next.
    public init(options: Options, group: any EventLoopGroup, logger: Logger) throws {
        self.options = options
        self.logger = logger
        partitioning = try Partitioning(partitionCount: options.partitionCount)
        engineLoop = group.next()
        statePath = options.dataDirectory + "/ring-server.state"
        try FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
        let restored = try Self.loadState(statePath)
        let defaultN = min(3, options.initialNodeCount)
        let majority = defaultN / 2 + 1
        let settings = RingServerEngine.Settings(
            id: options.id, peer: options.peerID, initialRole: options.initialRole, initialNodeCount: options.initialNodeCount,
            partitioning: partitioning, targetN: 3,
            tablesAtFormation: [TableSpec(name: TableCatalog.defaultTableName, n: defaultN, r: majority, w: majority)],
            heartbeatInterval: options.heartbeatInterval, primaryLossTimeout: options.primaryLossTimeout,
            voteTimeout: options.voteTimeout, randomSeed: UInt64.random(in: 0...UInt64.max))
        let engine = RingServerEngine(settings: settings, restoring: restored, now: .zero)
        if let restored {
            logger.info("resumed from the state file", metadata: [
                "term": "\(restored.term)", "version": "\(restored.configuration.version)", "role": "\(engine.role)",
            ])
        }
        self.engine = Mutex(engine)
        snapshot = Mutex(RoutingSnapshot(configuration: engine.configuration, available: [], role: engine.role, term: engine.term, partitioning: partitioning))
        peerClient = RPCClient(host: options.peer.host, port: options.peer.port, group: engineLoop, configuration: options.rpcClient)
        rememberAddresses(of: engine.configuration)
    }

    // MARK: Lifecycle

    /// Starts the engine's timer.
    public func start() {
        let interval = options.heartbeatInterval / 2
        let task = engineLoop.scheduleRepeatedTask(initialDelay: .zero, delay: TimeAmount(interval)) { [self] _ in
            feed { engine, now in engine.tick(now: now) }
            refreshSnapshot()
        }
        repeatedTask.withLock { $0 = task }
    }

    /// Stops the timer and every connection; changes still waiting are answered as failed.
    public func stop() async {
        repeatedTask.withLock { $0 }?.cancel()
        await peerClient.shutdown()
        for client in nodeClients.withLock({ Array($0.values) }) { await client.shutdown() }
        let pending = waiting.withLock { waiting in
            defer { waiting.removeAll() }
            return Array(waiting.values)
        }
        for continuation in pending { continuation.resume(returning: .failure(.outcomeUnknown("the ring server is shutting down"))) }
    }

    // MARK: Views

    /// What HTTP handlers route and answer with.
    var routing: RoutingSnapshot { snapshot.withLock { $0 } }

    private func now() -> Duration { ContinuousClock.now - started }

    private func refreshSnapshot() {
        let now = now()
        let next = engine.withLock { engine in
            let configuration = engine.configuration
            let available = Set(configuration.members.map(\.id).filter { engine.isNodeAvailable($0, at: now) })
            return RoutingSnapshot(configuration: configuration, available: available, role: engine.role, term: engine.term, partitioning: partitioning)
        }
        snapshot.withLock { $0 = next }
    }

    // MARK: Changes

    /// Asks the engine for a change and waits until it is committed or has failed.
    func change(_ request: @escaping @Sendable (inout RingServerEngine, UInt64, Duration) -> [RingServerDirective]) async -> Result<UInt64, ChangeFailure> {
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).newValue
        return await withCheckedContinuation { continuation in
            waiting.withLock { $0[token] = continuation }
            engineLoop.execute { [self] in
                if !feed({ engine, now in request(&engine, token, now) }) {
                    waiting.withLock { $0.removeValue(forKey: token) }?.resume(returning: .failure(.stateNotStored))
                }
            }
        }
    }

    /// Runs `body` on the engine loop with the engine (for plan staging, which sends nothing).
    func onEngine<T: Sendable>(_ body: @escaping @Sendable (inout RingServerEngine) -> T) async -> T {
        await withCheckedContinuation { continuation in
            engineLoop.execute { [self] in
                continuation.resume(returning: engine.withLock { body(&$0) })
            }
        }
    }

    // MARK: Messages

    /// A message from a node or from the other ring server, as the RPC server received it.
    func receive(_ message: RPCMessage) -> EventLoopFuture<RPCMessage> {
        let promise = engineLoop.makePromise(of: RPCMessage.self)
        if MembershipWire.nodeTypes.contains(message.messageType) {
            do {
                let (node, decoded) = try MembershipWire.decodeNodeMessage(message)
                engineLoop.execute { [self] in
                    if case .register(let member) = decoded {
                        nodeAddresses.withLock { $0[member.id] = (member.rpcHost, member.rpcPort) }
                    }
                    feed { engine, now in engine.nodeMessage(decoded, from: node, now: now) }
                    promise.succeed(MembershipWire.ackMessage)
                }
            } catch {
                promise.fail(RPCRemoteError(code: 1, message: "undecodable node message: \(error.reason)"))
            }
        } else if MembershipWire.ringServerTypes.contains(message.messageType) {
            do {
                let decoded = try MembershipWire.decodeRingServerMessage(message)
                engineLoop.execute { [self] in
                    feed { engine, now in engine.peerMessage(decoded, now: now) }
                    promise.succeed(MembershipWire.ackMessage)
                }
            } catch {
                promise.fail(RPCRemoteError(code: 1, message: "undecodable ring server message: \(error.reason)"))
            }
        } else {
            promise.fail(RPCRemoteError(code: RPCRemoteError.unsupportedMessageTypeCode, message: "message type \(message.messageType) is not handled"))
        }
        return promise.futureResult
    }

    /// The connection to a node, made when first needed.
    func client(for node: NodeID) -> RPCClient? {
        if let client = nodeClients.withLock({ $0[node] }) { return client }
        guard let address = nodeAddresses.withLock({ $0[node] }) else { return nil }
        return nodeClients.withLock { clients in
            if let client = clients[node] { return client }
            let client = RPCClient(host: address.host, port: Int(address.port), group: engineLoop, configuration: options.rpcClient)
            clients[node] = client
            return client
        }
    }

    // MARK: Driving the engine

    /// Feeds one event; MUST run on the engine loop, so directives are carried out in order.
    ///
    /// The event runs on a copy of the engine. The state it asks to persist is written
    /// first; only then does the copy replace the engine and are its other directives
    /// carried out. When the state cannot be written (a full disk), the event is
    /// dropped whole, as if its message had been lost, and `false` is returned: nothing
    /// that depends on unwritten state is ever sent.
    @discardableResult
    private func feed(_ event: (inout RingServerEngine, Duration) -> [RingServerDirective]) -> Bool {
        engineLoop.preconditionInEventLoop()
        let now = now()
        var next = engine.withLock { $0 }
        let directives = event(&next, now)
        do {
            for case .persist(let state) in directives { try Self.saveState(state, to: statePath) }
        } catch {
            stateWriteFailures.increment()
            logger.error("could not write the ring server's state file; the event is dropped and retried by its sender", metadata: ["path": "\(statePath)", "error": "\(error)"])
            return false
        }
        engine.withLock { $0 = next }
        for directive in directives { execute(directive) }
        return true
    }

    private func execute(_ directive: RingServerDirective) {
        switch directive {
        case .persist:
            break  // written by `feed` before any directive is carried out
        case .sendToNode(let node, let message):
            guard let client = client(for: node) else { return }
            client.callFuture(MembershipWire.message(message), timeout: TimeAmount(options.heartbeatInterval * 2)).whenSuccess { [self] reply in
                guard let decoded = try? MembershipWire.decodeNodeReply(reply) else { return }
                engineLoop.execute {
                    self.feed { engine, now in engine.nodeMessage(decoded, from: node, now: now) }
                }
            }
        case .sendToPeer(let message):
            _ = peerClient.callFuture(MembershipWire.message(message), timeout: TimeAmount(options.heartbeatInterval * 2))
        case .committed(let token, let epoch):
            waiting.withLock { $0.removeValue(forKey: token) }?.resume(returning: .success(epoch))
        case .changeFailed(let token, let failure):
            waiting.withLock { $0.removeValue(forKey: token) }?.resume(returning: .failure(failure))
        case .roleChanged(let role, let term):
            logger.notice("ring server role changed", metadata: ["role": "\(role)", "term": "\(term)"])
            roleGauge.record(role == .primary ? 1 : 0)
            termGauge.record(Int64(term))
            refreshSnapshot()
        case .configurationCommitted(let configuration):
            logger.info("configuration committed", metadata: [
                "version": "\(configuration.version)", "members": "\(configuration.members.count)",
                "ringEpoch": "\(configuration.ring?.epoch ?? 0)", "tables": "\(configuration.tables.count)",
            ])
            rememberAddresses(of: configuration)
            refreshSnapshot()
        }
    }

    private func rememberAddresses(of configuration: ClusterConfiguration) {
        let stale: [RPCClient] = nodeAddresses.withLock { addresses in
            var stale: [RPCClient] = []
            for member in configuration.members {
                if let known = addresses[member.id], known.host == member.rpcHost, known.port == member.rpcPort { continue }
                addresses[member.id] = (member.rpcHost, member.rpcPort)
                if let client = nodeClients.withLock({ $0.removeValue(forKey: member.id) }) { stale.append(client) }
            }
            return stale
        }
        if !stale.isEmpty {
            Task { for client in stale { await client.shutdown() } }
        }
    }

    // MARK: State file

    static func saveState(_ state: RingServerPersistentState, to path: String) throws {
        try StateFile.write(state.encode(), to: path)
    }

    static func loadState(_ path: String) throws -> RingServerPersistentState? {
        guard let body = try StateFile.read(path) else { return nil }
        do {
            return try RingServerPersistentState.decode(body)
        } catch {
            throw StateFileError(path: path, reason: error.reason)
        }
    }
}

/// A small state file that must survive crashes whole: the bytes and their CRC-32C,
/// replaced atomically (temporary file, fsync, rename, fsync of the folder).
enum StateFile {
    static func write(_ body: [UInt8], to path: String) throws {
        var bytes = body
        bytes += withUnsafeBytes(of: CRC32C.checksum(body).bigEndian, Array.init)
        try DurableFile.replace(path: path, with: bytes)
    }

    /// The body, or nil when there is no file; throws when the file is damaged.
    static func read(_ path: String) throws -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let bytes = Array(data)
        guard bytes.count > 4 else { throw StateFileError(path: path, reason: "it is truncated") }
        let body = Array(bytes.dropLast(4))
        let stored = bytes.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard CRC32C.checksum(body) == stored else { throw StateFileError(path: path, reason: "its checksum does not match") }
        return body
    }
}

/// A state file that cannot be read: starting without it could break the protocol's
/// promises, so the process refuses to start.
struct StateFileError: Error, CustomStringConvertible {
    var path: String
    var reason: String
    var description: String { "\(path) cannot be used (\(reason)); restore it, or remove it and start this process as a secondary with an empty folder" }
}

/// What HTTP handlers route with: the newest committed configuration and which nodes
/// answer heartbeats.
struct RoutingSnapshot: Sendable {
    let configuration: ClusterConfiguration
    let available: Set<NodeID>
    let role: RingServerRole
    let term: UInt64
    let partitioning: Partitioning

    /// The nodes to try as coordinator of a key: its preference list, the available ones first.
    func coordinators(for partition: PartitionID) -> [NodeID] {
        guard let ring = configuration.ring else { return [] }
        let list = ring.preferenceList(for: partition, count: ring.members.count)
        return list.filter(available.contains) + list.filter { !available.contains($0) }
    }
}
