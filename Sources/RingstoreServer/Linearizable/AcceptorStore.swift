import RingstoreCore
import RingstoreStorage
import Synchronization

/// A node's CASPaxos acceptors: one state per linearizable key, kept in the main
/// storage engine under the key's acceptor storage key (in the key's partition, so
/// it moves and is dropped with the partition).
///
/// Requests on one key are decided one at a time (a stripe lock over read, decide
/// and append), and every reply waits until the state it reflects is fsynced, even
/// when the request itself changed nothing: the state it reports may have been
/// appended by an earlier request whose fsync is still running.
///
/// Thread safety: all methods may be called from any thread; `done` callbacks run
/// on the storage engine's syncer thread or on the caller's.
final class AcceptorStore: Sendable {
    private final class Stripe: Sendable {
        /// The durability ticket of the last state appended for a key of this stripe.
        let lastWrite = Mutex<DurabilityTicket?>(nil)
    }

    let storage: StorageEngine
    private let stripes = (0..<256).map { _ in Stripe() }

    init(storage: StorageEngine) {
        self.storage = storage
    }

    private func stripe(for key: ItemKey) -> Stripe {
        stripes[Int(UInt(bitPattern: key.acceptorStorageKey.hashValue) % UInt(stripes.count))]
    }

    /// The stored state of `key`; the empty state for a key never seen.
    func state(of key: ItemKey) throws -> CASPaxosAcceptorState {
        guard let bytes = try storage.get(partition: key.partition, key: key.acceptorStorageKey) else { return CASPaxosAcceptorState() }
        return try CASPaxosAcceptorState(decoding: bytes)
    }

    /// Decides a prepare or accept and calls `done` with the reply once the state it
    /// reflects is durable, or with the error that kept it from being stored.
    func decide(_ message: CASPaxosMessage, done: @escaping @Sendable (Result<CASPaxosMessage, any Error>) -> Void) {
        let key = message.key
        update(key, { state in CASPaxosAcceptor.handle(message, state: state).map { ($0.newState, $0.reply) } }, done: done)
    }

    /// The value `key` last accepted, once the state it reflects is durable (a read-only
    /// look: nothing is written).
    func peek(_ key: ItemKey, done: @escaping @Sendable (Result<CASPaxosAcceptedValue?, any Error>) -> Void) {
        update(key, { state in (nil, state.accepted) }, done: done)
    }

    /// Merges a state received from another replica of the key's partition (a
    /// partition transfer) into the stored one.
    func merge(_ incoming: CASPaxosAcceptorState, for key: ItemKey, done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        update(key, { state in
            let merged = state.merged(with: incoming)
            return (merged == state ? nil : merged, ())
        }, done: done)
    }

    /// Merges many states (a page of a partition transfer); returns once all are durable.
    func merge(_ states: [(ItemKey, CASPaxosAcceptorState)]) async throws {
        try await awaitAll(states.count) { index, done in
            let (key, state) = states[index]
            merge(state, for: key) { result in
                if case .failure(let error) = result { return done(error) }
                done(nil)
            }
        }
    }

    /// Reads, decides and appends under the key's stripe lock; calls `done` after the
    /// stripe's last append is durable.
    private func update<Reply: Sendable>(
        _ key: ItemKey, _ decide: (CASPaxosAcceptorState) -> (CASPaxosAcceptorState?, Reply)?,
        done: @escaping @Sendable (Result<Reply, any Error>) -> Void
    ) {
        let stripe = stripe(for: key)
        let outcome: Result<(Reply, DurabilityTicket?), any Error> = stripe.lastWrite.withLock { lastWrite in
            do {
                guard let (newState, reply) = decide(try state(of: key)) else {
                    throw DecodeError("internal inconsistency: a message that is not a request reached an acceptor")
                }
                if let newState {
                    lastWrite = try storage.writeWithoutWaiting([(key.partition, key.acceptorStorageKey, newState.encode())])
                }
                return .success((reply, lastWrite))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .failure(let error):
            done(.failure(error))
        case .success((let reply, let ticket)):
            guard let ticket else { return done(.success(reply)) }
            storage.whenDurable(ticket, force: true) { failure in
                done(failure.map { .failure($0) } ?? .success(reply))
            }
        }
    }
}
