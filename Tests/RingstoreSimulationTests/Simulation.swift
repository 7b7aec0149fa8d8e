import RingstoreCore

/// One event of a run. Events for a node's engine carry the incarnation they were
/// meant for: a crash starts a new incarnation and the old one's events are dropped.
enum SimulationEvent {
    case clientStep(client: Int)
    case clientRequestArrives(call: Int)
    case clientReplyArrives(call: Int, ClientResult)
    case clientRefused(call: Int)
    case clientTimeout(call: Int)
    case requestArrives(rpc: UInt64, from: Int, to: Int, PeerRequest)
    case replyArrives(rpc: UInt64, PeerReply)
    case rpcFailed(rpc: UInt64, TransportFailure)
    case readCompletes(node: Int, incarnation: Int, OperationID, ItemKey)
    case writeCompletes(node: Int, incarnation: Int, OperationID, sequence: UInt64, StorageResult)
    case timerFires(node: Int, incarnation: Int, OperationID)
    case tick(node: Int)
    case detectorCheck(observer: Int, subject: Int)
    case faultStep
    case restart(node: Int)
    case healPartition(id: Int)

    /// A small code for the trace fingerprint (operation ids are left out: they are
    /// the engine's business and not part of what a run means).
    var fingerprint: (kind: Int, subject: Int) {
        switch self {
        case .clientStep(let client): (1, client)
        case .clientRequestArrives(let call): (2, call)
        case .clientReplyArrives(let call, _): (3, call)
        case .clientRefused(let call): (4, call)
        case .clientTimeout(let call): (5, call)
        case .requestArrives(_, let from, let to, _): (6, from * 16 + to)
        case .replyArrives(let rpc, _): (7, Int(rpc))
        case .rpcFailed(let rpc, _): (8, Int(rpc))
        case .readCompletes(let node, _, _, _): (9, node)
        case .writeCompletes(let node, _, _, let sequence, _): (10, node * 1_000_000 + Int(sequence))
        case .timerFires(let node, _, _): (11, node)
        case .tick(let node): (12, node)
        case .detectorCheck(let observer, let subject): (13, observer * 16 + subject)
        case .faultStep: (14, 0)
        case .restart(let node): (15, node)
        case .healPartition(let id): (16, id)
        }
    }
}

/// A storage node as the simulator runs it: its engine (nil while crashed), its
/// disk, and the requests it has yet to answer.
struct SimulatedNode {
    struct InboundRequest {
        var rpc: UInt64
        var from: Int
    }

    let id: NodeID
    /// The actor of the running incarnation. A restart after a crash takes a new one:
    /// writes the crash lost may have left dots under the old one elsewhere.
    var actor: ActorID
    /// Every actor this node's engines drew for writes they coordinated as a
    /// fallback, over all incarnations: hint records on disk keep theirs.
    var hintActors: Set<ActorID> = []
    /// Keys this node has kept a hint record for at some point.
    var keysHinted: Set<Int> = []
    var engine: NodeEngine?
    var incarnation = 0
    var disk: SimulatedDisk
    /// When the node's last issued fsync completes; fsyncs complete in order.
    var lastSyncCompletion: SimulatedInstant = 0
    /// What this node's engine was last told about each peer.
    var toldReachable: [Bool]
    var peerRequests: [UInt64: InboundRequest] = [:]
    var clientRequests: [UInt64: Int] = [:]

    var isUp: Bool { engine != nil }
}

/// A call this node made to a peer and is waiting on.
struct PendingRPC {
    var from: Int
    var incarnation: Int
    var to: Int
    var operation: OperationID
}

/// A simulated client: one operation at a time, and the contexts it has seen.
struct SimulatedClient {
    let index: Int
    /// Scripted clients act only when a test tells them to.
    let isScripted: Bool
    var sequence = 0
    /// The context of the last successful read or write of each key.
    var contexts: [Int: VersionVector] = [:]
    /// The context the client's last acknowledged write of each key returned.
    var acknowledged: [Int: VersionVector] = [:]
}

