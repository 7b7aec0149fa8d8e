/// A defect planted in the simulated shell on purpose, to prove that the checker
/// notices lost and resurrected writes. Real runs use `.none`.
enum ShellDefect: String, Sendable {
    case none
    /// The disk acknowledges every fsync but makes only every other write durable.
    case forgetEveryOtherSync
    /// Replica merges overwrite the stored object instead of syncing with it.
    case mergeOverwrites
    /// A node restarted after a crash keeps its actor, against the shell contract.
    case restartKeepsActor
}

/// How a run picks read and write quorums.
enum QuorumChoice: Sendable, Equatable, CustomStringConvertible {
    /// Every operation uses these.
    case fixed(r: Int, w: Int)
    /// Each operation draws r or w from 1...N.
    case perOperation

    var description: String {
        switch self {
        case .fixed(let r, let w): "r=\(r),w=\(w)"
        case .perOperation: "r,w per op"
        }
    }
}

/// Relative weights of what a client does next.
struct OperationMix: Sendable, Equatable {
    var get: Double
    var put: Double
    var delete: Double
    var blindPut: Double
    var readModifyWrite: Double

    var weights: [Double] { [get, put, delete, blindPut, readModifyWrite] }
}

/// Relative weights of the faults the safety phase injects.
struct FaultMix: Sendable, Equatable {
    var crash: Double
    var partition: Double
    var falseSuspicion: Double

    var weights: [Double] { [crash, partition, falseSuspicion] }
    var isEmpty: Bool { crash + partition + falseSuspicion == 0 }
}

/// Everything that shapes one run, derived from its seed (or written out by a
/// scenario test). All durations are simulated microseconds.
struct SimulationParameters: Sendable, CustomStringConvertible {
    var seed: UInt64
    var nodeCount: Int
    var partitionCount: Int
    /// N: home replicas per key.
    var replicaCount: Int
    var keyCount: Int
    var clientCount: Int
    var quorum: QuorumChoice
    /// How long a coordinator waits for its quorum (`NodeEngine.Configuration.requestTimeout`).
    var requestTimeoutMicroseconds: Int64
    /// The deadline of one node-to-node call; after it the sender gets `.timedOut`.
    var rpcDeadlineMicroseconds: Int64
    /// How long a client waits for a reply before it calls its operation indeterminate.
    var clientTimeoutMicroseconds: Int64
    var networkDelayMicroseconds: ClosedRange<Int64>
    var clientDelayMicroseconds: ClosedRange<Int64>
    var fsyncDelayMicroseconds: ClosedRange<Int64>
    var readDelayMicroseconds: ClosedRange<Int64>
    /// Probability that a node-to-node message (request or reply) is lost.
    var dropProbability: Double
    /// Probability that an idempotent request (replica read or write, ping) arrives twice.
    var duplicateProbability: Double
    /// Probability that a message stalls (a congested link, a paused process) for
    /// `slowDelayMicroseconds`, often past its call's deadline.
    var slowProbability: Double
    var slowDelayMicroseconds: ClosedRange<Int64>
    /// Mean time between injected faults; 0 injects none.
    var faultIntervalMeanMicroseconds: Int64
    var faultMix: FaultMix
    var crashDowntimeMicroseconds: ClosedRange<Int64>
    var partitionLengthMicroseconds: ClosedRange<Int64>
    var suspicionLengthMicroseconds: ClosedRange<Int64>
    /// How long the failure detector takes to notice a change in reachability.
    var detectorDelayMicroseconds: ClosedRange<Int64>
    var thinkTimeMicroseconds: ClosedRange<Int64>
    var operationMix: OperationMix
    /// Length of the phase with faults and client load.
    var safetyDurationMicroseconds: Int64
    /// The liveness phase gives hints this long to drain before it calls it a failure.
    var drainDurationMaxMicroseconds: Int64
    var shellDefect: ShellDefect

