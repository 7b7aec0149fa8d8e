@testable import RingstoreCore
import Testing

/// Set to a seed printed by a failure to run only that seed in `randomFaults`.
private let membershipReplaySeed: UInt64? = nil

/// Seeds of the random scenario when not replaying one: about 35 ms each in a debug
/// build. Widen the range for a soak (1...4000 passed when this was written).
private let membershipRandomSeeds: ClosedRange<UInt64> = 1...64

private let reproduceHint = "reproduce with: set membershipReplaySeed in Tests/RingstoreCoreTests/MembershipSimulationTests.swift, then swift test --filter MembershipSimulation"

/// A world with calm links (no drops), formed and settled.
private func formedWorld(seed: UInt64, nodeCount: Int = 5, delayMax: Duration = .milliseconds(15)) -> MembershipWorld {
    var world = MembershipWorld(.init(seed: seed, nodeCount: nodeCount, initialNodeCount: nodeCount, dropPercent: 0,
                                      duplicatePercent: 0, delayMax: delayMax))
    let formed = world.run(until: .seconds(10)) { $0.hasConverged }
    #expect(formed, "the cluster did not form: \(world.summary)")
    return world
}

private func expectNoViolations(_ world: MembershipWorld, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(world.checker.violations.isEmpty,
            "seed \(seed): \(world.checker.violations.prefix(3)) — \(world.summary); \(reproduceHint)",
            sourceLocation: sourceLocation)
}

@Suite("Membership simulation")
struct MembershipSimulationTests {
    // Proves that a fresh cluster forms: every node registers, the ring forms with all of them, and every party converges on one configuration.
    @Test func clusterForms() {
        for nodeCount in 1...7 {
            let world = formedWorld(seed: UInt64(nodeCount), nodeCount: nodeCount)
            expectNoViolations(world, seed: UInt64(nodeCount))
            let configuration = world.servers[0].engine?.committedConfiguration
            #expect(configuration?.ring?.members.count == nodeCount)
            #expect(configuration?.members.allSatisfy { $0.status == .member } == true)
            #expect(world.primaries == [0])
        }
    }

    // Proves scenario 1: after the primary crashes, the secondary becomes primary no sooner than the nodes can have lost the primary and no later than one primary-loss timeout plus one vote timeout.
    @Test func primaryCrashPromotesSecondaryWithinBounds() {
        for seed in UInt64(1)...12 {
            let delayMax = Duration.milliseconds(15)
            var world = formedWorld(seed: seed, nodeCount: 3 + Int(seed % 5), delayMax: delayMax)
            world.run(for: .seconds(1))
            let crashedAt = world.now
            world.crash(.server(0))
            let promoted = world.run(until: .seconds(3)) { $0.primaries == [1] }
            #expect(promoted, "seed \(seed): no promotion: \(world.summary)")
            let earliest = crashedAt + MembershipWorld.primaryLossTimeout - MembershipWorld.heartbeatInterval - delayMax * 2
            let latest = crashedAt + MembershipWorld.primaryLossTimeout + MembershipWorld.voteTimeout
            #expect(world.now >= earliest && world.now <= latest, "seed \(seed): promoted at \(world.now), crash at \(crashedAt)")
            #expect(world.servers[1].engine?.term == 2, "the secondary stands for the even term after 1")
            world.createTable("after_failover", at: 1)
            let settled = world.run(until: .seconds(3)) { $0.servers[1].engine?.committedConfiguration?.table(named: "after_failover") != nil }
            #expect(settled, "seed \(seed): a change after failover did not commit: \(world.summary)")
            expectNoViolations(world, seed: seed)
        }
    }

    // Proves scenario 2: a primary cut off from the secondary but still heard by every node is never replaced, and keeps committing changes.
    @Test func primaryCutFromSecondaryOnlyIsNotReplaced() {
        var world = formedWorld(seed: 21)
        let term = world.servers[0].engine?.term
        world.cut(.server(0), .server(1))
        for second in 0..<10 {
            world.createTable("during_cut_\(second)", at: 0)
            world.run(for: .seconds(1))
            #expect(world.primaries == [0], "the primary was replaced at \(world.now): \(world.summary)")
        }
        #expect(world.servers[0].engine?.term == term)
        #expect(world.servers[0].engine?.committedConfiguration?.tables.count == 10)
        world.healNetwork()
        #expect(world.run(until: .seconds(5)) { $0.hasConverged }, "no convergence after healing: \(world.summary)")
        #expect(world.primaries == [0] && world.servers[0].engine?.term == term)
        expectNoViolations(world, seed: 21)
    }

