import Foundation
import Logging
import NIOCore
import RingstoreRPC
import NIOPosix
import Prometheus
import RingstoreCore
import RingstoreStorage
import ServiceLifecycle

/// A cluster member, assembled: storage, the node engine's shell, the RPC server and the HTTP API.
struct ClusterParts: Sendable {
    let storage: StorageEngine
    let hintStorage: StorageEngine
    let node: ClusterNode
    let catalog: TableCatalog
    let rpcServer: RPCServer
    let api: NodeHTTPAPI
    /// Set for a node that joins through ring servers.
    let membership: MembershipAgent?
    let antiEntropy: AntiEntropy

    static func assemble(_ configuration: NodeConfiguration, registry: PrometheusCollectorRegistry?, logger: Logger) async throws -> ClusterParts {
        let id = NodeID(configuration.nodeID!)
        let identity = try NodeIdentity.loadOrCreate(directory: configuration.dataDirectory, partitionCount: configuration.partitionCount, logger: logger)
        let partitioning = try Partitioning(partitionCount: identity.partitions)
        let storage = try StorageEngine(
            directory: configuration.dataDirectory + "/storage",
            options: StorageOptions(durability: configuration.durability, cacheBytes: configuration.cacheBytes), logger: logger)
        let hintStorage = try StorageEngine(
            directory: configuration.dataDirectory + "/hints", options: StorageOptions(durability: configuration.durability), logger: logger)
        let membershipPath = configuration.dataDirectory + "/membership.state"
        // A node that joins through ring servers serves from the configuration it last
        // accepted; a static one from the ring of its --peers.
        let restored = configuration.joinsRingServers ? try MembershipAgent.loadState(membershipPath) : nil
        let ring: Ring
        var addresses: [PeerAddress]
        if configuration.joinsRingServers {
            if let held = restored?.configuration, let heldRing = held.ring {
                ring = heldRing
                addresses = held.members.map { PeerAddress(id: $0.id, host: $0.rpcHost, port: Int($0.rpcPort)) }
            } else {
                ring = Ring.initial(members: [id], partitioning: partitioning)
                addresses = [PeerAddress(id: id, host: configuration.rpcHost, port: configuration.rpcPort)]
            }
        } else {
            addresses = configuration.peers.filter { $0.id != id }
            addresses.append(PeerAddress(id: id, host: configuration.rpcHost, port: configuration.rpcPort))
            ring = Ring.initial(members: addresses.map(\.id), partitioning: partitioning)
        }
        var settings = ClusterNode.Settings()
        settings.requestTimeout = configuration.requestTimeout
        settings.rpcClient = .sending(from: configuration.rpcHost)
        let group = MultiThreadedEventLoopGroup.singleton
        let node = ClusterNode(
            id: id, actor: identity.actorID, ring: ring, peers: addresses, storage: storage, hintStorage: hintStorage,
            group: group, settings: settings, isReady: !configuration.joinsRingServers || restored?.configuration?.ring != nil, logger: logger)
        let catalog = try await TableCatalog(storage: storage, partitioning: partitioning, clusterSize: ring.members.count)
        let service = ClusterKeyValueService(node: node, storage: storage)
        var membership: MembershipAgent?
        if configuration.joinsRingServers {
            let me = MemberInfo(
                id: id, rpcHost: configuration.rpcHost, rpcPort: UInt16(configuration.rpcPort),
                httpHost: configuration.httpHost, httpPort: UInt16(configuration.httpPort))
            membership = MembershipAgent(
                me: me, node: node, catalog: catalog, service: service, ringServers: configuration.ringServers,
                restored: restored, statePath: membershipPath, heartbeatInterval: .milliseconds(250),
                primaryLossTimeout: .milliseconds(1500), logger: logger)
        }
        let linearizable = LinearizableEngine(network: ClusterCASPaxosNetwork(node: node), acceptors: node.acceptors, logger: logger)
        var antiEntropySettings = AntiEntropy.Settings()
        if let pause = configuration.antiEntropyPause { antiEntropySettings.pause = pause }
        antiEntropySettings.tombstoneGrace = configuration.tombstoneGrace
        let antiEntropy = AntiEntropy(node: node, tables: { catalog.all }, settings: antiEntropySettings, logger: logger)
        let rpcServer = RPCServer(
            host: configuration.rpcHost, port: configuration.rpcPort,
            handler: PeerRPCHandler(
                node: node, catalog: catalog, service: service, linearizable: linearizable, antiEntropy: antiEntropy, logger: logger,
                membership: membership),
            group: node.engineLoop, logger: logger)
        let started = ContinuousClock.now
        let tables: any TableDirectory = membership.map { JoinedTableDirectory(catalog: catalog, agent: $0) } ?? catalog
        let joined = membership != nil
        let api = NodeHTTPAPI(
            catalog: tables, service: service, linearizable: NodeLinearizableService(engine: linearizable, partitioning: partitioning, node: node),
            cluster: ClusterNodeView(node: node),
            maxValueBytes: configuration.maxValueBytes, registry: registry, logger: logger,
            tablesChanged: { change in
                // Ring servers spread table changes themselves.
                if !joined { await Self.spread(change, node: node, catalog: catalog, logger: logger) }
            }
        ) {
            let uptime = (ContinuousClock.now - started).components.seconds
            return "{\"status\":\"ok\",\"role\":\"node\",\"node\":\(JSONText.quote(id.rawValue)),\"actor\":\"\(identity.actor)\",\"ready\":\(node.isReady),\"keys\":\(storage.statistics.keys),\"uptime_seconds\":\(uptime)}"
        }
        return ClusterParts(
            storage: storage, hintStorage: hintStorage, node: node, catalog: catalog, rpcServer: rpcServer, api: api, membership: membership,
            antiEntropy: antiEntropy)
    }

