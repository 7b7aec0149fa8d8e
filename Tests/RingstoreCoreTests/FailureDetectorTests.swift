import Testing
@testable import RingstoreCore

/// A detector that received `count` heartbeats `interval` apart, the first at zero.
private func trained(
    heartbeats count: Int,
    every interval: Duration,
    configuration: PhiAccrualDetector.Configuration = PhiAccrualDetector.Configuration()
) -> PhiAccrualDetector {
    var detector = PhiAccrualDetector(configuration: configuration)
    for beat in 0..<count {
        detector.heartbeat(at: interval * beat)
    }
    return detector
}

/// The first time, in `step`s after `start`, at which `detector` judges its process
/// unavailable; nil if it still trusts it after `limit`.
private func firstUnavailable(
    _ detector: PhiAccrualDetector, after start: Duration, step: Duration, limit: Duration
) -> Duration? {
    var now = start
    while now - start <= limit {
        if !detector.isAvailable(at: now) { return now - start }
        now += step
    }
    return nil
}

@Suite struct FailureDetectorTests {
    // Proves phi follows the logistic approximation: log10(1 + e^z), z = y(1.5976 + 0.070566 y²),
    // with y in standard deviations (python3 reference values; the deviation floor is 50 ms).
    @Test func phiMatchesTheLogisticApproximation() {
        let regular = trained(heartbeats: 50, every: .milliseconds(100))
        let last = Duration.milliseconds(4_900)
        #expect(abs(regular.phi(at: last + .milliseconds(100)) - 0.301_029_995_663_981_2) < 1e-6)
        #expect(abs(regular.phi(at: last + .milliseconds(150)) - 0.799_508_320_839_559_8) < 1e-6)
        #expect(abs(regular.phi(at: last + .milliseconds(200)) - 1.642_827_885_487_112_3) < 1e-6)
        #expect(abs(regular.phi(at: last + .milliseconds(50)) - 0.075_033_032_140_939_9) < 1e-6)
    }

    // Proves regular heartbeats every 100 ms keep phi low and the process available.
    @Test func regularHeartbeatsStayAvailable() {
        var detector = PhiAccrualDetector()
        for beat in 0..<200 {
            let now = Duration.milliseconds(100) * beat
            if beat > 0 {
                #expect(detector.phi(at: now) < 1, "beat \(beat)")
                #expect(detector.isAvailable(at: now - .milliseconds(1)))
            }
            detector.heartbeat(at: now)
            #expect(detector.phi(at: now) < 0.01)
        }
    }

    // Proves that after heartbeats stop phi never decreases, stays finite, and crosses the
    // threshold between 0.2 s and 5 s after the last heartbeat.
    @Test func silenceRaisesPhiUntilUnavailable() throws {
        let regular = trained(heartbeats: 100, every: .milliseconds(100))
        let last = try #require(regular.lastHeartbeat)
        var previous = 0.0
        for step in 0...20_000 {
            let phi = regular.phi(at: last + .milliseconds(step))
            #expect(phi.isFinite && phi >= previous, "phi \(phi) after \(step) ms fell below \(previous)")
            previous = phi
        }
        let down = try #require(firstUnavailable(regular, after: last, step: .milliseconds(1), limit: .seconds(10)))
        #expect(down > .milliseconds(200) && down < .seconds(5), "unavailable after \(down)")
        for silence in [Duration.seconds(3_600), .seconds(86_400 * 365), .seconds(Int64(1) << 40)] {
            let phi = regular.phi(at: last + silence)
            #expect(phi.isFinite && phi >= regular.configuration.phiThreshold)
        }
    }

    // Proves heartbeats jittering uniformly between 50 and 150 ms never look like a
    // failure, and that silence after them is still detected within 5 s.
    @Test func jitteryHeartbeatsDoNotFlap() throws {
        let seed: UInt64 = 0x5eed_0f0d
        var generator = SplitMix64(seed: seed)
        var detector = PhiAccrualDetector()
        var now = Duration.zero
        detector.heartbeat(at: now)
        for beat in 0..<2_000 {
            let interval = Duration.milliseconds(Int64.random(in: 50...150, using: &generator))
            for probe in stride(from: Int64(0), through: 150, by: 10) where .milliseconds(probe) <= interval {
                #expect(detector.isAvailable(at: now + .milliseconds(probe)), "seed \(seed) beat \(beat)")
            }
            now += interval
            detector.heartbeat(at: now)
        }
        let down = try #require(firstUnavailable(detector, after: now, step: .milliseconds(10), limit: .seconds(10)))
        #expect(down > .milliseconds(200) && down < .seconds(5), "unavailable after \(down)")
    }

    // Proves the interval window stays bounded, by default and when configured smaller.
    @Test func sampleWindowStaysBounded() {
        #expect(trained(heartbeats: 10_000, every: .milliseconds(100)).sampleCount == 1_000)
        let small = PhiAccrualDetector.Configuration(sampleCountMax: 10)
        #expect(trained(heartbeats: 10_000, every: .milliseconds(100), configuration: small).sampleCount == 10)
        #expect(trained(heartbeats: 5, every: .milliseconds(100)).sampleCount == 4)
    }

