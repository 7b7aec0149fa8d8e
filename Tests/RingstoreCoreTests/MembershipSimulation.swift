@testable import RingstoreCore

/// A deterministic world of two ring servers and a few storage nodes for the
/// membership protocol: one thread, simulated time in 10 ms steps, a network that
/// delays, drops, duplicates and partitions, crashes that keep only what was
/// persisted. Nodes pull the partitions a pending ring gives them from the sources
/// the configuration names, taking a while, and report them. Every fault comes from
/// one seeded generator, so a seed replays exactly.
struct MembershipWorld {
    struct Parameters {
        var seed: UInt64
        var nodeCount: Int
        var initialNodeCount: Int
        var dropPercent: Int
        var duplicatePercent: Int
        var delayMax: Duration
        /// How long a node takes at most to pull one partition from a source.
        var transferDurationMax: Duration = .milliseconds(300)
    }

    enum Endpoint: Hashable, CustomStringConvertible {
        case server(Int)
        case node(Int)

        var description: String {
            switch self {
            case .server(let index): MembershipWorld.serverIDs[index]
            case .node(let index): "n\(index + 1)"
            }
        }

        /// Servers first, then nodes: a small number for the cut table.
        var ordinal: Int {
            switch self {
            case .server(let index): index
            case .node(let index): 2 + index
            }
        }
    }

    enum Payload {
        case toNode(RingServerMessage)
        case toServer(NodeToRingServerMessage)
        case betweenServers(RingServerMessage)
    }

    struct Envelope {
        var deliverAt: Duration
        var sequence: Int
        var from: Endpoint
        var to: Endpoint
        var payload: Payload
    }

    struct ServerSlot {
        var settings: RingServerEngine.Settings
        var engine: RingServerEngine?
        var disk: RingServerPersistentState?
        /// The role and term the engine last announced (`.roleChanged`), or read at start.
        var announced: (role: RingServerRole, term: UInt64)?
    }

    /// A transfer of one pending ring: the ring epoch keeps transfers of successive
    /// ring changes apart.
    struct TransferKey: Hashable {
        var pendingRingEpoch: UInt64
        var transfer: Transfer
    }

    struct NodeSlot {
        var info: MemberInfo
        var follower: ConfigurationFollower?
        var disk: FollowerDurableState?
        /// Offsets the node's heartbeats so that nodes do not all speak in one step.
        var phase: Int
        /// Partitions whose data this node holds for a pending ring: on its disk, so it
        /// survives crashes.
        var received: Set<TransferKey> = []
        /// Transfers being pulled and when each will be complete; lost in a crash.
        var pulling: [TransferKey: Duration] = [:]
        /// The transfers to this node that the configuration of this version requires.
        var requiredCache: (version: ConfigurationVersion, transfers: [Transfer])?
        /// Whether the node saw itself staged to leave; it stops once dropped.
        var sawItselfLeaving = false
        /// Stopped for good: it left the cluster, or was removed after it died.
        var retired = false
    }

    static let serverIDs = ["rs-a", "rs-b"]
    static let step = Duration.milliseconds(10)
    static let heartbeatInterval = Duration.milliseconds(100)
    static let primaryLossTimeout = Duration.milliseconds(500)
    static let voteTimeout = Duration.milliseconds(400)
    static let changeTimeout = Duration.seconds(2)
    static let targetN = 3
    static let partitioning = try! Partitioning(partitionCount: 16)

    let parameters: Parameters
    private(set) var now: Duration = .zero
    var random: SplitMixGenerator
    var servers: [ServerSlot]
    var nodes: [NodeSlot]
    /// Messages in flight, by the step that delivers them.
    private var inFlight: [Int: [Envelope]] = [:]
    private var sequence = 0
    /// Pairs of endpoints that cannot reach each other (both directions), by ordinal pair.
    private(set) var cuts: Set<Int> = []
    var checker = MembershipChecker()
    /// Tokens of requested changes, and what each asked for.
    private(set) var requests: [UInt64: RingServerEngine.Change] = [:]
    private var nextToken: UInt64 = 1
    /// Every `.committed` and `.changeFailed` answer, by token.
    private(set) var answers: [UInt64: String] = [:]
    private var stepCount = 0