    /// The parameters of `seed`'s run; `safetyScale` stretches the faulty phase for
    /// longer soak runs.
    static func derived(seed: UInt64, safetyScale: Int64 = 1) -> SimulationParameters {
        // A separate stream from the run's own, so that adding a parameter here does
        // not shift every delay and fault of every seed.
        var random = SimulationRandom(seed: seed ^ 0x5eed_0f_9a7a_3e7e)
        let ms = SimulatedTime.milliseconds
        func range(_ low: ClosedRange<Int64>, _ high: ClosedRange<Int64>) -> ClosedRange<Int64> {
            let lower = random.microseconds(in: low)
            return lower...max(lower, random.microseconds(in: high))
        }
        let nodeCount = [3, 4, 5, 6][random.weightedIndex([0.1, 0.2, 0.45, 0.25])]
        let partitionCount = random.element(of: [8, 16, 32, 64])
        let quorum: QuorumChoice = random.chance(0.5)
            ? .perOperation : .fixed(r: random.int(in: 1...3), w: random.int(in: 1...3))
        let requestTimeout = ms(Int64(random.int(in: 1_000...2_000)))
        let rpcDeadline = ms(Int64(random.int(in: 400...1_200)))
        let faultMix = FaultMix(
            crash: random.chance(0.8) ? random.unit() + 0.2 : 0,
            partition: random.chance(0.8) ? random.unit() + 0.2 : 0,
            falseSuspicion: random.chance(0.6) ? random.unit() + 0.1 : 0)
        return SimulationParameters(
            seed: seed,
            nodeCount: nodeCount,
            partitionCount: partitionCount,
            replicaCount: 3,
            keyCount: random.int(in: 3...10),
            clientCount: random.int(in: 3...8),
            quorum: quorum,
            requestTimeoutMicroseconds: requestTimeout,
            rpcDeadlineMicroseconds: rpcDeadline,
            clientTimeoutMicroseconds: requestTimeout + 2 * rpcDeadline + ms(500),
            networkDelayMicroseconds: range(100...500, ms(1)...ms(10)),
            clientDelayMicroseconds: range(100...300, 500...ms(2)),
            fsyncDelayMicroseconds: range(200...ms(1), ms(2)...ms(20)),
            readDelayMicroseconds: range(50...200, 200...ms(1)),
            dropProbability: random.chance(0.2) ? 0 : 0.001 + random.unit() * 0.05,
            duplicateProbability: random.chance(0.3) ? 0 : 0.001 + random.unit() * 0.05,
            slowProbability: random.chance(0.3) ? 0 : 0.001 + random.unit() * 0.02,
            slowDelayMicroseconds: range(ms(50)...ms(300), ms(300)...ms(3_000)),
            faultIntervalMeanMicroseconds: faultMix.isEmpty || random.chance(0.1)
                ? 0 : ms(Int64(random.int(in: 500...3_000))),
            faultMix: faultMix,
            crashDowntimeMicroseconds: range(ms(300)...ms(1_000), ms(1_000)...ms(5_000)),
            partitionLengthMicroseconds: range(ms(300)...ms(1_000), ms(1_000)...ms(5_000)),
            suspicionLengthMicroseconds: range(ms(100)...ms(500), ms(500)...ms(3_000)),
            detectorDelayMicroseconds: range(ms(100)...ms(300), ms(300)...ms(800)),
            thinkTimeMicroseconds: range(ms(5)...ms(30), ms(30)...ms(300)),
            operationMix: OperationMix(
                get: 0.3 + random.unit() * 0.2,
                put: 0.3 + random.unit() * 0.2,
                delete: 0.03 + random.unit() * 0.07,
                blindPut: 0.02 + random.unit() * 0.06,
                readModifyWrite: 0.05 + random.unit() * 0.1),
            safetyDurationMicroseconds: SimulatedTime.seconds(Int64(random.int(in: 4...9))) * safetyScale,
            drainDurationMaxMicroseconds: SimulatedTime.seconds(60),
            shellDefect: .none)
    }

