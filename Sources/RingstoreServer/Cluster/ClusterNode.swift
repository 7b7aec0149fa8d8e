import Foundation
public import Logging
import CoreMetrics
import Metrics
public import NIOCore
public import RingstoreRPC
import NIOPosix
public import RingstoreCore
public import RingstoreStorage
import Synchronization

/// Another storage node, as this one reaches it.
public struct PeerAddress: Sendable, Hashable {
    public var id: NodeID
    public var host: String
    public var port: Int

    public init(id: NodeID, host: String, port: Int) {
        self.id = id
        self.host = host
        self.port = port
    }
}

/// A storage node of a cluster: the shell that drives a `NodeEngine` with the
/// storage engines, the framed RPC transport, timers and a failure detector.
///
/// Every event (a client request, a peer's request or reply, a finished disk
/// write, a timer) is fed to the engine under one lock, on the thread it arrives
/// on. One event loop, the engine loop, owns every connection to and from peers
/// and every timer, so peer traffic never crosses threads. Reads run inline (they
/// hit the page cache); a write is appended inline and its fsync is awaited by a
/// callback from the syncer thread, never by blocking a thread.
public final class ClusterNode: Sendable {
    public struct Settings: Sendable {
        public var requestTimeout: Duration = .seconds(2)
        public var pingInterval: Duration = .milliseconds(200)
        public var handoffInterval: Duration = .seconds(1)
        public var hintsMax = Limits.hintsMax
        public var hintBytesMax = Limits.hintBytesMax
        /// How connections to peers are made (the address they leave from).
        public var rpcClient = RPCClientConfiguration()

        public init() {}
    }

    public let id: NodeID
    public let partitioning: Partitioning
    let engine: Mutex<NodeEngine>
    let storage: StorageEngine
    let hintStorage: StorageEngine
    /// The CASPaxos acceptors of the linearizable keys this node holds, in `storage`.
    let acceptors: AcceptorStore
    /// Merkle trees over the replicated data in `storage`, for anti-entropy.
    let trees = HashTrees()
    /// Connections to the other members, by id; replaced when membership changes.
    private let peerClients: Mutex<[NodeID: RPCClient]>
    private let peerAddresses: Mutex<[PeerAddress]>
    /// The loop that runs the engine and owns the peer connections.
    let engineLoop: any EventLoop
    let settings: Settings
    let logger: Logger
    private let keyStripes = (0..<1024).map { _ in KeyStripe() }
    private let pendingClients = Mutex<[UInt64: @Sendable (ClientResult) -> Void]>([:])
    private let pendingPeers = Mutex<[UInt64: EventLoopPromise<RPCMessage>]>([:])
    private let nextToken = Atomic<UInt64>(0)
    private let detectors = Mutex(FailureDetectors<NodeID>())
    private let started = ContinuousClock.now
    private let repeatedTasks = Mutex<[RepeatedTask]>([])
    /// Every operation's time limit (`NodeDirective.startTimer`).
    private let timeouts = Mutex(OperationTimeouts())
    /// Where pages of versions merge, one at a time (`merge(page:)`).
    private let mergeThread = NIOThreadPool(numberOfThreads: 1)
    private let observations = ClusterMetrics()
    private let ready: Atomic<Bool>
    private let left = Atomic<Bool>(false)

    public init(
        id: NodeID, actor: ActorID, ring: Ring, peers: [PeerAddress], storage: StorageEngine, hintStorage: StorageEngine,
        group: any EventLoopGroup, settings: Settings = Settings(), isReady: Bool = true, logger: Logger
    ) {
        self.ready = Atomic(isReady)
        self.id = id
        self.partitioning = ring.partitioning
        self.storage = storage
        self.hintStorage = hintStorage
        self.acceptors = AcceptorStore(storage: storage)
        let engineLoop = group.next()
        self.engineLoop = engineLoop
        self.settings = settings
        self.logger = logger
        var clients: [NodeID: RPCClient] = [:]
        for peer in peers where peer.id != id {
            clients[peer.id] = RPCClient(host: peer.host, port: peer.port, group: engineLoop, configuration: settings.rpcClient)
        }
        self.peerClients = Mutex(clients)
        self.peerAddresses = Mutex(peers)
        var engine = NodeEngine(
            configuration: NodeEngine.Configuration(
                node: id, actor: actor, requestTimeout: settings.requestTimeout,
                hintsMax: settings.hintsMax, hintBytesMax: settings.hintBytesMax,
                randomSeed: UInt64.random(in: 0...UInt64.max)),
            ring: ring)
        // Until the failure detector has heard from a peer, it is not counted on.
        for peer in clients.keys { _ = engine.setReachable(peer, false) }
        self.engine = Mutex(engine)
    }

