import Foundation
import RingstoreCore
import Testing
@testable import RingstoreStorage

@Suite("Storage engine appends written once per group commit")
struct UnwrittenAppendTests {
    /// How many segment files of the folder hold a byte that is not zero.
    private func segmentsHoldingData(_ folder: TemporaryDirectory) throws -> Int {
        try folder.files(withSuffix: ".seg").filter { name in
            try Data(contentsOf: URL(fileURLWithPath: folder.path + "/" + name)).contains { $0 != 0 }
        }.count
    }

    // Proves that with `always` appended records are served before they reach the
    // file, reach it at the sync that makes them durable, and survive a restart.
    @Test func recordsAreReadBeforeTheSyncWritesThem() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        var engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        try await engine.put(partition: p0, key: bytes("gone"), value: bytes("soon"))
        await engine.close()
        engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        let before = try segmentsHoldingData(folder)
        let ticket = try engine.writeWithoutWaiting([
            (p0, bytes("a"), bytes("one")), (p1, bytes("b"), bytes("two")), (p0, bytes("gone"), nil),
        ])
        #expect(try engine.get(partition: p0, key: bytes("a")) == bytes("one"))
        #expect(try engine.get(partition: p1, key: bytes("b")) == bytes("two"))
        #expect(try engine.get(partition: p0, key: bytes("gone")) == nil)
        #expect(try segmentsHoldingData(folder) == before)
        try await engine.waitUntilDurable(ticket)
        #expect(try segmentsHoldingData(folder) == before + 1)
        await engine.close()
        let reopened = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(try reopened.get(partition: p0, key: bytes("a")) == bytes("one"))
        #expect(try reopened.get(partition: p1, key: bytes("b")) == bytes("two"))
        #expect(try reopened.get(partition: p0, key: bytes("gone")) == nil)
        await reopened.close()
    }

    // Proves that appends that outgrow the memory bound, or a segment, are written
    // without waiting for a sync, and that reads and a restart find every one.
    @Test(arguments: [4096, 64 << 20])
    func manyUnsyncedAppendsAcrossSegmentsAreAllKept(segmentBytesMax: Int) async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(segmentBytesMax: segmentBytesMax)
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        let value = [UInt8](repeating: 7, count: 300)
        var last = DurabilityTicket(sequence: 0)
        for index in 0..<1200 {
            last = try engine!.writeWithoutWaiting([(PartitionID(rawValue: UInt32(index % 5)), bytes("k\(index)"), value + bytes("\(index)"))])
        }
        #expect(try segmentsHoldingData(folder) > 0, "360 KB of appends, more than the 256 KiB kept in memory")
        for index in stride(from: 0, to: 1200, by: 7) {
            #expect(try engine!.get(partition: PartitionID(rawValue: UInt32(index % 5)), key: bytes("k\(index)")) == value + bytes("\(index)"))
        }
        try await engine!.waitUntilDurable(last)
        await engine!.close()
        engine = nil
        let reopened = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        #expect(reopened.statistics.keys == 1200)
        for index in 0..<1200 {
            #expect(try reopened.get(partition: PartitionID(rawValue: UInt32(index % 5)), key: bytes("k\(index)")) == value + bytes("\(index)"))
        }
        await reopened.close()
    }
}
