import RingstoreCore

/// The simulator's only source of randomness: SplitMix64 (Steele, Lea and Flood,
/// 2014), seeded once per run. Every choice a run makes (parameters, delays,
/// faults, client operations) is drawn from it in event order, so one seed replays
/// one run exactly.
///
/// Bounded draws are computed here rather than with the standard library's
/// `random(in:using:)`, whose algorithm is not promised to stay the same across
/// toolchains; a seed should mean the same run on every machine.
struct SimulationRandom: RandomNumberGenerator {
    private var generator: SplitMixGenerator

    init(seed: UInt64) {
        generator = SplitMixGenerator(seed: seed)
    }

    mutating func next() -> UInt64 {
        generator.next()
    }

    /// A uniform value in `range` (the modulo bias is below 2^-40 for the small
    /// ranges the simulator draws from).
    mutating func int(in range: ClosedRange<Int>) -> Int {
        precondition(range.count > 0, "empty range")
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int(next() % span)
    }

    /// A uniform index into a collection of `count` elements.
    mutating func index(below count: Int) -> Int {
        precondition(count > 0, "no index below 0")
        return Int(next() % UInt64(count))
    }

    /// A uniform duration in `range`, in microseconds.
    mutating func microseconds(in range: ClosedRange<Int64>) -> Int64 {
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int64(next() % span)
    }

    /// A uniform value in [0, 1).
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// True with probability `probability`; draws nothing when the probability is 0,
    /// so a fault switched off does not shift the rest of the run.
    mutating func chance(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        return unit() < probability
    }

    /// One element, uniformly.
    mutating func element<Element>(of array: [Element]) -> Element {
        array[index(below: array.count)]
    }

    /// An index chosen with the given relative weights (at least one positive).
    mutating func weightedIndex(_ weights: [Double]) -> Int {
        let total = weights.reduce(0, +)
        precondition(total > 0, "weights must not all be zero")
        var point = unit() * total
        for (index, weight) in weights.enumerated() {
            if point < weight { return index }
            point -= weight
        }
        return weights.lastIndex { $0 > 0 } ?? 0
    }
}

/// FNV-1a over 64-bit words: the run's fingerprint for the determinism test. Swift's
/// `Hasher` is seeded per process, so it cannot say whether two runs matched.
struct TraceHash: Equatable, Sendable, CustomStringConvertible {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func combine(_ word: UInt64) {
        var word = word
        for _ in 0..<8 {
            value ^= word & 0xff
            value &*= 0x0000_0100_0000_01b3
            word >>= 8
        }
    }

    mutating func combine(_ word: Int64) { combine(UInt64(bitPattern: word)) }
    mutating func combine(_ word: Int) { combine(UInt64(bitPattern: Int64(word))) }

    mutating func combine(_ bytes: [UInt8]) {
        combine(bytes.count)
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01b3
        }
    }

    var description: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