    // MARK: Lifecycle

    /// Loads the hints on disk, builds the Merkle trees, and starts pings and hand-off.
    public func start() {
        mergeThread.start()
        mergeThread.submit { _ in Self.lowerThisThreadsPriority() }
        feed { $0.recoverHints(self.recoveredHints()) }
        trees.rebuild(from: storage, now: .now)
        let loop = engineLoop
        let ping = loop.scheduleRepeatedTask(initialDelay: .zero, delay: TimeAmount(settings.pingInterval)) { [self] _ in
            pingPeers()
            updateReachability()
        }
        let handoff = loop.scheduleRepeatedTask(initialDelay: TimeAmount(settings.handoffInterval), delay: TimeAmount(settings.handoffInterval)) { [self] _ in
            feed { $0.tick() }
            observations.hints.record(engine.withLock { $0.hintCount })
        }
        repeatedTasks.withLock { $0 = [ping, handoff] }
    }

    /// Stops timers and peer connections. Requests still waiting are answered as unavailable.
    public func stop() async {
        for task in repeatedTasks.withLock({ $0 }) { task.cancel() }
        timeouts.withLock { $0.stop() }
        try? await mergeThread.shutdownGracefully()
        for client in peerClients.withLock({ Array($0.values) }) { await client.shutdown() }
        let clients = pendingClients.withLock { pending in
            defer { pending.removeAll() }
            return Array(pending.values)
        }
        for done in clients { done(.failed(.unavailable("the node is shutting down"))) }
    }

    // MARK: Clients

    /// Whether this node holds a ring to serve from (a node that joins through ring
    /// servers has none until the cluster forms).
    public var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Records that the node now holds a ring.
    func markReady() {
        guard !hasLeft else { return }
        ready.store(true, ordering: .releasing)
    }

    /// Whether the cluster's configuration no longer lists this node (it left or was removed).
    public var hasLeft: Bool { left.load(ordering: .acquiring) }

    /// Records that this node left the cluster: it stops serving clients.
    func markLeft() {
        left.store(true, ordering: .releasing)
        ready.store(false, ordering: .releasing)
    }

    /// Client operations this node has run (eventual and linearizable), for the dashboard.
    let operationsServed = Atomic<UInt64>(0)

