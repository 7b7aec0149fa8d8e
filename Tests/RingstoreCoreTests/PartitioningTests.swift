import Testing
@testable import RingstoreCore

@Suite struct PartitioningTests {
    // Proves the ring position is the first 8 bytes of MD5(table 0x00 key), big-endian, as python3 computes it:
    // int.from_bytes(hashlib.md5(b'default\x00hello').digest()[:8], 'big').
    @Test func hashMatchesIndependentComputation() {
        #expect(Partitioning.hash(table: "default", key: Array("hello".utf8)) == 2_472_892_669_158_881_461)
        #expect(Partitioning.hash(table: "users", key: Array("alice".utf8)) == 11_291_310_390_167_170_422)
        #expect(Partitioning.hash(table: "default", key: [UInt8]()) == 4_062_343_953_549_345_250)
        #expect(Partitioning.hash(table: "t", key: [0x00, 0xff]) == 3_764_639_934_462_901_145)
    }

    // Proves the hash is the digest's first 8 bytes read big-endian, computed through MD5 directly.
    @Test func hashIsLeadingDigestBytes() {
        let digest = MD5.digest(Array("default".utf8) + [0x00] + Array("hello".utf8))
        let expected = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(Partitioning.hash(table: "default", key: Array("hello".utf8)) == expected)
    }

    // Proves a key's partition is the top 8 bits of its hash when Q = 256 (python3: hash >> 56).
    @Test func partitionOfKnownKeys() throws {
        let ring = try Partitioning(partitionCount: 256)
        #expect(ring.partition(table: "default", key: Array("hello".utf8)) == PartitionID(rawValue: 34))
        #expect(ring.partition(table: "users", key: Array("alice".utf8)) == PartitionID(rawValue: 156))
        let single = try Partitioning(partitionCount: 1)
        #expect(single.partition(table: "users", key: Array("alice".utf8)) == PartitionID(rawValue: 0))
    }

    // Proves only powers of two in 1...Limits.partitionCountMax are accepted.
    @Test func partitionCountMustBePowerOfTwoWithinLimit() throws {
        for count in [1, 2, 4, 256, Limits.partitionCountMax] {
            #expect(try Partitioning(partitionCount: count).partitionCount == count)
        }
        for count in [0, -1, -256, 3, 6, 255, 257, Limits.partitionCountMax * 2] {
            #expect(throws: PartitioningError.invalidPartitionCount(count: count, max: Limits.partitionCountMax)) {
                try Partitioning(partitionCount: count)
            }
        }
        #expect(Limits.partitionCountDefault & (Limits.partitionCountDefault - 1) == 0)
    }

    // Proves the lowest and highest hashes land in the first and last partitions for every size.
    @Test func partitionBounds() throws {
        for bits in 0...16 {
            let ring = try Partitioning(partitionCount: 1 << bits)
            #expect(ring.partition(forHash: 0) == PartitionID(rawValue: 0))
            #expect(ring.partition(forHash: UInt64.max) == PartitionID(rawValue: UInt32((1 << bits) - 1)))
            #expect(ring.allPartitions.count == 1 << bits)
        }
        let ring = try Partitioning(partitionCount: 4)
        #expect(ring.partition(forHash: 0x3fff_ffff_ffff_ffff) == PartitionID(rawValue: 0))
        #expect(ring.partition(forHash: 0x4000_0000_0000_0000) == PartitionID(rawValue: 1))
        #expect(ring.partition(forHash: 0xc000_0000_0000_0000) == PartitionID(rawValue: 3))
    }

    // Proves the partitions' ranges tile 0...UInt64.max exactly, in order, and agree with partition(forHash:).
    @Test(arguments: [1, 2, 8, 256, 1 << 16])
    func rangesTileTheHashSpace(partitionCount: Int) throws {
        let ring = try Partitioning(partitionCount: partitionCount)
        var nextLower: UInt64? = 0
        for partition in ring.allPartitions {
            let range = ring.range(of: partition)
            #expect(range.lowerBound == nextLower)
            #expect(ring.partition(forHash: range.lowerBound) == partition)
            #expect(ring.partition(forHash: range.upperBound) == partition)
            nextLower = range.upperBound == UInt64.max ? nil : range.upperBound + 1
        }
        #expect(nextLower == nil, "the last range ends at UInt64.max")
        if partitionCount > 1 {
            let width = ring.range(of: PartitionID(rawValue: 0)).upperBound &+ 1
            #expect(width == UInt64(1) << UInt64(64 - partitionCount.trailingZeroBitCount))
        }
    }

    // Proves 10,000 keys spread over 256 partitions with none empty and none above three times the mean.
    @Test func keysSpreadEvenly() throws {
        let ring = try Partitioning(partitionCount: 256)
        var counts = [Int](repeating: 0, count: 256)
        for index in 0..<10_000 {
            counts[Int(ring.partition(table: "default", key: Array("key-\(index)".utf8)).rawValue)] += 1
        }
        let mean = 10_000 / 256
        #expect(counts.min()! > 0)
        #expect(counts.max()! <= 3 * mean)
    }

    // Proves a storage key splits back into its table and key, even when the key holds zero bytes.
    @Test func storageKeyRoundTrip() throws {
        let key: [UInt8] = [0x00, 0x61, 0x00, 0xff]
        let combined = StorageKeyCodec.encode(table: "default", key: key)
        #expect(combined == Array("default".utf8) + [0x00] + key)
        let decoded = try #require(StorageKeyCodec.decode(combined))
        #expect(decoded.table == "default")
        #expect(decoded.key == key)
        #expect(Partitioning.hash(storageKey: combined) == Partitioning.hash(table: "default", key: key))
        let emptyKey = try #require(StorageKeyCodec.decode(Array("t".utf8) + [0x00]))
        #expect(emptyKey.table == "t" && emptyKey.key.isEmpty)
    }

    // Proves bytes without a separator or with a non-UTF-8 table name do not decode.
    @Test func storageKeyRejectsMalformedBytes() {
        #expect(StorageKeyCodec.decode([]) == nil)
        #expect(StorageKeyCodec.decode(Array("default".utf8)) == nil)
        #expect(StorageKeyCodec.decode([0xff, 0xfe, 0x00, 0x61]) == nil)
    }

    // Proves partition ids order by number and print as plain decimals.
    @Test func partitionIDOrderAndDescription() {
        #expect(PartitionID(rawValue: 3) < PartitionID(rawValue: 10))
        #expect(PartitionID(rawValue: 255).description == "255")
    }
}
