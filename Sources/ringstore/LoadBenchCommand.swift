public import ArgumentParser
import Foundation
import Glibc
import RingstoreBench
import RingstoreClient

/// `ringstore bench run`: YCSB-style workloads against a running cluster, over HTTP
/// (to nodes or ring servers) or through the partition-aware client, closed loop or
/// open loop at a target rate, with HDR histograms and a JSON result file.
struct LoadBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a workload (A, B, C, W or CAS) against a cluster and report throughput and latency percentiles.",
        discussion: """
            Workloads: a = 50% read / 50% update, b = 95% read / 5% update, c = read only, \
            w = update only, cas = linearizable counter add only (on a linearizable table, \
            created when missing). Updates carry the context last seen for the key, so they \
            supersede each other. With --rate the load is an open loop: operation i is due \
            at start + i/rate and its latency counts from then, so a stall is charged to \
            every operation it delayed (no coordinated omission). Reads and updates find \
            their keys written first unless --no-load is given.
            """
    )

    @Option(name: .customLong("url"), help: "HTTP endpoints, comma-separated: ring servers or nodes (direct and ring modes fetch the ring from them).")
    var urls: String = ProcessInfo.processInfo.environment["RINGSTORE_URL"] ?? "http://127.0.0.1:8080,http://127.0.0.1:8081"

    @Option(help: "http: HTTP to the endpoints; direct: the partition-aware client over the node protocol; ring: the same client through the ring servers over the node protocol.")
    var mode: LoadTarget.Mode = .http

    @Option(help: "a, b, c, w or cas.")
    var workload: Workload = .a

    @Option(help: "uniform or zipfian (YCSB's constant 0.99, hot keys scattered over the key space).")
    var distribution: KeyDistribution = .uniform

    @Option(help: "Keys in the key space.")
    var keys: Int = 10_000

    @Option(help: "Bytes per value.")
    var valueSize: Int = 100

    @Option(help: "Table to use (default: default, or bench_cas for the cas workload); created when missing.")
    var table: String?

    @Option(help: "Requests in flight (one task each).")
    var concurrency: Int = 32

    @Option(help: "Seconds of load (the load stops at whichever of --duration and --operations comes first).")
    var duration: Double?

    @Option(help: "Operations to run in all.")
    var operations: Int?

    @Option(help: "Target operations per second over the whole load (open loop); without it, a closed loop as fast as it goes.")
    var rate: Double?

    @Option(help: "Seed of the key and operation choices.")
    var seed: UInt64 = 1

    @Flag(help: "Do not write every key before the load.")
    var noLoad = false

    @Flag(help: "No progress line.")
    var quiet = false

    @Option(help: "Write the result as JSON to this file too.")
    var json: String?

    func validate() throws {
        guard (1...50_000_000).contains(keys) else { throw ValidationError("--keys must be 1 to 50000000.") }
        guard (0...(1 << 20)).contains(valueSize) else { throw ValidationError("--value-size must be 0 to 1048576.") }
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 4096.") }
        if let duration { guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be more than 0 and at most 86400 seconds.") } }
        if let operations { guard operations > 0 else { throw ValidationError("--operations must be positive.") } }
        if let rate { guard rate > 0, rate <= 10_000_000 else { throw ValidationError("--rate must be more than 0 and at most 10000000 operations per second.") } }
        if workload == .cas && mode != .http {
            throw ValidationError("--workload cas needs --mode http: the cluster client serves eventual tables only.")
        }
        if let table, table.isEmpty { throw ValidationError("--table must not be empty.") }
        _ = try endpoints()
    }

    func endpoints() throws -> [Endpoint] { try Endpoint.list(parsing: urls) }

    var settings: LoadSettings {
        LoadSettings(
            workload: workload, distribution: distribution, keys: keys, valueSize: valueSize,
            table: table ?? (workload == .cas ? "bench_cas" : "default"), concurrency: concurrency,
            durationSeconds: duration ?? (operations == nil ? 10 : nil), operations: operations, rate: rate, seed: seed)
    }

    func run() async throws {
        let settings = settings
        let target = LoadTarget(mode: mode, endpoints: try endpoints())
        defer { Task { await target.shutdown() } }
        let load = LoadRun(settings: settings)
        say("ringstore bench run: workload \(workload.summary); \(settings.distribution.rawValue) over \(settings.keys) keys of table \(settings.table), "
            + "\(settings.valueSize)-byte values, \(settings.concurrency) in flight, "
            + [settings.durationSeconds.map { "\($0) s" }, settings.operations.map { "\($0) operations" }].compactMap { $0 }.joined(separator: " or ")
            + (settings.rate.map { ", open loop at \($0) ops/s" } ?? ", closed loop") + "; \(mode.rawValue) to \(urls)")
        do {
            try await load.prepareTable(on: target)
            if !noLoad && workload != .cas && workload != .w {
                let started = ContinuousClock.now
                try await load.preload(on: target)
                say(String(format: "loaded %d keys in %.1f s", settings.keys, (ContinuousClock.now - started).components.seconds))
            }
        } catch {
            await target.shutdown()
            throw Self.failure("could not prepare the load: \(error)")
        }

        let progress = quiet ? nil : Task {
            let started = ContinuousClock.now
            let live = isatty(STDERR_FILENO) != 0
            var last = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if Task.isCancelled { break }
                let (completed, errors, p99) = load.progress()
                let seconds = (ContinuousClock.now - started).components.seconds
                let line = String(format: "%4lld s  %10d ops  %9d ops/s  p99 %8.3f ms  errors %d", seconds, completed, completed - last, p99, errors)
                last = completed
                FileHandle.standardError.write(Data(((live ? "\r\u{1B}[K" : "") + line + (live ? "" : "\n")).utf8))
            }
            if live { FileHandle.standardError.write(Data("\n".utf8)) }
        }
        let result = await load.run(on: target, label: urls)
        progress?.cancel()
        _ = await progress?.value
        await target.shutdown()
        let report = LoadReport(result, mode: mode)
        for line in report.lines { say(line) }
        if let json {
            do {
                try report.json().write(to: URL(fileURLWithPath: json))
            } catch {
                throw Self.failure("could not write \(json): \(error.localizedDescription)")
            }
        }
        if result.completed == 0 { throw Self.failure("no operation succeeded\(result.firstError.map { " (first error: \($0))" } ?? "")") }
    }

    /// Says why on standard error; exits 1.
    static func failure(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return ExitCode(1)
    }
}

extension LoadTarget.Mode: ExpressibleByArgument {}
extension Workload: ExpressibleByArgument {}
extension KeyDistribution: ExpressibleByArgument {}
