import Testing
@testable import RingstoreCore

/// Clocks over integer values: each write stores a value no other write uses.
typealias IntClock = DottedVersionVectorSet<Int>

/// A write as the oracle remembers it: its value, its dot, and what its writer had seen.
struct RecordedWrite {
    let value: Int
    let actor: ActorID
    let counter: UInt64
    let context: VersionVector
}

/// A random history at three replicas — writes with no, stale or fresh contexts, reads
/// that merge two replicas (sometimes repairing them), one-way and two-way syncs —
/// together with an oracle that knows which writes must still be visible.
struct History {
    let actors = [alice, bob, carol]
    var replicas = [IntClock](repeating: IntClock(), count: 3)
    var writes: [RecordedWrite] = []
    var readContexts: [VersionVector] = [VersionVector()]
    /// Every clock a replica has held, for the algebraic properties.
    var snapshots: [IntClock] = [IntClock()]
    var random: SplitMix64

    init(seed: UInt64) {
        random = SplitMix64(seed: seed)
    }

    /// Performs one random operation.
    mutating func step() {
        switch Int.random(in: 0..<10, using: &random) {
        case 0..<4: writeRandomly()
        case 4..<6: readRandomly()
        default: syncRandomly()
        }
    }

    /// A client writes at a random replica with no context, a stale one, or that replica's latest.
    mutating func writeRandomly() {
        let replica = Int.random(in: 0..<replicas.count, using: &random)
        let context: VersionVector? = switch Int.random(in: 0..<3, using: &random) {
        case 0: nil
        case 1: readContexts.randomElement(using: &random)!
        default: replicas[replica].context
        }
        write(at: replica, context: context)
    }

    /// Writes the next value at `replica` and records it for the oracle.
    @discardableResult
    mutating func write(at replica: Int, context: VersionVector?) -> IntClock {
        let actor = actors[replica]
        let value = writes.count
        let updated = replicas[replica].update(with: .fresh(value, context: context), actor: actor)
        writes.append(RecordedWrite(value: value, actor: actor, counter: updated.context[actor], context: context ?? VersionVector()))
        replicas[replica] = updated
        snapshots.append(updated)
        return updated
    }

    /// A coordinator reads two replicas, merges them, keeps the context, and sometimes repairs both.
    mutating func readRandomly() {
        let first = Int.random(in: 0..<replicas.count, using: &random)
        let second = Int.random(in: 0..<replicas.count, using: &random)
        let merged = IntClock.sync(replicas[first], replicas[second])
        readContexts.append(merged.context)
        if Bool.random(using: &random) {
            replicas[first] = merged
            replicas[second] = merged
            snapshots.append(merged)
        }
    }

    /// Anti-entropy between two replicas, in one direction or both.
    mutating func syncRandomly() {
        let first = Int.random(in: 0..<replicas.count, using: &random)
        let second = Int.random(in: 0..<replicas.count, using: &random)
        let merged = IntClock.sync(replicas[first], replicas[second])
        replicas[first] = merged
        if Bool.random(using: &random) { replicas[second] = merged }
        snapshots.append(merged)
    }

    /// Syncs every replica with every other.
    mutating func syncAll() {
        let merged = replicas.reduce(IntClock(), IntClock.sync)
        replicas = replicas.map { _ in merged }
    }

    /// The values a clock must hold: the writes it knows of (their dots are in its
    /// history) that no write it knows of had seen.
    func expectedValues(of clock: IntClock) -> Set<Int> {
        let seen = clock.context
        let known = writes.filter { seen[$0.actor] >= $0.counter }
        let live = known.filter { candidate in
            !known.contains { $0.context[candidate.actor] >= candidate.counter }
        }
        return Set(live.map(\.value))
    }
}

@Suite struct DottedVersionVectorSetPropertyTests {
    // Proves at every step of random histories each replica holds exactly the writes that no write it knows had seen.
    @Test func replicasHoldExactlyTheUnsupersededWrites() {
        for seed in UInt64(1)...60 {
            var history = History(seed: seed)
            for _ in 0..<80 {
                history.step()
                for clock in history.replicas {
                    #expect(clock.values.count == Set(clock.values).count, "seed \(seed): a value appears twice")
                    #expect(Set(clock.values) == history.expectedValues(of: clock), "seed \(seed)")
                }
            }
        }
    }

