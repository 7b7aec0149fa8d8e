import Foundation
import Hummingbird
public import Logging
import NIOCore
import NIOPosix
import RingstoreRPC
public import Prometheus
public import RingstoreCore
public import RingstoreStorage
import ServiceLifecycle
import UnixSignals

/// What `ringstore node` runs with.
public struct NodeConfiguration: Sendable {
    public var dataDirectory: String
    public var httpHost: String
    public var httpPort: Int
    public var maxValueBytes: Int
    public var durability: Durability
    /// Partitions of the ring; used only when the data folder is new.
    public var partitionCount: Int
    /// This node's id in a cluster; nil for a cluster of one.
    public var nodeID: String?
    /// Where this node serves the node-to-node protocol.
    public var rpcHost: String
    public var rpcPort: Int
    /// The other members of a static cluster (this node may be listed too).
    public var peers: [PeerAddress]
    /// How long a coordinator waits for its quorum.
    public var requestTimeout: Duration
    /// The ring servers' RPC addresses, for a node that joins through them (`--join`);
    /// empty for a single node or a static cluster.
    public var ringServers: [RingServerAddress] = []
    /// The pause between background anti-entropy exchanges; nil turns background rounds off.
    public var antiEntropyPause: Duration? = .milliseconds(100)
    /// How long a key must have held only tombstones before anti-entropy tries to
    /// purge it (once every replica holds the same tombstone); nil never purges.
    public var tombstoneGrace: Duration? = .seconds(300)
    /// Bytes of recently written and read values the node keeps in memory.
    public var cacheBytes = Limits.valueCacheBytesDefault

    /// Whether the node runs as a member of a cluster rather than alone.
    public var isClustered: Bool { nodeID != nil }

    /// Whether the node's membership comes from ring servers rather than a static list.
    public var joinsRingServers: Bool { !ringServers.isEmpty }

    public init(
        dataDirectory: String, httpHost: String = "127.0.0.1", httpPort: Int = 8080,
        maxValueBytes: Int = Limits.valueBytesMaxDefault, durability: Durability = .always,
        partitionCount: Int = Limits.partitionCountDefault, nodeID: String? = nil, rpcHost: String = "127.0.0.1",
        rpcPort: Int = 0, peers: [PeerAddress] = [], requestTimeout: Duration = .seconds(2)
    ) {
        self.dataDirectory = dataDirectory
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.maxValueBytes = maxValueBytes
        self.durability = durability
        self.partitionCount = partitionCount
        self.nodeID = nodeID
        self.rpcHost = rpcHost
        self.rpcPort = rpcPort
        self.peers = peers
        self.requestTimeout = requestTimeout
    }
}

/// The identity a data folder carries: its actor in version vectors and the
/// partition count it was created with.
///
/// The actor changes whenever the node may have forgotten versions it issued: a new
/// folder, or a start after a shutdown that was not clean (a crash can lose writes
/// that other replicas or clients already saw; issuing their versions again under
/// the same actor would make different writes look like one). A clean shutdown
/// leaves a `CLEAN` file; starting removes it.
public struct NodeIdentity: Codable, Sendable, Equatable {
    public var actor: String
    public var partitions: Int
    public var format: Int

    public var actorID: ActorID { ActorID(rawValue: UInt64(actor, radix: 16) ?? 0) }

    static func cleanMarkerPath(_ directory: String) -> String { directory + "/CLEAN" }

    /// Reads `DIR/node.json` (taking a new actor after an unclean shutdown), or creates it.
    public static func loadOrCreate(directory: String, partitionCount: Int, logger: Logger? = nil) throws -> NodeIdentity {
        let path = directory + "/node.json"
        let fileManager = FileManager.default
        if let data = fileManager.contents(atPath: path) {
            var identity = try JSONDecoder().decode(NodeIdentity.self, from: data)
            guard identity.format == 1, UInt64(identity.actor, radix: 16) != nil else {
                throw APIError.internalError("\(path) is not a Ringstore node identity")
            }
            if fileManager.fileExists(atPath: cleanMarkerPath(directory)) {
                try fileManager.removeItem(atPath: cleanMarkerPath(directory))
            } else {
                let previous = identity.actor
                identity.actor = newActor()
                try write(identity, to: path)
                logger?.notice("the last shutdown was not clean; this node takes a new actor so that no version it issued before is issued again", metadata: [
                    "previousActor": "\(previous)", "actor": "\(identity.actor)",
                ])
            }
            return identity
        }
        let identity = NodeIdentity(actor: newActor(), partitions: partitionCount, format: 1)
        try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write(identity, to: path)
        return identity
    }