    /// Runs a client operation with this node as coordinator (or forwarder) and passes
    /// its result to `done`, on whichever thread finishes it (the caller's own, when
    /// this node can answer at once). The HTTP fast path calls this from an event
    /// loop, with no task to wait in.
    public func run(_ operation: ClientOperation, done: @escaping @Sendable (ClientResult) -> Void) {
        operationsServed.add(1, ordering: .relaxed)
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).newValue
        pendingClients.withLock { $0[token] = done }
        feed { $0.clientRequested(operation, token: token) }
    }

    /// The key's preference list and current targets, for `/v1/cluster/locate`.
    public func locate(_ key: ItemKey, n: Int) -> (preference: [NodeID], targets: [ReplicaTarget], unreachable: Set<NodeID>) {
        engine.withLock { engine in
            (engine.ring.preferenceList(for: key.partition, count: engine.ring.members.count), engine.targets(for: key, n: n), engine.unreachable)
        }
    }

    /// Members of the ring and which of them this node can reach.
    public var membership: (members: [NodeID], unreachable: Set<NodeID>, hints: Int) {
        engine.withLock { ($0.ring.members, $0.unreachable, $0.hintCount) }
    }

    // MARK: Peers

    /// The addresses of every member this node knows, itself included.
    public var addresses: [PeerAddress] { peerAddresses.withLock { $0 } }

    /// Adopts a new membership: connects to new members (unreachable until they answer
    /// a ping), drops connections to departed ones, and hands the ring to the engine.
    public func adopt(ring: Ring, pending: Ring? = nil, members: [PeerAddress]) async {
        let (added, removed) = peerClients.withLock { clients -> ([NodeID], [RPCClient]) in
            var added: [NodeID] = []
            var wanted = Set<NodeID>()
            for member in members where member.id != id {
                wanted.insert(member.id)
                if clients[member.id] == nil {
                    clients[member.id] = RPCClient(host: member.host, port: member.port, group: engineLoop, configuration: settings.rpcClient)
                    added.append(member.id)
                }
            }
            var removed: [RPCClient] = []
            for peer in Array(clients.keys) where !wanted.contains(peer) {
                removed.append(clients.removeValue(forKey: peer)!)
            }
            return (added, removed)
        }
        peerAddresses.withLock { $0 = members }
        feed { engine in
            engine.replaceRing(ring, pending: pending)
            var directives: [NodeDirective] = []
            for peer in added { directives += engine.setReachable(peer, false) }
            return directives
        }
        for client in removed { await client.shutdown() }
    }

    /// The connection to a member, if it is one.
    func client(for peer: NodeID) -> RPCClient? { peerClients.withLock { $0[peer] } }

    /// Merges a page of versions (a partition transfer's, anti-entropy's): every record
    /// is appended, on the merge thread, before any is awaited, and the page then waits
    /// once, for the latest append of each storage engine, so it shares the group
    /// commit's fsyncs. Returns once all are durable; throws the first failure.
    ///
    /// Pages merge one at a time on their own thread: many transfers merging at once
    /// on the concurrency pool's threads kept handing the storage engine's lock from
    /// thread to thread, each handoff a trip through the scheduler, and left the
    /// receiving node mostly idle (docs/decisions/0012-one-merge-thread.md).
    func merge(page: [(ItemKey, StoredObject)]) async throws {
        let latest = try await mergeThread.runIfActive { [self] in
            var latest: (main: DurabilityTicket?, hint: DurabilityTicket?) = (nil, nil)
            for (key, object) in page {
                let pending: [(StorageEngine, DurabilityTicket)]
                let result: StorageResult
                do {
                    (pending, result) = try apply(key, .merge(object))
                } catch {
                    throw Self.failure(error)
                }
                if case .failed(let failure) = result { throw failure }
                for (engine, ticket) in pending {
                    if engine === storage {
                        latest.main = max(latest.main ?? ticket, ticket)
                    } else {
                        latest.hint = max(latest.hint ?? ticket, ticket)
                    }
                }
            }
            return latest
        }
        if let ticket = latest.main { try await storage.waitUntilDurable(ticket) }
        if let ticket = latest.hint { try await hintStorage.waitUntilDurable(ticket) }
    }

    /// Sends `message` to every peer and returns the replies of those that answered.
    @discardableResult
    func broadcast(_ message: RPCMessage, logger: Logger?) async -> [RPCMessage] {
        await withTaskGroup(of: RPCMessage?.self) { group in
            for (peer, client) in peerClients.withLock({ $0 }) {
                group.addTask {
                    do {
                        return try await client.call(message, timeout: .seconds(2))
                    } catch {
                        logger?.warning("a peer did not take a catalogue change; it will learn it at the next exchange", metadata: ["peer": "\(peer)", "error": "\(error)"])
                        return nil
                    }
                }
            }
            var replies: [RPCMessage] = []
            for await reply in group { if let reply { replies.append(reply) } }
            return replies
        }
    }

    /// A peer's request, on the connection's event loop.
    func receive(_ request: PeerRequest, eventLoop: any EventLoop) -> EventLoopFuture<RPCMessage> {
        let promise = eventLoop.makePromise(of: RPCMessage.self)
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).newValue
        pendingPeers.withLock { $0[token] = promise }
        if case .homeRead = request { observations.homeReads.increment() }
        feed { $0.peerRequested(request, from: self.id, token: token) }
        return promise.futureResult
    }

    // MARK: Driving the engine

    /// Feeds one event to the engine, on the caller's thread, and carries out what it
    /// asks. Peer traffic and timers all arrive on the engine loop, so the lock is
    /// mostly uncontended; a client request is fed from its own task without a hop,
    /// and a read the node can answer itself completes before that task suspends.
    func feed(_ event: (inout NodeEngine) -> [NodeDirective]) {
        let directives = engine.withLock { event(&$0) }
        if !directives.isEmpty { execute(directives) }
    }

    private func execute(_ initial: [NodeDirective]) {
        var work = initial
        var index = 0
        while index < work.count {
            let directive = work[index]
            index += 1
            switch directive {
            case .send(let request, let peer, let operation):
                send(request, to: peer, operation: operation)
            case .replyToPeer(let token, let reply):
                let promise = pendingPeers.withLock { $0.removeValue(forKey: token) }
                let (type, body) = PeerCodec.encode(reply)
                promise?.succeed(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)))
            case .replyToClient(let token, let result):
                pendingClients.withLock { $0.removeValue(forKey: token) }?(result)
            case .read(let key, let operation):
                let result = read(key)
                work += engine.withLock { $0.storageCompleted(result, operation: operation) }
            case .write(let key, let storageOperation, let operation):
                write(key, storageOperation) { [self] appended in
                    // A client write's object goes to the other replicas before its own fsync.
                    if case .clientWrite = storageOperation {
                        work += engine.withLock { $0.storageAppended(appended, operation: operation) }
                    }
                } done: { [self] result in
                    feed { $0.storageCompleted(result, operation: operation) }
                }
            case .startTimer(let operation, let delay):
                startTimeout(operation, after: delay)
            case .observe(let observation):
                observe(observation)
            }
        }
    }

    private func send(_ request: PeerRequest, to peer: NodeID, operation: OperationID) {
        guard let client = peerClients.withLock({ $0[peer] }) else {
            feed { $0.peerReplied(.failure(.unreachable), operation: operation, from: peer) }
            return
        }
        let (type, body) = PeerCodec.encode(request)
        client.callFuture(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)), timeout: TimeAmount(settings.requestTimeout)).whenComplete { [self] result in
            let reply: Result<PeerReply, TransportFailure>
            switch result {
            case .success(let message):
                do {
                    reply = .success(try PeerCodec.decodeReply(type: message.messageType, body: Array(message.body.readableBytesView)))
                } catch {
                    reply = .failure(.rejected("\(error)"))
                }
            case .failure(let error as RPCError):
                switch error {
                case .timedOut, .connectionClosed, .shutdown: reply = .failure(.timedOut)  // it may have run
                case .remote(_, let message), .malformedFrame(let message): reply = .failure(.rejected(message))
                case .connectionFailed, .overloaded, .frameTooLarge: reply = .failure(.unreachable)  // never sent
                }
            case .failure:
                reply = .failure(.unreachable)
            }
            feed { $0.peerReplied(reply, operation: operation, from: peer) }
        }
    }

    // MARK: Timeouts

    /// Records `operation`'s deadline, arming the timer if none is armed.
    private func startTimeout(_ operation: OperationID, after delay: Duration) {
        let deadline = NIODeadline.now() + TimeAmount(delay)
        timeouts.withLock { timeouts in
            guard let wake = timeouts.add(operation, deadline: deadline, resolution: timeoutResolution) else { return }
            timeouts.timer = engineLoop.scheduleTask(deadline: wake) { [self] in expireTimeouts() }
        }
    }

    /// How late a time limit may fire: the timer wakes at most once per this interval,
    /// however many operations run.
    private var timeoutResolution: TimeAmount {
        max(.milliseconds(1), min(.milliseconds(20), TimeAmount(settings.requestTimeout / 10)))
    }

    /// Tells the engine about every operation whose deadline passed (most have long
    /// finished, which the engine ignores), then re-arms for the next one.
    private func expireTimeouts() {
        let due = timeouts.withLock { timeouts -> [OperationID] in
            let (due, wake) = timeouts.takeDue(at: .now(), resolution: timeoutResolution)
            timeouts.timer = wake.map { engineLoop.scheduleTask(deadline: $0) { [self] in expireTimeouts() } }
            return due
        }
        guard !due.isEmpty else { return }
        feed { engine in due.flatMap { engine.timerFired($0) } }
    }

    // MARK: Storage

    private func hintKey(_ key: ItemKey) -> [UInt8] { key.storageKey }

    private func read(_ key: ItemKey) -> StorageResult {
        do {
            let main = try storage.get(partition: key.partition, key: key.storageKey).map(StoredObject.decodeObject)
            let hint = try hintStorage.get(partition: key.partition, key: hintKey(key)).map(HintRecord.decode)
            return .object(ReplicaStore.read(main: main, hint: hint))
        } catch {
            return .failed(Self.failure(error))
        }
    }

    /// Applies a storage operation (read, compute, append) at once, calls `appended`
    /// with its result before waiting, then calls `done` when the appended records are
    /// durable (`appended` is not called when the operation failed).
    private func write(
        _ key: ItemKey, _ operation: StorageOperation, appended: (StorageResult) -> Void = { _ in },
        done: @escaping @Sendable (StorageResult) -> Void
    ) {
        let pending: [(StorageEngine, DurabilityTicket)]
        let result: StorageResult
        do {
            (pending, result) = try apply(key, operation)
        } catch {
            return done(.failed(Self.failure(error)))
        }
        appended(result)
        Self.whenAllDurable(pending[...]) { failure in
            done(failure.map { .failed(Self.failure($0)) } ?? result)
        }
    }

    /// Reads, computes and appends under the key's stripe lock: the operation's result,
    /// and the appends it made, to wait on before the result counts.
    private func apply(_ key: ItemKey, _ operation: StorageOperation) throws -> (pending: [(StorageEngine, DurabilityTicket)], result: StorageResult) {
        try stripe(of: key).lock.withLock { _ -> ([(StorageEngine, DurabilityTicket)], StorageResult) in
            let mainBytes = try readReplacingCorruption(key)
            let main = try mainBytes.map(StoredObject.decodeObject)
            let hint = try hintStorage.get(partition: key.partition, key: hintKey(key)).map(HintRecord.decode)
            let outcome = ReplicaStore.apply(operation, main: main, hint: hint)
            var tickets: [(StorageEngine, DurabilityTicket)] = []
            if case .some(let newMain) = outcome.main {
                let newBytes = newMain.map(StoredObject.encodeObject)
                let ticket = try storage.writeWithoutWaiting([(key.partition, key.storageKey, newBytes)])
                trees.record(
                    partition: key.partition, storageKey: key.storageKey, old: mainBytes, new: newBytes,
                    deleted: newMain?.holdsOnlyTombstones ?? false, now: .now)
                tickets.append((storage, ticket))
            }
            if case .some(let newHint) = outcome.hint {
                let ticket = try hintStorage.writeWithoutWaiting([(key.partition, hintKey(key), newHint.map(HintRecord.encode))])
                tickets.append((hintStorage, ticket))
            }
            return (tickets, outcome.result)
        }
    }

    /// Removes a key that holds only tombstones, if its stored bytes still have the
    /// entry hash `expected` and this node keeps no hint for it; the purge of a
    /// tombstone every replica holds (`TombstonePurge`). Returns whether it removed
    /// the key, once the removal is durable.
    func purgeTombstone(_ key: ItemKey, expected: UInt64) async throws -> Bool {
        let ticket = try stripe(of: key).lock.withLock { _ -> DurabilityTicket? in
            guard let bytes = try storage.get(partition: key.partition, key: key.storageKey),
                  HashTree.entryHash(storageKey: key.storageKey, value: bytes) == expected,
                  StoredObject.holdsOnlyTombstones(encoded: bytes),
                  !holdsHint(for: key)
            else { return nil }
            let ticket = try storage.writeWithoutWaiting([(key.partition, key.storageKey, nil)])
            trees.record(partition: key.partition, storageKey: key.storageKey, old: bytes, new: nil, deleted: false, now: .now)
            return ticket
        }
        guard let ticket else { return false }
        try await storage.waitUntilDurable(ticket)
        return true
    }

    /// Lowers the calling thread's scheduling priority (nice 10), so that merging
    /// pages yields the cores to client requests and takes the time they leave.
    private static func lowerThisThreadsPriority() {
        #if os(Linux)
        // On Linux the nice value belongs to the thread, and 0 names the caller.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        #endif
    }

    /// The lock that makes `key`'s read-modify-write atomic.
    private func stripe(of key: ItemKey) -> KeyStripe {
        // A plain loop over the bytes: cheaper than Hasher, which feeds an array to
        // SipHash one call per byte. Any even spread will do here.
        keyStripes[Int(StableHash.hash(key.storageKey) % UInt64(keyStripes.count))]
    }

    /// Whether this node keeps a hint for `key` (for the tombstone purge's check).
    func holdsHint(for key: ItemKey) -> Bool {
        hintStorage.contains(partition: key.partition, key: hintKey(key))
    }

    /// The stored bytes of a key about to be rewritten. A record that fails its
    /// checksum counts as absent here: its versions cannot be read, the other replicas
    /// hold them, and the write (a merge from a peer, read repair, anti-entropy) is
    /// what replaces it. Reads still refuse to serve it.
    private func readReplacingCorruption(_ key: ItemKey) throws -> [UInt8]? {
        do {
            return try storage.get(partition: key.partition, key: key.storageKey)
        } catch StorageError.corruptRecord {
            observations.corruptReplaced.increment()
            logger.warning("replacing a record that failed its checksum with the versions being written", metadata: ["key": "\(key)"])
            return nil
        }
    }

    /// Calls `done` once every ticket is durable, with the first failure if any.
    private static func whenAllDurable(_ tickets: ArraySlice<(StorageEngine, DurabilityTicket)>, _ done: @escaping @Sendable (StorageError?) -> Void) {
        guard let (engine, ticket) = tickets.first else { return done(nil) }
        let rest = Array(tickets.dropFirst())
        engine.whenDurable(ticket) { failure in
            if let failure { return done(failure) }
            whenAllDurable(rest[...], done)
        }
    }

    static func failure(_ error: any Error) -> ClientFailure {
        switch error {
        case StorageError.diskFull: .diskFull
        case let error as DecodeError: .storage("a stored value could not be decoded: \(error.reason)")
        default: .storage("\(error)")
        }
    }

    /// Every hint on disk, for the engine's index.
    private func recoveredHints() -> [(ItemKey, owners: [NodeID], bytes: Int)] {
        var recovered: [(ItemKey, owners: [NodeID], bytes: Int)] = []
        for (partition, _) in hintStorage.keyCountsByPartition() {
            for storageKey in hintStorage.keys(in: partition) {
                guard let (table, key) = StorageKeyCodec.decode(storageKey),
                      let bytes = try? hintStorage.get(partition: partition, key: storageKey),
                      let record = try? HintRecord.decode(bytes)
                else { continue }
                recovered.append((ItemKey(table: table, key: key, partition: partition), owners: record.owners, bytes: bytes.count))
            }
        }
        return recovered
    }

    // MARK: Failure detection

    private func now() -> Duration { ContinuousClock.now - started }

    /// Pings every peer once and returns when each has answered or failed (within the
    /// ping timeout); a peer that answered counts by then (see `ping`). A node starts
    /// counting on its peers only once they answered, so it calls this before it
    /// takes requests: a restarted node that served at once would find every peer
    /// unreachable and refuse what it coordinates.
    public func pingPeersAndWait() async {
        for reply in pingPeers() { _ = try? await reply.get() }
    }

    /// Pings every peer; a peer whose answer makes it available again counts at once,
    /// not at the next round.
    @discardableResult
    private func pingPeers() -> [EventLoopFuture<RPCMessage>] {
        peerClients.withLock({ $0 }).map { peer, client in ping(peer, through: client) }
    }

    private func ping(_ peer: NodeID, through client: RPCClient) -> EventLoopFuture<RPCMessage> {
        let (type, body) = PeerCodec.encode(PeerRequest.ping(from: id))
        let reply = client.callFuture(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)), timeout: TimeAmount(settings.pingInterval * 4))
        reply.whenSuccess { [self] _ in
            let now = now()
            let wasAvailable = detectors.withLock { detectors in
                defer { detectors.heartbeat(from: peer, at: now) }
                return detectors.isAvailable(peer, at: now)
            }
            if !wasAvailable { updateReachability() }
        }
        return reply
    }

    /// A peer pinged this node, so it is up: calls to it stop failing on a backoff
    /// left from while it was down. If this node does not count the peer (it
    /// restarted, and pings to it failed), it pings back at once and counts the peer
    /// again within a round trip instead of seconds later.
    func pinged(by peer: NodeID) {
        guard let client = peerClients.withLock({ $0[peer] }) else { return }
        client.peerIsBack()
        let now = now()
        guard !detectors.withLock({ $0.isAvailable(peer, at: now) }) else { return }
        _ = ping(peer, through: client)
    }

    private func updateReachability() {
        let now = now()
        let changes = detectors.withLock { $0.availabilityChanges(at: now) }
        for (peer, available) in changes {
            logger.notice(available ? "peer is reachable" : "peer is unreachable", metadata: ["peer": "\(peer)"])
            feed { $0.setReachable(peer, available) }
        }
    }

    // MARK: Observations

    private func observe(_ observation: NodeObservation) {
        switch observation {
        case .readRepair: observations.readRepairs.increment()
        case .hintStored: observations.hintsStored.increment()
        case .hintDelivered: observations.hintsDelivered.increment()
        case .hintDropped(let key, let owner):
            observations.hintsDropped.increment()
            logger.warning("dropped the oldest hint to stay within bounds; anti-entropy will repair it", metadata: ["key": "\(key)", "owner": "\(owner)"])
        case .siblingsOverWarning(let key, let count):
            ServerMetrics.siblingsOverWarning.increment()
            logger.warning("key has many siblings", metadata: ["key": "\(key)", "siblings": "\(count)"])
        case .forwarded: observations.forwarded.increment()
        }
    }
}