    // Proves the window forgets old intervals: after the rhythm changes from 1 s to
    // 100 ms and the window has turned over, detection is as quick as for 100 ms alone.
    @Test func windowFollowsTheRecentRhythm() throws {
        let configuration = PhiAccrualDetector.Configuration(sampleCountMax: 50)
        var detector = PhiAccrualDetector(configuration: configuration)
        var now = Duration.zero
        for _ in 0..<100 {
            detector.heartbeat(at: now)
            now += .seconds(1)
        }
        for _ in 0..<100 {
            detector.heartbeat(at: now)
            now += .milliseconds(100)
        }
        let last = try #require(detector.lastHeartbeat)
        let down = try #require(firstUnavailable(detector, after: last, step: .milliseconds(1), limit: .seconds(10)))
        let fresh = trained(heartbeats: 100, every: .milliseconds(100))
        let freshLast = try #require(fresh.lastHeartbeat)
        let freshDown = try #require(
            firstUnavailable(fresh, after: freshLast, step: .milliseconds(1), limit: .seconds(10)))
        #expect(down == freshDown)
    }

    // Proves a process never heard from is unavailable with a finite phi, and that after one
    // heartbeat the first-heartbeat estimate (500 ms) decides.
    @Test func firstHeartbeatUsesTheEstimate() throws {
        var detector = PhiAccrualDetector()
        #expect(!detector.isAvailable(at: .seconds(1)))
        #expect(detector.phi(at: .seconds(1)) == PhiAccrualDetector.phiNeverHeard)
        #expect(detector.phi(at: .seconds(1)).isFinite)
        detector.heartbeat(at: .seconds(10))
        #expect(detector.isAvailable(at: .seconds(10) + .milliseconds(500)))
        let down = try #require(firstUnavailable(detector, after: .seconds(10), step: .milliseconds(1), limit: .seconds(10)))
        #expect(down > .milliseconds(500) && down < .seconds(3), "unavailable after \(down)")
    }

    // Proves an outage is not learnt as an interval: after a 60 s gap, silence is still
    // detected as fast as before it.
    @Test func outagesAreNotSampled() throws {
        var detector = trained(heartbeats: 100, every: .milliseconds(100))
        let lastBefore = try #require(detector.lastHeartbeat)
        let before = try #require(
            firstUnavailable(detector, after: lastBefore, step: .milliseconds(1), limit: .seconds(10)))
        let resumed = Duration.seconds(70)
        for beat in 0..<10 {
            detector.heartbeat(at: resumed + .milliseconds(100) * beat)
        }
        let last = try #require(detector.lastHeartbeat)
        let after = try #require(firstUnavailable(detector, after: last, step: .milliseconds(1), limit: .seconds(10)))
        #expect(after == before)
        #expect(detector.sampleCount == 99 + 9)
    }

    // Proves duplicated and reordered heartbeats are ignored.
    @Test func staleHeartbeatsAreIgnored() {
        var detector = trained(heartbeats: 10, every: .milliseconds(100))
        let reference = detector
        detector.heartbeat(at: .milliseconds(900))
        detector.heartbeat(at: .milliseconds(500))
        #expect(detector.lastHeartbeat == .milliseconds(900))
        #expect(detector.sampleCount == reference.sampleCount)
        #expect(detector.phi(at: .seconds(1)) == reference.phi(at: .seconds(1)))
    }

    // Proves the acceptable pause is added to the mean before the process is suspected.
    @Test func acceptablePauseDelaysSuspicion() throws {
        let patient = PhiAccrualDetector.Configuration(acceptableHeartbeatPause: .seconds(2))
        let strict = trained(heartbeats: 100, every: .milliseconds(100))
        let lenient = trained(heartbeats: 100, every: .milliseconds(100), configuration: patient)
        let last = try #require(strict.lastHeartbeat)
        #expect(!strict.isAvailable(at: last + .seconds(1)))
        #expect(lenient.isAvailable(at: last + .seconds(2)))
        #expect(!lenient.isAvailable(at: last + .seconds(4)))
    }

    // Proves availabilityChanges reports each flip exactly once, in first-heard order,
    // treats members never heard from as unavailable and forgets removed ones.
    @Test func availabilityChangesReportEachFlipOnce() {
        var detectors = FailureDetectors<NodeID>()
        let first = NodeID("n1")
        let second = NodeID("n2")
        #expect(!detectors.isAvailable(first, at: .zero))
        #expect(detectors.phi(first, at: .zero) == PhiAccrualDetector.phiNeverHeard)
        #expect(detectors.availabilityChanges(at: .zero).isEmpty)
        for beat in 0..<20 {
            detectors.heartbeat(from: second, at: .milliseconds(100) * beat)
            detectors.heartbeat(from: first, at: .milliseconds(100) * beat)
        }
        let up = detectors.availabilityChanges(at: .milliseconds(1_950))
        #expect(up.map { $0.0 } == [second, first] && up.allSatisfy { $0.available })
        #expect(detectors.availabilityChanges(at: .milliseconds(1_960)).isEmpty)
        for beat in 20..<60 {
            detectors.heartbeat(from: first, at: .milliseconds(100) * beat)
        }
        let down = detectors.availabilityChanges(at: .milliseconds(5_950))
        #expect(down.count == 1 && down.first?.0 == second && down.first?.available == false)
        #expect(detectors.availabilityChanges(at: .milliseconds(5_960)).isEmpty)
        detectors.heartbeat(from: second, at: .seconds(6))
        let back = detectors.availabilityChanges(at: .seconds(6))
        #expect(back.count == 1 && back.first?.0 == second && back.first?.available == true)
        detectors.remove(second)
        #expect(detectors.members == [first])
        #expect(!detectors.isAvailable(second, at: .seconds(6)))
        #expect(detectors.availabilityChanges(at: .seconds(60)).map { $0.0 } == [first])
        #expect(detectors.availabilityChanges(at: .seconds(61)).isEmpty)
    }
}
