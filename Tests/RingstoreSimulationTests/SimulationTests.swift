import Foundation
import Testing

/// How many seeds to run and how long each safety phase lasts, from the environment:
/// `RINGSTORE_SIM_SEED` replays one seed, `RINGSTORE_SIM_SEEDS` sets how many to run
/// (from `RINGSTORE_SIM_FIRST_SEED`, default 1), `RINGSTORE_SIM_SCALE` stretches the
/// faulty phase of each for soak runs.
struct SimulationSeeds {
    static let defaultCount = 200

    var seeds: [UInt64]
    var scale: Int64
    var isReplay: Bool

    static func fromEnvironment() -> SimulationSeeds {
        let environment = ProcessInfo.processInfo.environment
        let scale = environment["RINGSTORE_SIM_SCALE"].flatMap { Int64($0) }.map { max(1, $0) } ?? 1
        if let seed = environment["RINGSTORE_SIM_SEED"].flatMap({ UInt64($0) }) {
            return SimulationSeeds(seeds: [seed], scale: scale, isReplay: true)
        }
        let count = environment["RINGSTORE_SIM_SEEDS"].flatMap { Int($0) }.map { max(1, $0) } ?? defaultCount
        let first = environment["RINGSTORE_SIM_FIRST_SEED"].flatMap { UInt64($0) } ?? 1
        return SimulationSeeds(seeds: (0..<UInt64(count)).map { first + $0 }, scale: scale, isReplay: false)
    }

    /// Runs each parameter set on its own task, as many at once as there are cores;
    /// every run is single-threaded and shares nothing. Reports come back in order.
    static func run(_ parameters: [SimulationParameters]) async -> [SimulationReport] {
        let workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        return await withTaskGroup(of: (Int, SimulationReport).self) { group in
            var reports = [SimulationReport?](repeating: nil, count: parameters.count)
            var next = 0
            func start(_ index: Int) {
                let run = parameters[index]
                group.addTask { (index, Simulation(parameters: run).runToCompletion()) }
            }
            while next < min(workers, parameters.count) {
                start(next)
                next += 1
            }
            while let (index, report) = await group.next() {
                reports[index] = report
                if next < parameters.count {
                    start(next)
                    next += 1
                }
            }
            return reports.map { $0! }
        }
    }
}

@Suite("Simulation") struct SimulationTests {
    /// Proves, over many seeded clusters with crashes, partitions, lost, late and
    /// duplicated messages and false suspicions, that no acknowledged write is lost,
    /// no superseded version returns, siblings stay bounded and replicas converge.
    @Test func randomClustersUnderFaults() async throws {
        let plan = SimulationSeeds.fromEnvironment()
        let started = ContinuousClock.now
        let reports = await SimulationSeeds.run(plan.seeds.map { .derived(seed: $0, safetyScale: plan.scale) })
        for report in reports {
            print("seed \(report.parameters.seed): \(report.passed ? "ok" : "FAILED") trace=\(report.traceHash) \(report.statistics.summary)")
            print("  \(report.parameters)")
        }
        let failed = reports.filter { !$0.passed }
        print("simulated \(reports.count) seeds in \(ContinuousClock.now - started); \(failed.count) failed" +
              (failed.isEmpty ? "" : ": \(failed.map { String($0.parameters.seed) }.joined(separator: " "))"))
        for report in failed {
            Issue.record(Comment(rawValue: report.failureText ?? "seed \(report.parameters.seed) failed"))
        }
    }

    /// Proves that a run is a function of its seed: two runs of one seed produce the
    /// same trace, and another seed a different one.
    @Test func sameSeedSameRun() async throws {
        let seeds: [UInt64] = [7, 7, 8]
        let reports = await SimulationSeeds.run(seeds.map { .derived(seed: $0) })
        #expect(reports[0].traceHash == reports[1].traceHash)
        #expect(reports[0].statistics.events == reports[1].statistics.events)
        #expect(reports[0].statistics.summary == reports[1].statistics.summary)
        #expect(reports[0].violations.map(\.line) == reports[1].violations.map(\.line))
        #expect(reports[0].traceHash != reports[2].traceHash)
        #expect(reports[0].statistics.calls > 100, "the run should carry real load")
    }

    /// Proves that the checker can fail: shells with planted storage defects must be
    /// caught losing or resurrecting writes.
    @Test(arguments: [ShellDefect.forgetEveryOtherSync, .mergeOverwrites])
    func checkerCatchesPlantedDefect(_ defect: ShellDefect) async throws {
        let runs = (1...10).map { seed in
            var parameters = SimulationParameters.derived(seed: UInt64(seed))
            parameters.shellDefect = defect
            return parameters
        }
        let reports = await SimulationSeeds.run(runs)
        let caught = reports.filter { !$0.passed }
        let kinds = Set(caught.flatMap { $0.violations.map(\.kind) })
        print("defect \(defect.rawValue): caught in \(caught.count) of \(reports.count) seeds: \(kinds.sorted())")
        #expect(caught.count >= 3, "the checker missed a planted \(defect.rawValue) too often")
        #expect(kinds.contains("lost write"))
    }
}
