@testable import RingstoreCore
import Testing

/// Seeds of each staged-change scenario.
private let transitionSeeds: ClosedRange<UInt64> = 1...12

private let transitionReproduceHint = "reproduce with: swift test --filter MembershipTransition (the seed is in the message)"

/// The moment of a ring change at which the scenario crashes the primary.
private enum FailoverMoment: CaseIterable {
    /// As soon as the plan is committed, before any transfer is recorded.
    case afterCommit
    /// Once some but not all transfers are recorded.
    case midTransfers
    /// Once every transfer is recorded, while the new ring is being put in effect.
    case finishing
}

/// One staged ring change under faults: a formed cluster, a plan committed at the
/// primary, lossy links, node crashes and short partitions, and the primary crashed
/// at a chosen moment of the change and kept down until the secondary has taken
/// over; then everything heals and the change must finish under the new primary.
private struct TransitionRun {
    struct Outcome {
        var world: MembershipWorld
        var committedToken: UInt64
        var moment: FailoverMoment
        var failedOverDuringChange: Bool
        var converged: Bool
    }

    let seed: UInt64
    var schedule: SplitMixGenerator

    init(seed: UInt64) {
        self.seed = seed
        schedule = SplitMixGenerator(seed: seed ^ 0x7472_616e_7369_7431)
    }

    private mutating func draw(_ bound: Int) -> Int {
        Int(schedule.next() % UInt64(bound))
    }

    /// Forms a cluster of `initialNodeCount` nodes out of `nodeCount` (the rest register
    /// and wait as joining nodes), lets `prepare` act on it (kill a node, say), commits
    /// `plan()`'s actions at the primary, and runs the faults.
    mutating func run(
        nodeCount: Int, initialNodeCount: Int, prepare: (inout MembershipWorld) -> Void = { _ in },
        plan: (MembershipWorld) -> [PlanAction]
    ) -> Outcome {
        let parameters = MembershipWorld.Parameters(
            seed: seed, nodeCount: nodeCount, initialNodeCount: initialNodeCount, dropPercent: draw(8),
            duplicatePercent: draw(4), delayMax: .milliseconds(5 + draw(30)))
        var world = MembershipWorld(parameters)
        let formed = world.run(until: .seconds(10)) { world in
            world.hasConverged && world.primaries.first.flatMap { world.servers[$0].engine?.configuration.members.count } == nodeCount
        }
        let moment = FailoverMoment.allCases[draw(FailoverMoment.allCases.count)]
        guard formed else {
            return Outcome(world: world, committedToken: 0, moment: moment, failedOverDuringChange: false, converged: false)
        }
        prepare(&world)
        let firstPrimary = world.primaries[0]
        let token = world.commitPlan(plan(world), at: firstPrimary)
        let failedOver = runFaults(on: &world, firstPrimary: firstPrimary, moment: moment)
        world.healNetwork()
        for endpoint in world.allEndpoints { world.restart(endpoint) }
        let converged = world.run(until: .seconds(20)) { $0.hasConverged || !$0.checker.violations.isEmpty }
        return Outcome(world: world, committedToken: token, moment: moment, failedOverDuringChange: failedOver,
                       converged: converged && world.checker.violations.isEmpty)
    }

    /// Lossy links, node crashes and partitions of single nodes, and one failover at
    /// `moment`: the first primary crashes and stays down until the other ring server
    /// acts as primary. Returns whether the failover happened while the change was
    /// still in progress.
    private mutating func runFaults(on world: inout MembershipWorld, firstPrimary: Int, moment: FailoverMoment) -> Bool {
        var failedOver = false
        var crashedAt: Duration?
        let deadline = world.now + .seconds(8)
        while world.now < deadline, world.checker.violations.isEmpty {
            world.step()
            let view = world.servers[firstPrimary].engine?.configuration
            if crashedAt == nil, let view, Self.reached(moment, in: view) {
                world.crash(.server(firstPrimary))
                crashedAt = world.now
                failedOver = true
            }
            if let crashedAt, world.primaries == [1 - firstPrimary], world.now - crashedAt > MembershipWorld.primaryLossTimeout {
                world.restart(.server(firstPrimary))
            }
            if draw(1000) < 20 { injectNodeFault(into: &world) }
            if crashedAt != nil, world.primaries == [1 - firstPrimary],
               world.servers[1 - firstPrimary].engine?.configuration.transition == nil {
                break
            }
        }
        return failedOver
    }

