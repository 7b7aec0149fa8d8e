import Foundation
import Hummingbird
public import Logging
import NIOCore
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

    public init(
        dataDirectory: String, httpHost: String = "127.0.0.1", httpPort: Int = 8080,
        maxValueBytes: Int = Limits.valueBytesMaxDefault, durability: Durability = .always,
        partitionCount: Int = Limits.partitionCountDefault
    ) {
        self.dataDirectory = dataDirectory
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.maxValueBytes = maxValueBytes
        self.durability = durability
        self.partitionCount = partitionCount
    }
}

/// The identity a data folder carries for life: its actor in version vectors (new
/// folder, new actor, so a node that lost its disk never reuses a version) and the
/// partition count it was created with.
public struct NodeIdentity: Codable, Sendable, Equatable {
    public var actor: String
    public var partitions: Int
    public var format: Int

    public var actorID: ActorID { ActorID(rawValue: UInt64(actor, radix: 16) ?? 0) }

    /// Reads `DIR/node.json`, or creates it with a random actor.
    public static func loadOrCreate(directory: String, partitionCount: Int) throws -> NodeIdentity {
        let path = directory + "/node.json"
        if let data = FileManager.default.contents(atPath: path) {
            let identity = try JSONDecoder().decode(NodeIdentity.self, from: data)
            guard identity.format == 1, UInt64(identity.actor, radix: 16) != nil else {
                throw APIError.internalError("\(path) is not a Ringstore node identity")
            }
            return identity
        }
        var generator = SystemRandomNumberGenerator()
        let identity = NodeIdentity(actor: String(UInt64.random(in: 1...UInt64.max, using: &generator), radix: 16), partitions: partitionCount, format: 1)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(identity).write(to: URL(fileURLWithPath: path), options: .atomic)
        return identity
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
        let identity = try NodeIdentity.loadOrCreate(directory: configuration.dataDirectory, partitionCount: configuration.partitionCount)
        let partitioning = try Partitioning(partitionCount: identity.partitions)
        let storage = try StorageEngine(
            directory: configuration.dataDirectory + "/storage",
            options: StorageOptions(durability: configuration.durability), logger: logger)
        let catalog = try await TableCatalog(storage: storage, partitioning: partitioning, clusterSize: 1)
        let service = LocalKeyValueService(storage: storage, partitioning: partitioning, actor: identity.actorID, logger: logger)
        let started = ContinuousClock.now
        let api = NodeHTTPAPI(
            catalog: catalog, service: service, maxValueBytes: configuration.maxValueBytes, registry: registry, logger: logger
        ) {
            let uptime = (ContinuousClock.now - started).components.seconds
            return "{\"status\":\"ok\",\"role\":\"node\",\"actor\":\"\(identity.actor)\",\"keys\":\(storage.statistics.keys),\"uptime_seconds\":\(uptime)}"
        }
        return Parts(storage: storage, catalog: catalog, identity: identity, api: api)
    }

    /// Runs the node until SIGTERM or SIGINT, then lets in-flight requests finish,
    /// syncs the log and returns. `onListening` receives the bound port.
    public static func run(
        _ configuration: NodeConfiguration, registry: PrometheusCollectorRegistry?, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) async throws {
        let parts = try await assemble(configuration, registry: registry, logger: logger)
        let app = Application(
            responder: parts.api,
            configuration: ApplicationConfiguration(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: nil),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.httpPort) },
            logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: StorageService(storage: parts.storage)),
                .init(service: app),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}
