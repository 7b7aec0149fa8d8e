import Foundation
import HTTPTypes
public import RingstoreCore
public import RingstoreStorage
import Synchronization

/// How a table keeps its keys.
public enum Consistency: String, Codable, Sendable {
    /// Dynamo: always writable, concurrent writes kept as siblings.
    case eventual
    /// Per-key compare-and-set with CASPaxos: every operation sees the latest value.
    case linearizable
}

/// A table's properties, as `PUT /v1/tables/{name}` takes and `GET` returns them.
public struct TableDefinition: Codable, Sendable, Equatable {
    public var name: String
    /// Replicas of every key.
    public var n: Int
    /// Default read quorum.
    public var r: Int
    /// Default write quorum.
    public var w: Int
    public var consistency: Consistency

    public init(name: String, n: Int, r: Int, w: Int, consistency: Consistency) {
        self.name = name
        self.n = n
        self.r = r
        self.w = w
        self.consistency = consistency
    }
}

/// Where the HTTP API finds and changes tables: a node's own catalogue, or the
/// configuration a ring server holds for the whole cluster.
public protocol TableDirectory: Sendable {
    func table(named name: String) -> TableDefinition?
    /// Every table, sorted by name.
    var all: [TableDefinition] { get }
    /// Creates a table, or confirms one with the same properties; says whether it was created.
    func create(name: String, request: TableRequest) async throws -> (TableDefinition, created: Bool)
    /// Removes a table; its keys are removed by the caller.
    func remove(name: String) async throws -> TableDefinition
}

/// The body of `PUT /v1/tables/{name}`: every field optional.
public struct TableRequest: Decodable, Sendable {
    public var n: Int?
    public var r: Int?
    public var w: Int?
    public var consistency: Consistency?

    public init(n: Int? = nil, r: Int? = nil, w: Int? = nil, consistency: Consistency? = nil) {
        self.n = n
        self.r = r
        self.w = w
        self.consistency = consistency
    }
}

/// The tables of this cluster, kept in memory and persisted as one record in the
/// storage engine (table `_system`, key `tables`), so that a restart finds them.
///
/// Thread safety: all methods may be called concurrently; changes are serialised.
public final class TableCatalog: TableDirectory {
    static let systemTable = "_system"
    static let catalogKey = Array("tables".utf8)
    public static let defaultTableName = "default"

    private let storage: StorageEngine
    private let partitioning: Partitioning
    private let clusterSize: Int
    private let tables: Mutex<[String: TableDefinition]>
    /// Serialises changes so two creations of one table cannot both succeed.
    private let changeLock = AsyncLock()

    /// Loads the catalogue, creating the `default` table if it is missing.
    public init(storage: StorageEngine, partitioning: Partitioning, clusterSize: Int) async throws {
        self.storage = storage
        self.partitioning = partitioning
        self.clusterSize = clusterSize
        let partition = partitioning.partition(table: Self.systemTable, key: Self.catalogKey)
        let stored = try storage.get(partition: partition, key: StorageKeyCodec.encode(table: Self.systemTable, key: Self.catalogKey))
        var tables: [String: TableDefinition] = [:]
        if let stored {
            for table in try JSONDecoder().decode([TableDefinition].self, from: Data(stored)) { tables[table.name] = table }
        }
        let missingDefault = tables[Self.defaultTableName] == nil
        if missingDefault {
            tables[Self.defaultTableName] = Self.defaults(name: Self.defaultTableName, clusterSize: clusterSize)
        }
        self.tables = Mutex(tables)
        if missingDefault { try await persist() }
    }

    /// The defaults a new table gets: N=3, R=W=2, or all nodes and majorities in a smaller cluster.
    static func defaults(name: String, clusterSize: Int) -> TableDefinition {
        let n = min(3, clusterSize)
        let majority = n / 2 + 1
        return TableDefinition(name: name, n: n, r: majority, w: majority, consistency: .eventual)
    }

    public func table(named name: String) -> TableDefinition? {
        tables.withLock { $0[name] }
    }

    public var all: [TableDefinition] {
        tables.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }

    /// Creates a table, or confirms one that exists with the same properties.
    /// Returns whether it was created.
    public func create(name: String, request: TableRequest) async throws -> (TableDefinition, created: Bool) {
        do { try Validation.checkTableName(name) } catch { throw APIError(error) }
        let definition = try validated(name: name, request: request)
        return try await changeLock.withLock {
            if let existing = table(named: name) {
                guard existing == definition || request.isEmpty else {
                    throw APIError(.conflict, code: "table_exists", message: "Table '\(name)' exists with other properties (n=\(existing.n), r=\(existing.r), w=\(existing.w), \(existing.consistency.rawValue)); a table's properties cannot change.")
                }
                return (existing, false)
            }
            tables.withLock { $0[name] = definition }
            try await persist()
            return (definition, true)
        }
    }

    /// Removes a table from the catalogue. The caller deletes its keys.
    public func remove(name: String) async throws -> TableDefinition {
        guard name != Self.defaultTableName else {
            throw APIError(.conflict, code: "table_protected", message: "The default table always exists and cannot be deleted.")
        }
        return try await changeLock.withLock {
            guard let removed = tables.withLock({ $0.removeValue(forKey: name) }) else { throw APIError.tableNotFound(name) }
            try await persist()
            return removed
        }
    }

    /// Adds the tables a peer knows and this node does not (a table created while
    /// this node was away). Properties of a table never change, so there is nothing
    /// else to reconcile.
    func adopt(_ definitions: [TableDefinition]) async throws {
        try await changeLock.withLock {
            let missing = definitions.filter { definition in
                (try? Validation.checkTableName(definition.name)) != nil && table(named: definition.name) == nil
            }
            guard !missing.isEmpty else { return }
            tables.withLock { tables in for definition in missing { tables[definition.name] = definition } }
            try await persist()
        }
    }

    /// Makes the catalogue exactly `definitions` (a ring server's configuration) and
    /// returns the names of the tables that were dropped; the caller removes their keys.
    func replace(with definitions: [TableDefinition]) async throws -> [String] {
        try await changeLock.withLock {
            let wanted = Dictionary(definitions.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            let (dropped, changed) = tables.withLock { tables -> ([String], Bool) in
                let dropped = tables.keys.filter { wanted[$0] == nil }
                let changed = tables != wanted
                tables = wanted
                return (dropped, changed)
            }
            if changed { try await persist() }
            return dropped
        }
    }

    /// The catalogue as JSON, as peers exchange it.
    func encoded() throws -> [UInt8] {
        Array(try JSONEncoder().encode(all))
    }

    private func validated(name: String, request: TableRequest) throws(APIError) -> TableDefinition {
        try Self.validated(name: name, request: request, clusterSize: clusterSize)
    }

    /// The definition a request asks for, with defaults filled in, or why it is impossible.
    static func validated(name: String, request: TableRequest, clusterSize: Int) throws(APIError) -> TableDefinition {
        let defaults = Self.defaults(name: name, clusterSize: clusterSize)
        let n = request.n ?? defaults.n
        guard n >= 1, n <= min(Limits.replicasMax, clusterSize) else {
            throw APIError(.badRequest, code: "invalid_table", message: "n=\(n) is not possible: this cluster has \(clusterSize) node(s), so n is 1 to \(min(Limits.replicasMax, clusterSize)).")
        }
        let majority = n / 2 + 1
        let consistency = request.consistency ?? .eventual
        if consistency == .linearizable {
            guard request.r == nil, request.w == nil else {
                throw APIError(.badRequest, code: "invalid_table", message: "r and w do not apply to a linearizable table: every operation uses a majority of its n replicas (here \(majority) of \(n)).")
            }
            return TableDefinition(name: name, n: n, r: majority, w: majority, consistency: .linearizable)
        }
        let r = request.r ?? min(defaults.r, majority)
        let w = request.w ?? min(defaults.w, majority)
        guard (1...n).contains(r), (1...n).contains(w) else {
            throw APIError(.badRequest, code: "invalid_table", message: "r=\(r), w=\(w) must each be 1 to n=\(n).")
        }
        return TableDefinition(name: name, n: n, r: r, w: w, consistency: consistency)
    }

    private func persist() async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let bytes = Array(try encoder.encode(all))
        let partition = partitioning.partition(table: Self.systemTable, key: Self.catalogKey)
        try await storage.put(partition: partition, key: StorageKeyCodec.encode(table: Self.systemTable, key: Self.catalogKey), value: bytes)
    }
}

extension TableRequest {
    public var isEmpty: Bool { n == nil && r == nil && w == nil && consistency == nil }
}

/// A lock that suspends instead of blocking, for sections that await.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
