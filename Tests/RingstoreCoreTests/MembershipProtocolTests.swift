@testable import RingstoreCore
import Testing

private let partitioning16 = try! Partitioning(partitionCount: 16)

private func memberInfo(_ number: Int) -> MemberInfo {
    MemberInfo(id: NodeID("n\(number)"), rpcHost: "10.0.0.\(number)", rpcPort: 7000, httpHost: "10.0.0.\(number)", httpPort: 8000)
}

/// The messages `directives` send to `node`.
private func messages(_ directives: [RingServerDirective], to node: String) -> [RingServerMessage] {
    directives.compactMap { directive in
        if case .sendToNode(let target, let message) = directive, target == NodeID(node) { return message }
        return nil
    }
}

/// The configuration the first offer among `directives` to `node` carries.
private func offered(_ directives: [RingServerDirective], to node: String) -> ClusterConfiguration? {
    for message in messages(directives, to: node) {
        if case .offer(let configuration) = message { return configuration }
    }
    return nil
}

/// The reply among a follower's directives.
private func reply(_ directives: [FollowerDirective]) -> NodeToRingServerMessage? {
    for directive in directives {
        if case .reply(let message) = directive { return message }
    }
    return nil
}

/// A calm world (no drops) of `nodeCount` nodes of which `initialNodeCount` form the
/// ring, with every node registered and everything settled.
private func settledWorld(seed: UInt64, nodeCount: Int, initialNodeCount: Int) -> MembershipWorld {
    var world = MembershipWorld(.init(seed: seed, nodeCount: nodeCount, initialNodeCount: initialNodeCount, dropPercent: 0,
                                      duplicatePercent: 0, delayMax: .milliseconds(10)))
    let settled = world.run(until: .seconds(10)) { $0.hasConverged }
    #expect(settled, "the cluster did not settle: \(world.summary)")
    return world
}

@Suite("Membership protocol")
struct MembershipProtocolTests {
    // Proves the fix for seed 28 of the first random schedule: a table requested before any node registered is refused (a configuration without voters could never commit and would block every change behind it), and the cluster still forms.
    @Test func changeBeforeAnyNodeRegisteredIsRefused() {
        var world = MembershipWorld(.init(seed: 28, nodeCount: 5, initialNodeCount: 5, dropPercent: 0, duplicatePercent: 0,
                                          delayMax: .milliseconds(15)))
        let token = world.createTable("early", at: 0)
        #expect(world.answers[token]?.hasPrefix("failed: invalid") == true, "answer: \(world.answers[token] ?? "none")")
        #expect(world.run(until: .seconds(5)) { $0.hasConverged }, "the cluster did not form: \(world.summary)")
        #expect(world.checker.violations.isEmpty, "\(world.checker.violations.prefix(3))")
    }