/// Which part of the run is under way.
enum SimulationPhase: Equatable {
    /// Client load and faults.
    case safety
    /// Faults healed, no new client load: the cluster must converge.
    case liveness
}

/// The deterministic simulator: a whole Ringstore cluster of `NodeEngine`s on one
/// thread, with simulated network, disks, failure detector and clients, all driven
/// by one seed. The shells here carry out every directive as a real node would,
/// and inject faults only where real ones happen (network, disk, process).
///
/// Not thread-safe: a run lives on one task from start to report.
final class Simulation {
    static let assertionsEnabled: Bool = {
        var enabled = false
        assert({ enabled = true; return true }())
        return enabled
    }()

    let parameters: SimulationParameters
    var random: SimulationRandom
    var queue = EventQueue<SimulationEvent>()
    var now: SimulatedInstant = 0
    var phase = SimulationPhase.safety
    let ring: Ring
    let keys: [ItemKey]
    let keyIndexByKey: [ItemKey: Int]
    /// For each key, its N home replicas (node indices).
    let homes: [[Int]]
    var nodes: [SimulatedNode]
    let nodeIndexByID: [NodeID: Int]
    var network: SimulatedNetwork
    /// suspectedUntil[observer][subject]: a false suspicion lasts until then.
    var suspectedUntil: [[SimulatedInstant]]
    var pendingRPCs: [UInt64: PendingRPC] = [:]
    var nextRPC: UInt64 = 0
    var nextToken: UInt64 = 0
    var nextPartitionID = 0
    var dropProbability: Double
    var duplicateProbability: Double
    var slowProbability: Double
    var acceptingClientOperations = true

    var clients: [SimulatedClient] = []
    var calls: [ClientCall] = []
    var writes: [WriteRecord] = []
    var writeIndexByValue: [Sibling: Int] = [:]
    var keyCounts: [KeyWriteCounts]
    var writesByDot: [KeyDot: [Int]] = [:]
    /// Every actor a node was given or an engine drew, so that each new one is fresh.
    var actorsUsed: Set<ActorID> = []
    /// Short names of actors for reports: `n2` (first incarnation), `n2@1` (after
    /// its first crash), `n2.h3` (the third actor n2 drew for a fallback write).
    var actorNames: [ActorID: String] = [:]
    /// Seeds given to engines: every incarnation gets its own.
    var engineSeeds: Set<UInt64> = []
    /// Client-write applications a crash lost before their fsync.
    var lostApplications: [Int] = []
    var keyLog: [[(time: SimulatedInstant, entry: KeyLogEntry)]]
    var faultLog: [(time: SimulatedInstant, text: String)] = []
    var violations: [Violation] = []
    var statistics = SimulationStatistics()
    var trace = TraceHash()

    init(parameters: SimulationParameters) {
        precondition(Self.assertionsEnabled, "the simulator refuses to run with assertions compiled out (CONVENTIONS §6)")
        precondition(parameters.nodeCount >= parameters.replicaCount && parameters.nodeCount <= 16)
        self.parameters = parameters
        random = SimulationRandom(seed: parameters.seed)
        let partitioning: Partitioning
        do { partitioning = try Partitioning(partitionCount: parameters.partitionCount) } catch {
            preconditionFailure("bad partition count \(parameters.partitionCount)")
        }
        let ids = (1...parameters.nodeCount).map { NodeID("n\($0)") }
        ring = Ring.initial(members: ids, partitioning: partitioning, targetN: parameters.replicaCount)
        keys = (0..<parameters.keyCount).map { ItemKey(table: "default", key: Array("key\($0)".utf8), partitioning: partitioning) }
        keyIndexByKey = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        nodeIndexByID = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        let ring = ring, nodeIndexByID = nodeIndexByID
        homes = keys.map { key in
            ring.preferenceList(for: key.partition, count: parameters.replicaCount).map { nodeIndexByID[$0]! }
        }
        var actors = Set<ActorID>()
        var nodes: [SimulatedNode] = []
        for id in ids {
            var actor = ActorID(rawValue: random.next())
            while !actors.insert(actor).inserted { actor = ActorID(rawValue: random.next()) }
            nodes.append(SimulatedNode(
                id: id, actor: actor, disk: SimulatedDisk(defect: parameters.shellDefect),
                toldReachable: Array(repeating: true, count: parameters.nodeCount)))
        }
        self.nodes = nodes
        actorsUsed = actors
        actorNames = Dictionary(uniqueKeysWithValues: nodes.map { ($0.actor, $0.id.rawValue) })
        network = SimulatedNetwork(nodeCount: parameters.nodeCount)
        suspectedUntil = Array(repeating: Array(repeating: 0, count: parameters.nodeCount), count: parameters.nodeCount)
        dropProbability = parameters.dropProbability
        duplicateProbability = parameters.duplicateProbability
        slowProbability = parameters.slowProbability
        keyCounts = Array(repeating: KeyWriteCounts(), count: parameters.keyCount)
        keyLog = Array(repeating: [], count: parameters.keyCount)
        for index in nodes.indices { startEngine(index) }
        for index in nodes.indices {
            schedule(.tick(node: index), after: random.microseconds(in: 0...SimulatedTime.seconds(1)))
        }
    }

