import Foundation
@testable import RingstoreCore
import Testing

/// Which seeds the CASPaxos simulation runs: `RINGSTORE_CASPAXOS_SEED` replays one,
/// `RINGSTORE_CASPAXOS_SEEDS` sets how many (default 2,000, from seed 1).
enum CASPaxosSeeds {
    static let defaultCount = 2_000
    /// The seeds are split into this many test cases, which Swift Testing runs in parallel.
    static let shardCount = 8

    static var all: [UInt64] {
        let environment = ProcessInfo.processInfo.environment
        if let seed = environment["RINGSTORE_CASPAXOS_SEED"].flatMap({ UInt64($0) }) { return [seed] }
        let count = environment["RINGSTORE_CASPAXOS_SEEDS"].flatMap { Int($0) }.map { max(1, $0) } ?? defaultCount
        return (1...UInt64(count)).map { $0 }
    }

    static func shard(_ index: Int) -> [UInt64] {
        all.enumerated().filter { $0.offset % shardCount == index }.map(\.element)
    }
}

private let reproduceHint = "reproduce with: RINGSTORE_CASPAXOS_SEED=<seed> swift test --filter CASPaxosSimulation"

@Suite("CASPaxos simulation")
struct CASPaxosSimulationTests {
    // Proves that under drops, delays, duplicates, reordering, partitions and crashes of acceptors and proposers, every seed's history is linearizable, counters and sets stay within their bounds, a ballot carries one value, and every client finishes once the faults heal.
    @Test(arguments: 0..<CASPaxosSeeds.shardCount)
    func randomFaultsStayLinearizable(shard: Int) {
        var answered = 0
        for seed in CASPaxosSeeds.shard(shard) {
            let report = CASPaxosRunReport.run(seed: seed)
            answered += report.answered
            #expect(report.linearizabilityViolations.isEmpty,
                    "seed \(seed): \(report.linearizabilityViolations.joined(separator: "\n"))\n\(report.summary)\n\(reproduceHint)")
            #expect(report.invariantViolations.isEmpty,
                    "seed \(seed): \(report.invariantViolations.prefix(5))\n\(report.summary)\n\(reproduceHint)")
            #expect(report.finished, "seed \(seed): clients did not finish after healing: \(report.summary)\n\(reproduceHint)")
        }
        // A simulator whose operations never complete would prove nothing.
        #expect(CASPaxosSeeds.shard(shard).isEmpty || answered >= CASPaxosSeeds.shard(shard).count * 5,
                "only \(answered) operations answered in shard \(shard)")
    }

    // Proves the checker catches a proposer that takes the first promise's value instead of the one with the highest ballot: some seed yields a non-linearizable history.
    @Test func checkerCatchesFirstPromiseValue() {
        let caught = (UInt64(1)...400).first { seed in
            !CASPaxosRunReport.run(seed: seed, fault: .firstPromiseValue).linearizabilityViolations.isEmpty
        }
        #expect(caught != nil, "no seed in 1...400 exposed the first-promise bug")
    }

    // Proves the checker catches a proposer whose quorum is one short of a majority: some seed yields a non-linearizable history.
    @Test func checkerCatchesQuorumOneShort() {
        let caught = (UInt64(1)...400).first { seed in
            !CASPaxosRunReport.run(seed: seed, fault: .quorumOneShort).linearizabilityViolations.isEmpty
        }
        #expect(caught != nil, "no seed in 1...400 exposed the short quorum")
    }

    // Proves the checker catches acceptors that do not persist before replying (they forget their promises and accepts in a crash): some seed yields a non-linearizable history.
    @Test func checkerCatchesAcceptorAmnesia() {
        let caught = (UInt64(1)...400).first { seed in
            !CASPaxosRunReport.run(seed: seed, acceptorsForgetOnCrash: true).linearizabilityViolations.isEmpty
        }
        #expect(caught != nil, "no seed in 1...400 exposed acceptors that forget")
    }

    // Proves the checker catches acceptors that answer promises before they are durable and keep no floor: under brief, frequent crashes a restarted acceptor has forgotten promises it answered, and some seed yields a non-linearizable history.
    @Test func checkerCatchesUnsyncedPromisesWithoutAFloor() {
        let caught = (UInt64(1)...400).first { seed in
            !CASPaxosRunReport.run(seed: seed, briefFrequentCrashes: true, unsyncedPromisesWithoutFloor: true).linearizabilityViolations.isEmpty
        }
        #expect(caught != nil, "no seed in 1...400 exposed unsynced promises without a floor")
    }

    // Proves the promise floor is what makes unsynced promises safe: the same brief, frequent crashes with the floor leave every history of 400 seeds linearizable, every invariant kept.
    @Test func unsyncedPromisesUnderTheFloorSurviveBriefFrequentCrashes() {
        for seed in UInt64(1)...400 {
            let report = CASPaxosRunReport.run(seed: seed, briefFrequentCrashes: true)
            #expect(report.linearizabilityViolations.isEmpty && report.invariantViolations.isEmpty,
                    "seed \(seed): \(report.linearizabilityViolations.joined(separator: "\n")) \(report.invariantViolations.prefix(3))\n\(report.summary)")
        }
    }

    // Proves a run is a function of its seed: the same seed gives the same history twice.
    @Test func seedReplaysExactly() {
        for seed in [UInt64(7), 1234] {
            var first = CASPaxosWorld(.derived(seed: seed))
            var second = CASPaxosWorld(.derived(seed: seed))
            first.run()
            second.run()
            #expect(first.summary == second.summary)
            #expect(first.records.map(\.operation.description) == second.records.map(\.operation.description))
        }
    }
}
