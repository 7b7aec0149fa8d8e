/// How one requested change applies to the committed configuration. Pure functions:
/// the engine decides when, these decide what.
extension RingServerEngine {
    enum ChangeOutcome: Equatable {
        /// The content after the change; the engine stamps term, epoch and issuer.
        case changed(ClusterConfiguration)
        /// Already in effect: answer at once, offer nothing.
        case unchanged
        /// Makes no sense here; the reason is for the requester.
        case invalid(String)
    }

    func applying(_ change: Change, to committed: ClusterConfiguration) -> ChangeOutcome {
        let outcome: ChangeOutcome = switch change {
        case .register(let member): Self.registering(member, in: committed)
        case .formRing: forming(committed)
        case .createTable(let table): Self.creating(table, in: committed)
        case .dropTable(let name): Self.dropping(name, in: committed)
        case .replaceRing(let ring): Self.replacing(with: ring, in: committed)
        case .beginTransition(let actions): beginning(actions, in: committed)
        case .recordTransfers(let pendingRingEpoch, let transfers):
            Self.recording(transfers, pendingRingEpoch: pendingRingEpoch, in: committed)
        case .advanceTransition: Self.advancing(committed)
        case .cancelTransition: Self.cancelling(committed)
        }
        guard case .changed(let next) = outcome else { return outcome }
        // A configuration without voters can never gather a majority: offered, it
        // would stay in flight for the whole term and block every change behind it.
        guard !next.voters.isEmpty else {
            return .invalid("no storage node has registered yet, so no majority can accept a change")
        }
        // Every two successive configurations' majorities must overlap.
        precondition(Self.voterChange(from: committed, to: next) <= 1,
                     "internal inconsistency in RingServerEngine: \(change) moves more than one voter")
        return outcome
    }

    /// Nodes that are voters in exactly one of the two configurations.
    static func voterChange(from old: ClusterConfiguration, to new: ClusterConfiguration) -> Int {
        Set(old.voters).symmetricDifference(new.voters).count
    }

    static func registering(_ member: MemberInfo, in committed: ClusterConfiguration) -> ChangeOutcome {
        guard !member.id.rawValue.isEmpty else { return .invalid("a node id must not be empty") }
        for text in [member.id.rawValue, member.rpcHost, member.httpHost] where text.utf8.count > MembershipLimits.hostBytesMax {
            return .invalid("'\(text.prefix(32))…' exceeds \(MembershipLimits.hostBytesMax) bytes")
        }
        var next = committed
        if let index = next.members.firstIndex(where: { $0.id == member.id }) {
            if next.members[index].hasSameAddresses(as: member) { return .unchanged }
            next.members[index] = member.with(status: next.members[index].status)
            return .changed(next)
        }
        guard next.members.count < MembershipLimits.membersMax else {
            return .invalid("the cluster already has \(MembershipLimits.membersMax) nodes")
        }
        next.members.append(member.with(status: .joining))
        return .changed(next)
    }

    func forming(_ committed: ClusterConfiguration) -> ChangeOutcome {
        guard committed.ring == nil else { return .unchanged }
        guard !committed.members.isEmpty, committed.members.count <= settings.partitioning.partitionCount else {
            return .invalid("\(committed.members.count) nodes cannot form a ring of \(settings.partitioning.partitionCount) partitions")
        }
        var next = committed
        let ring = Ring.initial(members: committed.members.map(\.id), partitioning: settings.partitioning, targetN: settings.targetN)
        next.ring = ring
        next.members = committed.members.map { $0.with(status: .member) }
        for table in settings.tablesAtFormation where next.table(named: table.name) == nil && (try? table.validate()) != nil {
            next.tables.append(table)
        }
        return .changed(next)
    }

    static func creating(_ table: TableSpec, in committed: ClusterConfiguration) -> ChangeOutcome {
        do {
            try table.validate()
        } catch {
            return .invalid("table '\(table.name)' is invalid: \(error)")
        }
        if let existing = committed.table(named: table.name) {
            return existing == table ? .unchanged : .invalid("table '\(table.name)' exists with other properties")
        }
        // Replicas beyond the span would start serving under the new ring without data.
        if committed.pendingRing != nil, table.n > committed.transferSpan {
            return .invalid("a ring change streams \(committed.transferSpan) replicas per partition; create a table with n = \(table.n) after it completes")
        }
        guard committed.tables.count < MembershipLimits.tablesMax else {
            return .invalid("the cluster already has \(MembershipLimits.tablesMax) tables")
        }
        var next = committed
        next.tables.append(table)
        return .changed(next)
    }