    init(_ parameters: Parameters) {
        self.parameters = parameters
        random = SplitMixGenerator(seed: parameters.seed)
        servers = (0..<2).map { index in
            let settings = RingServerEngine.Settings(
                id: Self.serverIDs[index], peer: Self.serverIDs[1 - index],
                initialRole: index == 0 ? .primary : .secondary,
                initialNodeCount: parameters.initialNodeCount, partitioning: Self.partitioning, targetN: Self.targetN,
                heartbeatInterval: Self.heartbeatInterval, primaryLossTimeout: Self.primaryLossTimeout,
                voteTimeout: Self.voteTimeout, changeTimeout: Self.changeTimeout,
                randomSeed: parameters.seed &* 31 &+ UInt64(index))
            let engine = RingServerEngine(settings: settings, now: .zero)
            return ServerSlot(settings: settings, engine: engine, disk: nil, announced: (engine.role, engine.term))
        }
        let followerSettings = ConfigurationFollower.Settings(primaryLossTimeout: Self.primaryLossTimeout)
        nodes = (0..<parameters.nodeCount).map { index in
            let info = MemberInfo(id: NodeID("n\(index + 1)"), rpcHost: "10.0.0.\(index + 1)", rpcPort: 7000,
                                  httpHost: "10.0.0.\(index + 1)", httpPort: 8000)
            return NodeSlot(info: info, follower: ConfigurationFollower(settings: followerSettings, now: .zero), disk: nil, phase: index % 10)
        }
    }

    // MARK: Running

    /// Advances one step: delivers what is due, then fires the timers due now. The
    /// checks run on every event that can break an invariant.
    mutating func step() {
        now += Self.step
        stepCount += 1
        deliverDue()
        if stepCount % 5 == 0 {
            for index in servers.indices where servers[index].engine != nil {
                let directives = servers[index].engine!.tick(now: now)
                execute(directives, at: index)
                checkAnnouncedRole(index)
            }
        }
        for index in nodes.indices where nodes[index].follower != nil && stepCount % 10 == nodes[index].phase {
            nodeTimer(index)
        }
    }

    mutating func run(for duration: Duration) {
        let end = now + duration
        while now < end { step() }
    }

    /// Steps until `condition` holds or `limit` passes; returns whether it held.
    mutating func run(until limit: Duration, _ condition: (MembershipWorld) -> Bool) -> Bool {
        let end = now + limit
        while now < end {
            if condition(self) { return true }
            step()
        }
        return condition(self)
    }

    private mutating func deliverDue() {
        guard let due = inFlight.removeValue(forKey: stepCount) else { return }
        let ordered = due.sorted { first, second in
            first.deliverAt != second.deliverAt ? first.deliverAt < second.deliverAt : first.sequence < second.sequence
        }
        for envelope in ordered where isUp(envelope.to) && !isCut(envelope.from, envelope.to) {
            deliver(envelope)
        }
    }

    private mutating func deliver(_ envelope: Envelope) {
        switch (envelope.to, envelope.payload) {
        case (.node(let index), .toNode(let message)):
            guard case .server(let sender) = envelope.from else { return }
            let directives = nodes[index].follower!.receive(message, now: now)
            executeFollower(directives, node: index, replyTo: sender)
        case (.server(let index), .toServer(let message)):
            guard case .node(let sender) = envelope.from else { return }
            let directives = servers[index].engine!.nodeMessage(message, from: nodes[sender].info.id, now: now)
            execute(directives, at: index)
        case (.server(let index), .betweenServers(let message)):
            let directives = servers[index].engine!.peerMessage(message, now: now)
            execute(directives, at: index)
        default:
            fatalError("misrouted \(envelope.payload) to \(envelope.to)")
        }
    }

    private mutating func nodeTimer(_ index: Int) {
        guard let follower = nodes[index].follower else { return }
        let registered = follower.configuration?.member(nodes[index].info.id)?.hasSameAddresses(as: nodes[index].info) ?? false
        for server in servers.indices {
            send(from: .node(index), to: .server(server), .toServer(follower.heartbeatMessage))
            if !registered {
                send(from: .node(index), to: .server(server), .toServer(.register(nodes[index].info)))
            }
        }
        if let configuration = follower.configuration {
            pullTransfers(node: index, configuration: configuration)
        }
    }