    // MARK: The loop

    func schedule(_ event: SimulationEvent, after delay: Int64) {
        precondition(delay >= 0, "an event in the past")
        queue.schedule(event, at: now + delay)
    }

    /// Runs every event due up to `time`, then sets the clock to `time`.
    func run(until time: SimulatedInstant) {
        while let next = queue.nextTime, next <= time {
            guard let (eventTime, event) = queue.pop() else { break }
            precondition(eventTime >= now, "time went backwards")
            now = eventTime
            statistics.events += 1
            let fingerprint = event.fingerprint
            trace.combine(now)
            trace.combine(fingerprint.kind)
            trace.combine(fingerprint.subject)
            handle(event)
        }
        now = max(now, time)
    }

    func run(for duration: Int64) { run(until: now + duration) }

    private func handle(_ event: SimulationEvent) {
        switch event {
        case .clientStep(let client): clientStep(client)
        case .clientRequestArrives(let call): clientRequestArrives(call)
        case .clientReplyArrives(let call, let result): completeCall(call, .replied(result))
        case .clientRefused(let call): completeCall(call, .refused)
        case .clientTimeout(let call):
            if calls[call].outcome == .pending { completeCall(call, .indeterminate) }
        case .requestArrives(let rpc, let from, let to, let request): requestArrives(rpc: rpc, from: from, to: to, request)
        case .replyArrives(let rpc, let reply): rpcFinished(rpc, .success(reply))
        case .rpcFailed(let rpc, let failure): rpcFinished(rpc, .failure(failure))
        case .readCompletes(let node, let incarnation, let operation, let key):
            guard nodes[node].incarnation == incarnation else { return }
            let result = StorageResult.object(nodes[node].disk.visibleSlot(key).object)
            withEngine(node) { $0.storageCompleted(result, operation: operation) }
        case .writeCompletes(let node, let incarnation, let operation, let sequence, let result):
            guard nodes[node].incarnation == incarnation else { return }
            writeBecameDurable(node: node, sequence: sequence)
            withEngine(node) { $0.storageCompleted(result, operation: operation) }
        case .timerFires(let node, let incarnation, let operation):
            guard nodes[node].incarnation == incarnation else { return }
            withEngine(node) { $0.timerFired(operation) }
        case .tick(let node):
            withEngine(node) { $0.tick() }
            schedule(.tick(node: node), after: SimulatedTime.seconds(1))
        case .detectorCheck(let observer, let subject): detectorCheck(observer: observer, subject: subject)
        case .faultStep: faultStep()
        case .restart(let node): restart(node)
        case .healPartition(let id): healPartition(id)
        }
    }

    // MARK: Engines and their directives