    static func dropping(_ name: String, in committed: ClusterConfiguration) -> ChangeOutcome {
        guard committed.table(named: name) != nil else { return .invalid("there is no table '\(name)'") }
        var next = committed
        next.tables.removeAll { $0.name == name }
        return .changed(next)
    }

    static func replacing(with ring: Ring, in committed: ClusterConfiguration) -> ChangeOutcome {
        guard let current = committed.ring else { return .invalid("the cluster has not formed a ring yet") }
        guard committed.transition == nil else { return .invalid("a ring change is in progress") }
        if ring == current { return .unchanged }
        guard ring.partitioning == current.partitioning else {
            return .invalid("the ring has \(ring.partitioning.partitionCount) partitions, not \(current.partitioning.partitionCount)")
        }
        guard ring.epoch > current.epoch else {
            return .invalid("ring epoch \(ring.epoch) is not above the current \(current.epoch)")
        }
        let registered = Set(committed.members.map(\.id))
        if let stranger = ring.members.first(where: { !registered.contains($0) }) {
            return .invalid("\(stranger) owns partitions but is not registered")
        }
        let moved = Set(current.members).symmetricDifference(ring.members)
        guard moved.count <= 1 else {
            return .invalid("\(moved.count) nodes enter or leave the ring at once; change one at a time")
        }
        var next = committed
        next.ring = ring
        let owners = Set(ring.members)
        next.members = committed.members.map { $0.with(status: owners.contains($0.id) ? .member : .joining) }
        return .changed(next)
    }
}

// MARK: - Staged ring changes

extension RingServerEngine {
    /// The plan `actions` make against `committed`, or why they cannot: joins need a
    /// registered joining node, leaves and removals a ring member, no node twice, no
    /// ring change in progress, and at least max(1, largest table n) owners left.
    /// Joins apply before departures, so the order of staging does not matter.
    static func planning(_ actions: [PlanAction], in committed: ClusterConfiguration, targetN: Int) -> Result<RingPlan, ChangeFailure> {
        guard let ring = committed.ring else { return .failure(.invalid("the cluster has not formed a ring yet")) }
        guard committed.transition == nil else {
            return .failure(.invalid("a ring change is in progress; wait for it to finish or cancel it"))
        }
        guard !actions.isEmpty else { return .failure(.invalid("no change is staged")) }
        var seen = Set<NodeID>()
        for action in actions {
            guard seen.insert(action.node).inserted else {
                return .failure(.invalid("\(action.node) is staged twice"))
            }
            switch action {
            case .join(let node):
                guard committed.member(node)?.status == .joining else {
                    return .failure(.invalid("\(node) is not a registered node waiting to join"))
                }
            case .leave(let node), .remove(let node):
                guard ring.members.contains(node) else { return .failure(.invalid("\(node) owns no partition")) }
            }
        }
        let joiners = actions.filter(\.isJoin).map(\.node)
        let departing = actions.filter { !$0.isJoin }.map(\.node)
        let remaining = ring.members.count + joiners.count - departing.count
        let widest = committed.tables.max { $0.n < $1.n }
        if !departing.isEmpty, remaining < 1 {
            return .failure(.invalid("the plan would leave no node in the ring"))
        }
        if !departing.isEmpty, let widest, remaining < widest.n {
            return .failure(.invalid("the plan would leave \(remaining) nodes for table '\(widest.name)' with n = \(widest.n)"))
        }
        var target = ring
        for node in joiners {
            target = target.adding(node, targetN: targetN)
            guard target.members.contains(node) else {
                return .failure(.invalid("\(node) would own no partition: \(ring.partitioning.partitionCount) partitions are all taken"))
            }
        }
        for node in departing {
            target = target.removing(node, targetN: targetN)
        }
        precondition(ring.epoch < UInt64.max, "ring epoch exhausted")
        target.epoch = ring.epoch + 1
        let span = ClusterConfiguration.transferSpan(tables: committed.tables, targetN: targetN)
        let transfers = ClusterConfiguration.requiredTransfers(from: ring, to: target, span: span)
        return .success(RingPlan(actions: actions, ring: target, transferSpan: span, transfers: transfers))
    }