    // Proves scenario 3: a secondary cut off from everything stands for election again and again but never becomes primary, and after healing it follows the unchanged primary.
    @Test func isolatedSecondaryNeverPromotes() {
        var world = formedWorld(seed: 31)
        let term = world.servers[0].engine?.term
        world.isolate([.server(1)])
        for _ in 0..<100 {
            world.run(for: .milliseconds(100))
            #expect(world.servers[1].engine?.role != .primary, "the isolated secondary promoted itself: \(world.summary)")
        }
        #expect((world.servers[1].engine?.persistent.term ?? 0) > 2, "it should have stood for election")
        world.createTable("while_isolated", at: 0)
        world.healNetwork()
        #expect(world.run(until: .seconds(5)) { $0.hasConverged }, "no convergence after healing: \(world.summary)")
        #expect(world.primaries == [0] && world.servers[0].engine?.term == term)
        #expect(world.servers[1].engine?.configuration.table(named: "while_isolated") != nil)
        expectNoViolations(world, seed: 31)
    }

    // Proves that a ring server that cannot reach the nodes never makes itself primary, even when the primary is gone; it does once it reaches them.
    @Test func secondaryWithoutNodesCannotPromote() {
        var world = formedWorld(seed: 41)
        for node in world.nodes.indices { world.cut(.server(1), .node(node)) }
        world.crash(.server(0))
        world.run(for: .seconds(10))
        #expect(world.primaries.isEmpty, "promoted without the nodes: \(world.summary)")
        world.healNetwork()
        #expect(world.run(until: .seconds(3)) { $0.primaries == [1] }, "no promotion once the nodes are reachable: \(world.summary)")
        expectNoViolations(world, seed: 41)
    }

    // Proves scenario 4: a primary restarted from its state file after being replaced learns the higher term, steps down, and takes the new primary's configuration.
    @Test func returningPrimaryStepsDownAndSyncs() {
        var world = formedWorld(seed: 51)
        world.crash(.server(0))
        #expect(world.run(until: .seconds(3)) { $0.primaries == [1] }, "no promotion: \(world.summary)")
        world.createTable("while_away", at: 1)
        #expect(world.run(until: .seconds(3)) { $0.servers[1].engine?.committedConfiguration?.table(named: "while_away") != nil })
        world.restart(.server(0))
        #expect(world.servers[0].engine?.role == .primary, "it resumes as the primary of its old term")
        #expect(world.run(until: .seconds(2)) { $0.hasConverged }, "no convergence: \(world.summary)")
        #expect(world.primaries == [1])
        #expect(world.servers[0].engine?.role == .secondary)
        #expect(world.servers[0].engine?.configuration.table(named: "while_away") != nil)
        expectNoViolations(world, seed: 51)
    }

    // Proves that a primary cut off from the nodes but not from the secondary steps down, so that the secondary takes over.
    @Test func primaryCutFromNodesStepsDown() {
        var world = formedWorld(seed: 61)
        for node in world.nodes.indices { world.cut(.server(0), .node(node)) }
        #expect(world.run(until: .seconds(4)) { $0.primaries == [1] }, "no takeover: \(world.summary)")
        world.createTable("after_takeover", at: 1)
        world.healNetwork()
        #expect(world.run(until: .seconds(5)) { $0.hasConverged }, "no convergence: \(world.summary)")
        #expect(world.servers[0].engine?.configuration.table(named: "after_takeover") != nil)
        expectNoViolations(world, seed: 61)
    }

