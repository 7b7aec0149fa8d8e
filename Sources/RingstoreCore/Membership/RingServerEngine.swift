/// One ring server's side of the membership protocol (DESIGN §8), as a deterministic
/// state machine: the primary commits configuration changes with a majority of the
/// storage nodes and replicates them to the secondary; the secondary takes over in a
/// higher term once a majority of the nodes confirm they too have lost the primary.
///
/// Safety rests on the nodes (`ConfigurationFollower`), which act as the acceptors:
/// a configuration counts as committed once a majority of its voters accepted it, a
/// candidate wins a term only with the promises of a majority of the voters of the
/// newest configuration those promises report, and it starts from that
/// configuration. Terms are owned: the ring server started as primary stands only
/// for odd terms, the other only for even ones, so no two ring servers ever act as
/// primary in one term. See docs/decisions/0007-ring-server-failover.md.
///
/// Joins, leaves and removals are staged as a plan (`planJoin`, `planLeave`,
/// `planRemove`) and committed together (`commitPlan`): the configuration then
/// carries a pending ring, nodes pull the partitions it gives them and report each
/// transfer (`.transferDone`), and once all are reported the primary puts the new
/// ring in effect by itself, moving one voter per configuration. The pending ring is
/// part of the committed configuration, so a new primary carries the change on.
///
/// Events are the mutating methods; each returns directives the shell MUST carry out
/// in order (see `RingServerDirective`). Isolation: a value type; the shell calls it
/// from one thread at a time. It reads no clock (`now` is any monotonic duration
/// since an arbitrary origin) and draws randomness only from `Settings.randomSeed`.
public struct RingServerEngine: Sendable {
    /// The role a ring server is started with; it also fixes which terms it may claim.
    public enum InitialRole: Sendable, Hashable {
        /// Starts as primary in term 1 and stands for odd terms.
        case primary
        /// Starts as secondary and stands for even terms.
        case secondary
    }

    /// Identity, cluster shape and timing.
    public struct Settings: Sendable {
        /// This ring server's id, as configurations name their issuer.
        public var id: String
        /// The other ring server's id.
        public var peer: String
        /// The role on first start. Exactly one of the two ring servers MUST be started
        /// as primary, and a ring server whose state file is lost MUST be restarted as
        /// secondary: only the first primary's term 1 is taken without an election.
        public var initialRole: InitialRole
        /// The cluster forms (a balanced `Ring.initial`) once this many nodes registered.
        public var initialNodeCount: Int
        /// Partitions of the ring the cluster forms with.
        public var partitioning: Partitioning
        /// Replicas the ring's layout spaces for (see `Ring.initial`).
        public var targetN: Int
        /// Tables created together with the ring.
        public var tablesAtFormation: [TableSpec]
        /// How often the ring servers heartbeat each other and re-send unanswered
        /// offers and vote requests.
        public var heartbeatInterval: Duration
        /// Silence after which the primary counts as lost (by the secondary and by the
        /// nodes), and after which a primary that hears from no majority of voters
        /// steps down. MUST equal the nodes' `ConfigurationFollower.Settings.primaryLossTimeout`.
        public var primaryLossTimeout: Duration
        /// How long a candidate waits for a majority of votes before it gives up.
        public var voteTimeout: Duration
        /// How long a requested change may take before it is reported failed.
        public var changeTimeout: Duration
        /// Changes that may wait while one is in flight.
        public var changeQueueMax: Int
        /// Seeds the jitter between candidacies. Shells pass real randomness; the
        /// simulator passes its seed.
        public var randomSeed: UInt64

        /// Creates settings; the timing defaults suit a LAN.
        public init(
            id: String, peer: String, initialRole: InitialRole, initialNodeCount: Int, partitioning: Partitioning,
            targetN: Int = 3, tablesAtFormation: [TableSpec] = [], heartbeatInterval: Duration = .milliseconds(250),
            primaryLossTimeout: Duration = .milliseconds(1500), voteTimeout: Duration = .seconds(1),
            changeTimeout: Duration = .seconds(5), changeQueueMax: Int = MembershipLimits.changeQueueMax,
            randomSeed: UInt64 = 0
        ) {
            precondition(!id.isEmpty && id != peer, "ring server ids must be non-empty and distinct")
            precondition(initialNodeCount >= 1 && initialNodeCount <= partitioning.partitionCount,
                         "initialNodeCount must be in 1...\(partitioning.partitionCount), not \(initialNodeCount)")
            precondition(heartbeatInterval > .zero && heartbeatInterval < primaryLossTimeout,
                         "the heartbeat interval must be positive and below the primary-loss timeout")
            precondition(voteTimeout > .zero && changeTimeout > .zero, "timeouts must be positive")
            precondition(targetN >= 1 && targetN <= Limits.replicasMax, "targetN must be in 1...\(Limits.replicasMax), not \(targetN)")
            precondition(changeQueueMax >= 1 && changeQueueMax <= MembershipLimits.changeQueueMax,
                         "changeQueueMax must be in 1...\(MembershipLimits.changeQueueMax)")
            self.id = id
            self.peer = peer
            self.initialRole = initialRole
            self.initialNodeCount = initialNodeCount
            self.partitioning = partitioning
            self.targetN = targetN
            self.tablesAtFormation = tablesAtFormation
            self.heartbeatInterval = heartbeatInterval
            self.primaryLossTimeout = primaryLossTimeout
            self.voteTimeout = voteTimeout
            self.changeTimeout = changeTimeout
            self.changeQueueMax = changeQueueMax
            self.randomSeed = randomSeed
        }
    }

