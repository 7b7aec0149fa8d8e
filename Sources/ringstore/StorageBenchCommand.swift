import ArgumentParser
import Foundation
import Glibc
import Logging
import RingstoreCore
import RingstoreStorage

/// `ringstore bench storage`: the storage engine alone, in this process, no network.
/// Reports puts/s under each durability policy, gets/s, restart time and key-directory
/// memory per key, and writes them as JSON with `--out`.
struct StorageBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Benchmark the storage engine: puts (never/always), gets, restart, memory per key."
    )

    @Option(help: "Scratch folder (emptied first; removed afterwards unless --keep).")
    var data: String = "/tmp/ringstore-bench-storage"

    @Option(help: "Keys to load (the restart and memory figures use this many).")
    var keys: Int = 1_000_000

    @Option(help: "Bytes per value.")
    var valueBytes: Int = 100

    @Option(help: "Concurrent writers for the `always` (group commit) phase.")
    var writers: Int = 32

    @Option(help: "Seconds for the `always` phase and for each get phase.")
    var seconds: Double = 5

    @Option(help: "Write the figures as JSON to this file.")
    var out: String?

    @Flag(help: "Keep the scratch folder.")
    var keep = false

    func run() async throws {
        let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
        try? FileManager.default.removeItem(atPath: data)
        defer { if !keep { try? FileManager.default.removeItem(atPath: data) } }
        let partitioning = try Partitioning(partitionCount: Limits.partitionCountDefault)
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueBytes)
        let keyList = (0..<keys).map { StorageKeyCodec.encode(table: "default", key: Array(String(format: "user%010d", $0).utf8)) }
        let partitions = keyList.map { partitioning.partition(forHash: Partitioning.hash(storageKey: $0)) }
        var figures: [String: Double] = [:]
        print("ringstore bench storage: \(keys) keys, \(valueBytes)-byte values, \(ProcessInfo.processInfo.activeProcessorCount) cores")

        // 1. Load with `never`: one writer, sequential.
        var engine: StorageEngine? = try StorageEngine(directory: data + "/never", options: StorageOptions(durability: .never), logger: logger)
        var started = ContinuousClock.now
        for index in 0..<keys { try await engine!.put(partition: partitions[index], key: keyList[index], value: value) }
        figures["put_never_1_writer_per_second"] = Double(keys) / (ContinuousClock.now - started).seconds
        report("put, durability never, 1 writer", figures["put_never_1_writer_per_second"]!, "puts/s")

        // 2. `never` with several writers overwriting.
        let overwriteCount = min(keys, 400_000)
        let loaded = engine!
        started = ContinuousClock.now
        try await concurrently(writers) { writer in
            var index = writer
            while index < overwriteCount {
                try await loaded.put(partition: partitions[index], key: keyList[index], value: value)
                index += writers
            }
        }
        figures["put_never_\(writers)_writers_per_second"] = Double(overwriteCount) / (ContinuousClock.now - started).seconds
        report("put, durability never, \(writers) writers", figures["put_never_\(writers)_writers_per_second"]!, "puts/s")

        // 3. Gets from the warm key directory, 1 and 2 readers.
        for readers in [1, 2] {
            let rate = try await timedGets(engine!, keyList: keyList, partitions: partitions, readers: readers)
            figures["get_\(readers)_readers_per_second"] = rate
            report("get, warm key directory, \(readers) reader(s)", rate, "gets/s")
        }

        // 4. Restart in a fresh process, so that its resident size counts only what
        //    opening the store allocates: restart time and key-directory memory.
        await engine!.close()
        engine = nil
        let reopened = try reopenInChildProcess(directory: data + "/never")
        let keyBytes = Double(keyList.reduce(0) { $0 + $1.count }) / Double(keys)
        let perKey = reopened.residentBytes / Double(keys)
        figures["restart_seconds"] = reopened.seconds
        figures["key_directory_bytes_per_key"] = perKey
        figures["key_directory_bytes_per_key_beyond_key"] = perKey - keyBytes
        figures["key_bytes_average"] = keyBytes
        precondition(Int(reopened.keys) == keys, "restart lost keys")
        report("restart with \(keys) keys (hint files, fresh process)", reopened.seconds, "s")
        report("key directory per key (resident, key itself \(Int(keyBytes)) B)", perKey, "bytes")
        report("key directory per key beyond the key", perKey - keyBytes, "bytes")

        // 5. `always`: group commit under concurrent writers.
        let durable = try StorageEngine(directory: data + "/always", options: StorageOptions(durability: .always), logger: logger)
        let counter = Counter()
        started = ContinuousClock.now
        let deadline = started + .milliseconds(Int(seconds * 1000))
        try await concurrently(writers) { writer in
            var index = writer
            while ContinuousClock.now < deadline {
                try await durable.put(partition: partitions[index % keys], key: keyList[index % keys], value: value)
                counter.add(1)
                index += writers
            }
        }
        figures["put_always_\(writers)_writers_per_second"] = Double(counter.value) / (ContinuousClock.now - started).seconds
        report("put, durability always (group commit), \(writers) writers", figures["put_always_\(writers)_writers_per_second"]!, "puts/s")
        let syncs = durable.statistics.syncs
        figures["put_always_writes_per_fsync"] = Double(counter.value) / Double(max(1, syncs))
        report("  writes per fsync (group commit batch)", figures["put_always_writes_per_fsync"]!, "writes")
        report("  fsyncs per second", Double(syncs) / (ContinuousClock.now - started).seconds, "fsyncs/s")
        await durable.close()

        if let out {
            let json = try JSONSerialization.data(withJSONObject: figures, options: [.prettyPrinted, .sortedKeys])
            try json.write(to: URL(fileURLWithPath: out))
            print("figures written to \(out)")
        }
    }

    /// Runs `ringstore bench storage-reopen` on `directory` and reads its figures.
    private func reopenInChildProcess(directory: String) throws -> (seconds: Double, residentBytes: Double, keys: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = ["bench", "storage-reopen", "--data", directory]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let figures = try JSONSerialization.jsonObject(with: bytes) as? [String: Double],
              let seconds = figures["seconds"], let resident = figures["resident_bytes"], let keys = figures["keys"]
        else { throw ValidationError("storage-reopen failed: \(String(decoding: bytes, as: UTF8.self))") }
        return (seconds, resident, keys)
    }

    private func timedGets(_ engine: StorageEngine, keyList: [[UInt8]], partitions: [PartitionID], readers: Int) async throws -> Double {
        let counter = Counter()
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int(seconds * 1000))
        try await concurrently(readers) { reader in
            var generator = SplitMixGenerator(seed: UInt64(reader + 1))
            var done = 0
            while true {
                for _ in 0..<1000 {
                    let index = Int(generator.next() % UInt64(keyList.count))
                    guard try engine.get(partition: partitions[index], key: keyList[index]) != nil else { fatalError("bench: key missing") }
                }
                done += 1000
                if ContinuousClock.now >= deadline { break }
            }
            counter.add(done)
        }
        return Double(counter.value) / (ContinuousClock.now - started).seconds
    }

    private func report(_ what: String, _ value: Double, _ unit: String) {
        let number = value >= 100 ? String(Int(value.rounded())) : String(format: "%.3f", value)
        print("  \(what.padding(toLength: 58, withPad: " ", startingAt: 0)) \(number) \(unit)")
    }
}

/// Runs `count` tasks and waits for all.
func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<count { group.addTask { try await body(index) } }
        try await group.waitForAll()
    }
}

/// A thread-safe tally.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ amount: Int) { lock.withLock { total += amount } }
    var value: Int { lock.withLock { total } }
}

/// This process's resident set size, from /proc/self/statm.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// `ringstore bench storage-reopen`: opens a store in this fresh process and prints,
/// as JSON, how long recovery took and how much resident memory it added.
struct StorageReopenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage-reopen", abstract: "Open a store and report recovery time and memory (used by bench storage).",
        shouldDisplay: false)

    @Option(help: "The store's folder.")
    var data: String

    func run() async throws {
        let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
        let before = residentBytes()
        let started = ContinuousClock.now
        let engine = try StorageEngine(directory: data, options: StorageOptions(durability: .never, automaticMerge: false), logger: logger)
        let seconds = (ContinuousClock.now - started).seconds
        let after = residentBytes()
        let keys = engine.statistics.keys
        await engine.close()
        print("{\"seconds\":\(seconds),\"resident_bytes\":\(after - before),\"keys\":\(keys)}")
    }
}
