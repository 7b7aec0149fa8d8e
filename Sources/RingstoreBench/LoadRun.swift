public import Foundation
public import Histogram
import RingstoreClient
import RingstoreCore
import Synchronization

/// What one load does.
public struct LoadSettings: Sendable, Codable {
    public var workload: Workload
    public var distribution: KeyDistribution
    /// Keys in the key space: `keyPrefix` followed by 0 to keys - 1.
    public var keys: Int
    public var keyPrefix: String
    public var valueSize: Int
    public var table: String
    /// Requests in flight: one task each.
    public var concurrency: Int
    /// Seconds of load; the load ends at whichever of this and `operations` comes first.
    public var durationSeconds: Double?
    public var operations: Int?
    /// Operations per second over the whole load (open loop): operation i is due at
    /// start + i / rate, and its latency counts from then, so a stall is charged to
    /// every operation it delayed. Nil: closed loop, as fast as the tasks go.
    public var rate: Double?
    public var seed: UInt64

    public init(
        workload: Workload, distribution: KeyDistribution = .uniform, keys: Int = 10_000, keyPrefix: String = "bench-",
        valueSize: Int = 100, table: String = "default", concurrency: Int = 32, durationSeconds: Double? = 10,
        operations: Int? = nil, rate: Double? = nil, seed: UInt64 = 1
    ) {
        self.workload = workload
        self.distribution = distribution
        self.keys = keys
        self.keyPrefix = keyPrefix
        self.valueSize = valueSize
        self.table = table
        self.concurrency = concurrency
        self.durationSeconds = durationSeconds
        self.operations = operations
        self.rate = rate
        self.seed = seed
    }

    func key(_ index: Int) -> String { "\(keyPrefix)\(index)" }
}

/// Latencies in microseconds, 1 µs to 60 s, three significant digits.
public typealias LatencyHistogram = Histogram<UInt64>

extension Histogram where Count == UInt64 {
    static func latencies() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    }

    mutating func recordClamped(microseconds: UInt64) {
        _ = record(Swift.min(Swift.max(microseconds, 1), highestTrackableValue))
    }
}

/// What a load measured: per operation, throughput and the latency distribution.
public struct LoadResult: Sendable {
    public var settings: LoadSettings
    public var target: String
    public var startedAt: Date
    public var elapsedSeconds: Double
    public var histograms: [Operation: LatencyHistogram]
    public var errors: [Operation: Int]
    public var firstError: String?

    public var all: LatencyHistogram {
        var merged = LatencyHistogram.latencies()
        for histogram in histograms.values { merged.add(histogram) }
        return merged
    }

    public var completed: UInt64 { histograms.values.reduce(0) { $0 + $1.totalCount } }
    public var errorCount: Int { errors.values.reduce(0, +) }
    public var throughput: Double { elapsedSeconds > 0 ? Double(completed) / elapsedSeconds : 0 }
}