    // MARK: State

    enum Change: Sendable, Hashable {
        case register(MemberInfo)
        case formRing
        case createTable(TableSpec)
        case dropTable(String)
        case replaceRing(Ring)
        /// Commits a staged plan: sets the pending ring.
        case beginTransition([PlanAction])
        /// Records transfers reported done for the pending ring of this epoch.
        case recordTransfers(pendingRingEpoch: UInt64, Set<Transfer>)
        /// The next voter-by-voter step once every transfer is done.
        case advanceTransition
        /// Abandons the ring change in progress.
        case cancelTransition
    }

    struct PendingChange: Sendable {
        var change: Change
        /// The shell's token for the request; nil for changes nobody waits on.
        var token: UInt64?
        var requestedAt: Duration
        /// Whether the requester already got an answer (a timeout while in flight).
        var answered = false
    }

    /// A configuration offered to the nodes and not yet accepted by a majority of its voters.
    struct Proposal: Sendable {
        var configuration: ClusterConfiguration
        /// The change it carries; nil for the first configuration of a term.
        var change: PendingChange?
        var acceptedBy: Set<NodeID> = []
    }

    struct Leadership: Sendable {
        /// When this ring server became primary (or restarted as primary).
        var since: Duration
        var proposal: Proposal?
        var queue: [PendingChange] = []
        /// The plan an admin is staging; kept in memory only, like Riak's claimant.
        var stagedActions: [PlanAction] = []
        /// Transfers reported done for the pending ring of `reportedRingEpoch` and not
        /// yet offered; at most the transfers that ring requires.
        var reportedTransfers: Set<Transfer> = []
        var reportedRingEpoch: UInt64 = 0
    }

    struct Candidacy: Sendable {
        var term: UInt64
        var startedAt: Duration
        /// The newest configuration among this ring server's own and the granters'.
        var best: ClusterConfiguration
        var asked: Set<NodeID>
        var grantedBy: Set<NodeID> = []
        var askedAt: Duration
    }

    enum State: Sendable {
        case primary(Leadership)
        case secondary
        case candidate(Candidacy)
    }

    struct OfferRecord: Sendable {
        var version: ConfigurationVersion
        var at: Duration
    }

    /// Identity, shape and timing.
    public let settings: Settings
    private var state: State
    /// What is on disk (or about to be, once the last `.persist` is carried out).
    public private(set) var persistent: RingServerPersistentState
    /// The newest configuration this ring server knows a majority accepted.
    public private(set) var committedConfiguration: ClusterConfiguration?
    /// Secondary and candidate: when a primary of a term at least ours last spoke.
    private var lastPrimaryContact: Duration
    /// No candidacy starts before this (jitter after a failed one or a step-down).
    private var nextCandidacyAt: Duration
    private var peerHeartbeatSentAt: Duration?
    /// Any message from a node, for the primary's check that it still reaches a majority.
    private var nodeContact: [NodeID: Duration] = [:]
    private var nodeDetectors = FailureDetectors<NodeID>()
    private var offersSent: [NodeID: OfferRecord] = [:]
    /// The highest term heard of anywhere; a candidacy claims an owned term above it.
    private var highestTermSeen: UInt64
    private var random: SplitMixGenerator

    /// A ring server starting at `now`, from its state file if it has one.
    ///
    /// Without state, the initial primary starts in term 1 with an empty
    /// configuration and the secondary waits for the primary's state. With state, it
    /// resumes as primary only if the configuration is its own and of its latest
    /// term (re-offering it if it was not known committed); otherwise as secondary.
    public init(settings: Settings, restoring restored: RingServerPersistentState? = nil, now: Duration) {
        self.settings = settings
        random = SplitMixGenerator(seed: settings.randomSeed)
        if let restored {
            persistent = restored
            committedConfiguration = restored.isCommitted ? restored.configuration : nil
            let issued = restored.configuration
            if issued.primary == settings.id, issued.term == restored.term, Self.owns(issued.term, settings.initialRole) {
                let proposal = restored.isCommitted ? nil : Proposal(configuration: issued, change: nil)
                state = .primary(Leadership(since: now, proposal: proposal))
            } else {
                state = .secondary
            }
        } else if settings.initialRole == .primary {
            let genesis = ClusterConfiguration.empty(term: 1, primary: settings.id)
            persistent = RingServerPersistentState(configuration: genesis, isCommitted: true, term: 1)
            committedConfiguration = genesis
            state = .primary(Leadership(since: now))
        } else {
            persistent = RingServerPersistentState(configuration: .empty(term: 0, primary: ""), isCommitted: true, term: 0)
            committedConfiguration = persistent.configuration
            state = .secondary
        }
        highestTermSeen = persistent.term
        lastPrimaryContact = now
        nextCandidacyAt = now
        nextCandidacyAt = now + candidacyDelay()
    }