    /// Commits the plan: the pending ring is set and departing nodes marked; nobody's
    /// vote changes yet.
    func beginning(_ actions: [PlanAction], in committed: ClusterConfiguration) -> ChangeOutcome {
        let plan: RingPlan
        switch Self.planning(actions, in: committed, targetN: settings.targetN) {
        case .success(let planned): plan = planned
        case .failure(.invalid(let reason)): return .invalid(reason)
        case .failure(let other): return .invalid("\(other)")
        }
        var next = committed
        next.pendingRing = plan.ring
        next.transferSpan = plan.transferSpan
        next.transfersDone = []
        for action in actions {
            guard let index = next.members.firstIndex(where: { $0.id == action.node }) else { continue }
            switch action {
            case .join: break
            case .leave: next.members[index].status = .leaving
            case .remove: next.members[index].status = .removing
            }
        }
        return .changed(next)
    }

    /// Adds the reported transfers that the pending ring of `pendingRingEpoch` still needs.
    static func recording(_ transfers: Set<Transfer>, pendingRingEpoch: UInt64, in committed: ClusterConfiguration) -> ChangeOutcome {
        guard committed.pendingRing?.epoch == pendingRingEpoch else { return .unchanged }
        let fresh = transfers.filter { committed.requires($0) && !committed.transfersDone.contains($0) }
        guard !fresh.isEmpty else { return .unchanged }
        var next = committed
        next.transfersDone.formUnion(fresh)
        return .changed(next)
    }

    /// The next step of a ring change whose transfers are all done, moving at most one
    /// voter: first each node moving in becomes a voter, one per configuration; then
    /// the pending ring takes effect (together with the last voter change, when only
    /// one is left); then each departed node still registered is dropped, one per
    /// configuration. Unchanged while transfers are outstanding or nothing is in progress.
    static func advancing(_ committed: ClusterConfiguration) -> ChangeOutcome {
        guard committed.ring != nil else { return .unchanged }
        var next = committed
        guard let target = committed.pendingRing else {
            guard let departed = committed.departingMembers.first else { return .unchanged }
            next.members.removeAll { $0.id == departed }
            return .changed(next)
        }
        guard committed.areTransfersComplete else { return .unchanged }
        let voters = Set(committed.voters)
        let incoming = target.members.filter { !voters.contains($0) }
        let outgoing = committed.departingMembers
        if incoming.count + outgoing.count > 1, let first = incoming.first {
            next.setStatus(.member, of: first)
            return .changed(next)
        }
        next.ring = target
        next.pendingRing = nil
        next.transferSpan = 0
        next.transfersDone = []
        for node in incoming {
            next.setStatus(.member, of: node)
        }
        if outgoing.count == 1 {
            next.members.removeAll { $0.id == outgoing[0] }
        }
        return .changed(next)
    }

    /// Abandons the ring change before any voter moved: departing nodes are members
    /// again, and the ring's epoch jumps to the abandoned one's, so that no later
    /// pending ring reuses it and late transfer reports cannot count for it.
    static func cancelling(_ committed: ClusterConfiguration) -> ChangeOutcome {
        guard let ring = committed.ring, let pending = committed.pendingRing else {
            return .invalid("no ring change is in progress")
        }
        guard Set(committed.voters) == Set(ring.members) else {
            return .invalid("the new ring is already taking effect")
        }
        var next = committed
        next.ring?.epoch = pending.epoch
        next.pendingRing = nil
        next.transferSpan = 0
        next.transfersDone = []
        for node in committed.departingMembers {
            next.setStatus(.member, of: node)
        }
        return .changed(next)
    }
}

extension ClusterConfiguration {
    /// Sets a registered node's status.
    mutating func setStatus(_ status: MemberStatus, of node: NodeID) {
        guard let index = members.firstIndex(where: { $0.id == node }) else {
            fatalError("internal inconsistency in ClusterConfiguration: \(node) is not registered")
        }
        members[index].status = status
    }
}