    func startEngine(_ index: Int) {
        precondition(nodes[index].engine == nil, "internal inconsistency in Simulation: starting a running node")
        // A seed per incarnation: a restarted engine that drew the actors of its
        // previous life again would issue their dots a second time.
        var engineSeed = random.next()
        while !engineSeeds.insert(engineSeed).inserted { engineSeed = random.next() }
        let configuration = NodeEngine.Configuration(
            node: nodes[index].id, actor: nodes[index].actor,
            requestTimeout: SimulatedTime.duration(microseconds: parameters.requestTimeoutMicroseconds),
            randomSeed: engineSeed)
        nodes[index].engine = NodeEngine(configuration: configuration, ring: ring)
        nodes[index].toldReachable = Array(repeating: true, count: nodes.count)
        var recovered: [(ItemKey, owners: [NodeID], bytes: Int)] = []
        for key in keys {
            guard let record = nodes[index].disk.durableSlot(key).hint else { continue }
            let bytes = record.object.values.reduce(key.storageKey.count + 32) { $0 + $1.data.count + $1.contentType.utf8.count + 16 }
            recovered.append((key, owners: record.owners, bytes: bytes))
        }
        withEngine(index) { $0.recoverHints(recovered) }
    }

    /// Calls the node's engine (if it is up) and carries out what it asks.
    func withEngine(_ index: Int, _ body: (inout NodeEngine) -> [NodeDirective]) {
        guard nodes[index].engine != nil else { return }
        let directives = body(&nodes[index].engine!)
        execute(directives, at: index)
    }

    private func execute(_ directives: [NodeDirective], at index: Int) {
        for directive in directives {
            switch directive {
            case .send(let request, let peer, let operation):
                send(request, from: index, to: peer, operation: operation)
            case .replyToPeer(let token, let reply):
                replyToPeer(from: index, token: token, reply)
            case .replyToClient(let token, let result):
                replyToClient(from: index, token: token, result)
            case .read(let key, let operation):
                schedule(.readCompletes(node: index, incarnation: nodes[index].incarnation, operation, key),
                         after: random.microseconds(in: parameters.readDelayMicroseconds))
            case .write(let key, let storageOperation, let operation):
                write(storageOperation, key: key, at: index, operation: operation)
            case .startTimer(let operation, let duration):
                statistics.timersStarted += 1
                schedule(.timerFires(node: index, incarnation: nodes[index].incarnation, operation),
                         after: SimulatedTime.microseconds(duration))
            case .observe(let observation):
                observe(observation)
            }
        }
    }

    private func observe(_ observation: NodeObservation) {
        switch observation {
        case .readRepair: statistics.readRepairs += 1
        case .hintStored: statistics.hintsStored += 1
        case .hintDelivered: statistics.hintsDelivered += 1
        case .hintDropped: statistics.hintsDropped += 1
        case .siblingsOverWarning: break
        case .forwarded: statistics.forwards += 1
        }
    }

    // MARK: Network

    private func send(_ request: PeerRequest, from: Int, to peer: NodeID, operation: OperationID) {
        guard let to = nodeIndexByID[peer] else {
            violation(nil, "unknown peer", "\(nodes[from].id) sent \(request) to \(peer), which is not a member")
            return
        }
        nextRPC += 1
        let rpc = nextRPC
        pendingRPCs[rpc] = PendingRPC(from: from, incarnation: nodes[from].incarnation, to: to, operation: operation)
        schedule(.rpcFailed(rpc: rpc, .timedOut), after: parameters.rpcDeadlineMicroseconds)
        guard nodes[to].isUp else {
            // A crashed process refuses connections: the sender learns it after a round trip.
            schedule(.rpcFailed(rpc: rpc, .unreachable), after: 2 * networkDelay())
            return
        }
        guard transmits(from: from, to: to) else { return }
        schedule(.requestArrives(rpc: rpc, from: from, to: to, request), after: networkDelay())
        let idempotent = switch request {
        case .replicaRead, .homeRead, .replicaWrite, .ping: true
        case .coordinate: false
        }
        if idempotent && random.chance(duplicateProbability) {
            statistics.messagesDuplicated += 1
            schedule(.requestArrives(rpc: rpc, from: from, to: to, request), after: networkDelay())
        }
    }

    /// Whether a message leaves `from` for `to`: not across a cut, not dropped.
    private func transmits(from: Int, to: Int) -> Bool {
        if network.isBlocked(from: from, to: to) { return false }
        if random.chance(dropProbability) {
            statistics.messagesDropped += 1
            return false
        }
        return true
    }