    /// Records a clean shutdown: call after every storage engine of the node is closed.
    public static func markCleanShutdown(directory: String) {
        _ = FileManager.default.createFile(atPath: cleanMarkerPath(directory), contents: Data())
    }

    private static func newActor() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(UInt64.random(in: 1...UInt64.max, using: &generator), radix: 16)
    }

    private static func write(_ identity: NodeIdentity, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(identity).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Closes the storage engine when the service group shuts down, after the HTTP
/// server (listed after it) has finished its in-flight requests.
struct StorageService: Service {
    let storage: StorageEngine

    func run() async throws {
        try? await gracefulShutdown()
        await storage.close()
    }
}

/// A storage node serving the client API from its own disk: a cluster of one.
public enum NodeServer {
    /// Everything a running node is made of; built separately so tests can drive it.
    public struct Parts: Sendable {
        public let storage: StorageEngine
        public let catalog: TableCatalog
        public let identity: NodeIdentity
        public let api: NodeHTTPAPI
    }

    /// Opens the data folder and builds the API.
    public static func assemble(_ configuration: NodeConfiguration, registry: PrometheusCollectorRegistry?, logger: Logger) async throws -> Parts {
        let identity = try NodeIdentity.loadOrCreate(directory: configuration.dataDirectory, partitionCount: configuration.partitionCount, logger: logger)
        let partitioning = try Partitioning(partitionCount: identity.partitions)
        let storage = try StorageEngine(
            directory: configuration.dataDirectory + "/storage",
            options: StorageOptions(durability: configuration.durability, cacheBytes: configuration.cacheBytes), logger: logger)
        let catalog = try await TableCatalog(storage: storage, partitioning: partitioning, clusterSize: 1)
        let service = LocalKeyValueService(storage: storage, partitioning: partitioning, actor: identity.actorID, logger: logger)
        let started = ContinuousClock.now
        let linearizable = LinearizableEngine(
            network: LocalCASPaxosNetwork(loop: MultiThreadedEventLoopGroup.singleton.next()), acceptors: AcceptorStore(storage: storage), logger: logger)
        let api = NodeHTTPAPI(
            catalog: catalog, service: service, linearizable: NodeLinearizableService(engine: linearizable, partitioning: partitioning),
            cluster: SingleNodeView(partitioning: partitioning, actor: identity.actor),
            maxValueBytes: configuration.maxValueBytes, registry: registry, logger: logger
        ) {
            let uptime = (ContinuousClock.now - started).components.seconds
            return "{\"status\":\"ok\",\"role\":\"node\",\"actor\":\"\(identity.actor)\",\"keys\":\(storage.statistics.keys),\"uptime_seconds\":\(uptime)}"
        }
        return Parts(storage: storage, catalog: catalog, identity: identity, api: api)
    }

    /// Runs the node until SIGTERM or SIGINT, then lets in-flight requests finish,
    /// syncs the log and returns. `onListening` receives the bound HTTP port (and,
    /// in a cluster, the RPC port).
    public static func run(
        _ configuration: NodeConfiguration, registry: PrometheusCollectorRegistry?, logger: Logger,
        onListening: @escaping @Sendable (_ http: Int, _ rpc: Int?) -> Void = { _, _ in }
    ) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let api: NodeHTTPAPI
        var rpcPort: Int?
        if configuration.isClustered {
            let parts = try await ClusterParts.assemble(configuration, registry: registry, logger: logger)
            rpcPort = try await parts.rpcServer.start()
            parts.node.start()
            if configuration.antiEntropyPause != nil { parts.antiEntropy.start() }
            services.append(.init(service: StorageService(storage: parts.storage)))
            services.append(.init(service: StorageService(storage: parts.hintStorage)))
            if let membership = parts.membership { await membership.start() } else { await parts.node.pingPeersAndWait() }
            services.append(.init(service: ClusterService(parts: parts, logger: logger)))
            api = parts.api
        } else {
            let parts = try await assemble(configuration, registry: registry, logger: logger)
            services.append(.init(service: StorageService(storage: parts.storage)))
            api = parts.api
        }
        let boundRPCPort = rpcPort
        let app = Application(
            responder: api,
            server: .http1(fastPath: api, logger: logger),
            configuration: ApplicationConfiguration(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: nil),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.httpPort, boundRPCPort) },
            logger: logger)
        services.append(.init(service: app))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        // Every storage engine is closed and synced: the next start may keep the actor.
        NodeIdentity.markCleanShutdown(directory: configuration.dataDirectory)
    }
}
