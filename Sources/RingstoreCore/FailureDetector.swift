/// A phi-accrual failure detector for one monitored process (Hayashibara et al.,
/// "The φ accrual failure detector", 2004; DESIGN §8).
///
/// Instead of a yes/no timeout it reports phi, the suspicion that the process is down:
/// phi = −log10 P(a heartbeat still arrives later than now), with the inter-arrival
/// times modelled as a normal distribution fitted to a bounded window of recent
/// intervals (the CDF approximated by a logistic curve). Phi 1 means a 10% chance the
/// silence is ordinary, phi 8 one in 10^8.
///
/// Time is passed in as a `Duration` since an arbitrary origin; the shell MUST
/// measure every call's time from the same origin on one monotonic clock (for
/// example the time since the process started, read from `ContinuousClock`). The
/// detector never reads a clock itself.
public struct PhiAccrualDetector: Sendable {
    /// How suspicious a detector is and how much history it keeps.
    public struct Configuration: Hashable, Sendable {
        /// The largest window a configuration may ask for: 64 Ki intervals, 512 KiB.
        public static let sampleCountCeiling = 1 << 16

        /// Phi at or above which the process counts as unavailable.
        public let phiThreshold: Double
        /// The most inter-arrival intervals kept; older ones are forgotten.
        public let sampleCountMax: Int
        /// A floor under the fitted standard deviation, so that perfectly regular
        /// heartbeats do not make a few milliseconds of lateness look fatal.
        public let standardDeviationMin: Duration
        /// Extra silence tolerated on top of the mean interval (garbage-collection
        /// pauses, a busy event loop), added to the mean.
        public let acceptableHeartbeatPause: Duration
        /// The mean interval assumed after the first heartbeat, before any was
        /// measured, with a standard deviation of a quarter of it.
        public let firstHeartbeatEstimate: Duration
        /// The longest gap recorded as an interval. A longer gap was an outage; keeping
        /// it would inflate the mean and the deviation and slow the next detection.
        /// Heartbeats MUST come well within it.
        public let sampledIntervalMax: Duration

        /// Creates a configuration; the defaults suit heartbeats every 100 ms to 1 s.
        public init(
            phiThreshold: Double = 8,
            sampleCountMax: Int = 1000,
            standardDeviationMin: Duration = .milliseconds(50),
            acceptableHeartbeatPause: Duration = .zero,
            firstHeartbeatEstimate: Duration = .milliseconds(500),
            sampledIntervalMax: Duration = .seconds(5)
        ) {
            precondition(phiThreshold > 0 && phiThreshold.isFinite, "phi threshold \(phiThreshold) must be positive")
            precondition(
                sampleCountMax >= 1 && sampleCountMax <= Self.sampleCountCeiling,
                "the sample window holds 1...\(Self.sampleCountCeiling) intervals, not \(sampleCountMax)")
            precondition(standardDeviationMin > .zero, "the minimum standard deviation must be positive")
            precondition(acceptableHeartbeatPause >= .zero, "the acceptable pause cannot be negative")
            precondition(firstHeartbeatEstimate > .zero, "the first heartbeat estimate must be positive")
            precondition(sampledIntervalMax > .zero, "the longest sampled interval must be positive")
            self.phiThreshold = phiThreshold
            self.sampleCountMax = sampleCountMax
            self.standardDeviationMin = standardDeviationMin
            self.acceptableHeartbeatPause = acceptableHeartbeatPause
            self.firstHeartbeatEstimate = firstHeartbeatEstimate
            self.sampledIntervalMax = sampledIntervalMax
        }
    }

    /// Phi of a process never heard from: suspected beyond any threshold, yet finite.
    public static let phiNeverHeard = Double.greatestFiniteMagnitude

    /// Past this many standard deviations phi stops growing, which keeps it finite.
    private static let deviationsMax = 10_000.0

    /// The settings this detector was created with.
    public let configuration: Configuration
    /// When the latest heartbeat arrived; nil until the first one.
    public private(set) var lastHeartbeat: Duration?
    /// Recent intervals in seconds, a ring buffer of at most `sampleCountMax`.
    private var samples: [Double] = []
    /// Where the next interval goes once the window is full.
    private var nextSlot = 0
    private var sampleSum = 0.0
    private var sampleSquareSum = 0.0