    /// What a node shell does with a pending ring: pull each partition it must receive
    /// from a reachable source, which takes a while, keep it on disk, then report it
    /// to both ring servers every heartbeat until a configuration lists it.
    private mutating func pullTransfers(node index: Int, configuration: ClusterConfiguration) {
        guard let pendingRing = configuration.pendingRing else {
            nodes[index].pulling = [:]
            return
        }
        if nodes[index].requiredCache?.version != configuration.version {
            let mine = configuration.requiredTransfers.filter { $0.to == nodes[index].info.id }
            nodes[index].requiredCache = (configuration.version, mine)
        }
        let required = nodes[index].requiredCache?.transfers ?? []
        for transfer in required where !configuration.transfersDone.contains(transfer) {
            let key = TransferKey(pendingRingEpoch: pendingRing.epoch, transfer: transfer)
            if !nodes[index].received.contains(key) {
                let sources = configuration.transferSources(for: transfer)
                let reachable = sources.isEmpty || sources.contains { source in
                    guard let sourceIndex = nodeIndex(source) else { return false }
                    return isUp(.node(sourceIndex)) && !isCut(.node(index), .node(sourceIndex))
                }
                guard reachable else {
                    nodes[index].pulling[key] = nil
                    continue
                }
                guard let readyAt = nodes[index].pulling[key] else {
                    let durationMax = max(1, Int(parameters.transferDurationMax / .milliseconds(1)))
                    nodes[index].pulling[key] = now + .milliseconds(1 + draw(durationMax))
                    continue
                }
                guard now >= readyAt else { continue }
                nodes[index].pulling[key] = nil
                nodes[index].received.insert(key)
                checker.transferReceived(key)
            }
            for server in servers.indices {
                send(from: .node(index), to: .server(server),
                     .toServer(.transferDone(partition: transfer.partition, pendingRingEpoch: pendingRing.epoch)))
            }
        }
    }

    func nodeIndex(_ id: NodeID) -> Int? {
        nodes.firstIndex { $0.info.id == id }
    }

    // MARK: Directives

    private mutating func execute(_ directives: [RingServerDirective], at index: Int) {
        for directive in directives {
            switch directive {
            case .persist(let state):
                if state.term < state.configuration.term {
                    checker.report("\(Self.serverIDs[index]) persisted term \(state.term) below its configuration's \(state.configuration.term)")
                }
                servers[index].disk = state
            case .sendToNode(let node, let message):
                guard let target = nodeIndex(node) else { continue }
                send(from: .server(index), to: .node(target), .toNode(message))
            case .sendToPeer(let message):
                send(from: .server(index), to: .server(1 - index), .betweenServers(message))
            case .committed(let token, let epoch):
                answers[token] = "committed at \(epoch)"
                checker.serverClaimedCommit(token: token, change: requests[token], epoch: epoch, server: index)
            case .changeFailed(let token, let failure):
                answers[token] = "failed: \(failure)"
            case .roleChanged(let role, let term):
                servers[index].announced = (role, term)
                checker.checkRoles(servers.map { $0.announced }, now: now)
            case .configurationCommitted(let configuration):
                checker.serverAdopted(configuration, server: index)
            }
        }
    }

    private mutating func executeFollower(_ directives: [FollowerDirective], node index: Int, replyTo server: Int) {
        let promisedBefore = nodes[index].disk?.promisedTerm ?? 0
        var leftCluster = false
        for directive in directives {
            switch directive {
            case .persist(let state):
                checker.nodePersisted(state, node: index, previous: nodes[index].disk)
                nodes[index].disk = state
            case .adopt(let configuration):
                checker.nodeAccepted(configuration, node: index, promisedBefore: promisedBefore)
                let listed = configuration.member(nodes[index].info.id)
                if listed?.status == .leaving { nodes[index].sawItselfLeaving = true }
                leftCluster = listed == nil && nodes[index].sawItselfLeaving
            case .reply(let message):
                send(from: .node(index), to: .server(server), .toServer(message))
            }
        }
        if leftCluster {
            // A node that learns it was dropped after leaving shuts down for good.
            nodes[index].follower = nil
            nodes[index].retired = true
        }
    }

    /// A number in 0..<bound from the world's generator (a hair of modulo bias does
    /// not matter here; the generic `random(in:using:)` is slow in debug builds).
    mutating func draw(_ bound: Int) -> Int {
        Int(random.next() % UInt64(bound))
    }

    private mutating func send(from: Endpoint, to: Endpoint, _ payload: Payload) {
        guard !isCut(from, to), draw(100) >= parameters.dropPercent else { return }
        let copies = draw(100) < parameters.duplicatePercent ? 2 : 1
        let delayMaxMilliseconds = max(1, Int(parameters.delayMax / .milliseconds(1)))
        let stepMilliseconds = Int(Self.step / .milliseconds(1))
        for _ in 0..<copies {
            sequence += 1
            let delayMilliseconds = 1 + draw(delayMaxMilliseconds)
            // The first step at or after the delivery time.
            let dueStep = stepCount + (delayMilliseconds + stepMilliseconds - 1) / stepMilliseconds
            let envelope = Envelope(deliverAt: now + .milliseconds(delayMilliseconds), sequence: sequence, from: from, to: to, payload: payload)
            inFlight[dueStep, default: []].append(envelope)
        }
    }

    // MARK: Faults and requests

    func isUp(_ endpoint: Endpoint) -> Bool {
        switch endpoint {
        case .server(let index): servers[index].engine != nil
        case .node(let index): nodes[index].follower != nil
        }
    }

