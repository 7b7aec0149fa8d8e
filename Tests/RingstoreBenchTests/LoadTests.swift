import Foundation
import Testing
@testable import RingstoreBench
import RingstoreCore

@Suite struct KeyChooserTests {
    private func draws(_ chooser: KeyChooser, _ count: Int, seed: UInt64 = 7) -> [Int] {
        var random = SplitMixGenerator(seed: seed)
        return (0..<count).map { _ in chooser.next(using: &random) }
    }

    @Test func uniformKeysCoverTheKeySpaceEvenly() {
        let chooser = KeyChooser(count: 100, distribution: .uniform)
        var counts = [Int](repeating: 0, count: 100)
        for key in draws(chooser, 100_000) { counts[key] += 1 }
        // 1,000 expected per key; a fair generator stays well within ±20%.
        #expect(counts.min()! > 800 && counts.max()! < 1200, "\(counts.min()!)…\(counts.max()!)")
    }

    @Test func zipfianKeysAreSkewedAndInRange() {
        let chooser = KeyChooser(count: 10_000, distribution: .zipfian)
        let keys = draws(chooser, 200_000)
        #expect(keys.allSatisfy { (0..<10_000).contains($0) })
        var counts: [Int: Int] = [:]
        for key in keys { counts[key, default: 0] += 1 }
        let sorted = counts.values.sorted(by: >)
        // Under 1/r^0.99 over 10,000 ranks the most popular key takes about 10% of
        // draws and the top 100 keys about half; uniform draws would give 0.01% and 1%.
        #expect(Double(sorted[0]) / 200_000 > 0.07, "hottest key: \(sorted[0])")
        #expect(Double(sorted.prefix(100).reduce(0, +)) / 200_000 > 0.4)
        #expect(counts.count > 2_000, "the long tail is drawn too: \(counts.count) distinct keys")
    }

    @Test func hotKeysAreScatteredOverTheKeySpace() {
        let chooser = KeyChooser(count: 10_000, distribution: .zipfian)
        var counts: [Int: Int] = [:]
        for key in draws(chooser, 100_000) { counts[key, default: 0] += 1 }
        let hottest = counts.sorted { $0.value > $1.value }.prefix(10).map(\.key)
        // Unscattered, the ten hottest would be keys 0…9.
        #expect(Set(hottest) != Set(0..<10))
        #expect(hottest.filter { $0 < 100 }.count < 5, "\(hottest)")
    }

    @Test func theSameSeedDrawsTheSameKeys() {
        let chooser = KeyChooser(count: 1_000, distribution: .zipfian)
        #expect(draws(chooser, 1_000, seed: 3) == draws(chooser, 1_000, seed: 3))
        #expect(draws(chooser, 1_000, seed: 3) != draws(chooser, 1_000, seed: 4))
    }

    @Test func aKeySpaceOfOneKeyAlwaysDrawsIt() {
        for distribution in KeyDistribution.allCases {
            #expect(Set(draws(KeyChooser(count: 1, distribution: distribution), 100)) == [0])
        }
    }
}

@Suite struct WorkloadTests {
    @Test(arguments: [(Workload.a, 0.5), (.b, 0.95), (.c, 1.0), (.w, 0.0)])
    func workloadsMixReadsAndUpdatesInTheirProportions(workload: Workload, reads: Double) {
        var random = SplitMixGenerator(seed: 11)
        let operations = (0..<100_000).map { _ in workload.operation(random.unit()) }
        let share = Double(operations.filter { $0 == .read }.count) / Double(operations.count)
        #expect(abs(share - reads) < 0.01, "\(workload): \(share)")
        #expect(!operations.contains(.cas))
    }

    @Test func theCASWorkloadIsCompareAndSetOnly() {
        var random = SplitMixGenerator(seed: 1)
        #expect((0..<1_000).allSatisfy { _ in Workload.cas.operation(random.unit()) == .cas })
        #expect(Workload.cas.isLinearizable && !Workload.a.isLinearizable)
    }
}

@Suite struct LoadReportTests {
    @Test func theReportGivesPercentilesPerOperationAndInAll() throws {
        var reads = LatencyHistogram.latencies()
        var updates = LatencyHistogram.latencies()
        for micros in 1...1_000 { reads.recordClamped(microseconds: UInt64(micros)) }  // 1 µs … 1 ms
        for _ in 1...10 { updates.recordClamped(microseconds: 5_000) }
        updates.recordClamped(microseconds: 120_000_000)  // past the top: clamped to 60 s
        let result = LoadResult(
            settings: LoadSettings(workload: .a, durationSeconds: 2), target: "http://127.0.0.1:1", startedAt: Date(timeIntervalSince1970: 0),
            elapsedSeconds: 2, histograms: [.read: reads, .update: updates], errors: [.update: 3], firstError: "update bench-1: HTTP 503")
        let report = LoadReport(result, mode: .http)

        let read = try #require(report.operations["read"])
        #expect(read.count == 1_000 && read.errors == 0 && read.perSecond == 500)
        #expect(abs(read.p50Ms - 0.5) < 0.01 && abs(read.p99Ms - 0.99) < 0.01 && abs(read.maxMs - 1) < 0.01)
        let update = try #require(report.operations["update"])
        #expect(update.count == 11 && update.errors == 3)
        #expect(abs(update.p50Ms - 5) < 0.01 && abs(update.maxMs - 60_000) < 60)
        #expect(report.total.count == 1_011 && report.total.errors == 3)
        #expect(report.operations["cas"] == nil)

        let json = try #require(try JSONSerialization.jsonObject(with: report.json()) as? [String: Any])
        let total = try #require(json["total"] as? [String: Any])
        #expect(Set(total.keys) == ["count", "errors", "per_second", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "mean_ms"])
        let settings = try #require(json["settings"] as? [String: Any])
        #expect(settings["workload"] as? String == "a" && settings["value_size"] as? Int == 100)
        #expect(json["first_error"] as? String == "update bench-1: HTTP 503")

        let result_line = try #require(report.lines.last)
        #expect(result_line.hasPrefix("RESULT workload=a mode=http rps=505.5 "), "\(result_line)")
        #expect(result_line.hasSuffix("errors=3"))
    }

    @Test func anEmptyLoadReportsZeros() {
        let result = LoadResult(settings: LoadSettings(workload: .c), target: "x", startedAt: Date(), elapsedSeconds: 0,
                                histograms: [:], errors: [.read: 2], firstError: nil)
        let report = LoadReport(result, mode: .direct)
        #expect(report.total.count == 0 && report.total.p99Ms == 0 && report.total.perSecond == 0)
        #expect(report.operations["read"]?.errors == 2)
    }
}