    // Proves, on the two soak seeds that found it, that a configuration of an old term which a majority accepts only after a later term committed (an old primary restarted and reached a node that slept through the election) is one the later term had already taken over, so no change is lost or forked.
    @Test func lateMajorityForOldTermIsTakenOver() {
        var lateCommits = 0
        for seed: UInt64 in [746, 1770] {
            var randomRun = MembershipRandomRun(seed: seed)
            let outcome = randomRun.run()
            #expect(outcome.violations.isEmpty, "seed \(seed): \(outcome.violations.prefix(3)) — \(outcome.summary); \(reproduceHint)")
            #expect(outcome.converged, "seed \(seed): no convergence after healing — \(outcome.summary); \(reproduceHint)")
            lateCommits += outcome.lateCommits
        }
        #expect(lateCommits >= 2, "the seeds no longer produce a late majority; pick new ones from a soak")
    }

    // Proves scenario 5: over many seeds of ring-server and node crashes, partitions, lost, late and duplicated messages while tables change, rings are replaced and staged joins and leaves stream, no invariant breaks, and after healing the cluster converges on one primary with no ring change left in progress.
    @Test func randomFaults() {
        let seeds = membershipReplaySeed.map { [$0] } ?? Array(membershipRandomSeeds)
        var runs = 0
        var promotions = 0
        var ringChanges = 0
        for seed in seeds {
            var randomRun = MembershipRandomRun(seed: seed)
            let outcome = randomRun.run()
            runs += 1
            #expect(outcome.violations.isEmpty, "seed \(seed): \(outcome.violations.prefix(3)) — \(outcome.summary); \(reproduceHint)")
            #expect(outcome.converged, "seed \(seed): no convergence after healing — \(outcome.summary); \(reproduceHint)")
            promotions += outcome.primaryChanged ? 1 : 0
            ringChanges += outcome.completedTransitions
            if !outcome.violations.isEmpty || !outcome.converged { break }
        }
        // The faults must actually exercise failover and staged changes, or the run
        // proves little; counted over the runs made, which a failure cuts short.
        #expect(membershipReplaySeed != nil || promotions * 4 > runs * 3, "only \(promotions) of \(runs) runs elected a new primary")
        #expect(membershipReplaySeed != nil || ringChanges * 4 > runs, "only \(ringChanges) staged ring changes finished in \(runs) runs")
    }
}

/// One seed of the random scenario: `faultPhase` of faults and requests, then every
/// fault healed and up to 20 s to converge. A third of the faults aim at whichever
/// ring server acts as primary, crashing or isolating it long enough (it stays down
/// until a later fault restarts it or the network heals) for the secondary to take
/// over; another splits the cluster so that the secondary's side holds nodes that
/// missed the primary's latest changes.
struct MembershipRandomRun {
    struct Outcome {
        var violations: [String]
        var converged: Bool
        /// Whether an election was won: some ring server acted as primary of a term above 1.
        var primaryChanged: Bool
        /// Staged ring changes that took effect.
        var completedTransitions: Int
        /// Configurations of old terms whose majority formed after a later term committed.
        var lateCommits: Int
        var summary: String
    }

    static let faultPhase = Duration.seconds(6)
    /// Per mille of steps that inject a fault, and that make a request.
    static let faultPerMille = 25
    static let requestPerMille = 30

    let seed: UInt64
    var schedule: SplitMixGenerator

    init(seed: UInt64) {
        self.seed = seed
        schedule = SplitMixGenerator(seed: seed ^ 0x6d65_6d62_6572_7368)
    }

