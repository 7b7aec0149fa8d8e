import Foundation
public import NIOCore
public import NIOPosix
import RingstoreCore
import RingstoreRPC
import Synchronization

/// Settings of a `RingstoreClusterClient`.
public struct ClusterClientConfiguration: Sendable {
    /// How long one call to a node may take. Longer than a node's own quorum deadline
    /// (2 s by default), so that a node's `insufficient_replicas` answer arrives first.
    public var requestTimeout: TimeAmount = .seconds(5)
    /// How long connecting to a node may take before the next node is tried.
    public var connectTimeout: TimeAmount = .seconds(1)
    /// How long a node that could not be reached (or did not answer) is passed over.
    public var nodePassOverDuration: TimeAmount = .seconds(1)
    /// How often the ring and the tables are fetched again while the client lives.
    public var ringRefreshInterval: TimeAmount = .seconds(5)
    /// The least time between two fetches that failures or stale replies trigger.
    public var ringRefreshSpacing: TimeAmount = .milliseconds(500)
    /// Deadline of one ring or table fetch from one endpoint.
    public var ringFetchTimeout: TimeAmount = .seconds(2)
    /// Deadline of one request on the HTTP path.
    public var httpTimeout: TimeAmount = .seconds(10)
    /// Values up to this size go straight to a node; larger ones go over HTTP, where the
    /// node checks them against its own `--max-value-bytes`. The node protocol does not
    /// carry that setting yet, so this defaults to the nodes' default limit (1 MiB).
    public var directValueBytesMax: Int = 1 << 20
    /// Where requests go over the node protocol.
    public var routing: ClusterClientRouting = .partitionAware

    /// The defaults above.
    public init() {}
}

/// Where a `RingstoreClusterClient` sends requests over the node protocol.
public enum ClusterClientRouting: Sendable {
    /// Straight to a coordinator of the key (Dynamo §6.4): the fewest hops.
    case partitionAware
    /// To the ring servers, which pass each request on to a coordinator of the key
    /// (a load balancer's place in Dynamo §6.4): one hop more, and no ring to hold
    /// beyond the ring servers' addresses. Used when the ring lists ring servers;
    /// otherwise requests go straight to coordinators.
    case throughRingServers
}

/// Counts of what a `RingstoreClusterClient` did, since it was created.
public struct ClusterClientStatistics: Sendable, Equatable {
    /// Requests a node answered over the node protocol.
    public var directReplies: Int
    /// Times a request moved on to the next node of its key's preference list.
    public var nodeFailovers: Int
    /// Requests sent over HTTP: no usable ring, a table the ring did not list, a
    /// linearizable table, a large value, or no node of the preference list answered.
    public var httpRequests: Int
    /// Ring fetches that succeeded (whether or not the ring had changed).
    public var ringFetches: Int
}

/// A partition-aware Ringstore client (Dynamo §6.4): it fetches the ring and the
/// tables from the HTTP endpoints it is given (ring servers or any nodes), hashes each
/// key to its partition, and sends the request straight to a coordinator of the key
/// over the framed node protocol, sparing a hop and HTTP parsing.
///
/// - A request goes to the first node of the key's preference list that is not being
///   passed over; when that node cannot be reached, or answers that it cannot
///   coordinate the key, the next node of the list is tried; when none answers, the
///   request goes over HTTP to the endpoints.
/// - A write whose reply was lost after it reached a node (a timeout, a closed
///   connection) is not sent again: it fails with `TransportError.writeOutcomeUnknown`,
///   because a second copy would become a sibling.
/// - The ring is fetched before the first request, every `ringRefreshInterval`, and
///   whenever a node cannot be reached or a reply shows that the client's ring is
///   stale. A ring with a lower epoch than the one in use is ignored. When no endpoint
///   serves a ring, the client keeps the ring it has: nodes keep serving without the
///   ring servers.
/// - Contexts are the same opaque base64 strings as HTTP's `X-Ringstore-Context`, so a
///   program may mix this client, the HTTP client and curl.
/// - With `ClusterClientConfiguration.routing` set to `.throughRingServers`, requests
///   go over the node protocol to the ring servers the ring lists instead, which pass
///   each on to a coordinator; the client keeps to the first while it answers.
///
/// Thread-safe: any number of tasks may call it at once. The owner MUST call
/// `shutdown()` when done, which closes the node connections.
public final class RingstoreClusterClient: Sendable {
    /// The HTTP endpoints the ring is fetched from, and the HTTP path's first choices.
    public let endpoints: [Endpoint]
    /// The settings the client was created with.
    public let configuration: ClusterClientConfiguration
    /// The event loop that owns every node connection. Futures complete on it; code
    /// running on it calls the nodes without a thread hop.
    public let eventLoop: any EventLoop
    /// Runs tasks on `eventLoop`. A task that prefers it
    /// (`withTaskExecutorPreference(client.taskExecutor) { … }`) makes its requests
    /// without a thread hop, which is what a load generator or a proxy on a busy
    /// machine wants; it MUST NOT block.
    public let taskExecutor: EventLoopTaskExecutor

