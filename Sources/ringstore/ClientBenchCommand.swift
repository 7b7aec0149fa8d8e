import ArgumentParser
import Foundation
import Glibc
import NIOCore
import RingstoreClient

/// `ringstore bench client`: a closed-loop load generator that drives a running
/// cluster through the Swift client, straight to the nodes (`direct`) or over HTTP
/// (`http`), and reports throughput and latency percentiles.
struct ClientBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Load a running cluster through the Swift client (direct to nodes, or HTTP); report requests/s and latency."
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case direct, http
    }

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case put, get, mixed
    }

    @Option(name: .customLong("url"), help: "HTTP endpoint(s) of the cluster, comma-separated.")
    var urls: String = "http://127.0.0.1:8101"

    @Option(help: "direct: partition-aware client over the node protocol; http: the HTTP client.")
    var mode: Mode = .direct

    @Option(help: "put, get, or mixed (half gets, half puts).")
    var workload: Workload = .put

    @Option(help: "Requests in flight (one task each, closed loop).")
    var concurrency: Int = 32

    @Option(help: "Seconds of measured load.")
    var duration: Double = 10

    @Option(help: "Bytes per value.")
    var valueSize: Int = 100

    @Option(help: "Keys in the key space; all are written before the measurement.")
    var keys: Int = 10_000

    @Option(help: "Table to use (must exist).")
    var table: String = "default"

    @Option(help: "Where the load tasks run: client-loop (on the client's event loop, no thread hop per request) or global (Swift's default executor).")
    var executor: Executor = .clientLoop

    enum Executor: String, ExpressibleByArgument, CaseIterable {
        case clientLoop = "client-loop"
        case global
    }

    func validate() throws {
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 4096.") }
        guard duration > 0 else { throw ValidationError("--duration must be positive.") }
        guard (0...(1 << 20)).contains(valueSize) else { throw ValidationError("--value-size must be 0 to 1048576.") }
        guard keys >= concurrency else { throw ValidationError("--keys must be at least --concurrency (each task owns its keys).") }
        _ = try endpoints()
    }

    func endpoints() throws -> [Endpoint] {
        let parts = urls.split(separator: ",").map(String.init)
        let endpoints = parts.compactMap(Endpoint.init(parsing:))
        guard !parts.isEmpty, endpoints.count == parts.count else {
            throw ValidationError("--url must be http://HOST:PORT (comma-separated for several); got '\(urls)'.")
        }
        return endpoints
    }

    func run() async throws {
        let target = try BenchTarget(mode: mode, endpoints: endpoints())
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueSize)
        let keyNames = (0..<keys).map { "bench-\($0)" }
        say("ringstore bench client: mode=\(mode.rawValue) workload=\(workload.rawValue) concurrency=\(concurrency) duration=\(duration)s value=\(valueSize)B keys=\(keys) table=\(table) executor=\(executor.rawValue) url=\(urls)")
        let preferred: (any TaskExecutor)? = executor == .clientLoop ? target.taskExecutor : nil
        let targets = (0..<concurrency).map(target.forWorker)

        // Each task owns the keys i ≡ task (mod concurrency) and writes them with the
        // context of its last write, so puts supersede and never pile up siblings.
        let loadStarted = ContinuousClock.now
        let owned = try await withThrowingTaskGroup(of: (Int, [String?]).self) { group in
            for worker in 0..<concurrency {
                let target = targets[worker]
                group.addTask(executorPreference: preferred) { [table] in
                    var contexts: [String?] = []
                    for index in stride(from: worker, to: keyNames.count, by: concurrency) {
                        contexts.append(try await target.put(table: table, key: keyNames[index], value: value, context: nil))
                    }
                    return (worker, contexts)
                }
            }
            var all = [[String?]](repeating: [], count: concurrency)
            for try await (worker, contexts) in group { all[worker] = contexts }
            return all
        }
        say(String(format: "loaded %d keys in %.1f s", keys, (ContinuousClock.now - loadStarted).seconds))

        let usageBefore = ResourceUsage.now()
        let started = ContinuousClock.now
        let deadline = started + .nanoseconds(Int64(duration * 1e9))
        let results = await withTaskGroup(of: WorkerResult.self) { group in
            for worker in 0..<concurrency {
                let target = targets[worker]
                group.addTask(executorPreference: preferred) { [workload, table, concurrency] in
                    var state = WorkerState(worker: worker, concurrency: concurrency, keyCount: keyNames.count, contexts: owned[worker])
                    return await state.run(target: target, workload: workload, table: table, keyNames: keyNames, value: value, until: deadline)
                }
            }
            var all: [WorkerResult] = []
            for await result in group { all.append(result) }
            return all
        }
        let elapsed = (ContinuousClock.now - started).seconds
        let usage = ResourceUsage.now().minus(usageBefore)
        await report(results, elapsed: elapsed, usage: usage, target: target)
        await target.shutdown()
    }

    private func report(_ results: [WorkerResult], elapsed: Double, usage: ResourceUsage, target: BenchTarget) async {
        var latencies: [UInt64] = []
        latencies.reserveCapacity(results.reduce(0) { $0 + $1.latencies.count })
        for result in results { latencies.append(contentsOf: result.latencies) }
        latencies.sort()
        let errors = results.reduce(0) { $0 + $1.errors }
        let requests = latencies.count
        let rate = Double(requests) / elapsed
        func percentile(_ fraction: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let index = min(latencies.count - 1, Int((Double(latencies.count) * fraction).rounded(.up)) - 1)
            return Double(latencies[max(index, 0)]) / 1e6
        }
        let p50 = percentile(0.50), p99 = percentile(0.99), p999 = percentile(0.999)
        let maximum = Double(latencies.last ?? 0) / 1e6
        say(String(format: "requests: %d in %.2f s = %.1f/s (errors: %d)", requests, elapsed, rate, errors))
        say(String(format: "latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f", p50, p99, p999, maximum))
        let cpu = usage.userSeconds + usage.systemSeconds
        say(String(format: "client CPU: %.2f s user + %.2f s system = %.1f µs per request", usage.userSeconds, usage.systemSeconds, requests > 0 ? cpu / Double(requests) * 1e6 : 0))
        if let message = results.lazy.compactMap(\.firstError).first { say("first error: \(message)") }
        if let statistics = target.statistics {
            say("client: \(statistics.directReplies) direct replies, \(statistics.nodeFailovers) node failovers, \(statistics.httpRequests) HTTP requests, \(statistics.ringFetches) ring fetches")
        }
        say(String(format: "RESULT mode=%@ workload=%@ rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%d", mode.rawValue, workload.rawValue, rate, p50, p99, p999, errors))
    }
}