    /// Tells every peer of a table created or dropped here.
    static func spread(_ change: TableChange, node: ClusterNode, catalog: TableCatalog, logger: Logger) async {
        let message: RPCMessage
        switch change {
        case .created:
            guard let body = try? catalog.encoded() else { return }
            message = RPCMessage(messageType: CatalogMessage.exchange, body: ByteBuffer(bytes: body))
        case .dropped(let name):
            message = RPCMessage(messageType: CatalogMessage.drop, body: ByteBuffer(string: name))
        }
        await node.broadcast(message, logger: logger)
    }
}

/// Runs a cluster member's background parts for the life of the process: the
/// catalogue exchange with peers; on shutdown, stops the RPC server and the node.
struct ClusterService: Service {
    let parts: ClusterParts
    let logger: Logger

    func run() async throws {
        if let membership = parts.membership {
            // Tables come with the ring servers' configuration; nothing to exchange.
            try? await gracefulShutdown()
            parts.antiEntropy.stop()
            await membership.stop()
            await parts.rpcServer.stop()
            await parts.node.stop()
            return
        }
        await exchangeCatalogues()
        while !Task.isShuttingDownGracefully {
            // Wakes at once on shutdown instead of finishing the sleep.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(10)) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            await exchangeCatalogues()
        }
        parts.antiEntropy.stop()
        await parts.rpcServer.stop()
        await parts.node.stop()
    }

    /// Sends this node's tables to every peer and adopts the ones they know.
    private func exchangeCatalogues() async {
        guard let body = try? parts.catalog.encoded() else { return }
        let replies = await parts.node.broadcast(RPCMessage(messageType: CatalogMessage.exchange, body: ByteBuffer(bytes: body)), logger: nil)
        for reply in replies {
            guard let tables = try? JSONDecoder().decode([TableDefinition].self, from: Data(reply.body.readableBytesView)) else { continue }
            try? await parts.catalog.adopt(tables)
        }
    }
}