    func isCut(_ first: Endpoint, _ second: Endpoint) -> Bool {
        !cuts.isEmpty && cuts.contains(Self.pair(first, second))
    }

    static func pair(_ first: Endpoint, _ second: Endpoint) -> Int {
        min(first.ordinal, second.ordinal) << 16 | max(first.ordinal, second.ordinal)
    }

    var allEndpoints: [Endpoint] {
        servers.indices.map { .server($0) } + nodes.indices.map { .node($0) }
    }

    /// Cuts every link between `group` and the other endpoints.
    mutating func isolate(_ group: [Endpoint]) {
        for inside in group {
            for outside in allEndpoints where !group.contains(outside) {
                cuts.insert(Self.pair(inside, outside))
            }
        }
    }

    mutating func cut(_ first: Endpoint, _ second: Endpoint) {
        cuts.insert(Self.pair(first, second))
    }

    mutating func healNetwork() {
        cuts = []
    }

    mutating func crash(_ endpoint: Endpoint) {
        switch endpoint {
        case .server(let index):
            servers[index].engine = nil
            servers[index].announced = nil
        case .node(let index):
            nodes[index].follower = nil
            nodes[index].pulling = [:]
        }
    }

    /// Restarts a crashed ring server or node from its disk; retired nodes stay down.
    mutating func restart(_ endpoint: Endpoint) {
        switch endpoint {
        case .server(let index):
            guard servers[index].engine == nil else { return }
            let engine = RingServerEngine(settings: servers[index].settings, restoring: servers[index].disk, now: now)
            servers[index].engine = engine
            servers[index].announced = (engine.role, engine.term)
            checker.checkRoles(servers.map { $0.announced }, now: now)
        case .node(let index):
            guard nodes[index].follower == nil, !nodes[index].retired else { return }
            let settings = ConfigurationFollower.Settings(primaryLossTimeout: Self.primaryLossTimeout)
            nodes[index].follower = ConfigurationFollower(settings: settings, restoring: nodes[index].disk, now: now)
        }
    }

    /// Crashes node `index` for good, as an operator would before removing it.
    mutating func kill(node index: Int) {
        crash(.node(index))
        nodes[index].retired = true
    }

    /// Asks ring server `index` to create a table; returns the request's token.
    @discardableResult
    mutating func createTable(_ name: String, n: Int = 3, at index: Int) -> UInt64 {
        request(.createTable(TableSpec(name: name, n: n, r: min(2, n), w: min(2, n))), at: index)
    }

    /// Stages `actions` on ring server `index` and commits them as one plan.
    @discardableResult
    mutating func commitPlan(_ actions: [PlanAction], at index: Int) -> UInt64 {
        request(.beginTransition(actions), at: index)
    }

    @discardableResult
    mutating func request(_ change: RingServerEngine.Change, at index: Int) -> UInt64 {
        let token = nextToken
        nextToken += 1
        requests[token] = change
        checker.requested(change)
        guard servers[index].engine != nil else { return token }
        let directives: [RingServerDirective] = switch change {
        case .createTable(let table): servers[index].engine!.createTable(table, token: token, now: now)
        case .dropTable(let name): servers[index].engine!.dropTable(named: name, token: token, now: now)
        case .replaceRing(let ring): servers[index].engine!.replaceRing(ring, token: token, now: now)
        case .beginTransition(let actions): stageAndCommit(actions, token: token, at: index)
        case .cancelTransition: servers[index].engine!.cancelTransition(token: token, now: now)
        case .register, .formRing, .recordTransfers, .advanceTransition: fatalError("not requested by clients")
        }
        execute(directives, at: index)
        return token
    }

    /// Makes `transfer`'s receiver hold the data, as if it had pulled it.
    mutating func completeTransfer(_ transfer: Transfer, pendingRingEpoch: UInt64) {
        guard let index = nodeIndex(transfer.to) else { return }
        let key = TransferKey(pendingRingEpoch: pendingRingEpoch, transfer: transfer)
        nodes[index].received.insert(key)
        checker.transferReceived(key)
    }

    /// Hands ring server `server` a message from node `node` at once, carries out
    /// what it answers, and returns that.
    @discardableResult
    mutating func deliverNow(_ message: NodeToRingServerMessage, from node: Int, to server: Int) -> [RingServerDirective] {
        guard servers[server].engine != nil else { return [] }
        let directives = servers[server].engine!.nodeMessage(message, from: nodes[node].info.id, now: now)
        execute(directives, at: server)
        return directives
    }