    private let group: any EventLoopGroup
    private let configuredHTTP: RingstoreHTTPClient
    private let state = Mutex(State())
    private let counters = Counters()

    enum Route: Sendable {
        /// No ring fetched yet.
        case unknown
        /// No usable ring: every request goes over HTTP.
        case http(RingstoreHTTPClient)
        /// Requests go to nodes.
        case direct(RoutingTable)
    }

    private struct State {
        var route: Route = .unknown
        var refresh: Task<Void, Never>?
        var lastRefreshStarted: NIODeadline?
        var periodic: Task<Void, Never>?
        var retired: [RPCClient] = []
        var isShutDown = false
    }

    private final class Counters: Sendable {
        let directReplies = Atomic<Int>(0)
        let nodeFailovers = Atomic<Int>(0)
        let httpRequests = Atomic<Int>(0)
        let ringFetches = Atomic<Int>(0)
    }

    /// Creates a client of the cluster behind `endpoints`; nothing is fetched or
    /// connected until the first request (or `refreshRing()`).
    ///
    /// - Parameter group: where connections live; the client keeps every node
    ///   connection on one of its loops.
    public init(
        endpoints: [Endpoint], configuration: ClusterClientConfiguration = ClusterClientConfiguration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        precondition(!endpoints.isEmpty, "a client needs at least one endpoint")
        precondition(
            configuration.requestTimeout > .zero && configuration.ringRefreshInterval > .zero && configuration.ringFetchTimeout > .zero,
            "timeouts and the ring refresh interval must be positive")
        self.endpoints = endpoints
        self.configuration = configuration
        self.group = group
        self.eventLoop = group.next()
        self.taskExecutor = EventLoopTaskExecutor(eventLoop: eventLoop)
        self.configuredHTTP = RingstoreHTTPClient(endpoints: endpoints, timeout: configuration.httpTimeout, group: group)
        let interval = configuration.ringRefreshInterval
        let periodic = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .nanoseconds(interval.nanoseconds))
                guard !Task.isCancelled, let client = self else { return }
                await client.refreshRing()
            }
        }
        state.withLock { $0.periodic = periodic }
    }

    deinit {
        state.withLock { $0.periodic?.cancel() }
    }

    /// Stops the periodic ring fetch and closes every node connection. Requests still
    /// waiting for a node fail; later requests fail at once.
    public func shutdown() async {
        let (connections, http, periodic) = state.withLock { state -> ([RPCClient], RingstoreHTTPClient?, Task<Void, Never>?) in
            state.isShutDown = true
            var clients = state.retired
            var http: RingstoreHTTPClient?
            if case .direct(let table) = state.route {
                clients += table.nodes.values.map(\.rpc)
                http = table.http
            }
            state.retired = []
            state.route = .http(configuredHTTP)
            return (clients, http, state.periodic)
        }
        periodic?.cancel()
        http?.closeIdleConnections()
        configuredHTTP.closeIdleConnections()
        for client in connections { await client.shutdown() }
    }

    // MARK: Observing

    /// The epoch of the ring requests are routed by; nil while every request goes over HTTP.
    public var ringEpoch: UInt64? {
        guard case .direct(let table) = state.withLock({ $0.route }) else { return nil }
        return table.epoch
    }

    /// What the client did so far.
    public var statistics: ClusterClientStatistics {
        ClusterClientStatistics(
            directReplies: counters.directReplies.load(ordering: .relaxed),
            nodeFailovers: counters.nodeFailovers.load(ordering: .relaxed),
            httpRequests: counters.httpRequests.load(ordering: .relaxed),
            ringFetches: counters.ringFetches.load(ordering: .relaxed))
    }

    // MARK: Requests

    /// Reads a key. `r` overrides the table's read quorum (1 to its N).
    ///
    /// Throws `RingstoreError` for refused input or a failed quorum (the same status,
    /// code and message as the HTTP API) and `TransportError` when nothing answered.
    public func get(table: String = "default", key: String, r: Int? = nil) async throws -> ReadOutcome {
        let keyBytes = try ClientInput.checkedKey(key)
        let route = try await currentRoute()
        if let (routing, settings) = directRoute(route, table: table) {
            let quorum = try ClientInput.quorum("r", r, n: settings.n) ?? settings.r
            let item = ItemKey(table: table, key: keyBytes, partitioning: routing.partitioning)
            if !routing.throughRouters, let result = await readReplicas(item, r: quorum, n: settings.n, routing: routing) {
                return try ClientReplies.readOutcome(result)
            }
            let request = Self.message(.coordinate(.get(item, r: quorum, n: settings.n)))
            if let result = try await send(request, to: routing.candidates(for: item.partition, n: settings.n), isWrite: false) {
                return try ClientReplies.readOutcome(result)
            }
        }
        counters.httpRequests.add(1, ordering: .relaxed)
        return try await http(route).get(table: table, key: key, r: r)
    }

    /// Stores a value as a new version that supersedes what `context` (from a read)
    /// saw; without a context it is concurrent with every stored version. `w`
    /// overrides the table's write quorum. Returns the new context.
    @discardableResult
    public func put(
        table: String = "default", key: String, value: [UInt8], contentType: String? = nil, context: String? = nil, w: Int? = nil
    ) async throws -> String {
        let keyBytes = try ClientInput.checkedKey(key)
        try ClientInput.checkValue(byteCount: value.count)
        let storedType = contentType ?? ClientInput.defaultContentType
        try ClientInput.checkContentType(storedType)
        let version = try ClientInput.decodeContext(context)
        let route = try await currentRoute()
        if value.count <= configuration.directValueBytesMax, let (routing, settings) = directRoute(route, table: table) {
            let quorum = try ClientInput.quorum("w", w, n: settings.n) ?? settings.w
            let item = ItemKey(table: table, key: keyBytes, partitioning: routing.partitioning)
            let sibling = Sibling(contentType: storedType, data: value)
            let request = Self.message(.coordinate(.put(item, sibling: sibling, context: version, w: quorum, n: settings.n)))
            if let result = try await send(request, to: routing.candidates(for: item.partition, n: settings.n), isWrite: true) {
                return try ClientReplies.writtenContext(result)
            }
        }
        counters.httpRequests.add(1, ordering: .relaxed)
        return try await http(route).put(table: table, key: key, value: value, contentType: contentType, context: context, w: w)
    }

    /// Deletes a key: writes a tombstone that supersedes what `context` saw. `w`
    /// overrides the table's write quorum. Returns the new context.
    @discardableResult
    public func delete(table: String = "default", key: String, context: String? = nil, w: Int? = nil) async throws -> String {
        let keyBytes = try ClientInput.checkedKey(key)
        let version = try ClientInput.decodeContext(context)
        let route = try await currentRoute()
        if let (routing, settings) = directRoute(route, table: table) {
            let quorum = try ClientInput.quorum("w", w, n: settings.n) ?? settings.w
            let item = ItemKey(table: table, key: keyBytes, partitioning: routing.partitioning)
            let request = Self.message(.coordinate(.put(item, sibling: .tombstone, context: version, w: quorum, n: settings.n)))
            if let result = try await send(request, to: routing.candidates(for: item.partition, n: settings.n), isWrite: true) {
                return try ClientReplies.writtenContext(result)
            }
        }
        counters.httpRequests.add(1, ordering: .relaxed)
        return try await http(route).delete(table: table, key: key, context: context, w: w)
    }

    // MARK: Routing

    /// The route to use now; the first request waits for the first ring fetch.
    private func currentRoute() async throws -> Route {
        let (route, isShutDown) = state.withLock { ($0.route, $0.isShutDown) }
        guard !isShutDown else {
            throw TransportError.unreachable(endpoints: endpoints, reason: "the client was shut down")
        }
        guard case .unknown = route else { return route }
        await refreshRing()
        return state.withLock { $0.route }
    }

    /// The routing table and the table's settings when a request on `table` can go
    /// straight to a node, else nil (HTTP).
    private func directRoute(_ route: Route, table: String) -> (RoutingTable, TableSettings)? {
        guard case .direct(let routing) = route else { return nil }
        guard let settings = routing.tables[table] else {
            // Perhaps created since the last fetch; HTTP answers meanwhile (or says it does not exist).
            requestRefresh()
            return nil
        }
        return settings.isEventual ? (routing, settings) : nil
    }

    private func http(_ route: Route) -> RingstoreHTTPClient {
        switch route {
        case .direct(let routing): routing.http
        case .http(let client): client
        case .unknown: configuredHTTP
        }
    }

    private static func message(_ request: PeerRequest) -> RPCMessage {
        let (type, body) = PeerCodec.encode(request)
        return RPCMessage(messageType: type, body: ByteBuffer(bytes: body))
    }

    /// Reads the key from its first `r` home replicas at once, without a coordinator:
    /// when they all hold the same versions, that is what a coordinator asking them
    /// would answer, with nothing to repair. Nil, for the coordinated read to follow,
    /// when fewer than `r` of the first `n` nodes are available, when one does not
    /// answer or refuses (it is not a home replica by its ring: the client's ring may
    /// be stale), or when the replicas differ (the coordinator merges them and
    /// repairs the ones behind).
    private func readReplicas(_ key: ItemKey, r: Int, n: Int, routing: RoutingTable) async -> ClientResult? {
        let replicas = routing.candidates(for: key.partition, n: n).prefix(n).filter(\.isAvailable).prefix(r)
        guard replicas.count == r else { return nil }
        let request = Self.message(.homeRead(key, n: n))
        let calls = replicas.map { ($0, $0.rpc.callFuture(request, timeout: configuration.requestTimeout)) }
        var objects: [StoredObject?] = []
        for (node, call) in calls {
            let reply: RPCMessage
            do {
                reply = try await call.get()
            } catch {
                counters.nodeFailovers.add(1, ordering: .relaxed)
                try? noteFailure(error, of: node, isWrite: false)
                continue
            }
            node.answered()
            switch try? PeerCodec.decodeReply(type: reply.messageType, body: Array(reply.body.readableBytesView)) {
            case .replicaRead(let object)?: objects.append(object)
            default: requestRefresh()  // refused: this client's ring may be stale
            }
        }
        guard objects.count == r, objects.dropFirst().allSatisfy({ $0 == objects[0] }) else { return nil }
        counters.directReplies.add(1, ordering: .relaxed)
        return .read(objects[0])
    }

    /// Sends `request` to the first candidate that answers it; nil when none did and
    /// the request may go over HTTP.
    private func send(_ request: RPCMessage, to candidates: ArraySlice<NodeConnection>, isWrite: Bool) async throws -> ClientResult? {
        var attempts = 0
        for node in candidates where node.isAvailable {
            if attempts > 0 { counters.nodeFailovers.add(1, ordering: .relaxed) }
            attempts += 1
            let reply: RPCMessage
            do {
                reply = try await node.rpc.call(request, timeout: configuration.requestTimeout)
            } catch {
                try noteFailure(error, of: node, isWrite: isWrite)
                continue
            }
            node.answered()
            switch ClientReplies.decode(reply) {
            case .result(let result):
                counters.directReplies.add(1, ordering: .relaxed)
                return result
            case .notCoordinated:
                // The node is not a replica of the key by its ring (or thinks a home
                // replica is up that this client passed over): ours may be stale.
                requestRefresh()
            case .undecodable(let reason):
                if isWrite {
                    throw TransportError.writeOutcomeUnknown(node: node.id, address: node.address, reason: "undecodable reply: \(reason)")
                }
            }
        }
        return nil
    }

    /// Decides what a failed call means: throws when the request must not go on to
    /// another node, otherwise marks the node and lets the caller try the next one.
    private func noteFailure(_ error: any Error, of node: NodeConnection, isWrite: Bool) throws {
        guard let error = error as? RPCError else {
            if isWrite { throw TransportError.writeOutcomeUnknown(node: node.id, address: node.address, reason: "\(error)") }
            return
        }
        switch error {
        case .connectionFailed:
            // Never sent: safe to send elsewhere. The node may have left the ring.
            node.passOver(for: configuration.nodePassOverDuration)
            requestRefresh()
        case .remote(PeerCodec.outcomeUnknownCode, let message) where isWrite:
            // A ring server passed the write on and its coordinator did not answer.
            throw TransportError.writeOutcomeUnknown(node: node.id, address: node.address, reason: message)
        case .overloaded, .remote:
            // Never run there (too many calls on the connection, or refused by the node).
            return
        case .frameTooLarge(let bytes, let max):
            throw RingstoreError(
                status: 413, code: "value_too_large",
                message: "The request is \(bytes) bytes; the node protocol carries at most \(max) bytes in one message.")
        case .timedOut, .connectionClosed, .shutdown, .malformedFrame:
            node.passOver(for: configuration.nodePassOverDuration)
            requestRefresh()
            if isWrite { throw TransportError.writeOutcomeUnknown(node: node.id, address: node.address, reason: error.description) }
        }
    }

    // MARK: The ring

    /// Fetches the ring and the tables now and adopts them; a call while a fetch is
    /// running waits for that fetch instead of starting another.
    public func refreshRing() async {
        guard let task = startRefresh(force: true) else { return }
        await task.value
    }

    /// Starts a fetch in the background unless one ran within `ringRefreshSpacing`.
    private func requestRefresh() {
        _ = startRefresh(force: false)
    }

    private func startRefresh(force: Bool) -> Task<Void, Never>? {
        let now = NIODeadline.now()
        let spacing = configuration.ringRefreshSpacing
        return state.withLock { state -> Task<Void, Never>? in
            if state.isShutDown { return nil }
            if let running = state.refresh { return running }
            if !force, let last = state.lastRefreshStarted, now - last < spacing { return nil }
            state.lastRefreshStarted = now
            let task = Task {
                await self.fetchRing()
                self.state.withLock { $0.refresh = nil }
            }
            state.refresh = task
            return task
        }
    }

    /// Asks each endpoint in turn (then the members' HTTP addresses) for the ring and
    /// the tables, and adopts the first answer.
    private func fetchRing() async {
        var sources = endpoints
        if case .direct(let routing) = state.withLock({ $0.route }) {
            for endpoint in routing.http.endpoints where !sources.contains(endpoint) { sources.append(endpoint) }
        }
        for endpoint in sources {
            guard let (document, tables) = await fetch(from: endpoint) else { continue }
            counters.ringFetches.add(1, ordering: .relaxed)
            adopt(document, tables: tables)
            return
        }
        // Nothing served a ring: a ring already known stays in use (the nodes keep
        // serving it); before any, requests go over HTTP, which reports what is wrong.
        state.withLock { state in
            if case .unknown = state.route { state.route = .http(configuredHTTP) }
        }
    }

    private func fetch(from endpoint: Endpoint) async -> (RingDocument, [String: TableSettings])? {
        do {
            let ringReply = try await configuredHTTP.send(
                to: endpoint, method: "GET", path: "/v1/cluster/ring", timeout: configuration.ringFetchTimeout)
            guard ringReply.status == 200 else { return nil }
            let document = try JSONDecoder().decode(RingDocument.self, from: Data(ringReply.body))
            let tablesReply = try await configuredHTTP.send(
                to: endpoint, method: "GET", path: "/v1/tables", timeout: configuration.ringFetchTimeout)
            guard tablesReply.status == 200 else { return nil }
            let tables = try JSONDecoder().decode(TablesDocument.self, from: Data(tablesReply.body))
            return (document, tables.settings)
        } catch {
            return nil
        }
    }

    /// Adopts a fetched ring unless it is older than the one in use, reusing the
    /// connections of members whose address did not change.
    func adopt(_ document: RingDocument, tables: [String: TableSettings]) {
        let dropped = state.withLock { state -> [NodeConnection] in
            guard !state.isShutDown else { return [] }
            let current: RoutingTable? = if case .direct(let routing) = state.route { routing } else { nil }
            var document = document
            if let current, document.epoch < current.epoch {
                // A ring server that has not caught up: keep the newer ring, take the tables.
                guard current.tables != tables else { return [] }
                document = current.document
            }
            if let current, current.document == document, current.tables == tables { return [] }
            let next = makeRoutingTable(document, tables: tables, reusing: current?.nodes ?? [:])
            state.route = next.map(Route.direct) ?? .http(httpClient(for: document))
            let kept = Set((next?.nodes.values).map { $0.map(ObjectIdentifier.init) } ?? [])
            let dropped = (current?.nodes.values).map { Array($0) } ?? []
            return dropped.filter { !kept.contains(ObjectIdentifier($0)) }
        }
        retire(dropped)
    }

    /// A routing table for `document`, or nil when no owner has an RPC address.
    private func makeRoutingTable(
        _ document: RingDocument, tables: [String: TableSettings], reusing existing: [String: NodeConnection]
    ) -> RoutingTable? {
        guard let partitioning = try? Partitioning(partitionCount: document.partitions),
              let ring = try? Ring(partitioning: partitioning, owners: document.owners.map(NodeID.init), epoch: document.epoch)
        else { return nil }
        var nodes: [String: NodeConnection] = [:]
        for member in document.members ?? [] {
            guard let (host, port) = member.rpc.flatMap(splitHostPort) else { continue }
            if let known = existing[member.id], known.address == "\(host):\(port)" {
                nodes[member.id] = known
            } else {
                nodes[member.id] = NodeConnection(
                    id: member.id, host: host, port: port, eventLoop: eventLoop, connectTimeout: configuration.connectTimeout)
            }
        }
        guard ring.members.contains(where: { nodes[$0.rawValue] != nil }) else { return nil }
        var routers: [NodeConnection]?
        if configuration.routing == .throughRingServers, let ringServers = document.ringServers, !ringServers.isEmpty {
            // Keyed apart from the members, whose ids they may share.
            routers = ringServers.compactMap { ringServer in
                guard let (host, port) = ringServer.rpc.flatMap(splitHostPort) else { return nil }
                let key = "ring server \(ringServer.id)"
                let connection = existing[key].flatMap { $0.address == "\(host):\(port)" ? $0 : nil }
                    ?? NodeConnection(id: ringServer.id, host: host, port: port, eventLoop: eventLoop, connectTimeout: configuration.connectTimeout)
                nodes[key] = connection
                return connection
            }
        }
        return RoutingTable(document: document, ring: ring, nodes: nodes, tables: tables, http: httpClient(for: document), routers: routers)
    }

    /// The HTTP path for a ring: the configured endpoints first, then the members'.
    private func httpClient(for document: RingDocument) -> RingstoreHTTPClient {
        var all = endpoints
        for member in document.members ?? [] {
            guard let text = member.http, !text.isEmpty, let endpoint = Endpoint(parsing: text), !all.contains(endpoint) else { continue }
            all.append(endpoint)
        }
        return all == endpoints ? configuredHTTP : RingstoreHTTPClient(endpoints: all, timeout: configuration.httpTimeout, group: group)
    }

    /// Closes connections to members that left, once calls already sent on them are over.
    private func retire(_ nodes: [NodeConnection]) {
        guard !nodes.isEmpty else { return }
        let clients = nodes.map(\.rpc)
        state.withLock { $0.retired += clients }
        let grace = configuration.requestTimeout
        Task {
            try? await Task.sleep(for: .nanoseconds(grace.nanoseconds))
            for client in clients { await client.shutdown() }
            self.state.withLock { state in
                state.retired.removeAll { retired in clients.contains { $0 === retired } }
            }
        }
    }
}