    // MARK: Views

    /// The role this ring server acts in now.
    public var role: RingServerRole {
        switch state {
        case .primary: .primary
        case .secondary: .secondary
        case .candidate: .candidate
        }
    }

    /// The term of the role: the candidacy's term, else that of the newest configuration held.
    public var term: UInt64 {
        if case .candidate(let candidacy) = state { return candidacy.term }
        return persistent.configuration.term
    }

    /// The configuration to route and answer with: the newest known committed one.
    public var configuration: ClusterConfiguration { committedConfiguration ?? persistent.configuration }

    /// Changes waiting or in flight (0 unless primary).
    public var pendingChangeCount: Int {
        guard case .primary(let leadership) = state else { return 0 }
        return leadership.queue.count + (leadership.proposal?.change == nil ? 0 : 1)
    }

    /// Whether `node`'s heartbeats say it is up (phi-accrual; false if never heard).
    public func isNodeAvailable(_ node: NodeID, at now: Duration) -> Bool {
        nodeDetectors.isAvailable(node, at: now)
    }

    // MARK: Timer

    /// Periodic work; call at least every `heartbeatInterval` / 2.
    ///
    /// Primary: steps down if no majority of voters was heard for `primaryLossTimeout`,
    /// reports changes that took too long, re-offers the configuration in flight.
    /// Secondary: stands for election once the primary was silent for
    /// `primaryLossTimeout`. Candidate: asks again, or gives up after `voteTimeout`.
    /// All: heartbeat the other ring server.
    public mutating func tick(now: Duration) -> [RingServerDirective] {
        switch state {
        case .primary(var leadership):
            if hasLostVoterMajority(leadership, now: now) {
                return stepDown(now: now) + peerHeartbeatIfDue(now: now, force: true)
            }
            var directives = expireChanges(&leadership, now: now)
            if let proposal = leadership.proposal {
                let waiting = proposal.configuration.members.map(\.id).filter { !proposal.acceptedBy.contains($0) }
                directives += offer(proposal.configuration, to: waiting, now: now)
            } else {
                directives += startNextChange(&leadership, now: now)
            }
            state = .primary(leadership)
            return directives + peerHeartbeatIfDue(now: now)
        case .secondary:
            if now - lastPrimaryContact >= settings.primaryLossTimeout, now >= nextCandidacyAt {
                return startCandidacy(now: now) + peerHeartbeatIfDue(now: now)
            }
            return peerHeartbeatIfDue(now: now)
        case .candidate(var candidacy):
            if now - candidacy.startedAt >= settings.voteTimeout {
                return giveUpCandidacy(now: now) + peerHeartbeatIfDue(now: now)
            }
            var directives: [RingServerDirective] = []
            if now - candidacy.askedAt >= settings.heartbeatInterval {
                candidacy.askedAt = now
                for node in candidacy.best.members.map(\.id) where !candidacy.grantedBy.contains(node) {
                    directives.append(.sendToNode(node, .voteRequest(term: candidacy.term, candidate: settings.id)))
                }
                state = .candidate(candidacy)
            }
            return directives + peerHeartbeatIfDue(now: now)
        }
    }

    // MARK: Nodes

    /// A message from storage node `node`.
    public mutating func nodeMessage(_ message: NodeToRingServerMessage, from node: NodeID, now: Duration) -> [RingServerDirective] {
        nodeContact[node] = now
        switch message {
        case .register(let member):
            return register(member, now: now)
        case .heartbeat(let promisedTerm, let version):
            nodeDetectors.heartbeat(from: node, at: now)
            return nodeHeartbeat(from: node, promisedTerm: promisedTerm, version: version, now: now)
        case .offerAccepted(let version):
            return offerAccepted(by: node, version: version, now: now)
        case .offerRejected(let promisedTerm, let version):
            highestTermSeen = max(highestTermSeen, promisedTerm, version.term)
            guard case .primary = state, revealsNewerPrimary(promisedTerm: promisedTerm, version: version) else { return [] }
            return stepDown(now: now)
        case .voteGranted(let term, let configuration):
            return voteGranted(by: node, term: term, configuration: configuration, now: now)
        case .voteRefused(_, let promisedTerm, _):
            highestTermSeen = max(highestTermSeen, promisedTerm)
            return []
        case .transferDone(let partition, let pendingRingEpoch):
            return transferCompleted(Transfer(partition: partition, to: node), pendingRingEpoch: pendingRingEpoch, from: node, now: now)
        }
    }

