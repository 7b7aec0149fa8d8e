import RingstoreCore
import Testing

/// A regression the simulator found: hint actors must be retired with the node's
/// actor after an unclean restart (HintRecord.actorEpoch).
@Suite("Simulation regressions: hinted writes across a crash") struct SimulationHintedCrashTests {
    private static let millisecond: Int64 = 1_000

    /// Proves that a fallback restarted after a crash issues new dots for the hint
    /// records it kept. This is `crashAfterExposedUnsyncedWrite` with a fallback as
    /// the coordinator: the record (and its actor h) survives the crash on disk, the
    /// exposed write under (h, 2) does not, and the restarted node, which takes a new
    /// actor of its own but keeps issuing hinted versions under h, gives the next
    /// acknowledged write (h, 2) again. Replicas that read repair gave the exposed
    /// write drop the new one as seen: it is lost, and the home replicas diverge.
    @Test func crashAfterExposedUnsyncedHintedWrite() throws {
        let simulation = Simulation(parameters: .scripted(seed: 13))
        let homes = simulation.homes[0]
        let fallback = simulation.firstFallback(keyIndex: 0)
        let writer = simulation.addClient(scripted: true), reader = simulation.addClient(scripted: true)
        let third = simulation.addClient(scripted: true)
        simulation.crash(homes[2])
        simulation.run(for: 500 * Self.millisecond)
        let firstCall = simulation.put(client: writer, keyIndex: 0, via: fallback, w: 2)
        simulation.run(for: 100 * Self.millisecond)
        #expect(simulation.calls[firstCall].isWritten)
        let hintActor = try #require(simulation.nodes[fallback].disk.durableSlot(simulation.keys[0]).hint?.actor)

        // The put lands at the fallback at 0.5 ms (fsync due at 2.5 ms); the read
        // reaches homes[0] at 0.5 ms and asks the fallback, whose read ends at 2.0 ms.
        let lostCall = simulation.put(client: writer, keyIndex: 0, via: fallback, w: 1)
        let readCall = simulation.get(client: reader, keyIndex: 0, via: homes[0], r: 3)
        simulation.run(for: 2_200)
        simulation.crash(fallback)
        simulation.run(for: 50 * Self.millisecond)
        #expect(simulation.calls[readCall].outcome != .pending)
        simulation.restart(fallback)
        #expect(simulation.nodes[fallback].disk.durableSlot(simulation.keys[0]).hint?.actor == hintActor,
                "the hint record and its actor survived the crash")
        // Long enough for the detector to tell the restarted fallback that homes[2] is down.
        simulation.run(for: 500 * Self.millisecond)
        let newCall = simulation.put(client: third, keyIndex: 0, via: fallback, w: 2, blind: true)
        simulation.run(for: 4_000 * Self.millisecond)
        #expect(simulation.calls[lostCall].outcome == .indeterminate)
        #expect(simulation.calls[newCall].isWritten)
        let lost = try #require(simulation.calls[lostCall].write.map { simulation.writes[$0] })
        #expect(lost.observedByClient, "the read returned the unsynced hinted write")
        let acknowledged = try #require(simulation.calls[newCall].write.map { simulation.writes[$0] })
        let report = simulation.finish()
        #expect(report.statistics.lostEscapedWrites == 1, "the crash lost a write a client had read")

        #expect(Set(lost.dots).isDisjoint(with: acknowledged.dots), "each version gets its own dot")
        let final = Set(simulation.finalObject(0)?.values ?? [])
        #expect(final == [lost.value, acknowledged.value], "the blind write stands beside the exposed one")
        #expect(report.passed, Comment(rawValue: report.failureText ?? ""))
    }
}