    private mutating func stageAndCommit(_ actions: [PlanAction], token: UInt64, at index: Int) -> [RingServerDirective] {
        servers[index].engine!.cancelPlan()
        for action in actions {
            do {
                switch action {
                case .join(let node): _ = try servers[index].engine!.planJoin(node)
                case .leave(let node): _ = try servers[index].engine!.planLeave(node)
                case .remove(let node): _ = try servers[index].engine!.planRemove(node)
                }
            } catch {
                servers[index].engine!.cancelPlan()
                return [.changeFailed(token: token, error)]
            }
        }
        return servers[index].engine!.commitPlan(token: token, now: now)
    }

    // MARK: Views and checks

    /// Indices of ring servers that are up and act as primary.
    var primaries: [Int] {
        servers.indices.filter { servers[$0].engine?.role == .primary }
    }

    /// Nodes that have not left or been removed for good.
    var activeNodes: [Int] {
        nodes.indices.filter { !nodes[$0].retired }
    }

    /// Every role change must be announced: what the engine acts as must match what
    /// it last said (checked every tick; the role checks run on the announcements).
    private mutating func checkAnnouncedRole(_ index: Int) {
        guard let engine = servers[index].engine, let announced = servers[index].announced else { return }
        if engine.role != announced.role || (engine.role == .primary && engine.term != announced.term) {
            checker.report("\(Self.serverIDs[index]) acts as \(engine.role) of term \(engine.term) but announced \(announced.role) of term \(announced.term)")
        }
    }

    /// Whether the cluster has settled: one primary with nothing in flight and no ring
    /// change in progress, every active node registered and holding its
    /// configuration, the other ring server a synced secondary.
    var hasConverged: Bool {
        guard primaries.count == 1, let primary = servers[primaries[0]].engine,
              let committed = primary.committedConfiguration, committed == primary.persistent.configuration,
              primary.pendingChangeCount == 0, committed.ring != nil, committed.transition == nil,
              committed.members.count == activeNodes.count
        else { return false }
        let others = servers.indices.filter { $0 != primaries[0] }.compactMap { servers[$0].engine }
        guard others.allSatisfy({ $0.role == .secondary && $0.committedConfiguration == committed }) else { return false }
        return activeNodes.allSatisfy { nodes[$0].follower?.configuration == committed }
    }

    /// A one-line picture of the world for failure messages.
    var summary: String {
        let serverText = servers.indices.map { index -> String in
            guard let engine = servers[index].engine else { return "\(Self.serverIDs[index]) down" }
            var text = "\(Self.serverIDs[index]) \(engine.role) term \(engine.term) holds \(engine.persistent.configuration.version)"
            if let transition = engine.persistent.configuration.transition {
                text += " transition \(transition.transfersDone)/\(transition.transfersRequired) departing \(transition.departing)"
            }
            return text
        }
        let nodeText = nodes.indices.map { index -> String in
            if nodes[index].retired { return "n\(index + 1) retired" }
            guard let follower = nodes[index].follower else { return "n\(index + 1) down" }
            return "n\(index + 1) \(follower.version) promised \(follower.state.promisedTerm)"
        }
        return "t=\(now) " + (serverText + nodeText).joined(separator: "; ") + " cuts \(cuts.count)"
    }
}

/// The invariants, checked against what actually happened rather than against what
/// the ring servers believe: which configurations nodes accepted, which of them a
/// majority of their voters accepted (committed), which transfers nodes really
/// completed, and which changes clients asked for.
struct MembershipChecker {
    private var accepted: [ConfigurationVersion: (configuration: ClusterConfiguration, by: Set<Int>)] = [:]
    /// Committed configurations in the order they became committed, each newer than
    /// the one before.
    private(set) var committed: [ClusterConfiguration] = []
    /// Configurations of old terms whose majority formed only after a later term took
    /// them over (see `lateCommitted`).
    private(set) var lateCommits: [ClusterConfiguration] = []
    private var committedByEpoch: [UInt64: ClusterConfiguration] = [:]
    private var nodeVersions: [Int: ConfigurationVersion] = [:]
    /// Which ring server acted as primary in each term.
    private var primaryOfTerm: [UInt64: Int] = [:]
    /// Transfers some node really completed.
    private var received: Set<MembershipWorld.TransferKey> = []
    /// What clients asked for, so that a change nobody asked for counts as a loss.
    private var requestedTables: Set<TableSpec> = []
    private var requestedDrops: Set<String> = []
    private var requestedRings: Set<Ring> = []
    private var requestedPlans: [[PlanAction]] = []
    private var cancelRequested = false
    /// A ring change that took effect.
    struct CompletedTransition {
        var from: Ring
        var to: Ring
        /// The term of the configuration that began it, and of the one that ended it.
        var beganInTerm: UInt64
        var endedInTerm: UInt64
        /// The ring server that issued the configuration that ended it.
        var issuer: String
    }

