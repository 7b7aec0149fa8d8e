/// The MD5 message digest (RFC 1321), written out so that RingstoreCore depends on no package.
///
/// Ringstore uses MD5 only to place keys on the ring (DESIGN §4), where any language
/// must be able to compute the same position. It is not used for anything that needs
/// collision resistance against an adversary.
public enum MD5: Sendable {
    /// The 16-byte MD5 digest of `bytes`.
    public static func digest(_ bytes: some Collection<UInt8>) -> [UInt8] {
        if let digest = bytes.withContiguousStorageIfAvailable({ digest(of: UnsafeRawBufferPointer($0)) }) {
            return digest
        }
        return Array(bytes).withUnsafeBytes { digest(of: $0) }
    }

    /// The digest of contiguous bytes: every full 64-byte block, then the padded tail.
    private static func digest(of input: UnsafeRawBufferPointer) -> [UInt8] {
        var state = State()
        let fullBlockCount = input.count / 64
        for blockIndex in 0..<fullBlockCount {
            state.compress(UnsafeRawBufferPointer(rebasing: input[(blockIndex * 64)..<(blockIndex * 64 + 64)]))
        }
        // The tail: the leftover bytes, a 0x80 marker, zeros, and the bit length
        // (little-endian) in the last 8 bytes; one block or two.
        let leftover = UnsafeRawBufferPointer(rebasing: input[(fullBlockCount * 64)...])
        let paddedCount = leftover.count < 56 ? 64 : 128
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { tail in
            tail.initializeMemory(as: UInt8.self, repeating: 0)
            tail.copyMemory(from: leftover)
            tail[leftover.count] = 0x80
            let bitCount = UInt64(truncatingIfNeeded: input.count) &* 8
            for index in 0..<8 {
                tail[paddedCount - 8 + index] = UInt8(truncatingIfNeeded: bitCount >> UInt64(index * 8))
            }
            for offset in stride(from: 0, to: paddedCount, by: 64) {
                state.compress(UnsafeRawBufferPointer(rebasing: tail[offset..<(offset + 64)]))
            }
        }
        return state.digestBytes()
    }

    /// The four-word chaining state of RFC 1321 §3.3.
    private struct State {
        var a: UInt32 = 0x6745_2301
        var b: UInt32 = 0xefcd_ab89
        var c: UInt32 = 0x98ba_dcfe
        var d: UInt32 = 0x1032_5476

        /// Runs the 64 steps of RFC 1321 §3.4 over one 64-byte block of sixteen
        /// little-endian words.
        mutating func compress(_ block: UnsafeRawBufferPointer) {
            precondition(block.count == 64, "an MD5 block is 64 bytes")
            var a = self.a, b = self.b, c = self.c, d = self.d
            let sines = MD5.sineTable, shifts = MD5.shiftAmounts
            for step in 0..<64 {
                let mixed: UInt32
                let wordIndex: Int
                switch step >> 4 {
                case 0:
                    mixed = (b & c) | (~b & d)
                    wordIndex = step
                case 1:
                    mixed = (d & b) | (~d & c)
                    wordIndex = (5 * step + 1) & 15
                case 2:
                    mixed = b ^ c ^ d
                    wordIndex = (3 * step + 5) & 15
                default:
                    mixed = c ^ (b | ~d)
                    wordIndex = (7 * step) & 15
                }
                let word = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: wordIndex * 4, as: UInt32.self))
                let sum = a &+ mixed &+ sines[step] &+ word
                let amount = UInt32(shifts[(step >> 4) << 2 | (step & 3)])
                a = d
                d = c
                c = b
                b = b &+ ((sum << amount) | (sum >> (32 - amount)))
            }
            self.a &+= a
            self.b &+= b
            self.c &+= c
            self.d &+= d
        }

        /// The digest: a, b, c, d, each little-endian.
        func digestBytes() -> [UInt8] {
            var output: [UInt8] = []
            output.reserveCapacity(16)
            for word in [a, b, c, d] {
                for shift in stride(from: UInt32(0), to: 32, by: 8) {
                    output.append(UInt8(truncatingIfNeeded: word >> shift))
                }
            }
            return output
        }
    }

    /// Per-round rotation amounts: row r holds the four amounts of round r.
    private static let shiftAmounts: [UInt8] = [
        7, 12, 17, 22,
        5, 9, 14, 20,
        4, 11, 16, 23,
        6, 10, 15, 21,
    ]

    /// The additive constants of RFC 1321: floor(|sin(i + 1)| * 2^32).
    private static let sineTable: [UInt32] = [
        0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee,
        0xf57c_0faf, 0x4787_c62a, 0xa830_4613, 0xfd46_9501,
        0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be,
        0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821,
        0xf61e_2562, 0xc040_b340, 0x265e_5a51, 0xe9b6_c7aa,
        0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
        0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed,
        0xa9e3_e905, 0xfcef_a3f8, 0x676f_02d9, 0x8d2a_4c8a,
        0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c,
        0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70,
        0x289b_7ec6, 0xeaa1_27fa, 0xd4ef_3085, 0x0488_1d05,
        0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
        0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039,
        0x655b_59c3, 0x8f0c_cc92, 0xffef_f47d, 0x8584_5dd1,
        0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1,
        0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
    ]
}