    /// A node asks to join (or to update its addresses). Only the primary registers
    /// nodes; the others answer `.notPrimary`. A node already registered with these
    /// addresses is sent the configuration instead.
    public mutating func register(_ member: MemberInfo, now: Duration) -> [RingServerDirective] {
        guard case .primary(var leadership) = state else {
            return [.sendToNode(member.id, .notPrimary(primary: settings.peer, term: persistent.configuration.term))]
        }
        let latest = persistent.configuration
        if let known = latest.member(member.id), known.hasSameAddresses(as: member) {
            return offer(latest, to: [member.id], now: now)
        }
        let change = Change.register(member.with(status: .joining))
        guard !leadership.queue.contains(where: { $0.change == change }),
              leadership.queue.count < settings.changeQueueMax
        else { return [] }
        leadership.queue.append(PendingChange(change: change, token: nil, requestedAt: now))
        let directives = startNextChange(&leadership, now: now)
        state = .primary(leadership)
        return directives
    }

    private mutating func nodeHeartbeat(
        from node: NodeID, promisedTerm: UInt64, version: ConfigurationVersion, now: Duration
    ) -> [RingServerDirective] {
        highestTermSeen = max(highestTermSeen, promisedTerm, version.term)
        guard case .primary(let leadership) = state else { return [] }
        if revealsNewerPrimary(promisedTerm: promisedTerm, version: version) {
            return stepDown(now: now)
        }
        let latest = persistent.configuration
        var directives: [RingServerDirective] = [.sendToNode(node, .primaryHeartbeat(latest.version))]
        let accepted = leadership.proposal?.acceptedBy.contains(node) ?? false
        // A node that holds a configuration but is no longer listed has left or been
        // removed: it is offered the newest one too, so that it learns it is out.
        if version < latest.version, !accepted, latest.member(node) != nil || version.epoch > 0 {
            directives += offer(latest, to: [node], now: now)
        }
        return directives
    }

    /// Whether a node's promise or configuration shows a term above this primary's,
    /// or a configuration of this term it never issued (its own state was lost).
    private func revealsNewerPrimary(promisedTerm: UInt64, version: ConfigurationVersion) -> Bool {
        let mine = persistent.configuration.version
        return promisedTerm > mine.term || version.term > mine.term || (version.term == mine.term && version.epoch > mine.epoch)
    }

    private mutating func offerAccepted(by node: NodeID, version: ConfigurationVersion, now: Duration) -> [RingServerDirective] {
        guard case .primary(var leadership) = state, var proposal = leadership.proposal,
              proposal.configuration.version == version
        else { return [] }
        proposal.acceptedBy.insert(node)
        leadership.proposal = proposal
        let voters = proposal.configuration.voters
        guard voters.filter(proposal.acceptedBy.contains).count >= proposal.configuration.quorumSize else {
            state = .primary(leadership)
            return []
        }
        let directives = commitProposal(&leadership, now: now)
        state = .primary(leadership)
        return directives
    }

    /// Counts a promise. A granter that holds no configuration counts too: it accepted
    /// nothing, so no committed configuration can be hidden behind it, and without its
    /// promise a voter whose first offer was lost would block every election.
    private mutating func voteGranted(
        by node: NodeID, term: UInt64, configuration: ClusterConfiguration?, now: Duration
    ) -> [RingServerDirective] {
        // A grant reports a configuration from below the term it promises; anything
        // else did not come from a follower and is ignored.
        guard case .candidate(var candidacy) = state, term == candidacy.term, (configuration?.term ?? 0) < term else { return [] }
        candidacy.grantedBy.insert(node)
        var directives: [RingServerDirective] = []
        if let configuration, configuration.version > candidacy.best.version {
            candidacy.best = configuration
            for member in configuration.members.map(\.id) where !candidacy.asked.contains(member) {
                candidacy.asked.insert(member)
                directives.append(.sendToNode(member, .voteRequest(term: term, candidate: settings.id)))
            }
        }
        let voters = candidacy.best.voters
        guard voters.filter(candidacy.grantedBy.contains).count >= candidacy.best.quorumSize else {
            state = .candidate(candidacy)
            return directives
        }
        return directives + becomePrimary(candidacy, now: now)
    }

    // MARK: Changes

    /// Asks the primary to add a table; answered by `.committed` or `.changeFailed` with `token`.
    public mutating func createTable(_ table: TableSpec, token: UInt64, now: Duration) -> [RingServerDirective] {
        request(.createTable(table), token: token, now: now)
    }

