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
/// Each stripe remembers the decoded states of its recently used keys with the
/// storage sequence number of the record they match. A state is used again only
/// while the storage engine still holds that very record for the key, so a write
/// that bypasses this store (a dropped table's keys being deleted) is never hidden;
/// a hit saves the read, the checksum and the decoding of a roster's members, which
/// every look at a popular subject's seats otherwise pays on three replicas.
///
/// Thread safety: all methods may be called from any thread; `done` callbacks run
/// on the storage engine's syncer thread or on the caller's.
final class AcceptorStore: Sendable {
    private final class Stripe: Sendable {
        struct State {
            /// The durability ticket of the last state appended for a key of this stripe.
            var lastWrite: DurabilityTicket?
            /// Decoded states by acceptor storage key, with the sequence of their record.
            var remembered: [[UInt8]: (sequence: UInt64, state: CASPaxosAcceptorState)] = [:]
        }
        let state = Mutex(State())
    }

    /// How many decoded states a stripe remembers (256 stripes).
    static let rememberedPerStripe = 32

    let storage: StorageEngine
    private let stripes = (0..<256).map { _ in Stripe() }

    init(storage: StorageEngine) {
        self.storage = storage
    }

    private func stripe(for storageKey: [UInt8]) -> Stripe {
        stripes[Int(UInt(bitPattern: storageKey.hashValue) % UInt(stripes.count))]
    }

    /// The stored state of `key`; the empty state for a key never seen.
    func state(of key: ItemKey) throws -> CASPaxosAcceptorState {
        try storedState(of: key, storageKey: key.acceptorStorageKey)
    }

    private func storedState(of key: ItemKey, storageKey: [UInt8]) throws -> CASPaxosAcceptorState {
        guard let bytes = try storage.get(partition: key.partition, key: storageKey) else { return CASPaxosAcceptorState() }
        return try CASPaxosAcceptorState(decoding: bytes)
    }

    /// The stored state of `key`, decoded again only when its record changed since
    /// the stripe last saw it. Called under the stripe's lock.
    private func state(of key: ItemKey, storageKey: [UInt8], in stripe: inout Stripe.State) throws -> CASPaxosAcceptorState {
        guard let sequence = storage.storedSequence(partition: key.partition, key: storageKey) else {
            stripe.remembered[storageKey] = nil
            return CASPaxosAcceptorState()
        }
        if let known = stripe.remembered[storageKey], known.sequence == sequence { return known.state }
        // Read after the sequence: if the record changes in between, the state is newer
        // than the sequence it is remembered with, which then never matches again.
        let state = try storedState(of: key, storageKey: storageKey)
        remember(state, sequence: sequence, storageKey: storageKey, in: &stripe)
        return state
    }

    private func remember(_ state: CASPaxosAcceptorState, sequence: UInt64, storageKey: [UInt8], in stripe: inout Stripe.State) {
        if stripe.remembered[storageKey] == nil, stripe.remembered.count >= Self.rememberedPerStripe {
            stripe.remembered.remove(at: stripe.remembered.startIndex)
        }
        stripe.remembered[storageKey] = (sequence, state)
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
        let storageKey = key.acceptorStorageKey
        let outcome: Result<(Reply, DurabilityTicket?), any Error> = stripe(for: storageKey).state.withLock { stripe in
            do {
                guard let (newState, reply) = decide(try state(of: key, storageKey: storageKey, in: &stripe)) else {
                    throw DecodeError("internal inconsistency: a message that is not a request reached an acceptor")
                }
                if let newState {
                    let ticket = try storage.writeWithoutWaiting([(key.partition, storageKey, newState.encode())])
                    stripe.lastWrite = ticket
                    remember(newState, sequence: ticket.sequence, storageKey: storageKey, in: &stripe)
                }
                return .success((reply, stripe.lastWrite))
            } catch {
                stripe.remembered[storageKey] = nil
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