    /// A calm cluster for scripted scenarios: no random clients, no random faults,
    /// fixed delays, so a test can reason about what happens when.
    static func scripted(seed: UInt64 = 1, nodeCount: Int = 5) -> SimulationParameters {
        let ms = SimulatedTime.milliseconds
        return SimulationParameters(
            seed: seed, nodeCount: nodeCount, partitionCount: 16, replicaCount: 3, keyCount: 3, clientCount: 0,
            quorum: .fixed(r: 2, w: 2),
            requestTimeoutMicroseconds: ms(1_000), rpcDeadlineMicroseconds: ms(500), clientTimeoutMicroseconds: ms(3_000),
            networkDelayMicroseconds: ms(1)...ms(1), clientDelayMicroseconds: 500...500,
            fsyncDelayMicroseconds: ms(2)...ms(2), readDelayMicroseconds: 500...500,
            dropProbability: 0, duplicateProbability: 0, slowProbability: 0, slowDelayMicroseconds: ms(100)...ms(100),
            faultIntervalMeanMicroseconds: 0, faultMix: FaultMix(crash: 0, partition: 0, falseSuspicion: 0),
            crashDowntimeMicroseconds: ms(1_000)...ms(1_000), partitionLengthMicroseconds: ms(1_000)...ms(1_000),
            suspicionLengthMicroseconds: ms(1_000)...ms(1_000), detectorDelayMicroseconds: ms(200)...ms(200),
            thinkTimeMicroseconds: ms(10)...ms(10),
            operationMix: OperationMix(get: 1, put: 1, delete: 0, blindPut: 0, readModifyWrite: 0),
            safetyDurationMicroseconds: 0, drainDurationMaxMicroseconds: SimulatedTime.seconds(60), shellDefect: .none)
    }

    var description: String {
        func span(_ range: ClosedRange<Int64>) -> String {
            func text(_ value: Int64) -> String {
                value >= 1_000 ? "\(Double(value) / 1_000)ms" : "\(value)us"
            }
            return range.lowerBound == range.upperBound ? text(range.lowerBound) : "\(text(range.lowerBound))-\(text(range.upperBound))"
        }
        func percent(_ value: Double) -> String { "\(Double(Int(value * 10_000)) / 100)%" }
        func weight(_ value: Double) -> String { "\(Double(Int(value * 100)) / 100)" }
        return """
            seed=\(seed) nodes=\(nodeCount) Q=\(partitionCount) N=\(replicaCount) keys=\(keyCount) \
            clients=\(clientCount) \(quorum) timeout=\(span(requestTimeoutMicroseconds...requestTimeoutMicroseconds)) \
            rpc=\(span(rpcDeadlineMicroseconds...rpcDeadlineMicroseconds)) \
            clientTimeout=\(span(clientTimeoutMicroseconds...clientTimeoutMicroseconds)) \
            net=\(span(networkDelayMicroseconds)) clientNet=\(span(clientDelayMicroseconds)) \
            fsync=\(span(fsyncDelayMicroseconds)) read=\(span(readDelayMicroseconds)) \
            drop=\(percent(dropProbability)) dup=\(percent(duplicateProbability)) \
            slow=\(percent(slowProbability))x\(span(slowDelayMicroseconds)) \
            faultEvery=\(faultIntervalMeanMicroseconds == 0 ? "never" : span(faultIntervalMeanMicroseconds...faultIntervalMeanMicroseconds)) \
            mix(crash=\(weight(faultMix.crash)),partition=\(weight(faultMix.partition)),suspect=\(weight(faultMix.falseSuspicion))) \
            down=\(span(crashDowntimeMicroseconds)) cut=\(span(partitionLengthMicroseconds)) \
            suspect=\(span(suspicionLengthMicroseconds)) detector=\(span(detectorDelayMicroseconds)) \
            think=\(span(thinkTimeMicroseconds)) \
            ops(get=\(weight(operationMix.get)),put=\(weight(operationMix.put)),del=\(weight(operationMix.delete)),\
            blind=\(weight(operationMix.blindPut)),rmw=\(weight(operationMix.readModifyWrite))) \
            safety=\(safetyDurationMicroseconds / SimulatedTime.microsecondsPerSecond)s\
            \(shellDefect == .none ? "" : " defect=\(shellDefect.rawValue)")
            """
    }
}