    /// Asks the primary to drop a table; answered by `.committed` or `.changeFailed` with `token`.
    public mutating func dropTable(named name: String, token: UInt64, now: Duration) -> [RingServerDirective] {
        request(.dropTable(name), token: token, now: now)
    }

    /// Asks the primary to adopt a new ring at once, without streaming partitions
    /// first (an operator's override; joins and leaves normally go through a plan,
    /// see `planJoin`); answered by `.committed` or `.changeFailed` with `token`.
    ///
    /// Refused unless the cluster has formed, no ring change is in progress, the
    /// partitioning is unchanged, the ring's epoch is higher, every owner is
    /// registered, and at most one node enters or leaves the ring: one voter at a time
    /// keeps every two successive majorities overlapping.
    public mutating func replaceRing(_ ring: Ring, token: UInt64, now: Duration) -> [RingServerDirective] {
        request(.replaceRing(ring), token: token, now: now)
    }

    // MARK: Staged ring changes

    /// Stages `node`, a registered node that owns no partition, to join; returns the
    /// plan so far. Nothing changes until `commitPlan`. Throws `.notPrimary` on a
    /// ring server that is not primary, `.invalid` with the reason otherwise.
    public mutating func planJoin(_ node: NodeID) throws(ChangeFailure) -> RingPlan {
        try stage(.join(node))
    }

    /// Stages ring member `node` to hand its partitions over and leave; it serves as a
    /// source until the new ring takes effect. Refused when fewer than one node, or
    /// fewer than the largest table n, would remain. Returns the plan so far.
    public mutating func planLeave(_ node: NodeID) throws(ChangeFailure) -> RingPlan {
        try stage(.leave(node))
    }

    /// Stages ring member `node`, down for good, to be removed: its partitions are
    /// rebuilt from the surviving replicas, never read from it. Refused like
    /// `planLeave`. Returns the plan so far.
    public mutating func planRemove(_ node: NodeID) throws(ChangeFailure) -> RingPlan {
        try stage(.remove(node))
    }

    /// The staged plan as it would apply to the committed configuration now; nil when
    /// nothing is staged, this ring server is not primary, or the plan no longer applies.
    public var plan: RingPlan? {
        guard case .primary(let leadership) = state, !leadership.stagedActions.isEmpty,
              let committed = committedConfiguration,
              case .success(let plan) = Self.planning(leadership.stagedActions, in: committed, targetN: settings.targetN)
        else { return nil }
        return plan
    }

    /// Discards the staged plan; returns whether one was staged. A committed ring
    /// change is abandoned with `cancelTransition` instead.
    @discardableResult
    public mutating func cancelPlan() -> Bool {
        guard case .primary(var leadership) = state, !leadership.stagedActions.isEmpty else { return false }
        leadership.stagedActions = []
        state = .primary(leadership)
        return true
    }

    /// Commits the staged plan: a configuration with the pending ring set, answered by
    /// `.committed` or `.changeFailed` with `token`. The staged plan is consumed either
    /// way. Refused when nothing is staged or a ring change is already in progress
    /// (one at a time). Transfers then stream; once every one is reported done the
    /// primary commits the new ring by itself, in steps that move one voter each.
    public mutating func commitPlan(token: UInt64, now: Duration) -> [RingServerDirective] {
        guard case .primary(var leadership) = state else {
            return [.changeFailed(token: token, .notPrimary(primary: settings.peer))]
        }
        guard !leadership.stagedActions.isEmpty else { return [.changeFailed(token: token, .invalid("no change is staged"))] }
        let actions = leadership.stagedActions
        leadership.stagedActions = []
        state = .primary(leadership)
        return request(.beginTransition(actions), token: token, now: now)
    }

    /// Abandons the ring change in progress, answered by `.committed` or
    /// `.changeFailed` with `token`: the pending ring and its transfers are dropped
    /// and departing nodes stay. Refused once the new ring has begun to take effect.
    public mutating func cancelTransition(token: UInt64, now: Duration) -> [RingServerDirective] {
        request(.cancelTransition, token: token, now: now)
    }

    /// `node` reports that it holds `transfer.partition`'s data for the pending ring of
    /// `pendingRingEpoch` (the `.transferDone` message). Counted when this ring server
    /// is primary, `node` is the transfer's receiver, and the newest configuration's
    /// pending ring has that epoch and requires the transfer; reports gather while a
    /// configuration is in flight and are offered together. Ignored otherwise: the
    /// node repeats the report until a configuration lists it.
    public mutating func transferCompleted(
        _ transfer: Transfer, pendingRingEpoch: UInt64, from node: NodeID, now: Duration
    ) -> [RingServerDirective] {
        guard case .primary(var leadership) = state, node == transfer.to else { return [] }
        let latest = persistent.configuration
        guard latest.pendingRing?.epoch == pendingRingEpoch, latest.requires(transfer),
              !latest.transfersDone.contains(transfer)
        else { return [] }
        if leadership.reportedRingEpoch != pendingRingEpoch {
            leadership.reportedRingEpoch = pendingRingEpoch
            leadership.reportedTransfers = []
        }
        leadership.reportedTransfers.insert(transfer)
        let directives = startNextChange(&leadership, now: now)
        state = .primary(leadership)
        return directives
    }