/// The deadlines of a node's operations and the one timer that serves them. Every
/// operation's time limit goes into one heap, and the timer wakes at most once per
/// `resolution` however many operations run (a scheduled task per operation cost
/// the engine loop a tenth of its time in NIO's timer heap).
struct OperationTimeouts {
    private var heap = DeadlineHeap()
    /// The armed wake-up, if any.
    var timer: Scheduled<Void>?
    private(set) var stopped = false

    var count: Int { heap.count }

    /// Records a deadline. Returns when the timer must wake, if none is armed (the
    /// caller arms it and stores it in `timer`).
    mutating func add(_ operation: OperationID, deadline: NIODeadline, resolution: TimeAmount) -> NIODeadline? {
        guard !stopped else { return nil }
        heap.push(.init(deadline: deadline, id: operation.rawValue))
        return timer == nil ? deadline + resolution : nil
    }

    /// Takes the operations whose deadline is at or before `now`, and says when the
    /// timer must wake next: at the next deadline but not before `now + resolution`,
    /// or never if none is left. The caller stores the new timer in `timer`.
    mutating func takeDue(at now: NIODeadline, resolution: TimeAmount) -> (due: [OperationID], wake: NIODeadline?) {
        timer = nil
        var due: [OperationID] = []
        while let first = heap.first, first.deadline <= now {
            heap.popFirst()
            due.append(OperationID(rawValue: first.id))
        }
        guard !stopped, let first = heap.first else { return (due, nil) }
        return (due, max(first.deadline, now + resolution))
    }