    func networkDelay() -> Int64 {
        if random.chance(slowProbability) {
            statistics.messagesStalled += 1
            return random.microseconds(in: parameters.slowDelayMicroseconds)
        }
        return random.microseconds(in: parameters.networkDelayMicroseconds)
    }
    func clientDelay() -> Int64 { random.microseconds(in: parameters.clientDelayMicroseconds) }

    private func requestArrives(rpc: UInt64, from: Int, to: Int, _ request: PeerRequest) {
        // A message in flight when its link was cut, or its receiver crashed, is lost.
        guard nodes[to].isUp, !network.isBlocked(from: from, to: to) else { return }
        nextToken += 1
        let token = nextToken
        nodes[to].peerRequests[token] = SimulatedNode.InboundRequest(rpc: rpc, from: from)
        let sender = nodes[from].id
        withEngine(to) { $0.peerRequested(request, from: sender, token: token) }
    }

    private func replyToPeer(from index: Int, token: UInt64, _ reply: PeerReply) {
        guard let inbound = nodes[index].peerRequests.removeValue(forKey: token) else {
            violation(nil, "double reply", "\(nodes[index].id) answered peer token \(token) twice or unasked: \(reply)")
            return
        }
        guard transmits(from: index, to: inbound.from) else { return }
        schedule(.replyArrives(rpc: inbound.rpc, reply), after: networkDelay())
    }

    /// The first reply or failure of a call settles it; later ones (a duplicate's
    /// reply, a reply after the deadline) are ignored, as an RPC client does.
    private func rpcFinished(_ rpc: UInt64, _ result: Result<PeerReply, TransportFailure>) {
        guard let pending = pendingRPCs.removeValue(forKey: rpc) else { return }
        guard nodes[pending.from].incarnation == pending.incarnation else { return }
        if case .success = result, network.isBlocked(from: pending.to, to: pending.from) {
            // The reply was in flight when the link was cut; the deadline will report it.
            pendingRPCs[rpc] = pending
            return
        }
        let peer = nodes[pending.to].id
        withEngine(pending.from) { $0.peerReplied(result, operation: pending.operation, from: peer) }
    }

    // MARK: Disk

    private func write(_ operation: StorageOperation, key: ItemKey, at index: Int, operation id: OperationID) {
        guard let keyIndex = keyIndexByKey[key] else {
            violation(nil, "unknown key", "\(nodes[index].id) wrote \(key), which no client uses")
            return
        }
        var clientWrite: Int?
        if case .clientWrite(let sibling, _, let actor, let hinted) = operation {
            let hintFor = hinted?.owner
            clientWrite = writeIndexByValue[sibling]
            if clientWrite == nil { violation(keyIndex, "unknown value", "\(nodes[index].id) applied a value no client wrote") }
            checkOfferedActor(actor, hinted: hinted, keyIndex: keyIndex, at: index)
            if hintFor != nil, nodes[index].disk.visibleSlot(key).hint == nil, nodes[index].keysHinted.contains(keyIndex) {
                statistics.fallbackRewrites += 1
            }
        }
        let (sequence, result, slot) = nodes[index].disk.apply(operation, to: key, clientWrite: clientWrite)
        if let clientWrite, case .clientWrite(_, _, let actor, let hinted) = operation, case .object(let object?) = result,
           let issuer = issuingActor(offered: actor, hintFor: hinted?.owner, slot: slot, keyIndex: keyIndex, at: index) {
            recordDot(Dot(actor: issuer, counter: object.context[issuer]), of: clientWrite, at: index, hintFor: hinted?.owner)
        }
        if slot.hint != nil { nodes[index].keysHinted.insert(keyIndex) }
        checkSlot(slot, of: keyIndex, at: index)
        let completion = max(now + random.microseconds(in: parameters.fsyncDelayMicroseconds), nodes[index].lastSyncCompletion)
        nodes[index].lastSyncCompletion = completion
        queue.schedule(.writeCompletes(node: index, incarnation: nodes[index].incarnation, id, sequence: sequence, result), at: completion)
        // As the node does: a client write's object goes to the other replicas before
        // its own fsync.
        if clientWrite != nil { withEngine(index) { $0.storageAppended(result, operation: id) } }
    }

