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
/// The exception is a promise under the node's promise floor (decision 0015,
/// `CASPaxosPromiseFloor`): it is appended and answered without waiting for its own
/// fsync (an accepted value it reports still waits). The floor is stored durably
/// under a node-local key of the system table; a promise above it first raises it,
/// and the reply waits for that. At start-up the stored floor is read once and every
/// key is held promised at least at its ballot, so a promise lost in a crash is
/// still kept.
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
    /// Where the promise floor is stored: a node-local key (the system table's keys
    /// are never replicated, transferred or compared).
    static let floorLocation = (
        partition: PartitionID(rawValue: 0), key: StorageKeyCodec.encode(table: TableCatalog.systemTable, key: Array("acceptor-floor".utf8)))
    /// The floor stored when this store opened, applied to every key; a failure to
    /// read it makes every request fail (an acceptor that may have forgotten a
    /// promise must not answer).
    private let startFloor: Result<CASPaxosPromiseFloor, any Error>
    private struct Floors {
        /// The highest floor known durable: promises up to it need no fsync.
        var durable: CASPaxosPromiseFloor
        /// The highest floor appended, durable or not (appends only ever raise it).
        var written: CASPaxosPromiseFloor
    }
    private let floors: Mutex<Floors>

    init(storage: StorageEngine) {
        self.storage = storage
        let location = Self.floorLocation
        let start = Result { () throws -> CASPaxosPromiseFloor in
            guard let bytes = try storage.get(partition: location.partition, key: location.key) else { return .none }
            return try CASPaxosPromiseFloor(decoding: bytes)
        }
        self.startFloor = start
        let known = (try? start.get()) ?? .none
        self.floors = Mutex(Floors(durable: known, written: known))
    }

    /// The promise floor known durable.
    var durableFloor: CASPaxosPromiseFloor { floors.withLock { $0.durable } }

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
    /// reflects is durable (a promise under the floor: once the accepted value it
    /// reports is), or with the error that kept it from being stored.
    func decide(_ message: CASPaxosMessage, done: @escaping @Sendable (Result<CASPaxosMessage, any Error>) -> Void) {
        let startFloor: CASPaxosPromiseFloor
        switch self.startFloor {
        case .success(let floor): startFloor = floor
        case .failure(let error): return done(.failure(error))
        }
        update(key: message.key, { [self] stored in
            let state = stored.raisingPromise(to: startFloor)
            guard let decision = CASPaxosAcceptor.handle(message, state: state) else { return nil }
            guard let newState = decision.newState else { return (.none, decision.reply) }
            if floors.withLock({ $0.durable }).covers(decision, previous: state) { return (.unsynced(newState), decision.reply) }
            return (.durable(newState, raisingFloorFor: CASPaxosPromiseFloor.promiseOnly(decision, previous: state)), decision.reply)
        }, done: done)
    }

    /// The value `key` last accepted, once the state it reflects is durable (a read-only
    /// look: nothing is written).
    func peek(_ key: ItemKey, done: @escaping @Sendable (Result<CASPaxosAcceptedValue?, any Error>) -> Void) {
        update(key: key, { state in (.none, state.accepted) }, done: done)
    }

    /// Merges a state received from another replica of the key's partition (a
    /// partition transfer) into the stored one.
    func merge(_ incoming: CASPaxosAcceptorState, for key: ItemKey, done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        update(key: key, { state in
            let merged = state.merged(with: incoming)
            return (merged == state ? .none : .durable(merged, raisingFloorFor: nil), ())
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

    /// What an update writes.
    private enum Write {
        /// Nothing.
        case none
        /// A state the reply need not wait for: a promise the durable floor covers.
        case unsynced(CASPaxosAcceptorState)
        /// A state the reply waits for; with a promise, the floor is raised to cover it
        /// first, in the same fsync.
        case durable(CASPaxosAcceptorState, raisingFloorFor: Ballot?)
    }

    /// Reads, decides and appends under the key's stripe lock; calls `done` after the
    /// stripe's last append that a reply must wait for is durable.
    private func update<Reply: Sendable>(
        key: ItemKey, _ decide: (CASPaxosAcceptorState) -> (Write, Reply)?,
        done: @escaping @Sendable (Result<Reply, any Error>) -> Void
    ) {
        let storageKey = key.acceptorStorageKey
        let outcome: Result<(Reply, DurabilityTicket?, raisedFloor: CASPaxosPromiseFloor?), any Error> = stripe(for: storageKey).state.withLock { stripe in
            do {
                guard let (write, reply) = decide(try state(of: key, storageKey: storageKey, in: &stripe)) else {
                    throw DecodeError("internal inconsistency: a message that is not a request reached an acceptor")
                }
                var raisedFloor: CASPaxosPromiseFloor?
                switch write {
                case .none:
                    break
                case .unsynced(let newState):
                    let ticket = try storage.writeWithoutWaiting([(key.partition, storageKey, newState.encode())])
                    remember(newState, sequence: ticket.sequence, storageKey: storageKey, in: &stripe)
                case .durable(let newState, let promise):
                    var changes: [(partition: PartitionID, key: [UInt8], value: [UInt8]?)] = []
                    let ticket = try floors.withLock { floors throws(StorageError) -> DurabilityTicket in
                        // Appended under the lock, so stored floors only ever rise in the log.
                        if let promise, floors.written.counter < promise.counter {
                            let raised = floors.written.raised(toCover: promise)
                            changes.append((Self.floorLocation.partition, Self.floorLocation.key, raised.encode()))
                            floors.written = raised
                            raisedFloor = raised
                        }
                        // The state last, so that the ticket's sequence is its record's.
                        changes.append((key.partition, storageKey, newState.encode()))
                        return try storage.writeWithoutWaiting(changes)
                    }
                    stripe.lastWrite = ticket
                    remember(newState, sequence: ticket.sequence, storageKey: storageKey, in: &stripe)
                }
                return .success((reply, stripe.lastWrite, raisedFloor))
            } catch {
                stripe.remembered[storageKey] = nil
                return .failure(error)
            }
        }
        switch outcome {
        case .failure(let error):
            done(.failure(error))
        case .success((let reply, let ticket, let raisedFloor)):
            guard let ticket else { return done(.success(reply)) }
            storage.whenDurable(ticket, force: true) { [self] failure in
                if failure == nil, let raisedFloor {
                    floors.withLock { $0.durable = max($0.durable, raisedFloor) }
                }
                done(failure.map { .failure($0) } ?? .success(reply))
            }
        }
    }
}