    /// Ring changes that took effect, in order.
    private(set) var completedTransitions: [CompletedTransition] = []
    /// The term of the configuration that began the ring change in progress.
    private var transitionBeganInTerm: UInt64 = 0
    private(set) var violations: [String] = []

    mutating func requested(_ change: RingServerEngine.Change) {
        switch change {
        case .createTable(let table): requestedTables.insert(table)
        case .dropTable(let name): requestedDrops.insert(name)
        case .replaceRing(let ring): requestedRings.insert(ring)
        case .beginTransition(let actions): requestedPlans.append(actions)
        case .cancelTransition: cancelRequested = true
        case .register, .formRing, .recordTransfers, .advanceTransition: break
        }
    }

    mutating func transferReceived(_ key: MembershipWorld.TransferKey) {
        received.insert(key)
    }

    mutating func nodeAccepted(_ configuration: ClusterConfiguration, node: Int, promisedBefore: UInt64) {
        let version = configuration.version
        if configuration.term < promisedBefore {
            violations.append("n\(node + 1) accepted \(version) below its promise of term \(promisedBefore)")
        }
        if let previous = nodeVersions[node], !(previous < version) {
            violations.append("n\(node + 1) went from \(previous) to \(version)")
        }
        nodeVersions[node] = version
        var entry = accepted[version] ?? (configuration, [])
        if entry.configuration != configuration {
            violations.append("two different configurations carry version \(version)")
        }
        entry.by.insert(node)
        accepted[version] = entry
        let voters = Set(configuration.voters.map { Int($0.rawValue.dropFirst())! - 1 })
        let known = committed.contains { $0.version == version } || lateCommits.contains { $0.version == version }
        if !known, entry.by.intersection(voters).count >= configuration.quorumSize {
            becameCommitted(configuration)
        }
    }

    private mutating func becameCommitted(_ configuration: ClusterConfiguration) {
        if let last = committed.last, configuration.version < last.version {
            lateCommitted(configuration)
            return
        }
        if let last = committed.last {
            if !(last.version < configuration.version) || !(last.epoch < configuration.epoch) {
                violations.append("\(configuration.version) committed after \(last.version)")
            }
            let voterChange = Set(last.voters).symmetricDifference(configuration.voters).count
            if voterChange > 1 {
                violations.append("\(configuration.version) moves \(voterChange) voters at once after \(last.version): majorities may not overlap")
            }
            if let problem = stepProblem(from: last, to: configuration) {
                violations.append("\(configuration.version) does not follow from the previous committed \(last.version) by one change: \(problem)")
            }
        }
        if let earlier = committedByEpoch[configuration.epoch], earlier != configuration {
            violations.append("epoch \(configuration.epoch) committed twice, as \(earlier.version) and \(configuration.version)")
        }
        committedByEpoch[configuration.epoch] = configuration
        committed.append(configuration)
    }

    /// A configuration of an old term that a majority of its voters accepted only
    /// after later terms committed theirs: one node accepted it long ago, another (down
    /// or cut off through the elections since) just now, still bound only by that old
    /// term. Paxos allows this and promises that the first later term to commit took
    /// it over: the promises that term gathered overlap that majority, so its
    /// first configuration re-issued the same content at the next epoch. Anything else
    /// is a lost or forked change.
    private mutating func lateCommitted(_ configuration: ClusterConfiguration) {
        let takenOver = committed.contains { later in
            later.term > configuration.term && later.epoch == configuration.epoch + 1 && later.hasSameContent(as: configuration)
        }
        if !takenOver {
            violations.append("\(configuration.version) committed after \(committed.last.map { "\($0.version)" } ?? "") and no later term took it over")
        }
        if let earlier = committedByEpoch[configuration.epoch], earlier != configuration {
            violations.append("epoch \(configuration.epoch) committed twice, as \(earlier.version) and \(configuration.version)")
        }
        committedByEpoch[configuration.epoch] = configuration
        lateCommits.append(configuration)
    }

    mutating func nodePersisted(_ state: FollowerDurableState, node: Int, previous: FollowerDurableState?) {
        if let previous, state.promisedTerm < previous.promisedTerm {
            violations.append("n\(node + 1) lowered its promise from \(previous.promisedTerm) to \(state.promisedTerm)")
        }
    }

