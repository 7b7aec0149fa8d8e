import Foundation
public import Logging
import CoreMetrics
import HTTPTypes
public import RingstoreCore
public import RingstoreStorage

/// What a read found.
public enum ReadResult: Sendable, Equatable {
    /// No value; `context` is set when the key holds only tombstones, so a writer can supersede them.
    case notFound(context: VersionVector?)
    /// The key's versions: one sibling, or several concurrent ones.
    case found(StoredObject)
}

/// The eventual data path as the HTTP API sees it. A single node serves it from its
/// own disk; a cluster coordinator implements it with replicas.
///
/// Reads and writes answer through a callback, called once on any thread: the HTTP
/// fast path (`HTTPFastPath`) runs them on an event loop, with no task to wait in.
/// The `async` forms below wrap them.
public protocol KeyValueService: Sendable {
    func get(table: TableDefinition, key: [UInt8], r: Int?, done: @escaping @Sendable (Result<ReadResult, any Error>) -> Void)
    /// Stores `sibling` as a new version that supersedes what `context` saw; answers the new context.
    func put(table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void)
    /// Writes a tombstone superseding what `context` saw; answers the new context.
    func delete(table: TableDefinition, key: [UInt8], context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void)
    /// Removes every key of a table that is being dropped.
    func removeAllKeys(of table: String) async throws
}

extension KeyValueService {
    public func get(table: TableDefinition, key: [UInt8], r: Int?) async throws -> ReadResult {
        try await withCheckedThrowingContinuation { continuation in
            get(table: table, key: key, r: r) { continuation.resume(with: $0) }
        }
    }

    public func put(table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?, w: Int?) async throws -> VersionVector {
        try await withCheckedThrowingContinuation { continuation in
            put(table: table, key: key, sibling: sibling, context: context, w: w) { continuation.resume(with: $0) }
        }
    }

    public func delete(table: TableDefinition, key: [UInt8], context: VersionVector?, w: Int?) async throws -> VersionVector {
        try await withCheckedThrowingContinuation { continuation in
            delete(table: table, key: key, context: context, w: w) { continuation.resume(with: $0) }
        }
    }
}

/// The eventual data path of a cluster of one: every key lives on this node (N=1),
/// versioned with a dotted version vector set whose actor is this node's data folder.
public final class LocalKeyValueService: KeyValueService {
    private let storage: StorageEngine
    private let partitioning: Partitioning
    private let actor: ActorID
    private let logger: Logger

    public init(storage: StorageEngine, partitioning: Partitioning, actor: ActorID, logger: Logger) {
        self.storage = storage
        self.partitioning = partitioning
        self.actor = actor
        self.logger = logger
    }

    public func get(table: TableDefinition, key: [UInt8], r: Int?, done: @escaping @Sendable (Result<ReadResult, any Error>) -> Void) {
        done(Result { try read(table: table, key: key) })
    }

    public func put(table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        write(table: table, key: key, sibling: sibling, context: context, done: done)
    }

    public func delete(table: TableDefinition, key: [UInt8], context: VersionVector?, w: Int?, done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void) {
        write(table: table, key: key, sibling: .tombstone, context: context, done: done)
    }

    private func read(table: TableDefinition, key: [UInt8]) throws -> ReadResult {
        let partition = partitioning.partition(table: table.name, key: key)
        guard let bytes = try storage.get(partition: partition, key: StorageKeyCodec.encode(table: table.name, key: key)) else {
            return .notFound(context: nil)
        }
        let object = try Self.decode(bytes)
        if object.isDeleted && object.siblingCount == 1 { return .notFound(context: object.context) }
        return .found(object)
    }

    public func removeAllKeys(of table: String) async throws {
        try await storage.removeAllKeys(ofTable: table)
    }

    /// Merges a new version into the stored object under the key's update lock.
    /// With one replica, an object that holds only tombstones is purged at once:
    /// every replica (this one) has the tombstone.
    private func write(
        table: TableDefinition, key: [UInt8], sibling: Sibling, context: VersionVector?,
        done: @escaping @Sendable (Result<VersionVector, any Error>) -> Void
    ) {
        let partition = partitioning.partition(table: table.name, key: key)
        let actor = self.actor
        let logger = self.logger
        storage.update(partition: partition, key: StorageKeyCodec.encode(table: table.name, key: key), { current in
            let existing = try current.map(Self.decode) ?? StoredObject()
            let updated = existing.update(with: .fresh(sibling, context: context), actor: actor)
            guard updated.siblingCount <= Limits.siblingsMax else {
                throw APIError(.conflict, code: "too_many_siblings", message: "This write would leave \(updated.siblingCount) concurrent versions of the key; at most \(Limits.siblingsMax) are kept. Read the key and write with its context to resolve them.")
            }
            if updated.isDeleted && table.n == 1 { return (.delete, updated) }
            return (.put(StoredObject.encodeObject(updated)), updated)
        }, done: { (result: Result<StoredObject, any Error>) in
            done(result.map { updated in
                if updated.siblingCount > Limits.siblingsWarn {
                    ServerMetrics.siblingsOverWarning.increment()
                    logger.warning("key has many siblings", metadata: ["table": "\(table.name)", "siblings": "\(updated.siblingCount)"])
                }
                return updated.context
            })
        })
    }

    static func decode(_ bytes: [UInt8]) throws -> StoredObject {
        do {
            return try StoredObject.decodeObject(bytes)
        } catch {
            throw APIError.internalError("A stored value could not be decoded (\(error.reason)).")
        }
    }
}

extension StorageEngine {
    /// Deletes every key this engine holds for `table` (a dropped table), with the
    /// acceptor states of a linearizable table's keys.
    func removeAllKeys(ofTable table: String) async throws {
        for (partition, _) in keyCountsByPartition() {
            for storageKey in keys(in: partition) {
                guard let decoded = StorageKeyCodec.decode(storageKey) ?? StorageKeyCodec.decodeAcceptor(storageKey),
                      decoded.table == table
                else { continue }
                try await delete(partition: partition, key: storageKey)
            }
        }
    }
}
