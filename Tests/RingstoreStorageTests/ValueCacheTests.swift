import Foundation
import RingstoreCore
import Testing
@testable import RingstoreStorage

@Suite("Value cache")
struct ValueCacheTests {
    private static let entry = ValueCache.entryOverheadBytes

    // Proves that the cache stays within its bytes by dropping its oldest entries first.
    @Test func evictsOldestFirstWithinItsBytes() {
        var cache = ValueCache(capacityBytes: 3 * (Self.entry + 10))
        for sequence in UInt64(1)...4 { cache.insert([UInt8](repeating: UInt8(sequence), count: 10), for: sequence) }
        #expect(cache.value(for: 1) == nil)
        #expect(cache.value(for: 2) == [UInt8](repeating: 2, count: 10))
        #expect(cache.value(for: 4) == [UInt8](repeating: 4, count: 10))
        #expect(cache.count == 3)
        #expect(cache.bytes == 3 * (Self.entry + 10))
    }

    // Proves that removing an entry frees its bytes at once, and that a value larger
    // than the whole cache is not kept (and does not empty it).
    @Test func removalFreesBytesAndOversizedValuesAreSkipped() {
        var cache = ValueCache(capacityBytes: 2 * (Self.entry + 10))
        cache.insert([UInt8](repeating: 1, count: 10), for: 1)
        cache.insert([UInt8](repeating: 2, count: 10), for: 2)
        cache.remove(1)
        #expect(cache.bytes == Self.entry + 10)
        cache.insert([UInt8](repeating: 3, count: 10), for: 3)
        #expect(cache.value(for: 2) != nil && cache.value(for: 3) != nil)
        cache.insert([UInt8](repeating: 9, count: 1000), for: 9)
        #expect(cache.value(for: 9) == nil)
        #expect(cache.count == 2)
        #expect(ValueCache(capacityBytes: 0).bytes == 0)
    }

    // Proves that a key overwritten without end (each write removes the last one's
    // entry) does not grow the eviction order without end.
    @Test func overwritesKeepTheEvictionOrderBounded() {
        var cache = ValueCache(capacityBytes: 1 << 20)
        for sequence in UInt64(1)...100_000 {
            cache.insert([1, 2, 3], for: sequence)
            if sequence > 1 { cache.remove(sequence - 1) }
        }
        #expect(cache.count == 1)
        #expect(cache.orderCount <= 2 * 1024 + 2)
    }
}

@Suite("Storage engine with a value cache")
struct CachedStorageEngineTests {
    // Proves that reads through a small cache always answer what the store holds:
    // random puts, overwrites, deletes, partition drops, merges and a restart, each
    // read compared with a model.
    @Test(arguments: [0, 300, 1 << 16])
    func readsMatchTheStoreWhateverIsCached(cacheBytes: Int) async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(segmentBytesMax: 2048, mergeDeadBytesMin: 0, mergeDeadFractionMin: 0, automaticMerge: false, cacheBytes: cacheBytes)
        var engine = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        var model: [UInt32: [String: [UInt8]]] = [:]
        var random = SplitMixGenerator(seed: UInt64(cacheBytes) + 7)
        for step in 0..<1500 {
            let partition = UInt32(random.next() % 3)
            let key = "k\(random.next() % 12)"
            switch random.next() % 20 {
            case 0..<11:
                let value = bytes("v\(step)-" + String(repeating: "x", count: Int(random.next() % 40)))
                try await engine.put(partition: PartitionID(rawValue: partition), key: bytes(key), value: value)
                model[partition, default: [:]][key] = value
            case 11..<16:
                try await engine.delete(partition: PartitionID(rawValue: partition), key: bytes(key))
                model[partition]?[key] = nil
            case 16:
                try await engine.dropPartition(PartitionID(rawValue: partition))
                model[partition] = [:]
            case 17:
                _ = try await engine.merge()
            case 18 where step % 7 == 0:
                await engine.close()
                engine = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
            default:
                break
            }
            for probe in 0..<12 {
                let probeKey = "k\(probe)"
                #expect(try engine.get(partition: PartitionID(rawValue: partition), key: bytes(probeKey)) == model[partition]?[probeKey], "step \(step)")
            }
        }
        await engine.close()
    }
}
