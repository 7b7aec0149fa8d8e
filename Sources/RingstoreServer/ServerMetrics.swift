import CoreMetrics
import Metrics
public import Prometheus
import Synchronization

/// Process-wide metrics: the Prometheus registry `/metrics` reads, and the server's own instruments.
public enum ServerMetrics {
    private static let bootstrapped = Mutex<PrometheusCollectorRegistry?>(nil)

    /// Installs Prometheus as the swift-metrics backend (once per process) and returns its registry.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        bootstrapped.withLock { existing in
            if let existing { return existing }
            let registry = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.defaultDurationHistogramBuckets = [
                .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
            ]
            MetricsSystem.bootstrap(factory)
            existing = registry
            return registry
        }
    }

    static let siblingsOverWarning = CoreMetrics.Counter(label: "ringstore_siblings_over_warning_total")
}

/// Request counters and latency timers per route, created once and reused.
final class HTTPMetrics: Sendable {
    struct Key: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    private let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
    private let timers = Mutex<[String: CoreMetrics.Timer]>([:])

    func record(route: String, method: String, status: Int, duration: Duration) {
        let key = Key(route: route, method: method, status: status)
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(label: "ringstore_http_requests_total", dimensions: [
                ("route", route), ("method", method), ("status", String(status)),
            ])
            counters[key] = counter
            return counter
        }
        counter.increment()
        let timerKey = method + " " + route
        let timer = timers.withLock { timers in
            if let timer = timers[timerKey] { return timer }
            let timer = CoreMetrics.Timer(label: "ringstore_http_request_duration_seconds", dimensions: [("route", route), ("method", method)])
            timers[timerKey] = timer
            return timer
        }
        let (seconds, attoseconds) = duration.components
        timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