    /// Progress of the ring change in the newest committed configuration; nil when none is in progress.
    public var transition: RingTransitionStatus? { configuration.transition }

    private mutating func stage(_ action: PlanAction) throws(ChangeFailure) -> RingPlan {
        guard case .primary(var leadership) = state else { throw .notPrimary(primary: settings.peer) }
        guard let committed = committedConfiguration else {
            throw .invalid("the ring server has not yet committed its first configuration of this term")
        }
        let actions = leadership.stagedActions + [action]
        switch Self.planning(actions, in: committed, targetN: settings.targetN) {
        case .success(let plan):
            leadership.stagedActions = actions
            state = .primary(leadership)
            return plan
        case .failure(let failure):
            throw failure
        }
    }

    private mutating func request(_ change: Change, token: UInt64, now: Duration) -> [RingServerDirective] {
        guard case .primary(var leadership) = state else {
            return [.changeFailed(token: token, .notPrimary(primary: settings.peer))]
        }
        guard leadership.queue.count < settings.changeQueueMax else {
            return [.changeFailed(token: token, .queueFull(limit: settings.changeQueueMax))]
        }
        leadership.queue.append(PendingChange(change: change, token: token, requestedAt: now))
        let directives = startNextChange(&leadership, now: now)
        state = .primary(leadership)
        return directives
    }

    /// With nothing in flight, offers the next queued change that changes something;
    /// answers those that are invalid or already in effect. Forms the ring first
    /// once enough nodes registered.
    private mutating func startNextChange(_ leadership: inout Leadership, now: Duration) -> [RingServerDirective] {
        guard leadership.proposal == nil else { return [] }
        guard let committed = committedConfiguration else {
            fatalError("internal inconsistency in RingServerEngine: primary with neither proposal nor committed configuration")
        }
        assert(committed == persistent.configuration, "a primary's newest configuration is its proposal or its last commit")
        if needsFormation(committed), !leadership.queue.contains(where: { $0.change == .formRing }) {
            leadership.queue.insert(PendingChange(change: .formRing, token: nil, requestedAt: now), at: 0)
        }
        var directives: [RingServerDirective] = []
        while leadership.proposal == nil {
            let pending: PendingChange
            if !leadership.queue.isEmpty {
                pending = leadership.queue.removeFirst()
            } else if let change = nextTransitionStep(&leadership, committed: committed) {
                pending = PendingChange(change: change, token: nil, requestedAt: now)
            } else {
                break
            }
            switch applying(pending.change, to: committed) {
            case .invalid(let reason):
                if let token = pending.token { directives.append(.changeFailed(token: token, .invalid(reason))) }
            case .unchanged:
                if let token = pending.token { directives.append(.committed(token: token, epoch: committed.epoch)) }
            case .changed(var next):
                precondition(committed.epoch < UInt64.max, "configuration epoch exhausted")
                next.term = committed.term
                next.epoch = committed.epoch + 1
                next.primary = settings.id
                persistent.configuration = next
                persistent.isCommitted = false
                leadership.proposal = Proposal(configuration: next, change: pending)
                directives.append(.persist(persistent))
                directives += offer(next, to: next.members.map(\.id), now: now)
            }
        }
        return directives
    }

    private mutating func commitProposal(_ leadership: inout Leadership, now: Duration) -> [RingServerDirective] {
        guard let proposal = leadership.proposal else { return [] }
        leadership.proposal = nil
        persistent.isCommitted = true
        committedConfiguration = proposal.configuration
        var directives: [RingServerDirective] = [.persist(persistent), .configurationCommitted(proposal.configuration)]
        if let change = proposal.change, let token = change.token, !change.answered {
            directives.append(.committed(token: token, epoch: proposal.configuration.epoch))
        }
        directives.append(.sendToPeer(.stateSync(proposal.configuration)))
        return directives + startNextChange(&leadership, now: now)
    }

    /// Reports changes that waited too long: queued ones fail for good, the one in
    /// flight is reported as of unknown outcome and stays offered (a majority may
    /// already hold it, so it can be neither withdrawn nor replaced in this term).
    private func expireChanges(_ leadership: inout Leadership, now: Duration) -> [RingServerDirective] {
        var directives: [RingServerDirective] = []
        let timeout = settings.changeTimeout
        if var change = leadership.proposal?.change, let token = change.token, !change.answered, now - change.requestedAt >= timeout {
            change.answered = true
            leadership.proposal?.change = change
            directives.append(.changeFailed(token: token, .outcomeUnknown("not accepted by a majority of nodes within \(timeout)")))
        }
        var kept: [PendingChange] = []
        for pending in leadership.queue {
            if now - pending.requestedAt >= timeout {
                if let token = pending.token { directives.append(.changeFailed(token: token, .timedOut(after: timeout))) }
            } else {
                kept.append(pending)
            }
        }
        leadership.queue = kept
        return directives
    }

