import NIOCore
public import RingstoreClient

/// What a load drives: a cluster over HTTP (nodes or ring servers) or through the
/// partition-aware client over the node protocol.
public enum LoadTarget: Sendable {
    case http(RingstoreHTTPClient)
    case direct(RingstoreClusterClient)

    public enum Mode: String, Sendable, CaseIterable, Codable {
        /// HTTP to the given endpoints (nodes or ring servers), persistent connections.
        case http
        /// The partition-aware client: straight to a home replica over the node protocol.
        case direct
        /// The same client through the ring servers: each request over the node
        /// protocol to a ring server, which passes it on to a coordinator.
        case ring
    }

    public init(mode: Mode, endpoints: [Endpoint]) {
        switch mode {
        case .http: self = .http(RingstoreHTTPClient(endpoints: endpoints))
        case .direct: self = .direct(RingstoreClusterClient(endpoints: endpoints))
        case .ring:
            var configuration = ClusterClientConfiguration()
            configuration.routing = .throughRingServers
            self = .direct(RingstoreClusterClient(endpoints: endpoints, configuration: configuration))
        }
    }

    /// The target task `task` uses: the same client, or for HTTP one whose first
    /// endpoint is the task's share, so that tasks spread over the endpoints as behind
    /// a load balancer.
    public func forTask(_ task: Int) -> LoadTarget {
        guard case .http(let client) = self, client.endpoints.count > 1 else { return self }
        let first = task % client.endpoints.count
        let rotated = Array(client.endpoints[first...] + client.endpoints[..<first])
        return .http(RingstoreHTTPClient(endpoints: rotated, group: client.group))
    }

    /// Reads `key`; returns the context to write it with next.
    func read(table: String, key: String) async throws -> String? {
        let outcome = switch self {
        case .http(let client): try await client.get(table: table, key: key)
        case .direct(let client): try await client.get(table: table, key: key)
        }
        switch outcome {
        case .value(_, _, let context), .siblings(_, let context): return context
        case .notFound(let context): return context
        }
    }

    /// Writes `value` over what `context` saw; returns the new context.
    func update(table: String, key: String, value: [UInt8], context: String?) async throws -> String? {
        switch self {
        case .http(let client):
            try await client.put(table: table, key: key, value: value, contentType: "application/octet-stream", context: context)
        case .direct(let client):
            try await client.put(table: table, key: key, value: value, contentType: "application/octet-stream", context: context)
        }
    }

    /// Adds 1 to the counter `key` of a linearizable table.
    func cas(table: String, key: String) async throws {
        guard case .http(let client) = self else { throw LoadError.unsupported("compare-and-set needs --mode http") }
        let reply = try await client.send(method: "POST", path: RingstoreHTTPClient.keyPath(table: table, key: key) + "/add?delta=1")
        guard (200..<300).contains(reply.status) else { throw LoadError.refused(status: reply.status, body: reply.bodyText) }
    }

    /// Sends a request to the first endpoint that answers (tables and health).
    func send(method: String, path: String, body: [UInt8]? = nil) async throws -> HTTPReply {
        switch self {
        case .http(let client): try await client.send(method: method, path: path, body: body)
        case .direct(let client):
            try await RingstoreHTTPClient(endpoints: client.endpoints).send(method: method, path: path, body: body)
        }
    }

    /// Where load tasks run without a thread hop per request: the client's event loop.
    var taskExecutor: EventLoopTaskExecutor {
        switch self {
        case .direct(let client): client.taskExecutor
        case .http(let client): EventLoopTaskExecutor(eventLoop: client.group.next())
        }
    }

    public func shutdown() async {
        if case .direct(let client) = self { await client.shutdown() }
    }
}

/// Why a load could not run, or why one request failed.
public enum LoadError: Error, Sendable, CustomStringConvertible {
    case unsupported(String)
    case refused(status: Int, body: String)
    case table(String)

    public var description: String {
        switch self {
        case .unsupported(let reason): reason
        case .refused(let status, let body): "HTTP \(status): \(body.prefix(200))"
        case .table(let reason): reason
        }
    }
}