    /// Creates a detector that has heard nothing yet.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// How many intervals the window holds; never more than `sampleCountMax`.
    public var sampleCount: Int { samples.count }

    /// Records a heartbeat that arrived at `now`. A heartbeat not later than the
    /// latest one (reordered or duplicated) is ignored.
    public mutating func heartbeat(at now: Duration) {
        guard let last = lastHeartbeat else {
            lastHeartbeat = now
            return
        }
        guard now > last else { return }
        lastHeartbeat = now
        let interval = now - last
        if interval <= configuration.sampledIntervalMax {
            record(seconds(interval))
        }
    }

    /// The suspicion at `now` that the process is down: near 0 right after a
    /// heartbeat, growing without decreasing as silence lasts; finite, never NaN.
    public func phi(at now: Duration) -> Double {
        guard let last = lastHeartbeat else { return Self.phiNeverHeard }
        let elapsed = max(0, seconds(now - last))
        let (mean, deviation) = intervalEstimate()
        let deviations = min(max((elapsed - mean) / deviation, -Self.deviationsMax), Self.deviationsMax)
        // Logistic approximation of the standard normal tail:
        // P(X > y) ≈ 1 / (1 + e^z) with z = y (1.5976 + 0.070566 y²), so phi = log10(1 + e^z).
        let exponent = deviations * (1.5976 + 0.070566 * deviations * deviations)
        let phi = softplus(exponent) / naturalLogarithmOfTen
        assert(phi.isFinite && phi >= 0, "phi \(phi) at \(deviations) deviations")
        return phi
    }

    /// Whether phi at `now` is below the threshold.
    public func isAvailable(at now: Duration) -> Bool {
        phi(at: now) < configuration.phiThreshold
    }

    /// The mean and standard deviation (seconds) that phi is computed with: the window's
    /// (or the first-heartbeat estimate's), the mean padded by the acceptable pause and
    /// the deviation raised to its floor.
    private func intervalEstimate() -> (mean: Double, deviation: Double) {
        var mean = seconds(configuration.firstHeartbeatEstimate)
        var deviation = mean / 4
        if !samples.isEmpty {
            let count = Double(samples.count)
            mean = sampleSum / count
            deviation = max(0, sampleSquareSum / count - mean * mean).squareRoot()
        }
        mean += seconds(configuration.acceptableHeartbeatPause)
        deviation = max(deviation, seconds(configuration.standardDeviationMin))
        precondition(deviation > 0, "standard deviation must stay positive")
        return (mean, deviation)
    }

    private mutating func record(_ interval: Double) {
        if samples.count < configuration.sampleCountMax {
            samples.append(interval)
            sampleSum += interval
            sampleSquareSum += interval * interval
            return
        }
        let forgotten = samples[nextSlot]
        samples[nextSlot] = interval
        sampleSum += interval - forgotten
        sampleSquareSum += interval * interval - forgotten * forgotten
        nextSlot = (nextSlot + 1) % samples.count
        if nextSlot == 0 {
            // Once per lap, start the running sums afresh so rounding cannot pile up.
            sampleSum = samples.reduce(0, +)
            sampleSquareSum = samples.reduce(0) { $0 + $1 * $1 }
        }
        assert(samples.count <= configuration.sampleCountMax)
    }
}

/// One phi-accrual detector per monitored member (storage nodes, ring servers), and
/// the availability last reported for each.
///
/// A member never heard from is unavailable. The shell feeds every heartbeat to
/// `heartbeat(from:at:)` and calls `availabilityChanges(at:)` on a timer to emit up and
/// down events. It MUST pass only members it knows of (ring members, ring servers):
/// the table grows by one entry per member and shrinks only through `remove(_:)`.
public struct FailureDetectors<Member: Hashable & Sendable>: Sendable {
    private struct Entry: Sendable {
        var detector: PhiAccrualDetector
        var reportedAvailable: Bool
    }

    /// The settings every member's detector is created with.
    public let configuration: PhiAccrualDetector.Configuration
    private var entries: [Member: Entry] = [:]
    /// Members in the order first heard from, so that reports come out in an order
    /// that does not depend on hashing.
    public private(set) var members: [Member] = []