    /// The actors an engine offers with a client write: always its own; for a
    /// fallback's write also a fresh one that no node was given and no engine drew.
    private func checkOfferedActor(_ actor: ActorID, hinted: HintedWrite?, keyIndex: Int, at index: Int) {
        if actor != nodes[index].actor {
            violation(keyIndex, "foreign actor", "\(nodes[index].id) wrote under \(actorName(actor)), not its own actor")
        }
        guard let fresh = hinted?.freshActor else { return }
        guard actorsUsed.insert(fresh).inserted else {
            violation(keyIndex, "reused actor", "\(nodes[index].id) offered \(actorName(fresh)) as a fresh actor for a fallback write")
            return
        }
        nodes[index].hintActors.insert(fresh)
        actorNames[fresh] = "\(nodes[index].id).h\(nodes[index].hintActors.count)"
    }

    /// The actor a client write's version was issued under: the node's own for a home
    /// replica, the hint record's (one this node drew) for a fallback.
    private func issuingActor(offered: ActorID, hintFor: NodeID?, slot: KeySlot, keyIndex: Int, at index: Int) -> ActorID? {
        guard hintFor != nil else { return offered }
        guard let record = slot.hint, let actor = record.actor else {
            violation(keyIndex, "hint without actor", "\(nodes[index].id) coordinated a write as a fallback and kept no actor for it")
            return nil
        }
        if !nodes[index].hintActors.contains(actor) {
            violation(keyIndex, "foreign actor", "\(nodes[index].id) wrote a hint under \(actorName(actor)), which it never drew")
        }
        return actor
    }

    private func recordDot(_ dot: Dot, of write: Int, at node: Int, hintFor: NodeID?) {
        let keyIndex = writes[write].keyIndex
        keyLog[keyIndex].append((now, .applied(write: write, node: node, dot, hintFor: hintFor)))
        if !writes[write].dots.contains(dot) {
            if !writes[write].dots.isEmpty {
                keyCounts[keyIndex].extraApplications += 1
                statistics.writesAppliedTwice += 1
            }
            writes[write].dots.append(dot)
        }
        let keyDot = KeyDot(keyIndex: keyIndex, dot: dot)
        if !writesByDot[keyDot, default: []].contains(write) { writesByDot[keyDot, default: []].append(write) }
    }

    private func writeBecameDurable(node index: Int, sequence: UInt64) {
        for synced in nodes[index].disk.sync(through: sequence) {
            if let clientWrite = synced.clientWrite { writes[clientWrite].durablyApplied = true }
            for value in synced.slot.object?.values ?? [] {
                guard let write = writeIndexByValue[value] else { continue }
                writes[write].durableHolders |= 1 << UInt64(index)
            }
        }
    }

    /// Where data may live: main copies only on home replicas, hints only on
    /// fallbacks, and a hint only for home replicas of its key.
    private func checkSlot(_ slot: KeySlot, of keyIndex: Int, at index: Int) {
        let isHome = homes[keyIndex].contains(index)
        if slot.main != nil && !isHome {
            violation(keyIndex, "misplaced copy", "\(nodes[index].id) stores a main copy but is not a home replica")
        }
        if let hint = slot.hint {
            let owners = hint.owners.compactMap { nodeIndexByID[$0] }
            if isHome || owners.isEmpty || owners.count != hint.owners.count || !owners.allSatisfy(homes[keyIndex].contains) {
                violation(keyIndex, "misplaced hint", "\(nodes[index].id) keeps a hint for \(hint.owners)")
            }
        }
    }

    func violation(_ keyIndex: Int?, _ kind: String, _ detail: String, writes involved: [Int] = []) {
        guard violations.count < 200 else { return }
        violations.append(Violation(time: now, keyIndex: keyIndex, kind: kind, detail: detail, writes: involved))
    }
}