    /// Once the queue is empty: the transfers reported since the last offer, else the
    /// next step of a ring change whose transfers are all done; nil when neither
    /// would change anything.
    private func nextTransitionStep(_ leadership: inout Leadership, committed: ClusterConfiguration) -> Change? {
        if !leadership.reportedTransfers.isEmpty {
            defer { leadership.reportedTransfers = [] }
            return .recordTransfers(pendingRingEpoch: leadership.reportedRingEpoch, leadership.reportedTransfers)
        }
        guard case .changed = Self.advancing(committed) else { return nil }
        return .advanceTransition
    }

    private func needsFormation(_ committed: ClusterConfiguration) -> Bool {
        committed.ring == nil && committed.members.count >= settings.initialNodeCount
            && committed.members.count <= settings.partitioning.partitionCount
    }

    // MARK: Ring servers

    /// A message from the other ring server.
    public mutating func peerMessage(_ message: RingServerMessage, now: Duration) -> [RingServerDirective] {
        switch message {
        case .peerHeartbeat(let term, let committed, let isPrimary):
            return peerHeartbeat(term: term, committed: committed, isPrimary: isPrimary, now: now)
        case .stateSync(let configuration):
            return stateSync(configuration, now: now)
        case .stateRequest:
            guard let committed = committedConfiguration, committed.epoch > 0 else { return [] }
            return [.sendToPeer(.stateSync(committed))]
        case .offer, .voteRequest, .primaryHeartbeat, .notPrimary:
            return []
        }
    }

    private mutating func peerHeartbeat(term: UInt64, committed: ConfigurationVersion, isPrimary: Bool, now: Duration) -> [RingServerDirective] {
        highestTermSeen = max(highestTermSeen, term)
        let myTerm = persistent.configuration.term
        let myCommitted = committedConfiguration?.version ?? ConfigurationVersion(term: 0, epoch: 0)
        var directives: [RingServerDirective] = []
        if term > myTerm || (term == myTerm && isPrimary) {
            switch state {
            case .primary where term > myTerm || settings.id > settings.peer:
                // A newer primary exists; or both act in one term, which only two
                // ring servers started as primary can cause: the greater id yields.
                directives += stepDown(now: now)
            case .primary:
                break
            case .candidate(let candidacy) where isPrimary || term > candidacy.term:
                lastPrimaryContact = isPrimary ? now : lastPrimaryContact
                directives += giveUpCandidacy(now: now)
            case .secondary where isPrimary:
                lastPrimaryContact = now
            case .candidate, .secondary:
                break
            }
        }
        if case .primary = state, let mine = committedConfiguration, committed < mine.version, mine.epoch > 0 {
            directives.append(.sendToPeer(.stateSync(mine)))
        } else if committed > myCommitted, term >= myTerm {
            directives.append(.sendToPeer(.stateRequest))
        }
        return directives
    }

    /// Adopts a committed configuration the other ring server sent, if newer.
    private mutating func stateSync(_ configuration: ClusterConfiguration, now: Duration) -> [RingServerDirective] {
        guard configuration.version > persistent.configuration.version else { return [] }
        var directives: [RingServerDirective] = []
        switch state {
        case .primary:
            guard configuration.term > persistent.configuration.term else { return [] }
            directives += stepDown(now: now)
        case .candidate(var candidacy):
            if configuration.term > candidacy.term {
                // A primary of a later term exists; a primary of this term could
                // only issue configurations that sort below the ones it holds.
                directives += giveUpCandidacy(now: now)
            } else if configuration.version > candidacy.best.version {
                candidacy.best = configuration
                state = .candidate(candidacy)
            }
        case .secondary:
            break
        }
        highestTermSeen = max(highestTermSeen, configuration.term)
        persistent = RingServerPersistentState(
            configuration: configuration, isCommitted: true, term: max(persistent.term, configuration.term))
        committedConfiguration = configuration
        return directives + [.persist(persistent), .configurationCommitted(configuration)]
    }

    private mutating func peerHeartbeatIfDue(now: Duration, force: Bool = false) -> [RingServerDirective] {
        if !force, let sent = peerHeartbeatSentAt, now - sent < settings.heartbeatInterval { return [] }
        peerHeartbeatSentAt = now
        let committed = committedConfiguration?.version ?? ConfigurationVersion(term: 0, epoch: 0)
        return [.sendToPeer(.peerHeartbeat(term: persistent.configuration.term, committed: committed, isPrimary: role == .primary))]
    }

