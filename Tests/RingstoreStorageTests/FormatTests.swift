import Testing
@testable import RingstoreStorage

@Suite("Storage formats")
struct FormatTests {
    // Proves the CRC-32C implementation against the standard check value and RFC 3720 vectors.
    @Test func crc32cKnownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        let whole = CRC32C.checksum(Array("hello world".utf8))
        let first = CRC32C.checksum(Array("hello ".utf8))
        #expect(CRC32C.checksum(Array("world".utf8), continuing: first) == whole)
    }

    // Proves that a record round-trips through its header and that any flipped bit breaks its checksum.
    @Test func recordRoundTripAndBitFlips() {
        var record: [UInt8] = []
        RecordFormat.append(sequence: 42, partition: 7, kind: .value, key: Array("key".utf8), value: Array("value".utf8), to: &record)
        record.withUnsafeBytes { raw in
            let header = RecordFormat.header(in: raw)!
            #expect(header.sequence == 42 && header.partition == 7 && header.keyLength == 3 && header.valueLength == 5)
            #expect(header.recordBytes == record.count)
            #expect(RecordFormat.checksumMatches(header, record: raw))
        }
        for bit in 0..<(record.count * 8) where bit / 8 >= 4 {
            var damaged = record
            damaged[bit / 8] ^= UInt8(1 << (bit % 8))
            damaged.withUnsafeBytes { raw in
                if let header = RecordFormat.header(in: raw), header.recordBytes == raw.count {
                    #expect(!RecordFormat.checksumMatches(header, record: raw), "bit \(bit)")
                }
            }
        }
    }

    // Proves that the scanner skips a damaged record in the middle and reports a torn tail at the end.
    @Test func scannerSkipsMiddleDamageAndFindsTornTail() {
        var bytes: [UInt8] = []
        for index in 0..<5 {
            RecordFormat.append(sequence: UInt64(index), partition: 0, kind: .value, key: [UInt8(index)], value: [1, 2, 3], to: &bytes)
        }
        let recordBytes = bytes.count / 5
        bytes[2 * recordBytes + 26] ^= 1
        var torn = bytes
        torn.append(contentsOf: [UInt8](repeating: 0xFF, count: 10))
        var seen: [UInt64] = []
        let outcome = torn.withUnsafeBytes { raw in SegmentScanner.scan(raw) { header, _ in seen.append(header.sequence) } }
        #expect(seen == [0, 1, 3, 4])
        #expect(outcome.skippedRegions == [(2 * recordBytes)..<(3 * recordBytes)])
        #expect(outcome.tornBytes == 10)
        #expect(outcome.zeroTailBytes == 0)
        #expect(outcome.validBytes == 5 * recordBytes)

        // Zeros after the last record are preallocated space, not a torn tail…
        var preallocated = bytes
        preallocated.append(contentsOf: [UInt8](repeating: 0, count: 4099))
        let zeroTail = preallocated.withUnsafeBytes { raw in SegmentScanner.scan(raw) { _, _ in } }
        #expect(zeroTail.tornBytes == 0)
        #expect(zeroTail.zeroTailBytes == 4099)
        #expect(zeroTail.validBytes == 5 * recordBytes)

        // …but a cut-off record before them is.
        var cutThenZeros = Array(bytes[..<(5 * recordBytes - 3)])
        cutThenZeros.append(contentsOf: [UInt8](repeating: 0, count: 100))
        let cut = cutThenZeros.withUnsafeBytes { raw in SegmentScanner.scan(raw) { _, _ in } }
        #expect(cut.validBytes == 4 * recordBytes)
        #expect(cut.tornBytes == recordBytes - 3 + 100)
        #expect(cut.zeroTailBytes == 0)
    }

    // Proves that hint files round-trip and that a damaged or truncated one is refused whole.
    @Test func hintFileRoundTripAndDamage() {
        let entries: [HintFile.Entry] = (0..<20).map { (index: Int) -> HintFile.Entry in
            let kind: RecordFormat.Kind = index % 4 == 0 ? .tombstone : .value
            return HintFile.Entry(
                sequence: UInt64(index), offset: UInt32(index * 40), recordBytes: 40, partition: UInt32(index % 3),
                kind: kind, key: Array("key\(index)".utf8))
        }
        let encoded = HintFile.encode(segment: 9, entries: entries)
        var decoded: [HintFile.Entry] = []
        #expect(HintFile.decode(encoded, segment: 9) { decoded.append($0) })
        #expect(decoded == entries)
        #expect(!HintFile.decode(encoded, segment: 8) { _ in Issue.record("visited a hint of another segment") })
        #expect(!HintFile.decode(Array(encoded.dropLast(3)), segment: 9) { _ in Issue.record("visited a truncated hint") })
        var damaged = encoded
        damaged[30] ^= 4
        #expect(!HintFile.decode(damaged, segment: 9) { _ in Issue.record("visited a damaged hint") })
    }

    // Proves the merge manifest round-trips and rejects damage.
    @Test func mergeManifestRoundTrip() {
        let encoded = MergeManifest.encode([3, 4, 9])
        #expect(MergeManifest.decode(encoded) == [3, 4, 9])
        var damaged = encoded
        damaged[5] ^= 1
        #expect(MergeManifest.decode(damaged) == nil)
    }

    // Proves the durability policy parser accepts the documented forms only.
    @Test func durabilityParsing() {
        #expect(Durability(parsing: "always") == .always)
        #expect(Durability(parsing: "never") == .never)
        #expect(Durability(parsing: "interval:100") == .interval(milliseconds: 100))
        #expect(Durability(parsing: "interval:0") == nil)
        #expect(Durability(parsing: "sometimes") == nil)
    }
}