/// One load against one target: `concurrency` tasks take numbered tickets; in an
/// open loop ticket i is due at start + i / rate.
public final class LoadRun: Sendable {
    public let settings: LoadSettings
    private let chooser: KeyChooser
    private let keyNames: [String]
    private let value: [UInt8]
    /// The context last seen for each key, written with the next update of it, so
    /// updates supersede each other instead of piling up siblings.
    private let contexts: Mutex<[String?]>
    private let tickets = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)
    /// Latencies since the last progress snapshot.
    private let window = Mutex<LatencyHistogram>(.latencies())

    public init(settings: LoadSettings) {
        self.settings = settings
        chooser = KeyChooser(count: settings.keys, distribution: settings.distribution)
        keyNames = (0..<settings.keys).map(settings.key)
        value = [UInt8](repeating: UInt8(ascii: "v"), count: settings.valueSize)
        contexts = Mutex([String?](repeating: nil, count: settings.keys))
    }

    // MARK: Preparing

    /// Makes sure the table exists (a linearizable one for the CAS workload),
    /// creating it when it is missing.
    public func prepareTable(on target: LoadTarget) async throws {
        let path = "/v1/tables/\(RingstoreHTTPClient.percentEncode(settings.table))"
        let existing = try await target.send(method: "GET", path: path)
        if existing.status == 200 {
            let linearizable = existing.bodyText.contains("\"linearizable\"")
            if linearizable != settings.workload.isLinearizable {
                throw LoadError.table("table \(settings.table) is \(linearizable ? "linearizable" : "eventual"); workload \(settings.workload.rawValue) needs \(settings.workload.isLinearizable ? "a linearizable" : "an eventual") table (choose another with --table)")
            }
            return
        }
        guard existing.status == 404 else { throw LoadError.refused(status: existing.status, body: existing.bodyText) }
        let body = settings.workload.isLinearizable ? #"{"consistency":"linearizable"}"# : "{}"
        let created = try await target.send(method: "PUT", path: path, body: Array(body.utf8))
        guard (200..<300).contains(created.status) else {
            throw LoadError.table("could not create table \(settings.table): HTTP \(created.status) \(created.bodyText)")
        }
    }

    /// Writes every key once (reads then find values), `concurrency` at a time.
    public func preload(on target: LoadTarget) async throws {
        let tasks = settings.concurrency
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                let target = target.forTask(task)
                group.addTask(executorPreference: target.taskExecutor) { [self] in
                    for index in stride(from: task, to: keyNames.count, by: tasks) {
                        let context = try await target.update(table: settings.table, key: keyNames[index], value: value, context: nil)
                        contexts.withLock { $0[index] = context }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    // MARK: Running

    /// Runs the load and returns what it measured.
    public func run(on target: LoadTarget, label: String) async -> LoadResult {
        let startedAt = Date()
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = settings.durationSeconds.map { start + .nanoseconds(Int64($0 * 1e9)) }
        let interval = settings.rate.map { Duration.nanoseconds(Int64((1e9 / $0).rounded())) }
        let tasks = settings.concurrency
        let outcomes = await withTaskGroup(of: TaskOutcome.self) { group in
            for task in 0..<tasks {
                let target = target.forTask(task)
                group.addTask(executorPreference: target.taskExecutor) { [self] in
                    await runTask(task, target: target, start: start, deadline: deadline, interval: interval)
                }
            }
            var all: [TaskOutcome] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        let elapsed = (clock.now - start).seconds
        var histograms: [Operation: LatencyHistogram] = [:]
        var errors: [Operation: Int] = [:]
        var firstError: String?
        for outcome in outcomes {
            for (operation, histogram) in outcome.histograms { histograms[operation, default: .latencies()].add(histogram) }
            for (operation, count) in outcome.errors { errors[operation, default: 0] += count }
            firstError = firstError ?? outcome.firstError
        }
        return LoadResult(settings: settings, target: label, startedAt: startedAt, elapsedSeconds: elapsed,
                          histograms: histograms, errors: errors, firstError: firstError)
    }

    private struct TaskOutcome: Sendable {
        var histograms: [Operation: LatencyHistogram] = [:]
        var errors: [Operation: Int] = [:]
        var firstError: String?
    }

    private func runTask(
        _ task: Int, target: LoadTarget, start: ContinuousClock.Instant, deadline: ContinuousClock.Instant?, interval: Duration?
    ) async -> TaskOutcome {
        var outcome = TaskOutcome()
        var random = SplitMixGenerator(seed: settings.seed &* 0x100_0000_01B3 &+ UInt64(task))
        let clock = ContinuousClock()
        let table = settings.table
        while true {
            let ticket = tickets.add(1, ordering: .relaxed).oldValue
            if let operations = settings.operations, ticket >= operations { break }
            var due = clock.now
            if let interval {
                due = start + interval * ticket
                if let deadline, due >= deadline { break }
                if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
            } else if let deadline, due >= deadline {
                break
            }
            let began = interval == nil ? clock.now : due
            let operation = settings.workload.operation(random.unit())
            let index = chooser.next(using: &random)
            let key = keyNames[index]
            do {
                switch operation {
                case .read:
                    let context = try await target.read(table: table, key: key)
                    contexts.withLock { $0[index] = context }
                case .update:
                    let context = contexts.withLock { $0[index] }
                    let written = try await target.update(table: table, key: key, value: value, context: context)
                    contexts.withLock { $0[index] = written }
                case .cas:
                    try await target.cas(table: table, key: key)
                }
                let micros = UInt64((clock.now - began).seconds * 1e6)
                outcome.histograms[operation, default: .latencies()].recordClamped(microseconds: micros)
                window.withLock { $0.recordClamped(microseconds: micros) }
                done.add(1, ordering: .relaxed)
            } catch {
                outcome.errors[operation, default: 0] += 1
                failed.add(1, ordering: .relaxed)
                if outcome.firstError == nil { outcome.firstError = "\(operation.rawValue) \(key): \(error)" }
            }
        }
        return outcome
    }

    // MARK: Progress

    /// Operations completed and failed so far, and the p99 latency in milliseconds of
    /// those completed since the last call (0 when none).
    public func progress() -> (completed: Int, errors: Int, windowP99Ms: Double) {
        let p99 = window.withLock { window in
            defer { window.reset() }
            return window.totalCount > 0 ? Double(window.valueAtPercentile(99)) / 1000 : 0
        }
        return (done.load(ordering: .relaxed), failed.load(ordering: .relaxed), p99)
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