    /// A ring server said a change is committed at `epoch`: the committed
    /// configuration of that epoch must show it.
    mutating func serverClaimedCommit(token: UInt64, change: RingServerEngine.Change?, epoch: UInt64, server: Int) {
        guard let configuration = committedByEpoch[epoch] else {
            violations.append("\(MembershipWorld.serverIDs[server]) reported token \(token) committed at epoch \(epoch), which no majority accepted")
            return
        }
        let shown: Bool = switch change {
        case .createTable(let table)?: configuration.table(named: table.name) == table
        case .dropTable(let name)?: configuration.table(named: name) == nil
        case .replaceRing(let ring)?: configuration.ring == ring
        case .beginTransition(let actions)?:
            configuration.pendingRing != nil && actions.allSatisfy { Self.shows($0, in: configuration) }
        case .cancelTransition?: configuration.pendingRing == nil
        case .register, .formRing, .recordTransfers, .advanceTransition, nil: true
        }
        if !shown {
            violations.append("token \(token) reported committed at epoch \(epoch) but \(configuration.version) does not show \(String(describing: change))")
        }
    }

    private static func shows(_ action: PlanAction, in configuration: ClusterConfiguration) -> Bool {
        switch action {
        case .join(let node): configuration.pendingRing?.members.contains(node) == true
        case .leave(let node): configuration.member(node)?.status == .leaving
        case .remove(let node): configuration.member(node)?.status == .removing
        }
    }

    /// A ring server took a configuration as committed: a majority must have accepted it.
    mutating func serverAdopted(_ configuration: ClusterConfiguration, server: Int) {
        guard configuration.epoch > 0 else { return }
        if !committed.contains(configuration) && !lateCommits.contains(configuration) {
            violations.append("\(MembershipWorld.serverIDs[server]) took \(configuration.version) as committed; no majority accepted it")
        }
    }

    mutating func report(_ violation: String) {
        violations.append(violation)
    }

    /// No term ever has two primaries, at once or one after the other.
    mutating func checkRoles(_ roles: [(role: RingServerRole, term: UInt64)?], now: Duration) {
        for (index, announced) in roles.enumerated() {
            guard let announced, announced.role == .primary else { continue }
            if let other = primaryOfTerm[announced.term], other != index {
                violations.append("at \(now) \(MembershipWorld.serverIDs[index]) acts as primary of term \(announced.term), which \(MembershipWorld.serverIDs[other]) held")
            }
            primaryOfTerm[announced.term] = index
        }
        let acting = roles.compactMap { $0 }.filter { $0.role == .primary }
        if acting.count == 2, acting[0].term == acting[1].term {
            violations.append("at \(now) two primaries in term \(acting[0].term)")
        }
    }

    // MARK: One change per committed configuration

    /// Why `new` is not `old` with exactly one change applied (or re-issued unchanged
    /// by a new primary); nil when it is. Changes a client asked for must have been
    /// asked for, and a ring change may take effect only once every transfer it
    /// needs was really completed by its receiver.
    private mutating func stepProblem(from old: ClusterConfiguration, to new: ClusterConfiguration) -> String? {
        if old.hasSameContent(as: new) { return nil }
        let sameTransition = old.pendingRing == new.pendingRing && old.transferSpan == new.transferSpan
        let sameRingState = old.ring == new.ring && sameTransition && old.transfersDone == new.transfersDone
        if sameRingState, old.members == new.members {
            return tableStepProblem(from: old, to: new)
        }
        guard old.tables == new.tables else { return "tables changed together with members or rings" }
        if sameRingState {
            return memberStepProblem(from: old, to: new)
        }
        if old.ring == nil {
            let formed = new.ring != nil && new.pendingRing == nil && new.members.map(\.id) == old.members.map(\.id)
                && new.members.allSatisfy { $0.status == .member }
            return formed ? nil : "the ring formed wrongly"
        }
        if old.pendingRing == nil, new.pendingRing == nil, old.transition == nil, old.ring != new.ring {
            guard let ring = new.ring, requestedRings.contains(ring) else { return "a ring nobody asked for took effect" }
            return nil
        }
        return transitionStepProblem(from: old, to: new, sameTransition: sameTransition)
    }

    private func tableStepProblem(from old: ClusterConfiguration, to new: ClusterConfiguration) -> String? {
        let added = Set(new.tables).subtracting(old.tables)
        let removed = Set(old.tables).subtracting(new.tables)
        switch (added.count, removed.count) {
        case (1, 0):
            return requestedTables.contains(added.first!) ? nil : "table \(added.first!.name) appeared unasked"
        case (0, 1):
            return requestedDrops.contains(removed.first!.name) ? nil : "table \(removed.first!.name) vanished unasked: a committed change was lost"
        default:
            return "\(added.count) tables added and \(removed.count) removed at once"
        }
    }