    private static func reached(_ moment: FailoverMoment, in view: ClusterConfiguration) -> Bool {
        guard view.pendingRing != nil else { return false }
        switch moment {
        case .afterCommit: return true
        case .midTransfers: return !view.transfersDone.isEmpty && !view.areTransfersComplete
        case .finishing: return view.areTransfersComplete
        }
    }

    /// A node crash, a restart of crashed nodes, a node cut off for a while, or healing.
    private mutating func injectNodeFault(into world: inout MembershipWorld) {
        let node = draw(world.nodes.count)
        switch draw(5) {
        case 0: world.crash(.node(node))
        case 1, 2:
            for index in world.nodes.indices where !world.isUp(.node(index)) { world.restart(.node(index)) }
        case 3: world.isolate([.node(node)])
        default: world.healNetwork()
        }
    }
}

/// Checks every staged-change scenario shares: no violation, convergence, the change
/// committed and completed once, under the second primary, with balanced partitions.
private func expectCompletedChange(
    _ outcome: TransitionRun.Outcome, seed: UInt64, expectedMembers: Set<NodeID>,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let world = outcome.world
    #expect(world.checker.violations.isEmpty,
            "seed \(seed): \(world.checker.violations.prefix(3)) — \(world.summary); \(transitionReproduceHint)",
            sourceLocation: sourceLocation)
    let converged = outcome.converged, failedOver = outcome.failedOverDuringChange
    #expect(converged, "seed \(seed): no convergence — \(world.summary); \(transitionReproduceHint)",
            sourceLocation: sourceLocation)
    #expect(failedOver, "seed \(seed): the primary never failed over during the change", sourceLocation: sourceLocation)
    guard let primary = world.primaries.first, let configuration = world.servers[primary].engine?.configuration,
          let ring = configuration.ring
    else {
        Issue.record("seed \(seed): no primary with a ring — \(world.summary)", sourceLocation: sourceLocation)
        return
    }
    #expect(Set(ring.members) == expectedMembers, "seed \(seed): ring members \(ring.members)", sourceLocation: sourceLocation)
    #expect(Set(configuration.members.map(\.id)) == expectedMembers, "seed \(seed): registered \(configuration.members.map(\.id))",
            sourceLocation: sourceLocation)
    #expect(configuration.members.allSatisfy { $0.status == .member }, sourceLocation: sourceLocation)
    let partitionCount = ring.partitioning.partitionCount
    let shareLow = partitionCount / ring.members.count
    let shareHigh = (partitionCount + ring.members.count - 1) / ring.members.count
    for node in ring.members {
        let owned = ring.partitions(ownedBy: node).count
        #expect(owned >= shareLow && owned <= shareHigh, "seed \(seed): \(node) owns \(owned) of \(partitionCount)",
                sourceLocation: sourceLocation)
    }
    let completed = world.checker.completedTransitions
    #expect(completed.count == 1 && completed.first?.to.members == ring.members,
            "seed \(seed): \(completed.count) ring changes took effect", sourceLocation: sourceLocation)
    // Crashed while finishing, the first primary's last offers may still arrive and
    // put the new ring in effect; at any earlier moment a later term must finish it.
    if outcome.moment != .finishing, let transition = completed.first {
        #expect(transition.endedInTerm > transition.beganInTerm,
                "seed \(seed): the change begun in term \(transition.beganInTerm) ended in term \(transition.endedInTerm) under \(transition.issuer)",
                sourceLocation: sourceLocation)
    }
    let answer = world.answers[outcome.committedToken] ?? "none"
    #expect(answer.hasPrefix("committed"), "seed \(seed): the plan's answer was \(answer)", sourceLocation: sourceLocation)
}

extension MembershipWorld {
    /// Registered nodes waiting to join, as the primary sees them.
    var joiningNodes: [NodeID] {
        guard let primary = primaries.first, let configuration = servers[primary].engine?.configuration else { return [] }
        return configuration.members.filter { $0.status == .joining }.map(\.id)
    }

    /// The ring's members, as the primary sees them.
    var ringMembers: [NodeID] {
        guard let primary = primaries.first else { return [] }
        return servers[primary].engine?.configuration.ring?.members ?? []
    }
}

