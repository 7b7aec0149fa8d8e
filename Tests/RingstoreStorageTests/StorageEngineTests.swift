import Foundation
import Logging
import RingstoreCore
import Testing
@testable import RingstoreStorage

@Suite("Storage engine")
struct StorageEngineTests {
    // Proves the basic contract: a put is readable, an overwrite replaces it, a delete removes it.
    @Test func writeReadOverwriteDelete() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(try engine.get(partition: p0, key: bytes("a")) == nil)
        try await engine.put(partition: p0, key: bytes("a"), value: bytes("one"))
        #expect(try engine.get(partition: p0, key: bytes("a")) == bytes("one"))
        try await engine.put(partition: p0, key: bytes("a"), value: bytes("two"))
        #expect(try engine.get(partition: p0, key: bytes("a")) == bytes("two"))
        try await engine.delete(partition: p0, key: bytes("a"))
        #expect(try engine.get(partition: p0, key: bytes("a")) == nil)
        #expect(engine.statistics.keys == 0)
        await engine.close()
    }

    // Proves that the same key in two partitions is two different entries.
    @Test func partitionsAreSeparate() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        try await engine.put(partition: p0, key: bytes("k"), value: bytes("zero"))
        try await engine.put(partition: p1, key: bytes("k"), value: bytes("one"))
        #expect(try engine.get(partition: p0, key: bytes("k")) == bytes("zero"))
        #expect(try engine.get(partition: p1, key: bytes("k")) == bytes("one"))
        await engine.close()
    }

    // Proves that values, overwrites and deletes survive a restart, from hint files and from scanning.
    @Test(arguments: [false, true])
    func restartKeepsEverything(removeHints: Bool) async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(segmentBytesMax: 4096)
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        for index in 0..<300 {
            try await engine!.put(partition: PartitionID(rawValue: UInt32(index % 7)), key: bytes("key\(index)"), value: bytes("value\(index)"))
        }
        for index in stride(from: 0, to: 300, by: 3) {
            try await engine!.put(partition: PartitionID(rawValue: UInt32(index % 7)), key: bytes("key\(index)"), value: bytes("new\(index)"))
        }
        for index in stride(from: 1, to: 300, by: 5) {
            try await engine!.delete(partition: PartitionID(rawValue: UInt32(index % 7)), key: bytes("key\(index)"))
        }
        let keysBefore = engine!.statistics.keys
        await engine!.close()
        engine = nil
        if removeHints { for hint in folder.files(withSuffix: ".hint") { try FileManager.default.removeItem(atPath: folder.path + "/" + hint) } }

        let reopened = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        #expect(reopened.statistics.keys == keysBefore)
        if removeHints { #expect(reopened.recoveryReport.segmentsFromHints == 0) } else { #expect(reopened.recoveryReport.segmentsFromHints > 0) }
        for index in 0..<300 {
            let value = try reopened.get(partition: PartitionID(rawValue: UInt32(index % 7)), key: bytes("key\(index)"))
            if index % 5 == 1 { #expect(value == nil, "key\(index) was deleted") }
            else if index % 3 == 0 { #expect(value == bytes("new\(index)")) }
            else { #expect(value == bytes("value\(index)")) }
        }
        await reopened.close()
    }

    // Proves that merge keeps the newest version of every key, drops deleted keys for good, and reclaims space.
    @Test func mergeKeepsNewestAndReclaimsSpace() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(durability: .never, segmentBytesMax: 8192, automaticMerge: false)
        let engine = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        for round in 0..<20 {
            for index in 0..<50 {
                try await engine.put(partition: p0, key: bytes("key\(index)"), value: bytes("round\(round)-\(index)"))
            }
        }
        for index in 0..<10 { try await engine.delete(partition: p0, key: bytes("key\(index)")) }
        let before = engine.statistics
        let report = try await engine.merge()
        let after = engine.statistics
        #expect(report.segmentsMerged > 1)
        #expect(report.bytesReclaimed > 0)
        #expect(after.totalBytes < before.totalBytes / 5)
        #expect(after.keys == 40)
        for index in 10..<50 { #expect(try engine.get(partition: p0, key: bytes("key\(index)")) == bytes("round19-\(index)")) }
        await engine.close()

        let reopened = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        #expect(reopened.statistics.keys == 40)
        for index in 0..<10 { #expect(try reopened.get(partition: p0, key: bytes("key\(index)")) == nil, "deleted key\(index) came back") }
        for index in 10..<50 { #expect(try reopened.get(partition: p0, key: bytes("key\(index)")) == bytes("round19-\(index)")) }
        await reopened.close()
    }

    // Proves a stored sequence names one record: every write gets a new one, a delete leaves none, and merge and restart keep it.
    @Test func storedSequenceNamesTheRecord() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(durability: .never, segmentBytesMax: 4096, automaticMerge: false)
        let engine = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        #expect(engine.storedSequence(partition: p0, key: bytes("a")) == nil)
        try await engine.put(partition: p0, key: bytes("a"), value: bytes("one"))
        let first = try #require(engine.storedSequence(partition: p0, key: bytes("a")))
        let ticket = try engine.writeWithoutWaiting([(p0, bytes("a"), bytes("two"))])
        #expect(engine.storedSequence(partition: p0, key: bytes("a")) == ticket.sequence)
        #expect(ticket.sequence > first)
        try await engine.delete(partition: p0, key: bytes("a"))
        #expect(engine.storedSequence(partition: p0, key: bytes("a")) == nil)
        try await engine.put(partition: p0, key: bytes("b"), value: bytes("kept"))
        let kept = try #require(engine.storedSequence(partition: p0, key: bytes("b")))
        for round in 0..<400 { try await engine.put(partition: p0, key: bytes("c"), value: bytes("filler, round \(round) of many")) }
        #expect(try await engine.merge().segmentsMerged > 0)
        #expect(engine.storedSequence(partition: p0, key: bytes("b")) == kept)
        await engine.close()
        let reopened = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        #expect(reopened.storedSequence(partition: p0, key: bytes("b")) == kept)
        #expect(reopened.storedSequence(partition: p0, key: bytes("a")) == nil)
        await reopened.close()
    }

    // Proves that writes racing with a merge are never undone by it.
    @Test func writesDuringMergeWin() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let options = StorageOptions(durability: .never, segmentBytesMax: 4096, automaticMerge: false)
        let engine = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        for index in 0..<400 { try await engine.put(partition: p0, key: bytes("key\(index % 100)"), value: bytes("old\(index)")) }
        async let merged = engine.merge()
        for index in 0..<100 { try await engine.put(partition: p0, key: bytes("key\(index)"), value: bytes("new\(index)")) }
        _ = try await merged
        for index in 0..<100 { #expect(try engine.get(partition: p0, key: bytes("key\(index)")) == bytes("new\(index)")) }
        await engine.close()
        let reopened = try StorageEngine(directory: folder.path, options: options, logger: quietLogger)
        for index in 0..<100 { #expect(try reopened.get(partition: p0, key: bytes("key\(index)")) == bytes("new\(index)")) }
        await reopened.close()
    }

    // Proves that a record cut off mid-write is dropped on restart, logged, and everything before it is served.
    @Test func tornTailIsTruncated() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, logger: quietLogger)
        for index in 0..<10 { try await engine!.put(partition: p0, key: bytes("key\(index)"), value: Array(repeating: UInt8(index), count: 100)) }
        await engine!.close()
        engine = nil
        let segment = folder.path + "/" + folder.files(withSuffix: ".seg").last!
        let size = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
        let handle = FileHandle(forWritingAtPath: segment)!
        try handle.truncate(atOffset: UInt64(size - 50))
        try handle.close()

        let messages = CapturingLogHandler.Messages()
        let logger = Logger(label: "test") { _ in CapturingLogHandler(messages: messages) }
        let reopened = try StorageEngine(directory: folder.path, logger: logger)
        #expect(reopened.recoveryReport.tornBytesTruncated == RecordFormat.headerBytes + 4 + 100 - 50)
        #expect(try reopened.get(partition: p0, key: bytes("key9")) == nil)
        for index in 0..<9 { #expect(try reopened.get(partition: p0, key: bytes("key\(index)")) == Array(repeating: UInt8(index), count: 100)) }
        #expect(messages.all.contains { $0.contains("torn tail") })
        await reopened.close()
    }

    // Proves that the active segment is zero-filled ahead of the writes, and that a clean close and a roll-over leave no zeros behind.
    @Test func activeSegmentIsPreallocatedAndTrimmed() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let recordBytes = RecordFormat.headerBytes + 4 + 101
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        for index in 0..<10 { try await engine.put(partition: p0, key: bytes("key\(index)"), value: Array(repeating: 0xAB, count: 101)) }
        let active = folder.path + "/" + folder.files(withSuffix: ".seg").last!
        #expect(try fileSize(active) == StorageEngine.preallocationStep)
        await engine.close()
        #expect(try fileSize(active) == 10 * recordBytes)

        // Segments of 4 KiB: each closed one is cut to its records when the next starts.
        let small = TemporaryDirectory()
        defer { small.remove() }
        let rolling = try StorageEngine(directory: small.path, options: StorageOptions(segmentBytesMax: 4096), logger: quietLogger)
        for index in 0..<100 { try await rolling.put(partition: p0, key: bytes("key\(index % 10)"), value: Array(repeating: 0xAB, count: 101)) }
        let names = small.files(withSuffix: ".seg")
        #expect(names.count > 2)
        for name in names.dropLast() {
            let size = try fileSize(small.path + "/" + name)
            #expect(size == (4096 / recordBytes) * recordBytes, "\(name) holds whole records only")
        }
        #expect(try fileSize(small.path + "/" + names.last!) == 4096, "the active one is filled to its limit")
        await rolling.close()
        #expect(try fileSize(small.path + "/" + names.last!) % recordBytes == 0)
    }

    // Proves that the zero tail a killed process leaves is dropped on restart without a warning, while a cut-off record before zeros is still a torn tail.
    @Test func zeroTailAfterCrashIsNotDamage() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let recordBytes = RecordFormat.headerBytes + 4 + 100
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, logger: quietLogger)
        for index in 0..<10 { try await engine!.put(partition: p0, key: bytes("key\(index)"), value: Array(repeating: UInt8(index), count: 100)) }
        await engine!.close()
        engine = nil
        let segment = folder.path + "/" + folder.files(withSuffix: ".seg").last!
        // What a process killed between two writes leaves: records, then preallocated zeros.
        let handle = FileHandle(forWritingAtPath: segment)!
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(count: StorageEngine.preallocationStep))
        try handle.close()

        let messages = CapturingLogHandler.Messages()
        let logger = Logger(label: "test") { _ in CapturingLogHandler(messages: messages) }
        var reopened: StorageEngine? = try StorageEngine(directory: folder.path, logger: logger)
        #expect(reopened!.recoveryReport.tornBytesTruncated == 0)
        #expect(!messages.all.contains { $0.contains("torn tail") })
        #expect(try fileSize(segment) == 10 * recordBytes)
        for index in 0..<10 { #expect(try reopened!.get(partition: p0, key: bytes("key\(index)")) == Array(repeating: UInt8(index), count: 100)) }
        await reopened!.close()
        reopened = nil

        // A record cut off mid-write, then zeros: the record is torn, and everything after it goes.
        for hint in folder.files(withSuffix: ".hint") { try FileManager.default.removeItem(atPath: folder.path + "/" + hint) }
        let cut = FileHandle(forWritingAtPath: segment)!
        try cut.truncate(atOffset: UInt64(10 * recordBytes - 50))
        try cut.seekToEnd()
        try cut.write(contentsOf: Data(count: 4096))
        try cut.close()
        let again = try StorageEngine(directory: folder.path, logger: logger)
        #expect(again.recoveryReport.tornBytesTruncated == recordBytes - 50 + 4096)
        #expect(try again.get(partition: p0, key: bytes("key9")) == nil)
        #expect(try again.get(partition: p0, key: bytes("key8")) == Array(repeating: 8, count: 100))
        #expect(messages.all.contains { $0.contains("torn tail") })
        await again.close()
    }

    // Proves that a disk with room for records but not for the next megabyte of zeros
    // still takes writes, that once it is full the refusal is a disk-full error, and
    // that the engine then opens again with every write it took (without room for
    // the hint file recovery writes).
    @Test func nearlyFullDiskStillTakesWrites() async throws {
        guard geteuid() == 0 else { return }  // mounting a small file system needs root
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1536k", "tmpfs", folder.path]
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { return }  // no mounting here (a container without the right)
        defer {
            // Lazily: a descriptor the engine has not closed yet must not keep it mounted.
            let unmount = Process()
            unmount.executableURL = URL(fileURLWithPath: "/bin/umount")
            unmount.arguments = ["--lazy", folder.path]
            try? unmount.run()
            unmount.waitUntilExit()
        }
        var engine: StorageEngine? = try StorageEngine(directory: folder.path + "/data", logger: quietLogger)
        let value = [UInt8](repeating: 0x5A, count: 1000)
        var written = 0
        // The first megabyte of records fits the first step of zeros; the next step
        // does not fit the file system, and the records after it are appended plainly.
        for index in 0..<1300 {
            do {
                try await engine!.put(partition: p0, key: bytes("key\(index)"), value: value)
            } catch {
                Issue.record("write \(index) of 1,300 refused: \(error)")
                throw error
            }
            written += 1
        }
        var refusal: (any Error)?
        for index in 1300..<2000 {
            do {
                try await engine!.put(partition: p0, key: bytes("key\(index)"), value: value)
                written += 1
            } catch {
                refusal = error
                break
            }
        }
        #expect(refusal as? StorageError == .diskFull, "once full, a write is refused as disk full: \(String(describing: refusal))")
        await engine!.close()
        engine = nil
        var reopened: StorageEngine? = try StorageEngine(directory: folder.path + "/data", logger: quietLogger)
        for index in 0..<written { #expect(try reopened!.get(partition: p0, key: bytes("key\(index)")) == value) }
        await reopened!.close()
        reopened = nil
    }

    // Proves that a flipped bit in a value is caught: with a hint file the read fails, without one recovery skips the record; other keys are served.
    @Test(arguments: [false, true])
    func flippedBitIsNeverServed(removeHints: Bool) async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, logger: quietLogger)
        for index in 0..<10 { try await engine!.put(partition: p0, key: bytes("key\(index)"), value: Array(repeating: UInt8(65 + index), count: 100)) }
        await engine!.close()
        engine = nil
        // Restart once so the segment gets its hint file, then corrupt key5's value.
        await (try StorageEngine(directory: folder.path, logger: quietLogger)).close()
        let segment = folder.path + "/" + folder.files(withSuffix: ".seg").first!
        var data = try Data(contentsOf: URL(fileURLWithPath: segment))
        let recordBytes = RecordFormat.headerBytes + 4 + 100
        data[5 * recordBytes + RecordFormat.headerBytes + 4 + 50] ^= 0x10
        try data.write(to: URL(fileURLWithPath: segment))
        if removeHints { for hint in folder.files(withSuffix: ".hint") { try FileManager.default.removeItem(atPath: folder.path + "/" + hint) } }

        let reopened = try StorageEngine(directory: folder.path, logger: quietLogger)
        if removeHints {
            #expect(reopened.recoveryReport.corruptRegionsSkipped == 1)
            #expect(try reopened.get(partition: p0, key: bytes("key5")) == nil)
        } else {
            #expect(throws: StorageError.corruptRecord(segment: 1, offset: 5 * recordBytes)) {
                try reopened.get(partition: p0, key: bytes("key5"))
            }
        }
        for index in 0..<10 where index != 5 {
            #expect(try reopened.get(partition: p0, key: bytes("key\(index)")) == Array(repeating: UInt8(65 + index), count: 100))
        }
        await reopened.close()
    }

    // Proves that a partition can be listed in key order and dropped with one record, also across a restart.
    @Test func listAndDropPartition() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        for key in ["b", "a", "c"] { try await engine.put(partition: p1, key: bytes(key), value: bytes(key)) }
        try await engine.put(partition: p0, key: bytes("z"), value: bytes("z"))
        #expect(engine.keys(in: p1) == [bytes("a"), bytes("b"), bytes("c")])
        #expect(engine.keyCountsByPartition() == [p0: 1, p1: 3])
        try await engine.dropPartition(p1)
        try await engine.put(partition: p1, key: bytes("after"), value: bytes("drop"))
        #expect(engine.keys(in: p1) == [bytes("after")])
        await engine.close()
        let reopened = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(reopened.keys(in: p1) == [bytes("after")])
        #expect(reopened.keys(in: p0) == [bytes("z")])
        await reopened.close()
    }

    // Proves that 32 concurrent writers under `always` all complete and share fsyncs, and that a lone writer afterwards is synced at once each time.
    @Test func groupCommitUnderConcurrentWriters() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, options: StorageOptions(durability: .always), logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<32 {
                group.addTask {
                    for index in 0..<20 { try await engine.put(partition: p0, key: bytes("w\(writer)-\(index)"), value: bytes("v")) }
                }
            }
            try await group.waitForAll()
        }
        #expect(engine.statistics.keys == 640)
        #expect(engine.statistics.syncs < 640, "writers that wait together share an fsync")
        // A lone writer after the crowd: the syncer gathers for the crowd it last saw,
        // gives up at its deadline, and sleeps between writes until the next one wakes it.
        let before = engine.statistics.syncs
        for index in 0..<50 { try await engine.put(partition: p0, key: bytes("alone-\(index)"), value: bytes("v")) }
        #expect(engine.statistics.syncs - before == 50, "each lone durable write is synced on its own")
        await engine.close()
    }

    // Proves that `interval` durability returns at once and syncs in the background.
    @Test func intervalDurabilitySyncsInTheBackground() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, options: StorageOptions(durability: .interval(milliseconds: 20)), logger: quietLogger)
        try await engine.put(partition: p0, key: bytes("k"), value: bytes("v"))
        var waited = 0
        while engine.statistics.syncs == 0 && waited < 200 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(engine.statistics.syncs > 0)
        await engine.close()
    }

    // Proves that `update` serialises read-modify-writes of one key: 16 concurrent increments all count.
    @Test func updateIsAtomicPerKey() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, options: StorageOptions(durability: .never), logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    for _ in 0..<50 {
                        _ = try await engine.update(partition: p0, key: bytes("counter")) { current -> (StorageUpdate, Int) in
                            let next = (current.map { Int(String(decoding: $0, as: UTF8.self))! } ?? 0) + 1
                            return (.put(bytes(String(next))), next)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try engine.get(partition: p0, key: bytes("counter")) == bytes("800"))
        let removed = try await engine.update(partition: p0, key: bytes("counter")) { _ in (StorageUpdate.delete, true) }
        #expect(removed && !engine.contains(partition: p0, key: bytes("counter")))
        await engine.close()
    }

    // Proves that writes made without waiting become durable through the callback, and survive a restart.
    @Test func writeWithoutWaitingAndCallbacks() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, options: StorageOptions(durability: .always), logger: quietLogger)
        let ticket = try engine!.writeWithoutWaiting([(p0, bytes("a"), bytes("1")), (p1, bytes("b"), bytes("2")), (p0, bytes("gone"), nil)])
        let failure: StorageError? = await withCheckedContinuation { continuation in
            engine!.whenDurable(ticket) { continuation.resume(returning: $0) }
        }
        #expect(failure == nil)
        #expect(engine!.statistics.syncs >= 1)
        await engine!.close()
        engine = nil
        let reopened = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(try reopened.get(partition: p0, key: bytes("a")) == bytes("1"))
        #expect(try reopened.get(partition: p1, key: bytes("b")) == bytes("2"))
        await reopened.close()
    }

    // Proves that tickets follow the order of the writes, and that once the latest of a
    // batch is durable every earlier write of the batch is too (a page waits on its last).
    @Test func laterTicketCoversEarlierWrites() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, options: StorageOptions(durability: .always), logger: quietLogger)
        let tickets = try (0..<50).map { index in try engine.writeWithoutWaiting([(p0, bytes("k\(index)"), bytes("\(index)"))]) }
        #expect(zip(tickets, tickets.dropFirst()).allSatisfy { $0 < $1 })
        let syncsBefore = engine.statistics.syncs
        try await engine.waitUntilDurable(tickets.max()!)
        let syncsAfter = engine.statistics.syncs
        #expect(syncsAfter > syncsBefore)
        for ticket in tickets {
            // Already durable: answered at once, with no further fsync.
            let failure: StorageError? = await withCheckedContinuation { continuation in
                engine.whenDurable(ticket) { continuation.resume(returning: $0) }
            }
            #expect(failure == nil)
        }
        #expect(engine.statistics.syncs == syncsAfter)
        await engine.close()
    }

    // Proves that a second process (or engine) cannot open a data folder in use.
    @Test func dataFolderIsLocked() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(throws: StorageError.locked(path: folder.path + "/LOCK")) {
            _ = try StorageEngine(directory: folder.path, logger: quietLogger)
        }
        await engine.close()
        await (try StorageEngine(directory: folder.path, logger: quietLogger)).close()
    }

    // Proves that a merge interrupted after its commit point is completed on restart, so a dropped tombstone cannot let an old value back.
    @Test func interruptedMergeIsCompleted() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        var engine: StorageEngine? = try StorageEngine(directory: folder.path, logger: quietLogger)
        try await engine!.put(partition: p0, key: bytes("gone"), value: bytes("old"))
        await engine!.close()
        engine = nil
        // Pretend a merge copied nothing live out of segment 1 and reached its commit point.
        let manifest = MergeManifest.encode([1])
        try Data(manifest).write(to: URL(fileURLWithPath: folder.path + "/MERGE"))
        let reopened = try StorageEngine(directory: folder.path, logger: quietLogger)
        #expect(reopened.recoveryReport.interruptedMergeCompleted)
        #expect(try reopened.get(partition: p0, key: bytes("gone")) == nil)
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/MERGE"))
        await reopened.close()
    }

    // Proves that operations after close fail cleanly instead of touching closed files.
    @Test func closedEngineRefuses() async throws {
        let folder = TemporaryDirectory()
        defer { folder.remove() }
        let engine = try StorageEngine(directory: folder.path, logger: quietLogger)
        await engine.close()
        await #expect(throws: StorageError.closed) { try await engine.put(partition: p0, key: bytes("k"), value: bytes("v")) }
        #expect(throws: StorageError.closed) { try engine.get(partition: p0, key: bytes("k")) }
    }
}

private func fileSize(_ path: String) throws -> Int {
    try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
}
