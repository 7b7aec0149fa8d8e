import Foundation
public import RingstoreCore

extension SplitMixGenerator {
    /// A double in [0, 1).
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }
}

/// How keys are drawn from the key space.
public enum KeyDistribution: String, Sendable, CaseIterable, Codable {
    /// Every key equally likely.
    case uniform
    /// A few keys are hot: the key of popularity rank r is drawn with probability
    /// proportional to 1/r^0.99 (YCSB's zipfian constant), and ranks are scattered
    /// over the key space by a hash, so hot keys do not sit side by side.
    case zipfian
}

/// Draws key indices in `0..<count` under a distribution. Immutable once built (the
/// zipfian normaliser costs O(count) to compute), so one is shared by every task.
public struct KeyChooser: Sendable {
    public let count: Int
    public let distribution: KeyDistribution
    private let zipfian: Zipfian?

    public init(count: Int, distribution: KeyDistribution) {
        precondition(count > 0, "a key space needs at least one key")
        self.count = count
        self.distribution = distribution
        zipfian = distribution == .zipfian ? Zipfian(count: count, theta: Zipfian.ycsbTheta) : nil
    }

    public func next(using random: inout SplitMixGenerator) -> Int {
        guard let zipfian else { return Int(random.next() % UInt64(count)) }
        let rank = zipfian.rank(random.unit())
        return Int(Self.fnv1a64(UInt64(rank)) % UInt64(count))
    }

    /// FNV-1a over the eight bytes of `value`: scatters popularity ranks.
    static func fnv1a64(_ value: UInt64) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for shift in stride(from: 0, to: 64, by: 8) {
            hash ^= (value >> UInt64(shift)) & 0xFF
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }
}

/// The zipfian rank generator of Gray et al., "Quickly Generating Billion-Record
/// Synthetic Databases" (SIGMOD 1994), as YCSB uses it: rank 0 is the most popular.
struct Zipfian: Sendable {
    static let ycsbTheta = 0.99

    let count: Int
    let theta: Double
    let alpha: Double
    let zetaN: Double
    let eta: Double
    let halfPowTheta: Double

    init(count: Int, theta: Double) {
        self.count = count
        self.theta = theta
        var zeta = 0.0
        for rank in 1...count { zeta += 1 / pow(Double(rank), theta) }
        zetaN = zeta
        let zeta2 = 1 + 1 / pow(2, theta)
        alpha = 1 / (1 - theta)
        eta = (1 - pow(2 / Double(count), 1 - theta)) / (1 - zeta2 / zeta)
        halfPowTheta = 1 + pow(0.5, theta)
    }

    /// The rank for a uniform draw `u` in [0, 1).
    func rank(_ u: Double) -> Int {
        let uz = u * zetaN
        if uz < 1 { return 0 }
        if uz < halfPowTheta { return min(1, count - 1) }
        let rank = Int(Double(count) * pow(eta * u - eta + 1, alpha))
        return min(max(rank, 0), count - 1)
    }
}