    // MARK: Roles

    private func hasLostVoterMajority(_ leadership: Leadership, now: Duration) -> Bool {
        let reference = committedConfiguration ?? persistent.configuration
        let voters = reference.voters
        guard !voters.isEmpty, now - leadership.since >= settings.primaryLossTimeout else { return false }
        let heard = voters.filter { voter in
            nodeContact[voter].map { now - $0 < settings.primaryLossTimeout } ?? false
        }
        return heard.count < reference.quorumSize
    }

    private mutating func stepDown(now: Duration) -> [RingServerDirective] {
        guard case .primary(let leadership) = state else { return [] }
        var directives: [RingServerDirective] = []
        if let change = leadership.proposal?.change, let token = change.token, !change.answered {
            directives.append(.changeFailed(token: token, .outcomeUnknown("the ring server stepped down before a majority accepted")))
        }
        for pending in leadership.queue {
            if let token = pending.token { directives.append(.changeFailed(token: token, .notPrimary(primary: settings.peer))) }
        }
        state = .secondary
        offersSent = [:]
        lastPrimaryContact = now
        nextCandidacyAt = now + candidacyDelay()
        directives.append(.roleChanged(.secondary, term: persistent.configuration.term))
        return directives
    }

    private mutating func startCandidacy(now: Duration) -> [RingServerDirective] {
        let term = Self.ownedTerm(above: max(highestTermSeen, persistent.term), settings.initialRole)
        persistent.term = term
        highestTermSeen = term
        let best = persistent.configuration
        let targets = best.members.map(\.id)
        state = .candidate(Candidacy(term: term, startedAt: now, best: best, asked: Set(targets), askedAt: now))
        var directives: [RingServerDirective] = [.persist(persistent), .roleChanged(.candidate, term: term)]
        for node in targets {
            directives.append(.sendToNode(node, .voteRequest(term: term, candidate: settings.id)))
        }
        return directives
    }

    private mutating func giveUpCandidacy(now: Duration) -> [RingServerDirective] {
        guard case .candidate = state else { return [] }
        state = .secondary
        nextCandidacyAt = now + candidacyDelay()
        return [.roleChanged(.secondary, term: persistent.configuration.term)]
    }

    /// Continues from the newest configuration a majority reported, re-issued in the
    /// new term at the next epoch: committing it first settles whatever the previous
    /// primary left in flight before any new change is offered.
    private mutating func becomePrimary(_ candidacy: Candidacy, now: Duration) -> [RingServerDirective] {
        precondition(candidacy.best.epoch < UInt64.max, "configuration epoch exhausted")
        var next = candidacy.best
        next.term = candidacy.term
        next.epoch += 1
        next.primary = settings.id
        persistent = RingServerPersistentState(configuration: next, isCommitted: false, term: max(persistent.term, candidacy.term))
        state = .primary(Leadership(since: now, proposal: Proposal(configuration: next, change: nil)))
        offersSent = [:]
        var directives: [RingServerDirective] = [.persist(persistent), .roleChanged(.primary, term: candidacy.term)]
        directives += offer(next, to: next.members.map(\.id), now: now)
        return directives + peerHeartbeatIfDue(now: now, force: true)
    }

    /// Offers `configuration` to those of `nodes` not offered this version within a
    /// heartbeat interval.
    private mutating func offer(_ configuration: ClusterConfiguration, to nodes: [NodeID], now: Duration) -> [RingServerDirective] {
        var directives: [RingServerDirective] = []
        for node in nodes {
            if let sent = offersSent[node], sent.version == configuration.version, now - sent.at < settings.heartbeatInterval {
                continue
            }
            offersSent[node] = OfferRecord(version: configuration.version, at: now)
            directives.append(.sendToNode(node, .offer(configuration)))
        }
        return directives
    }

    /// Up to half a primary-loss timeout of jitter on top of it, so that two ring
    /// servers that lost their primary together do not keep splitting the votes.
    private mutating func candidacyDelay() -> Duration {
        let (seconds, attoseconds) = settings.primaryLossTimeout.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let spread = max(1, nanoseconds / 2)
        return settings.primaryLossTimeout + .nanoseconds(Int64.random(in: 0..<spread, using: &random))
    }

    /// Whether the ring server started in `role` may claim `term`: odd terms belong
    /// to the initial primary, even ones to the initial secondary.
    static func owns(_ term: UInt64, _ role: InitialRole) -> Bool {
        term % 2 == (role == .primary ? 1 : 0)
    }

    /// The smallest term above `term` that `role` owns.
    static func ownedTerm(above term: UInt64, _ role: InitialRole) -> UInt64 {
        precondition(term < UInt64.max - 1, "terms exhausted")
        return owns(term + 1, role) ? term + 1 : term + 2
    }
}
