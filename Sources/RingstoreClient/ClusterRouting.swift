import Foundation
import NIOCore
import RingstoreCore
import RingstoreRPC
import Synchronization

/// A storage node as the cluster client reaches it: one persistent RPC connection,
/// and how long to pass the node over after it failed.
final class NodeConnection: Sendable {
    /// The node's id in the ring ("n1").
    let id: String
    /// Where the node serves the node protocol, `host:port`.
    let address: String
    let rpc: RPCClient
    /// `NIODeadline` uptime nanoseconds until which requests skip this node; 0 when
    /// it last answered. Read on every request, so it is kept lock-free.
    private let passedOverUntil = Atomic<UInt64>(0)

    init(id: String, host: String, port: Int, eventLoop: any EventLoop, connectTimeout: TimeAmount) {
        self.id = id
        self.address = "\(host):\(port)"
        self.rpc = RPCClient(
            host: host, port: port, group: eventLoop,
            configuration: RPCClientConfiguration(connectTimeout: connectTimeout))
    }

    /// Whether requests should try this node now (it is not within a pass-over window).
    var isAvailable: Bool {
        let until = passedOverUntil.load(ordering: .relaxed)
        return until == 0 || NIODeadline.now().uptimeNanoseconds >= until
    }

    /// Makes requests skip this node for `duration`.
    func passOver(for duration: TimeAmount) {
        let until = NIODeadline.now().uptimeNanoseconds &+ UInt64(max(duration.nanoseconds, 1))
        passedOverUntil.store(until, ordering: .relaxed)
    }

    /// The node answered: requests use it again at once.
    func answered() {
        if passedOverUntil.load(ordering: .relaxed) != 0 { passedOverUntil.store(0, ordering: .relaxed) }
    }
}

/// A table's settings as the client needs them to address replicas itself.
struct TableSettings: Sendable, Equatable {
    var n: Int
    var r: Int
    var w: Int
    /// Only eventual tables take the direct path; linearizable ones need HTTP's preconditions.
    var isEventual: Bool
}

/// Everything one request needs to pick its coordinator, built once per ring and
/// read without locks: the partitioning, each partition's preference list as
/// connections, and the tables' quorums.
final class RoutingTable: Sendable {
    let epoch: UInt64
    let partitioning: Partitioning
    /// Every member with an RPC address, by id.
    let nodes: [String: NodeConnection]
    /// For each partition (index = partition number), the first nodes of its
    /// preference list that the client can reach, owner first.
    let preference: [[NodeConnection]]
    let tables: [String: TableSettings]
    /// The HTTP path: the configured endpoints, then the members' HTTP addresses.
    let http: RingstoreHTTPClient
    /// The ring as served, for refreshes to compare against.
    let document: RingDocument
    /// Whether every request goes to the ring servers (`routers`), which then also
    /// take reads that the client would otherwise send to replicas itself.
    let throughRouters: Bool

    /// - Parameter routers: when set, every partition's candidates are these (ring
    ///   servers, which pass each request on to a coordinator), in this order: one
    ///   client keeps to one ring server while it answers, so that the server reads
    ///   and writes its requests in large batches; else the partition's preference
    ///   list.
    init(
        document: RingDocument, ring: Ring, nodes: [String: NodeConnection], tables: [String: TableSettings], http: RingstoreHTTPClient,
        routers: [NodeConnection]? = nil
    ) {
        self.epoch = ring.epoch
        self.partitioning = ring.partitioning
        self.nodes = nodes
        self.tables = tables
        self.http = http
        self.document = document
        self.throughRouters = !(routers ?? []).isEmpty
        if let routers, !routers.isEmpty {
            self.preference = Array(repeating: routers, count: ring.partitioning.partitionCount)
            return
        }
        // A preference list longer than the most replicas plus a few fallbacks is never walked.
        let listCount = min(ring.members.count, Limits.replicasMax + RoutingTable.fallbacksTried)
        var lists: [[NodeConnection]] = []
        lists.reserveCapacity(ring.partitioning.partitionCount)
        var cache: [[NodeID]: [NodeConnection]] = [:]
        for partition in ring.partitioning.allPartitions {
            let ids = ring.preferenceList(for: partition, count: listCount)
            if let known = cache[ids] {
                lists.append(known)
            } else {
                let connections = ids.compactMap { nodes[$0.rawValue] }
                cache[ids] = connections
                lists.append(connections)
            }
        }
        self.preference = lists
    }

    /// Nodes tried past a table's N replicas before the HTTP fallback.
    static let fallbacksTried = 2

    /// The nodes to try for a key of a table with `n` replicas, in order.
    func candidates(for partition: PartitionID, n: Int) -> ArraySlice<NodeConnection> {
        preference[Int(partition.rawValue)].prefix(n + Self.fallbacksTried)
    }
}

/// `GET /v1/cluster/ring` as the client reads it; unknown fields are ignored.
struct RingDocument: Decodable, Sendable, Equatable {
    struct Member: Decodable, Sendable, Equatable {
        var id: String
        /// `host:port` of the node protocol; empty or absent when unknown.
        var rpc: String?
        /// `host:port` of the HTTP API; empty or absent when unknown.
        var http: String?
    }

    var partitions: Int
    var epoch: UInt64
    var owners: [String]
    var members: [Member]?
    /// The ring servers' node-protocol addresses, when a ring server serves the ring.
    var ringServers: [Member]?

    enum CodingKeys: String, CodingKey {
        case partitions, epoch, owners, members
        case ringServers = "ring_servers"
    }
}

/// `GET /v1/tables` as the client reads it.
struct TablesDocument: Decodable, Sendable {
    struct Table: Decodable, Sendable {
        var name: String
        var n: Int
        var r: Int
        var w: Int
        var consistency: String
    }

    var tables: [Table]

    var settings: [String: TableSettings] {
        var result: [String: TableSettings] = [:]
        for table in tables where (1...Limits.replicasMax).contains(table.n) && (1...table.n).contains(table.r) && (1...table.n).contains(table.w) {
            result[table.name] = TableSettings(n: table.n, r: table.r, w: table.w, isEventual: table.consistency == "eventual")
        }
        return result
    }
}

/// Splits `host:port` (IPv6 hosts in brackets); nil for an empty or malformed address.
func splitHostPort(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
        return nil
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { return nil }
    return (host, port)
}