/// The client under test: the partition-aware one, or HTTP clients with persistent
/// connections, one per endpoint order so that tasks spread over the endpoints (each
/// node then coordinates a share, as a load balancer would arrange).
enum BenchTarget: Sendable {
    case direct(RingstoreClusterClient)
    case http(RingstoreHTTPClient)

    init(mode: ClientBenchCommand.Mode, endpoints: [Endpoint]) throws {
        switch mode {
        case .direct: self = .direct(RingstoreClusterClient(endpoints: endpoints))
        case .http: self = .http(RingstoreHTTPClient(endpoints: endpoints))
        }
    }

    /// The target task `worker` uses: the same client, or for HTTP one whose first
    /// endpoint is the worker's share.
    func forWorker(_ worker: Int) -> BenchTarget {
        guard case .http(let client) = self, client.endpoints.count > 1 else { return self }
        let first = worker % client.endpoints.count
        let rotated = Array(client.endpoints[first...] + client.endpoints[..<first])
        return .http(RingstoreHTTPClient(endpoints: rotated, group: client.group))
    }

    func put(table: String, key: String, value: [UInt8], context: String?) async throws -> String {
        switch self {
        case .direct(let client): try await client.put(table: table, key: key, value: value, contentType: "application/octet-stream", context: context)
        case .http(let client): try await client.put(table: table, key: key, value: value, contentType: "application/octet-stream", context: context)
        }
    }

    func get(table: String, key: String) async throws -> ReadOutcome {
        switch self {
        case .direct(let client): try await client.get(table: table, key: key)
        case .http(let client): try await client.get(table: table, key: key)
        }
    }

    /// Where load tasks run without a thread hop per request.
    var taskExecutor: EventLoopTaskExecutor {
        switch self {
        case .direct(let client): client.taskExecutor
        case .http(let client): EventLoopTaskExecutor(eventLoop: client.group.next())
        }
    }

    var statistics: ClusterClientStatistics? {
        if case .direct(let client) = self { return client.statistics }
        return nil
    }

    func shutdown() async {
        if case .direct(let client) = self { await client.shutdown() }
    }
}

/// What one task measured: each request's latency in nanoseconds, and failures.
struct WorkerResult: Sendable {
    var latencies: [UInt64] = []
    var errors = 0
    var firstError: String?
}

/// One closed-loop task: it picks a key it owns, runs a request, records the latency.
struct WorkerState {
    let worker: Int
    let concurrency: Int
    let keyCount: Int
    var contexts: [String?]
    private var random: UInt64

    init(worker: Int, concurrency: Int, keyCount: Int, contexts: [String?]) {
        self.worker = worker
        self.concurrency = concurrency
        self.keyCount = keyCount
        self.contexts = contexts
        self.random = 0x9E37_79B9_7F4A_7C15 &* UInt64(worker + 1)
    }

    /// SplitMix64: cheap, and each task has its own sequence.
    private mutating func next() -> UInt64 {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func run(
        target: BenchTarget, workload: ClientBenchCommand.Workload, table: String, keyNames: [String], value: [UInt8],
        until deadline: ContinuousClock.Instant
    ) async -> WorkerResult {
        var result = WorkerResult()
        result.latencies.reserveCapacity(1 << 18)
        let clock = ContinuousClock()
        while true {
            let started = clock.now
            if started >= deadline { break }
            let slot = Int(next() % UInt64(contexts.count))
            let key = keyNames[worker + slot * concurrency]
            let isPut = switch workload {
            case .put: true
            case .get: false
            case .mixed: next() & 1 == 0
            }
            do {
                if isPut {
                    contexts[slot] = try await target.put(table: table, key: key, value: value, context: contexts[slot])
                } else {
                    _ = try await target.get(table: table, key: key)
                }
                let elapsed = clock.now - started
                let (seconds, attoseconds) = elapsed.components
                result.latencies.append(UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
            } catch {
                result.errors += 1
                if result.firstError == nil { result.firstError = "\(error)" }
            }
        }
        return result
    }
}

/// This process's CPU time, from getrusage.
struct ResourceUsage {
    var userSeconds: Double
    var systemSeconds: Double

    static func now() -> ResourceUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return ResourceUsage(
            userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6)
    }

    func minus(_ other: ResourceUsage) -> ResourceUsage {
        ResourceUsage(userSeconds: userSeconds - other.userSeconds, systemSeconds: systemSeconds - other.systemSeconds)
    }
}
