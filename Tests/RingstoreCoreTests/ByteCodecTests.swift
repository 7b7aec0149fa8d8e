import Testing
@testable import RingstoreCore

/// A record that exercises every ByteWriter/ByteReader operation.
private struct Sample: Equatable {
    var flag: UInt8
    var small: UInt32
    var large: UInt64
    var count: UInt64
    var blob: [UInt8]
    var name: String
    var tag: [UInt8]

    func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.writeUInt8(flag)
        writer.writeUInt32BE(small)
        writer.writeUInt64BE(large)
        writer.writeVarint(count)
        writer.writeBytes(blob)
        writer.writeString(name)
        writer.writeRaw(tag)
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Sample {
        var reader = ByteReader(bytes)
        let sample = Sample(
            flag: try reader.readUInt8(),
            small: try reader.readUInt32BE(),
            large: try reader.readUInt64BE(),
            count: try reader.readVarint(),
            blob: try reader.readBytes(),
            name: try reader.readString(),
            tag: try reader.readRaw(count: 3)
        )
        try reader.expectEnd()
        return sample
    }
}

@Suite struct ByteCodecTests {
    private let sample = Sample(
        flag: 7, small: 0xdead_beef, large: 0x0102_0304_0506_0708, count: 300,
        blob: [0, 1, 2, 255], name: "héllo ✓", tag: [9, 8, 7]
    )

    // Proves every kind of value written is read back unchanged and the whole input is consumed.
    @Test func roundTrip() throws {
        #expect(try Sample.decode(sample.encode()) == sample)
    }

    // Proves fixed-width integers are big-endian.
    @Test func fixedWidthIsBigEndian() throws {
        var writer = ByteWriter(capacity: 12)
        writer.writeUInt32BE(0x0102_0304)
        writer.writeUInt64BE(0x0a0b_0c0d_0e0f_1011)
        #expect(writer.bytes == [1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11])
    }

    // Proves varints use LEB128 in its shortest form, from one byte up to ten.
    @Test(arguments: [
        (UInt64(0), [UInt8(0x00)]),
        (127, [0x7f]),
        (128, [0x80, 0x01]),
        (300, [0xac, 0x02]),
        (16_384, [0x80, 0x80, 0x01]),
        (UInt64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ] as [(UInt64, [UInt8])])
    func varintEncoding(value: UInt64, expected: [UInt8]) throws {
        var writer = ByteWriter()
        writer.writeVarint(value)
        #expect(writer.bytes == expected)
        var reader = ByteReader(expected)
        #expect(try reader.readVarint() == value)
        #expect(reader.isAtEnd)
    }

    // Proves over-long, overflowing, non-minimal and truncated varints throw.
    @Test(arguments: [
        [UInt8](repeating: 0x80, count: 11),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00],
        [0x80, 0x00],
        [0xff, 0x80, 0x00],
        [0x80],
        [],
    ] as [[UInt8]])
    func malformedVarintsThrow(bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        #expect(throws: DecodeError.self) { try reader.readVarint() }
        #expect(reader.offset == 0, "a failed read leaves the reader where it was")
    }

    // Proves reading past the end throws for every fixed-width read.
    @Test func readingPastTheEndThrows() {
        var reader = ByteReader([1, 2, 3, 4, 5, 6, 7])
        #expect(throws: DecodeError.self) { try reader.readUInt64BE() }
        #expect(throws: DecodeError.self) { try reader.readRaw(count: 8) }
        #expect(throws: DecodeError.self) { try reader.readRaw(count: -1) }
        #expect(throws: (any Error).self) { try reader.expectEnd() }
        var empty = ByteReader([])
        #expect(throws: DecodeError.self) { try empty.readUInt8() }
        #expect(throws: DecodeError.self) { try empty.readUInt32BE() }
        #expect(throws: Never.self) { try empty.expectEnd() }
    }

    // Proves a length or count larger than what remains throws instead of allocating.
    @Test func lengthLargerThanRemainingThrows() throws {
        var short = ByteReader([0x05, 1, 2, 3])
        #expect(throws: DecodeError.self) { try short.readBytes() }
        #expect(short.offset == 0)
        var huge = ByteReader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        #expect(throws: DecodeError.self) { try huge.readBytes() }
        var counts = ByteReader([0x03, 1, 2, 3, 4, 5])
        #expect(throws: DecodeError.self) { try counts.readCount(elementBytesMin: 2) }
        #expect(try counts.readCount(elementBytesMin: 1) == 3)
    }

    // Proves a string that is not UTF-8 throws.
    @Test func invalidUTF8Throws() {
        for invalid: [UInt8] in [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf]] {
            var writer = ByteWriter()
            writer.writeBytes(invalid)
            var reader = ByteReader(writer.bytes)
            #expect(throws: DecodeError.self) { try reader.readString() }
        }
    }

    // Proves decoding every proper prefix of a valid encoding throws (and so never traps).
    @Test func everyPrefixThrows() {
        let bytes = sample.encode()
        for length in 0..<bytes.count {
            #expect(throws: DecodeError.self) { try Sample.decode(Array(bytes.prefix(length))) }
        }
    }

    // Proves random and mutated inputs either decode or throw, never trap.
    @Test func randomBytesNeverTrap() {
        var random = SplitMix64(seed: 0xb17e_c0de)
        let valid = sample.encode()
        var decodedCount = 0
        for _ in 0..<3_000 {
            var bytes = random.bytes(count: Int.random(in: 0...48, using: &random))
            if Bool.random(using: &random) {
                bytes = valid
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if (try? Sample.decode(bytes)) != nil { decodedCount += 1 }
        }
        #expect(decodedCount > 0, "some mutations (inside the blob, say) still decode")
    }
}