    /// Creates an empty table.
    public init(configuration: PhiAccrualDetector.Configuration = PhiAccrualDetector.Configuration()) {
        self.configuration = configuration
    }

    /// Records a heartbeat from `member` at `now`, starting to monitor it if it is new.
    public mutating func heartbeat(from member: Member, at now: Duration) {
        if entries[member] == nil {
            entries[member] = Entry(detector: PhiAccrualDetector(configuration: configuration), reportedAvailable: false)
            members.append(member)
        }
        entries[member]?.detector.heartbeat(at: now)
        assert(entries.count == members.count)
    }

    /// Whether `member` is available at `now`; false for a member never heard from.
    public func isAvailable(_ member: Member, at now: Duration) -> Bool {
        entries[member]?.detector.isAvailable(at: now) ?? false
    }

    /// `member`'s phi at `now`; `PhiAccrualDetector.phiNeverHeard` if never heard from.
    public func phi(_ member: Member, at now: Duration) -> Double {
        entries[member]?.detector.phi(at: now) ?? PhiAccrualDetector.phiNeverHeard
    }

    /// Stops monitoring `member` and forgets its history; no change is reported for it.
    public mutating func remove(_ member: Member) {
        guard entries.removeValue(forKey: member) != nil else { return }
        members.removeAll { $0 == member }
        assert(entries.count == members.count)
    }

    /// The members whose availability at `now` differs from what the previous call
    /// reported (a newly heard member counts as previously unavailable), in the
    /// order they were first heard from. Each flip is reported once.
    public mutating func availabilityChanges(at now: Duration) -> [(Member, available: Bool)] {
        var changes: [(Member, available: Bool)] = []
        for member in members {
            guard let entry = entries[member] else {
                fatalError("internal inconsistency in FailureDetectors: \(member) listed without a detector")
            }
            let available = entry.detector.isAvailable(at: now)
            if available != entry.reportedAvailable {
                entries[member]?.reportedAvailable = available
                changes.append((member, available: available))
            }
        }
        return changes
    }
}

// MARK: - Arithmetic without a math library

/// ln 10, to turn natural logarithms into decimal ones.
private let naturalLogarithmOfTen = 2.302_585_092_994_045_7

/// ln 2, for range reduction in `exponential`.
private let naturalLogarithmOfTwo = 0.693_147_180_559_945_3

/// `duration` in seconds.
private func seconds(_ duration: Duration) -> Double {
    let (wholeSeconds, attoseconds) = duration.components
    return Double(wholeSeconds) + Double(attoseconds) * 1e-18
}

/// ln(1 + e^z), computed so that it neither overflows for large z nor loses the tiny
/// value for very negative z.
private func softplus(_ exponent: Double) -> Double {
    if exponent >= 0 {
        return exponent + logarithmOfOnePlus(exponential(-exponent))
    }
    return logarithmOfOnePlus(exponential(exponent))
}

/// e^x for x ≤ 0: x = k ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series, then
/// scaled by 2^k.
private func exponential(_ power: Double) -> Double {
    precondition(power <= 0, "only non-positive powers are needed")
    guard power > -746 else { return 0 }
    let halvings = (power / naturalLogarithmOfTwo).rounded()
    let remainder = power - halvings * naturalLogarithmOfTwo
    var term = 1.0
    var sum = 1.0
    for order in 1...20 {
        term *= remainder / Double(order)
        sum += term
    }
    return Double(sign: .plus, exponent: Int(halvings), significand: sum)
}

/// ln(1 + u) for 0 ≤ u ≤ 1, by the series 2 Σ s^(2k+1) / (2k+1) with s = u / (2 + u),
/// which converges fast because s ≤ 1/3.
private func logarithmOfOnePlus(_ value: Double) -> Double {
    precondition(value >= 0 && value <= 1, "only 0...1 is needed, not \(value)")
    let ratio = value / (2 + value)
    let ratioSquared = ratio * ratio
    var power = ratio
    var sum = 0.0
    for order in stride(from: 1, through: 61, by: 2) {
        sum += power / Double(order)
        power *= ratioSquared
    }
    return 2 * sum
}
