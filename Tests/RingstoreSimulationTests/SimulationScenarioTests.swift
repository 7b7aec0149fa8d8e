import RingstoreCore
import Testing

/// Scripted fault schedules on a calm cluster (fixed delays, no random faults), each
/// ending with the liveness phase and the full checker.
@Suite("Simulation scenarios") struct SimulationScenarioTests {
    private static let millisecond: Int64 = 1_000

    private func written(_ simulation: Simulation, _ call: Int) -> Bool {
        simulation.calls[call].isWritten
    }

    private func durableValues(_ simulation: Simulation, node: Int, keyIndex: Int) -> [Sibling] {
        simulation.nodes[node].disk.durableSlot(simulation.keys[keyIndex]).object?.values ?? []
    }

    /// Proves hinted hand-off: with one home replica down a W=2 write succeeds through
    /// a fallback that keeps a hint, and once the replica is back it gets the value
    /// and the hint is gone.
    @Test func fallbackKeepsHintUntilReplicaReturns() throws {
        let simulation = Simulation(parameters: .scripted())
        let homes = simulation.homes[0]
        let down = homes[1]
        simulation.crash(down)
        simulation.run(for: 500 * Self.millisecond)
        let client = simulation.addClient(scripted: true)
        let call = simulation.put(client: client, keyIndex: 0, via: homes[0], w: 2)
        simulation.run(for: 100 * Self.millisecond)
        #expect(written(simulation, call))
        let value = try #require(simulation.writes.last?.value)
        let holders = simulation.nodes.indices.filter { simulation.nodes[$0].disk.durableSlot(simulation.keys[0]).hint != nil }
        #expect(holders.count == 1 && !homes.contains(holders[0]), "one fallback keeps the hint")
        let record = try #require(holders.first.flatMap { simulation.nodes[$0].disk.durableSlot(simulation.keys[0]).hint })
        #expect(record.owners == [simulation.nodes[down].id])
        #expect(record.object.values.contains(value))
        #expect(!durableValues(simulation, node: down, keyIndex: 0).contains(value))

        simulation.restart(down)
        simulation.run(for: 2_000 * Self.millisecond)
        #expect(durableValues(simulation, node: down, keyIndex: 0).contains(value), "the hint reached the replica")
        #expect(simulation.nodes.allSatisfy { $0.disk.durableSlot(simulation.keys[0]).hint == nil })
        #expect(simulation.statistics.hintsDelivered >= 1)
        let report = simulation.finish()
        #expect(report.passed, Comment(rawValue: report.failureText ?? ""))
    }

    /// Proves sloppy quorum across a partition: both sides of a 2|3 split accept W=2
    /// writes of one key; after the heal both versions survive as siblings and the
    /// version both writers had read is gone.
    @Test func partitionedSidesBothWriteAndMerge() throws {
        let simulation = Simulation(parameters: .scripted())
        let setup = simulation.addClient(scripted: true)
        let first = simulation.put(client: setup, keyIndex: 0, via: simulation.homes[0][0], w: 3)
        simulation.run(for: 100 * Self.millisecond)
        #expect(written(simulation, first))
        let original = try #require(simulation.writes.last?.value)
        let minority = [0, 1], majority = [2, 3, 4]
        let left = simulation.addClient(scripted: true), right = simulation.addClient(scripted: true)
        simulation.get(client: left, keyIndex: 0, via: minority[0], r: 3)
        simulation.get(client: right, keyIndex: 0, via: majority[0], r: 3)
        simulation.run(for: 100 * Self.millisecond)

        simulation.cut(side: minority, direction: 0, length: 0)
        simulation.run(for: 500 * Self.millisecond)
        let leftCall = simulation.put(client: left, keyIndex: 0, via: minority[1], w: 2)
        let rightCall = simulation.put(client: right, keyIndex: 0, via: majority[1], w: 2)
        simulation.run(for: 200 * Self.millisecond)
        #expect(written(simulation, leftCall), "the minority side accepts the write through a fallback")
        #expect(written(simulation, rightCall))
        let leftValue = try #require(simulation.calls[leftCall].write.map { simulation.writes[$0].value })
        let rightValue = try #require(simulation.calls[rightCall].write.map { simulation.writes[$0].value })

        let report = simulation.finish()
        #expect(report.passed, Comment(rawValue: report.failureText ?? ""))
        let final = Set(simulation.finalObject(0)?.values ?? [])
        #expect(final == [leftValue, rightValue], "both sides' writes survive as siblings; the one they superseded does not")
        #expect(!final.contains(original))
    }

    /// Proves that a coordinator crash mid-write leaves the client without an answer
    /// and breaks nothing. The coordinator sends its object to the replicas as soon as
    /// it is appended, so the value survives a crash before the coordinator's own fsync
    /// (which loses its local copy; the restart takes a fresh actor, so that version's
    /// dot is never issued again) as well as one after every fsync; the checker passes.
    @Test(arguments: [1.0, 4.0])
    func coordinatorCrashMidWrite(crashAfterMilliseconds: Double) throws {
        let simulation = Simulation(parameters: .scripted())
        let coordinator = simulation.homes[0][0]
        let client = simulation.addClient(scripted: true)
        // Timeline: the request lands at 0.5 ms and the coordinator appends and sends
        // its object; the replicas apply at 1.5 ms; the local fsync ends at 2.5 ms and
        // the replicas' at 3.5 ms; their acks land at 4.5 ms.
        let call = simulation.put(client: client, keyIndex: 0, via: coordinator, w: 2)
        simulation.run(for: Int64(crashAfterMilliseconds * 1_000))
        simulation.crash(coordinator)
        simulation.run(for: 3_500 * Self.millisecond)
        #expect(simulation.calls[call].outcome == .indeterminate, "a client whose coordinator died hears nothing")
        simulation.restart(coordinator)
        let value = try #require(simulation.writes.last?.value)
        let report = simulation.finish()
        #expect(report.passed, Comment(rawValue: report.failureText ?? ""))
        #expect(simulation.finalObject(0)?.values.contains(value) ?? false)
    }

    /// Proves the coordinator does not wait for its own fsync before it replicates:
    /// with W=2 the client's answer lands half a millisecond after the replicas' acks
    /// (5.0 ms), not after the coordinator's fsync and then the replicas' (7.0 ms).
    @Test func coordinatorReplicatesBeforeItsOwnFsync() throws {
        let simulation = Simulation(parameters: .scripted())
        let coordinator = simulation.homes[0][0]
        let client = simulation.addClient(scripted: true)
        let call = simulation.put(client: client, keyIndex: 0, via: coordinator, w: 2)
        simulation.run(for: 4_900)
        #expect(simulation.calls[call].outcome == .pending)
        simulation.run(for: 200)
        guard case .replied(.written) = simulation.calls[call].outcome else {
            Issue.record("no written answer by 5.1 ms: \(simulation.calls[call].outcome)")
            return
        }
        #expect(simulation.finish().passed)
    }
}
