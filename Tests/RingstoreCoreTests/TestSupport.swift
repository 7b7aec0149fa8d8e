@testable import RingstoreCore

/// The core's seeded generator, so that every randomised test is reproducible from
/// the seed it prints in its failure messages.
typealias SplitMix64 = SplitMixGenerator

extension SplitMixGenerator {
    /// `count` random bytes.
    mutating func bytes(count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

/// Lowercase hex of `bytes`.
func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var text = ""
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return text
}
