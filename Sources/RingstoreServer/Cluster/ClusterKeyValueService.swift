import HTTPTypes
public import RingstoreCore
public import RingstoreStorage

/// The eventual data path over a cluster: every request goes through this node's
/// `ClusterNode`, which coordinates it (or forwards a put to a replica).
public final class ClusterKeyValueService: KeyValueService {
    let node: ClusterNode
    let storage: StorageEngine

    public init(node: ClusterNode, storage: StorageEngine) {
        self.node = node
        self.storage = storage
    }

    public func get(table: TableDefinition, key: [UInt8], r: Int?, done: @escaping @Sendable (Result<ReadResult, any Error>) -> Void) {
        do { try checkReady() } catch { return done(.failure(error)) }
        let item = ItemKey(table: table.name, key: key, partitioning: node.partitioning)
        node.run(.get(item, r: r ?? table.r, n: table.n)) { result in done(Result { try Self.readResult(result) }) }
    }

    public func put(table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        do { try checkReady() } catch { return done(.failure(error)) }
        let item = ItemKey(table: table.name, key: key, partitioning: node.partitioning)
        node.run(.put(item, sibling: sibling, context: context, w: w ?? table.w, n: table.n)) { result in done(Result { try Self.writtenContext(result) }) }
    }

    public func delete(table: TableDefinition, key: [UInt8], context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        put(table: table, key: key, sibling: .tombstone, context: context, w: w, done: done)
    }

    /// Removes this node's copies of a dropped table's keys (every node does the same).
    public func removeAllKeys(of table: String) async throws {
        try await storage.removeAllKeys(ofTable: table)
        node.trees.rebuild(from: storage, now: .now)
    }

    private func checkReady() throws {
        guard !node.isReady else { return }
        if node.hasLeft {
            throw APIError(.serviceUnavailable, code: "unavailable", message: "No replica could take the request: this node has left the cluster; send requests to a ring server or another node.")
        }
        throw APIError.unavailable(code: "cluster_not_formed", message: "This node has not received a ring from the ring servers yet (the cluster forms once enough nodes registered). Retry shortly.")
    }

    /// What a coordinated get answered, as the HTTP API takes it.
    static func readResult(_ result: ClientResult) throws -> ReadResult {
        switch result {
        case .found(let object): return .found(object)
        case .notFound(let context): return .notFound(context: context)
        case .failed(let failure): throw apiError(failure)
        case .written: throw APIError.internalError("internal inconsistency: a read was answered as a write")
        }
    }

    /// The new context of a coordinated put.
    static func writtenContext(_ result: ClientResult) throws -> VersionVector {
        switch result {
        case .written(let context): return context
        case .failed(let failure): throw apiError(failure)
        case .found, .notFound: throw APIError.internalError("internal inconsistency: a write was answered as a read")
        }
    }

    static func apiError(_ failure: ClientFailure) -> APIError {
        var retry = HTTPFields()
        retry[.retryAfter] = "1"
        switch failure {
        case .insufficientReplicas(let have, let need):
            return APIError(.serviceUnavailable, code: "insufficient_replicas",
                            message: "Only \(have) of the \(need) replicas the request needs answered in time; nothing is guaranteed about a write that failed this way. Retry, or lower r/w.", headers: retry)
        case .tooManySiblings(let count, let max):
            return APIError(.conflict, code: "too_many_siblings",
                            message: "This write would leave \(count) concurrent versions of the key; at most \(max) are kept. Read the key and write with its context to resolve them.")
        case .diskFull:
            return APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "disk_full",
                            message: "A replica's disk is full; retry once space is freed.", headers: retry)
        case .storage(let reason):
            return APIError(.internalServerError, code: "storage_error", message: "A replica's storage failed: \(reason).")
        case .unavailable(let reason):
            return APIError(.serviceUnavailable, code: "unavailable", message: "No replica could take the request: \(reason).", headers: retry)
        }
    }
}