    // Proves the fix for seeds 80, 210 and 245 of the first random schedule: a node whose first offer was lost holds no configuration, yet it is a voter of the newest one; its promise counts, so the secondary can still take over once the primary is gone.
    @Test func voterWithoutConfigurationStillElects() throws {
        let settingsA = RingServerEngine.Settings(id: "rs-a", peer: "rs-b", initialRole: .primary, initialNodeCount: 3, partitioning: partitioning16)
        let settingsB = RingServerEngine.Settings(id: "rs-b", peer: "rs-a", initialRole: .secondary, initialNodeCount: 3, partitioning: partitioning16)
        var primary = RingServerEngine(settings: settingsA, now: .zero)
        var secondary = RingServerEngine(settings: settingsB, now: .zero)
        var n1 = ConfigurationFollower(now: .zero)
        var n2 = ConfigurationFollower(now: .zero)
        let start = Duration.milliseconds(10)

        // n1 registers alone; the configuration listing it commits and reaches the secondary.
        let first = try #require(offered(primary.register(memberInfo(1), now: start), to: "n1"))
        let accepted = try #require(reply(n1.offer(first, now: start)))
        _ = primary.nodeMessage(accepted, from: NodeID("n1"), now: start)
        #expect(primary.committedConfiguration == first)
        _ = secondary.peerMessage(.stateSync(first), now: start)

        // n2 registers; n1 accepts the configuration listing both, n2's offer is lost.
        let second = primary.register(memberInfo(2), now: start)
        let both = try #require(offered(second, to: "n1"))
        #expect(offered(second, to: "n2") == both && both.voters.count == 2)
        _ = primary.nodeMessage(try #require(reply(n1.offer(both, now: start))), from: NodeID("n1"), now: start)
        #expect(primary.committedConfiguration == first, "one of two voters must not commit")

        // The primary is gone. The secondary asks n1, learns of n2 from n1's grant, asks n2.
        let later = Duration.seconds(5)
        let candidacy = secondary.tick(now: later)
        #expect(secondary.role == .candidate)
        guard case .voteRequest(let term, let candidate)? = messages(candidacy, to: "n1").first else {
            Issue.record("no vote request to n1: \(candidacy)")
            return
        }
        let grant1 = try #require(reply(n1.voteRequest(term: term, candidate: candidate, now: later)))
        let afterGrant1 = secondary.nodeMessage(grant1, from: NodeID("n1"), now: later)
        #expect(messages(afterGrant1, to: "n2") == [.voteRequest(term: term, candidate: candidate)])
        let grant2 = try #require(reply(n2.voteRequest(term: term, candidate: candidate, now: later)))
        #expect(grant2 == .voteGranted(term: term, configuration: nil))
        let elected = secondary.nodeMessage(grant2, from: NodeID("n2"), now: later)
        #expect(secondary.role == .primary)

        // The new primary re-issues the configuration n1 reported; both accept and it commits.
        let reissued = try #require(offered(elected, to: "n2"))
        #expect(reissued.hasSameContent(as: both) && reissued.term == term)
        _ = secondary.nodeMessage(try #require(reply(n1.offer(reissued, now: later))), from: NodeID("n1"), now: later)
        _ = secondary.nodeMessage(try #require(reply(n2.offer(reissued, now: later))), from: NodeID("n2"), now: later)
        #expect(secondary.committedConfiguration == reissued)
    }

    // Proves that a node that has not heard from any primary still refuses to vote until it has been silent for the primary-loss timeout, and that heartbeats from a primary of a term at least its promise count as contact before it holds a configuration.
    @Test func nodeWithoutConfigurationWaitsBeforeVoting() {
        var follower = ConfigurationFollower(now: .zero)
        let early = follower.voteRequest(term: 2, candidate: "rs-b", now: .milliseconds(100))
        #expect(reply(early) == .voteRefused(term: 2, promisedTerm: 0, reason: .primaryAlive))
        follower.primaryHeartbeat(ConfigurationVersion(term: 1, epoch: 1), now: .seconds(2))
        let afterHeartbeat = follower.voteRequest(term: 2, candidate: "rs-b", now: .seconds(3))
        #expect(reply(afterHeartbeat) == .voteRefused(term: 2, promisedTerm: 0, reason: .primaryAlive))
        let silent = follower.voteRequest(term: 2, candidate: "rs-b", now: .seconds(4))
        #expect(reply(silent) == .voteGranted(term: 2, configuration: nil))
        #expect(follower.state.promisedTerm == 2 && follower.state.promisedTo == "rs-b")
    }

    // Proves that staging validates each action and explains refusals: joins need a registered joining node, leaves and removals a ring member, nothing twice, and at least the largest table n of owners must remain; only the primary stages.
    @Test func stagingValidatesActions() throws {
        var world = settledWorld(seed: 7, nodeCount: 4, initialNodeCount: 3)
        let primary = try #require(world.primaries.first)
        world.createTable("wide", n: 3, at: primary)
        #expect(world.run(until: .seconds(2)) { $0.servers[primary].engine?.configuration.table(named: "wide") != nil })
        let joiner = try #require(world.joiningNodes.first)
        let members = world.ringMembers
        /// "staged", or the refusal.
        func refusal(_ action: PlanAction) -> String {
            do {
                switch action {
                case .join(let node): _ = try world.servers[primary].engine!.planJoin(node)
                case .leave(let node): _ = try world.servers[primary].engine!.planLeave(node)
                case .remove(let node): _ = try world.servers[primary].engine!.planRemove(node)
                }
                return "staged"
            } catch {
                guard case .invalid(let reason) = error else { return "\(error)" }
                return reason
            }
        }

        let plan = try world.servers[primary].engine!.planJoin(joiner)
        let ring = try #require(world.servers[primary].engine?.configuration.ring)
        #expect(plan.ring.members.contains(joiner) && plan.ring.epoch == ring.epoch + 1)
        #expect(plan.transferSpan == 3 && !plan.transfers.isEmpty)
        #expect(plan.transfers == ClusterConfiguration.requiredTransfers(from: ring, to: plan.ring, span: 3))
        #expect(world.servers[primary].engine?.plan == plan)

        #expect(refusal(.join(joiner)).contains("staged twice"))
        #expect(refusal(.join(members[0])).contains("not a registered node waiting to join"))
        #expect(refusal(.join(NodeID("n9"))).contains("not a registered node waiting to join"))
        #expect(refusal(.leave(NodeID("n9"))).contains("owns no partition"))
        #expect(refusal(.leave(members[0])) == "staged")
        #expect(refusal(.remove(members[1])).contains("the plan would leave 2 nodes for table 'wide' with n = 3"))
        #expect(world.servers[primary].engine?.plan?.actions == [.join(joiner), .leave(members[0])])

        let discarded = world.servers[primary].engine!.cancelPlan()
        #expect(discarded && world.servers[primary].engine?.plan == nil)
        let discardedAgain = world.servers[primary].engine!.cancelPlan()
        #expect(!discardedAgain)
        let token = world.request(.beginTransition([]), at: primary)
        #expect(world.answers[token] == "failed: invalid(\"no change is staged\")")

        let secondary = 1 - primary
        do {
            _ = try world.servers[secondary].engine!.planJoin(joiner)
            Issue.record("the secondary staged a plan")
        } catch {
            #expect(error == .notPrimary(primary: MembershipWorld.serverIDs[primary]))
        }
    }

    // Proves that a plan cannot empty the ring: the last node may not leave, even without tables.
    @Test func lastNodeCannotLeave() {
        let ring = Ring.initial(members: [NodeID("n1")], partitioning: partitioning16)
        let configuration = ClusterConfiguration(
            term: 1, epoch: 2, ring: ring, members: [memberInfo(1).with(status: .member)], tables: [], primary: "rs-a")
        let outcome = RingServerEngine.planning([.leave(NodeID("n1"))], in: configuration, targetN: 3)
        #expect(outcome == .failure(.invalid("the plan would leave no node in the ring")))
    }

    // Proves a calm join end to end: commitPlan sets the pending ring, the status view counts transfers, a second plan and a table wider than the span are refused meanwhile, and once every transfer is reported the new ring takes effect at the next ring epoch with the node a voter.
    @Test func joinLifecycleWithoutFaults() throws {
        var world = settledWorld(seed: 11, nodeCount: 4, initialNodeCount: 3)
        let primary = try #require(world.primaries.first)
        let joiner = try #require(world.joiningNodes.first)
        let ringBefore = try #require(world.servers[primary].engine?.configuration.ring)
        // Keep the joiner from its sources so that the change stays in progress.
        for node in world.nodes.indices where world.nodes[node].info.id != joiner {
            world.cut(.node(world.nodeIndex(joiner)!), .node(node))
        }
        let token = world.commitPlan([.join(joiner)], at: primary)
        #expect(world.run(until: .seconds(2)) { $0.answers[token] != nil })
        #expect(world.answers[token]?.hasPrefix("committed") == true, "answer: \(world.answers[token] ?? "none")")
        let status = try #require(world.servers[primary].engine?.transition)
        #expect(status.transfersDone == 0 && status.transfersRequired > 0 && status.transfersPending == status.transfersRequired)
        #expect(status.targetRing?.members.contains(joiner) == true)
        #expect(world.run(until: .seconds(1)) { $0.servers[1 - primary].engine?.transition == status },
                "the secondary does not show the same progress")

        let wide = world.createTable("wide", n: 5, at: primary)
        #expect(world.answers[wide]?.contains("after it completes") == true, "answer: \(world.answers[wide] ?? "none")")
        do {
            _ = try world.servers[primary].engine!.planLeave(ringBefore.members[0])
            Issue.record("a second plan was staged during a ring change")
        } catch {
            #expect("\(error)".contains("in progress"))
        }

        world.healNetwork()
        #expect(world.run(until: .seconds(5)) { $0.hasConverged }, "the join did not finish: \(world.summary)")
        let after = try #require(world.servers[primary].engine?.configuration)
        #expect(after.ring?.members.contains(joiner) == true && after.ring?.epoch == ringBefore.epoch + 1)
        #expect(after.voters.contains(joiner) && after.transition == nil)
        #expect(world.checker.violations.isEmpty, "\(world.checker.violations.prefix(3))")
    }

    // Proves that transfer reports are counted only from their receiver, for the pending ring's epoch, and for transfers it requires; and that a cancelled change restores the departing node, moves the ring epoch past the abandoned one, and ignores late reports for it.
    @Test func transferReportsAreValidatedAndCancelRestores() throws {
        var world = settledWorld(seed: 13, nodeCount: 5, initialNodeCount: 5)
        let primary = try #require(world.primaries.first)
        let leaver = world.ringMembers[0]
        let leaverIndex = try #require(world.nodeIndex(leaver))
        // Isolate every node from the others so that no transfer completes.
        for first in world.nodes.indices {
            for second in world.nodes.indices where first < second { world.cut(.node(first), .node(second)) }
        }
        let token = world.commitPlan([.leave(leaver)], at: primary)
        #expect(world.run(until: .seconds(2)) { $0.answers[token]?.hasPrefix("committed") == true })
        let configuration = try #require(world.servers[primary].engine?.configuration)
        let pending = try #require(configuration.pendingRing)
        #expect(configuration.member(leaver)?.status == .leaving)
        let transfer = try #require(configuration.requiredTransfers.first)
        let receiver = try #require(world.nodeIndex(transfer.to))
        let stranger = (receiver + 1) % world.nodes.count

        #expect(world.deliverNow(.transferDone(partition: transfer.partition, pendingRingEpoch: pending.epoch), from: stranger, to: primary).isEmpty,
                "a report from a node that is not the receiver counts")
        #expect(world.deliverNow(.transferDone(partition: transfer.partition, pendingRingEpoch: pending.epoch + 1), from: receiver, to: primary).isEmpty,
                "a report for another ring epoch counts")
        let unneeded = world.servers[primary].engine!.configuration.pendingRing!.partitioning.allPartitions.first { partition in
            !configuration.requires(Transfer(partition: partition, to: transfer.to))
        }
        if let unneeded {
            #expect(world.deliverNow(.transferDone(partition: unneeded, pendingRingEpoch: pending.epoch), from: receiver, to: primary).isEmpty,
                    "a report for a transfer the change does not need counts")
        }
        world.completeTransfer(transfer, pendingRingEpoch: pending.epoch)
        #expect(!world.deliverNow(.transferDone(partition: transfer.partition, pendingRingEpoch: pending.epoch), from: receiver, to: primary).isEmpty,
                "a valid report is not offered")
        #expect(world.run(until: .seconds(2)) { $0.servers[primary].engine?.configuration.transfersDone.contains(transfer) == true })

        let cancel = world.request(.cancelTransition, at: primary)
        #expect(world.run(until: .seconds(2)) { $0.answers[cancel]?.hasPrefix("committed") == true }, "answer: \(world.answers[cancel] ?? "none")")
        let restored = try #require(world.servers[primary].engine?.configuration)
        #expect(restored.pendingRing == nil && restored.transfersDone.isEmpty && restored.transition == nil)
        #expect(restored.member(leaver)?.status == .member && restored.ring?.owners == configuration.ring?.owners)
        #expect(restored.ring?.epoch == pending.epoch)
        #expect(world.deliverNow(.transferDone(partition: transfer.partition, pendingRingEpoch: pending.epoch), from: receiver, to: primary).isEmpty,
                "a late report for the abandoned ring counts")
        let again = world.request(.cancelTransition, at: primary)
        #expect(world.run(until: .seconds(1)) { $0.answers[again] != nil })
        #expect(world.answers[again]?.contains("no ring change is in progress") == true)

        world.healNetwork()
        #expect(world.run(until: .seconds(3)) { $0.hasConverged }, "no convergence: \(world.summary)")
        #expect(!world.nodes[leaverIndex].retired)
        #expect(world.checker.violations.isEmpty, "\(world.checker.violations.prefix(3))")
    }
}