    /// Cancels the timer and forgets every deadline; nothing is armed again.
    mutating func stop() {
        timer?.cancel()
        timer = nil
        heap = DeadlineHeap()
        stopped = true
    }
}

/// One of the locks that make a key's read-modify-write atomic across main and hint storage.
final class KeyStripe: Sendable {
    let lock = Mutex<Void>(())
}

/// The cluster data path's metrics.
struct ClusterMetrics: Sendable {
    let readRepairs = CoreMetrics.Counter(label: "ringstore_read_repairs_total")
    let hintsStored = CoreMetrics.Counter(label: "ringstore_hints_stored_total")
    let hintsDelivered = CoreMetrics.Counter(label: "ringstore_hints_delivered_total")
    let hintsDropped = CoreMetrics.Counter(label: "ringstore_hints_dropped_total")
    let forwarded = CoreMetrics.Counter(label: "ringstore_forwarded_requests_total")
    let corruptReplaced = CoreMetrics.Counter(label: "ringstore_corrupt_records_replaced_total")
    /// Reads the partition-aware client sent this node as a home replica (`PeerRequest.homeRead`).
    let homeReads = CoreMetrics.Counter(label: "ringstore_home_reads_total")
    let hints = CoreMetrics.Gauge(label: "ringstore_hints_pending")
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