@Suite("Membership transitions")
struct MembershipTransitionTests {
    // Proves that a staged join completes under faults and a failover at any moment of the change: the new node ends in the ring and in the voters, every transfer it needed was really received before the ring took effect, and every node owns Q/S ± 1 partitions.
    @Test func joinCompletesAcrossFailover() {
        var moments = Set<FailoverMoment>()
        for seed in transitionSeeds {
            var run = TransitionRun(seed: seed)
            let outcome = run.run(nodeCount: 5, initialNodeCount: 4) { world in world.joiningNodes.map { .join($0) } }
            expectCompletedChange(outcome, seed: seed, expectedMembers: Set((1...5).map { NodeID("n\($0)") }))
            moments.insert(outcome.moment)
            if !outcome.converged { break }
        }
        #expect(moments.count == FailoverMoment.allCases.count, "the seeds fail over only at \(moments)")
    }

    // Proves that a staged leave completes under faults and a failover: the leaving node serves as a source until the ring changes, is then dropped from members and voters and stops, and the rest own Q/S ± 1 partitions each.
    @Test func leaveCompletesAcrossFailover() {
        var moments = Set<FailoverMoment>()
        for seed in transitionSeeds {
            var run = TransitionRun(seed: seed)
            let outcome = run.run(nodeCount: 5, initialNodeCount: 5) { _ in [.leave(NodeID("n2"))] }
            expectCompletedChange(outcome, seed: seed, expectedMembers: Set([1, 3, 4, 5].map { NodeID("n\($0)") }))
            #expect(outcome.world.nodes[1].retired, "seed \(seed): the node that left is still running")
            moments.insert(outcome.moment)
            if !outcome.converged { break }
        }
        #expect(moments.count == FailoverMoment.allCases.count, "the seeds fail over only at \(moments)")
    }

    // Proves that removing a node that died completes under faults and a failover: no transfer ever names the dead node as a source, every partition it held is rebuilt on the survivors, and it is dropped from members and voters.
    @Test func removeOfDeadNodeCompletesAcrossFailover() {
        var moments = Set<FailoverMoment>()
        for seed in transitionSeeds {
            var run = TransitionRun(seed: seed)
            let dead = NodeID("n3")
            var sourcedFromDead = false
            let outcome = run.run(nodeCount: 5, initialNodeCount: 5, prepare: { world in
                world.kill(node: 2)
            }, plan: { _ in [.remove(dead)] })
            for configuration in outcome.world.checker.committed where configuration.pendingRing != nil {
                for transfer in configuration.requiredTransfers {
                    let sources = configuration.transferSources(for: transfer)
                    if sources.contains(dead) || sources.isEmpty { sourcedFromDead = true }
                }
            }
            #expect(!sourcedFromDead, "seed \(seed): a transfer had the dead node as a source, or no source at all")
            expectCompletedChange(outcome, seed: seed, expectedMembers: Set([1, 2, 4, 5].map { NodeID("n\($0)") }))
            moments.insert(outcome.moment)
            if !outcome.converged { break }
        }
        #expect(moments.count == FailoverMoment.allCases.count, "the seeds fail over only at \(moments)")
    }

    // Proves that a plan that adds one voter and removes two is put in effect one voter per configuration (the checker refuses any configuration that moves two), and still completes across a failover.
    @Test func planMovingSeveralVotersIsSequenced() {
        for seed in transitionSeeds.prefix(6) {
            var run = TransitionRun(seed: seed)
            var leavers: [NodeID] = []
            let outcome = run.run(nodeCount: 6, initialNodeCount: 5) { world in
                leavers = Array(world.ringMembers.prefix(2))
                return [.leave(leavers[0])] + world.joiningNodes.map { .join($0) } + [.leave(leavers[1])]
            }
            let expected = Set((1...6).map { NodeID("n\($0)") }).subtracting(leavers)
            expectCompletedChange(outcome, seed: seed, expectedMembers: expected)
            let voterSteps = zip(outcome.world.checker.committed, outcome.world.checker.committed.dropFirst()).filter { old, new in
                Set(old.voters) != Set(new.voters)
            }
            #expect(voterSteps.count >= 3, "seed \(seed): three voter changes need three configurations, saw \(voterSteps.count)")
            if !outcome.converged { break }
        }
    }
}