    private func memberStepProblem(from old: ClusterConfiguration, to new: ClusterConfiguration) -> String? {
        let oldMembers = Dictionary(uniqueKeysWithValues: old.members.map { ($0.id, $0) })
        let newMembers = Dictionary(uniqueKeysWithValues: new.members.map { ($0.id, $0) })
        let added = new.members.filter { oldMembers[$0.id] == nil }
        let dropped = old.members.filter { newMembers[$0.id] == nil }
        let altered = new.members.filter { member in oldMembers[member.id].map { $0 != member } ?? false }
        switch (added.count, dropped.count, altered.count) {
        case (1, 0, 0):
            return added[0].status == .joining ? nil : "\(added[0].id) registered as \(added[0].status)"
        case (0, 0, 1):
            let before = oldMembers[altered[0].id]!
            if before.status == altered[0].status { return nil }
            // A node moving in becomes a voter once every transfer is done.
            let promoted = before.status == .joining && altered[0].status == .member
                && old.pendingRing?.members.contains(altered[0].id) == true && old.areTransfersComplete
            return promoted ? nil : "\(altered[0].id) went from \(before.status) to \(altered[0].status)"
        case (0, 1, 0):
            let departed = old.pendingRing == nil && [.leaving, .removing].contains(dropped[0].status)
            return departed ? nil : "\(dropped[0].id) (\(dropped[0].status)) was dropped"
        default:
            return "\(added.count) nodes added, \(dropped.count) dropped, \(altered.count) altered at once"
        }
    }

    /// When a pending ring takes effect, the only member changes allowed are a node
    /// of the new ring becoming a voter and a departing node being dropped.
    private static func switchMemberProblem(from old: ClusterConfiguration, to new: ClusterConfiguration) -> String? {
        let newMembers = Dictionary(uniqueKeysWithValues: new.members.map { ($0.id, $0) })
        for before in old.members {
            guard let after = newMembers[before.id] else {
                if before.status == .leaving || before.status == .removing { continue }
                return "\(before.id) (\(before.status)) was dropped as the ring changed"
            }
            let promoted = before.status == .joining && after.status == .member && new.ring?.members.contains(after.id) == true
            guard after == before || promoted else {
                return "\(before.id) went from \(before.status) to \(after.status) as the ring changed"
            }
        }
        return new.members.count <= old.members.count ? nil : "nodes appeared as the ring changed"
    }

    private mutating func transitionStepProblem(
        from old: ClusterConfiguration, to new: ClusterConfiguration, sameTransition: Bool
    ) -> String? {
        let ids = Set(old.members.map(\.id))
        if old.pendingRing == nil, let pending = new.pendingRing {
            guard old.ring == new.ring, new.transfersDone.isEmpty else { return "a ring change began wrongly" }
            let departing = Set(new.departingMembers)
            let matches = requestedPlans.contains { actions in
                actions.allSatisfy { Self.shows($0, in: new) }
                    && Set(actions.filter { !$0.isJoin }.map(\.node)) == departing
            }
            guard matches, Set(new.members.map(\.id)) == ids, pending.epoch > (old.ring?.epoch ?? 0) else {
                return "a ring change nobody asked for began"
            }
            transitionBeganInTerm = new.term
            return nil
        }
        if sameTransition, old.ring == new.ring, old.members == new.members {
            guard new.transfersDone.isSuperset(of: old.transfersDone), let pending = new.pendingRing else {
                return "recorded transfers were lost"
            }
            let fresh = new.transfersDone.subtracting(old.transfersDone)
            if let invented = fresh.first(where: { !received.contains(.init(pendingRingEpoch: pending.epoch, transfer: $0)) }) {
                return "transfer \(invented) recorded done but its receiver never completed it"
            }
            return nil
        }
        if let pending = old.pendingRing, new.pendingRing == nil, new.ring == pending {
            let forgotten = old.requiredTransfers.filter { !received.contains(.init(pendingRingEpoch: pending.epoch, transfer: $0)) }
            guard old.areTransfersComplete, forgotten.isEmpty else {
                return "ring epoch \(pending.epoch) took effect before transfers \(forgotten.prefix(3)) were complete"
            }
            if let problem = Self.switchMemberProblem(from: old, to: new) { return problem }
            if let ring = old.ring {
                completedTransitions.append(CompletedTransition(
                    from: ring, to: pending, beganInTerm: transitionBeganInTerm, endedInTerm: new.term, issuer: new.primary))
            }
            return nil
        }
        if let pending = old.pendingRing, new.pendingRing == nil, let ring = old.ring, let after = new.ring,
           after.owners == ring.owners, after.epoch == pending.epoch {
            let restored = new.members.allSatisfy { $0.status != .leaving && $0.status != .removing }
            return cancelRequested && restored && Set(new.members.map(\.id)) == ids ? nil : "a ring change was abandoned wrongly"
        }
        return "the ring state changed in no known way"
    }
}