    mutating func run() -> Outcome {
        let nodeCount = Int.random(in: 3...7, using: &schedule)
        let parameters = MembershipWorld.Parameters(
            seed: seed, nodeCount: nodeCount, initialNodeCount: Int.random(in: (nodeCount + 1) / 2...nodeCount, using: &schedule),
            dropPercent: Int.random(in: 0...10, using: &schedule), duplicatePercent: Int.random(in: 0...5, using: &schedule),
            delayMax: .milliseconds(Int.random(in: 2...40, using: &schedule)))
        var world = MembershipWorld(parameters)
        var tableNames: [String] = []
        var nextTable = 0
        var maxPrimaryTerm: UInt64 = 1
        while world.now < Self.faultPhase, world.checker.violations.isEmpty {
            world.step()
            if draw(1000) < Self.faultPerMille { injectFault(into: &world) }
            if draw(1000) < Self.requestPerMille {
                request(into: &world, tableNames: &tableNames, nextTable: &nextTable)
            }
            for index in world.primaries { maxPrimaryTerm = max(maxPrimaryTerm, world.servers[index].engine?.term ?? 0) }
        }
        world.healNetwork()
        for endpoint in world.allEndpoints { world.restart(endpoint) }
        let converged = world.checker.violations.isEmpty && world.run(until: .seconds(20)) { $0.hasConverged || !$0.checker.violations.isEmpty }
        for index in world.primaries { maxPrimaryTerm = max(maxPrimaryTerm, world.servers[index].engine?.term ?? 0) }
        return Outcome(violations: world.checker.violations, converged: converged && world.hasConverged,
                       primaryChanged: maxPrimaryTerm > 1, completedTransitions: world.checker.completedTransitions.count,
                       lateCommits: world.checker.lateCommits.count,
                       summary: world.summary)
    }

    private mutating func draw(_ bound: Int) -> Int {
        Int(schedule.next() % UInt64(bound))
    }

    private mutating func injectFault(into world: inout MembershipWorld) {
        let endpoints = world.allEndpoints
        let primary = world.primaries.first.map { MembershipWorld.Endpoint.server($0) }
        switch draw(13) {
        case 0, 1:
            world.crash(primary ?? .server(draw(2)))
        case 2:
            world.isolate([primary ?? .server(draw(2))])
        case 3:
            // The primary cut off from the nodes but not from the other ring server.
            if case .server(let index)? = primary {
                for node in world.nodes.indices { world.cut(.server(index), .node(node)) }
            }
        case 4, 5:
            for endpoint in endpoints where !world.isUp(endpoint) && draw(2) == 0 { world.restart(endpoint) }
        case 12:
            // The secondary with a few nodes on one side, the primary with the rest.
            let secondary = MembershipWorld.Endpoint.server(world.primaries.first.map { 1 - $0 } ?? draw(2))
            world.isolate([secondary] + world.nodes.indices.filter { _ in draw(5) < 2 }.map { .node($0) })
        case 6:
            world.crash(.node(draw(world.nodes.count)))
        case 7:
            world.isolate([endpoints[draw(endpoints.count)]])
        case 8:
            world.isolate(endpoints.filter { _ in draw(2) == 0 })
        case 9:
            let first = endpoints[draw(endpoints.count)]
            let second = endpoints[draw(endpoints.count)]
            if first != second { world.cut(first, second) }
        default:
            world.healNetwork()
        }
    }

    /// Asks a random ring server to create or drop a table, to move one node into or
    /// out of the ring at once, or to stage and commit a join or leave, as that server
    /// sees the cluster.
    private mutating func request(into world: inout MembershipWorld, tableNames: inout [String], nextTable: inout Int) {
        let server = draw(2)
        switch draw(10) {
        case 0...4:
            nextTable += 1
            tableNames.append("t\(nextTable)")
            world.createTable("t\(nextTable)", at: server)
        case 5, 6:
            guard !tableNames.isEmpty else { return }
            world.request(.dropTable(tableNames[draw(tableNames.count)]), at: server)
        case 7:
            guard let view = world.servers[server].engine?.configuration, let ring = view.ring else { return }
            let joining = view.members.filter { $0.status == .joining }.map(\.id)
            if !joining.isEmpty, draw(2) == 0 {
                world.request(.replaceRing(ring.adding(joining[draw(joining.count)])), at: server)
            } else if ring.members.count > 1 {
                world.request(.replaceRing(ring.removing(ring.members[draw(ring.members.count)])), at: server)
            }
        default:
            guard let view = world.servers[server].engine?.configuration, let ring = view.ring else { return }
            let joining = view.members.filter { $0.status == .joining }.map(\.id)
            if !joining.isEmpty, draw(2) == 0 {
                world.commitPlan([.join(joining[draw(joining.count)])], at: server)
            } else if ring.members.count > 3 {
                world.commitPlan([.leave(ring.members[draw(ring.members.count)])], at: server)
            }
        }
    }
}