    // Proves sync is commutative, associative and idempotent, gives identical bytes either way, and adds nothing to an ancestor.
    @Test func syncIsASemilattice() {
        for seed in UInt64(100)...130 {
            var history = History(seed: seed)
            for _ in 0..<60 { history.step() }
            var random = SplitMix64(seed: seed)
            for _ in 0..<200 {
                let first = history.snapshots.randomElement(using: &random)!
                let second = history.snapshots.randomElement(using: &random)!
                let third = history.snapshots.randomElement(using: &random)!
                let merged = IntClock.sync(first, second)
                #expect(merged == IntClock.sync(second, first), "seed \(seed)")
                #expect(merged.encode(encodeInt) == IntClock.sync(second, first).encode(encodeInt), "seed \(seed)")
                #expect(
                    IntClock.sync(merged, third) == IntClock.sync(first, IntClock.sync(second, third)),
                    "seed \(seed)"
                )
                #expect(IntClock.sync(first, first) == first, "seed \(seed)")
                #expect(merged.descends(first) && merged.descends(second), "seed \(seed)")
                if second.descends(first) {
                    #expect(merged == second, "seed \(seed): syncing with an ancestor changed the clock")
                }
            }
        }
    }

    // Proves that once every replica has synced with every other, all hold the same clock and exactly the concurrent writes.
    @Test func fullSyncConverges() {
        for seed in UInt64(200)...260 {
            var history = History(seed: seed)
            for _ in 0..<100 { history.step() }
            history.syncAll()
            let first = history.replicas[0]
            #expect(history.replicas.allSatisfy { $0 == first }, "seed \(seed)")
            let everyWrite = history.writes.filter { candidate in
                !history.writes.contains { $0.context[candidate.actor] >= candidate.counter }
            }
            #expect(Set(first.values) == Set(everyWrite.map(\.value)), "seed \(seed)")
        }
    }

    // Proves a lone writer who always sends the context of its previous write never creates a sibling anywhere.
    @Test func latestContextNeverCreatesSiblings() {
        for seed in UInt64(300)...340 {
            var history = History(seed: seed)
            var context: VersionVector? = nil
            for _ in 0..<80 {
                if Bool.random(using: &history.random) {
                    let replica = Int.random(in: 0..<3, using: &history.random)
                    context = history.write(at: replica, context: context).context
                } else {
                    history.syncRandomly()
                }
                #expect(history.replicas.allSatisfy { $0.siblingCount <= 1 }, "seed \(seed)")
            }
            history.syncAll()
            #expect(history.replicas[0].values == [history.writes.count - 1], "seed \(seed)")
        }
    }

    // Proves k writers who each send the context of their own previous write leave at most k siblings anywhere.
    @Test func siblingsBoundedByConcurrentWriters() {
        for seed in UInt64(400)...440 {
            var history = History(seed: seed)
            let writerCount = 1 + Int(seed % 4)
            var contexts = [VersionVector?](repeating: nil, count: writerCount)
            for _ in 0..<120 {
                if Int.random(in: 0..<3, using: &history.random) > 0 {
                    let writer = Int.random(in: 0..<writerCount, using: &history.random)
                    let replica = Int.random(in: 0..<3, using: &history.random)
                    contexts[writer] = history.write(at: replica, context: contexts[writer]).context
                } else {
                    history.syncRandomly()
                }
                #expect(history.replicas.allSatisfy { $0.siblingCount <= writerCount }, "seed \(seed)")
            }
        }
    }

    // Proves every clock reached in random histories encodes and decodes to itself, byte for byte.
    @Test func reachableClocksRoundTrip() throws {
        for seed in UInt64(500)...520 {
            var history = History(seed: seed)
            for _ in 0..<60 { history.step() }
            for clock in history.snapshots {
                let bytes = clock.encode(encodeInt)
                let decoded = try IntClock(decoding: bytes, decodeValue: decodeInt)
                #expect(decoded == clock, "seed \(seed)")
                #expect(decoded.encode(encodeInt) == bytes, "seed \(seed)")
                #expect(try VersionVector(decoding: clock.context.encode()) == clock.context, "seed \(seed)")
            }
        }
    }
}

/// Encodes an integer value as a varint.
func encodeInt(_ value: Int, _ writer: inout ByteWriter) {
    writer.writeVarint(UInt64(value))
}

/// Decodes an integer value written by `encodeInt`.
func decodeInt(_ reader: inout ByteReader) throws(DecodeError) -> Int {
    let value = try reader.readVarint()
    guard value <= UInt64(Int.max) else { throw DecodeError("integer value too large") }
    return Int(value)
}
