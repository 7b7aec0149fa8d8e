public import Foundation
import Histogram

/// The percentiles a load reports, from its histograms.
public struct LatencySummary: Sendable, Codable, Equatable {
    public var count: UInt64
    public var errors: Int
    public var perSecond: Double
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var p999Ms: Double
    public var maxMs: Double
    public var meanMs: Double

    enum CodingKeys: String, CodingKey {
        case count, errors
        case perSecond = "per_second"
        case p50Ms = "p50_ms", p90Ms = "p90_ms", p99Ms = "p99_ms", p999Ms = "p99_9_ms", maxMs = "max_ms", meanMs = "mean_ms"
    }

    init(_ histogram: LatencyHistogram, errors: Int, seconds: Double) {
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
        let empty = histogram.totalCount == 0
        count = histogram.totalCount
        self.errors = errors
        perSecond = seconds > 0 ? Double(histogram.totalCount) / seconds : 0
        p50Ms = empty ? 0 : ms(histogram.valueAtPercentile(50))
        p90Ms = empty ? 0 : ms(histogram.valueAtPercentile(90))
        p99Ms = empty ? 0 : ms(histogram.valueAtPercentile(99))
        p999Ms = empty ? 0 : ms(histogram.valueAtPercentile(99.9))
        maxMs = empty ? 0 : ms(histogram.max)
        meanMs = empty ? 0 : histogram.mean / 1000
    }
}

/// The JSON result file of `ringstore bench run`.
public struct LoadReport: Sendable, Codable {
    public var target: String
    public var mode: String
    public var startedAt: String
    public var elapsedSeconds: Double
    public var settings: Settings
    public var total: LatencySummary
    public var operations: [String: LatencySummary]
    public var firstError: String?

    public struct Settings: Sendable, Codable {
        public var workload: String
        public var distribution: String
        public var keys: Int
        public var valueSize: Int
        public var table: String
        public var concurrency: Int
        public var durationSeconds: Double?
        public var operations: Int?
        public var targetRate: Double?
        public var seed: UInt64

        enum CodingKeys: String, CodingKey {
            case workload, distribution, keys, table, concurrency, operations, seed
            case valueSize = "value_size", durationSeconds = "duration_seconds", targetRate = "target_rate"
        }
    }

    enum CodingKeys: String, CodingKey {
        case target, mode, settings, total, operations
        case startedAt = "started_at", elapsedSeconds = "elapsed_seconds", firstError = "first_error"
    }

    public init(_ result: LoadResult, mode: LoadTarget.Mode) {
        let settings = result.settings
        target = result.target
        self.mode = mode.rawValue
        startedAt = ISO8601DateFormatter().string(from: result.startedAt)
        elapsedSeconds = result.elapsedSeconds
        self.settings = Settings(
            workload: settings.workload.rawValue, distribution: settings.distribution.rawValue, keys: settings.keys,
            valueSize: settings.valueSize, table: settings.table, concurrency: settings.concurrency,
            durationSeconds: settings.durationSeconds, operations: settings.operations, targetRate: settings.rate, seed: settings.seed)
        total = LatencySummary(result.all, errors: result.errorCount, seconds: result.elapsedSeconds)
        var operations: [String: LatencySummary] = [:]
        for operation in Operation.allCases where result.histograms[operation] != nil || result.errors[operation] != nil {
            operations[operation.rawValue] = LatencySummary(
                result.histograms[operation] ?? .latencies(), errors: result.errors[operation] ?? 0, seconds: result.elapsedSeconds)
        }
        self.operations = operations
        firstError = result.firstError
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// A table for people, and one `RESULT` line for scripts.
    public var lines: [String] {
        func cell(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        func ms(_ value: Double) -> String { cell(String(format: "%.3f", value), 9) }
        var lines = ["op      " + ["count", "ops/s"].map { cell($0, 10) }.joined() + ["p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"].map { cell($0, 9) }.joined() + cell("errors", 8)]
        let rows = Operation.allCases.compactMap { operation in operations[operation.rawValue].map { (operation.rawValue, $0) } } + [("all", total)]
        for (name, summary) in rows {
            lines.append(name.padding(toLength: 8, withPad: " ", startingAt: 0) + cell("\(summary.count)", 10) + cell(String(format: "%.1f", summary.perSecond), 10)
                + ms(summary.p50Ms) + ms(summary.p90Ms) + ms(summary.p99Ms) + ms(summary.p999Ms) + ms(summary.maxMs) + cell("\(summary.errors)", 8))
        }
        if let firstError { lines.append("first error: \(firstError)") }
        lines.append("RESULT workload=\(settings.workload) mode=\(mode) " + String(
            format: "rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%d",
            total.perSecond, total.p50Ms, total.p90Ms, total.p99Ms, total.p999Ms, total.maxMs, total.errors))
        return lines
    }
}
