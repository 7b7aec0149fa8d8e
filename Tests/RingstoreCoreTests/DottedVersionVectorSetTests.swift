import Testing
@testable import RingstoreCore

typealias Clock = DottedVersionVectorSet<String>

let alice = ActorID(rawValue: 0xa)
let bob = ActorID(rawValue: 0xb)
let carol = ActorID(rawValue: 0xc)

/// A client write of `value` with `context`, applied by the replica whose identity is `actor`.
func write(_ server: Clock, _ value: String, context: VersionVector?, at actor: ActorID) -> Clock {
    server.update(with: .fresh(value, context: context), actor: actor)
}

/// Encodes a string value as length-prefixed UTF-8.
func encodeString(_ value: String, _ writer: inout ByteWriter) {
    writer.writeString(value)
}

/// Decodes a string value written by `encodeString`.
func decodeString(_ reader: inout ByteReader) throws(DecodeError) -> String {
    try reader.readString()
}

@Suite struct DottedVersionVectorSetScenarioTests {
    // Proves the empty clock has no history, no values and an empty context.
    @Test func emptyClock() {
        let clock = Clock()
        #expect(clock.isEmpty)
        #expect(clock.values.isEmpty)
        #expect(clock.siblingCount == 0)
        #expect(clock.context.isEmpty)
    }

    // Proves two clients writing without context at the same replica leave two siblings.
    @Test func blindWritesBecomeSiblings() {
        var server = write(Clock(), "v1", context: nil, at: alice)
        server = write(server, "v2", context: nil, at: alice)
        #expect(Set(server.values) == ["v1", "v2"])
        #expect(server.siblingCount == 2)
        #expect(server.context == [alice: 2])
        #expect(!server.isEmpty)
    }

    // Proves a write carrying a read's context supersedes exactly the siblings that read saw.
    @Test func contextSupersedesExactlyWhatWasRead() {
        var server = write(Clock(), "v1", context: nil, at: alice)
        server = write(server, "v2", context: nil, at: alice)
        let readContext = server.context
        server = write(server, "v3", context: nil, at: alice)
        #expect(server.siblingCount == 3)
        server = write(server, "v4", context: readContext, at: alice)
        #expect(Set(server.values) == ["v3", "v4"])
        server = write(server, "v5", context: server.context, at: alice)
        #expect(server.values == ["v5"])
    }

    // Proves a write with a stale context keeps the sibling written concurrently with it.
    @Test func staleContextKeepsConcurrentSibling() {
        var server = write(Clock(), "v1", context: nil, at: alice)
        let firstRead = server.context
        let secondRead = server.context
        server = write(server, "v2", context: firstRead, at: alice)
        #expect(server.values == ["v2"])
        server = write(server, "v3", context: secondRead, at: alice)
        #expect(Set(server.values) == ["v2", "v3"])
        server = write(server, "v4", context: server.context, at: alice)
        #expect(server.values == ["v4"])
    }

    // Proves writes at two replicas merge as siblings, and a write that saw both replaces both everywhere.
    @Test func writesAtTwoReplicasMergeThenResolve() {
        let atAlice = write(Clock(), "v1", context: nil, at: alice)
        let atBob = write(Clock(), "v2", context: nil, at: bob)
        let merged = Clock.sync(atAlice, atBob)
        #expect(Set(merged.values) == ["v1", "v2"])
        #expect(merged.context == [alice: 1, bob: 1])
        let resolved = write(merged, "v3", context: merged.context, at: alice)
        #expect(resolved.values == ["v3"])
        #expect(Clock.sync(resolved, atBob).values == ["v3"])
        #expect(Clock.sync(atBob, resolved) == resolved)
        #expect(Clock.sync(merged, resolved) == resolved)
    }

    // Proves a context from a newer replica supersedes, at a lagging replica, values that replica never held.
    @Test func newerContextAtLaggingReplica() {
        let first = write(Clock(), "v1", context: nil, at: alice)
        let atBob = Clock.sync(Clock(), first)
        let atAlice = write(first, "v2", context: first.context, at: alice)
        let bobAfterWrite = write(atBob, "v3", context: atAlice.context, at: bob)
        #expect(bobAfterWrite.values == ["v3"])
        #expect(Clock.sync(atAlice, bobAfterWrite).values == ["v3"])
        #expect(Clock.sync(bobAfterWrite, atAlice).values == ["v3"])
    }

    // Proves a first write at an empty replica keeps the client's context and adds the replica's first dot.
    @Test func firstWriteKeepsForeignContext() {
        let server = write(Clock(), "v", context: [bob: 3], at: alice)
        #expect(server.context == [alice: 1, bob: 3])
        #expect(server.values == ["v"])
        let blind = write(Clock(), "w", context: nil, at: alice)
        #expect(blind.entries == [Clock.Entry(actor: alice, counter: 1, values: ["w"])])
        #expect(blind.anonymous.isEmpty)
    }

    // Proves descends is clock-wise "has seen at least as much" and dominates is its strict form.
    @Test func descendsAndDominates() {
        let first = write(Clock(), "v1", context: nil, at: alice)
        let second = write(first, "v2", context: first.context, at: alice)
        let other = write(Clock(), "x", context: nil, at: bob)
        #expect(second.descends(first) && !first.descends(second))
        #expect(second.dominates(first) && !first.dominates(second))
        #expect(first.descends(first) && !first.dominates(first))
        #expect(!other.descends(first) && !first.descends(other))
        #expect(first.descends(Clock()) && first.dominates(Clock()))
        #expect(Clock().descends(Clock()) && !Clock().dominates(Clock()))
    }

    // Proves syncing with the empty clock or with itself changes nothing.
    @Test func syncIdentityAndIdempotence() {
        var server = write(Clock(), "v1", context: nil, at: alice)
        server = write(server, "v2", context: nil, at: bob)
        #expect(Clock.sync(server, Clock()) == server)
        #expect(Clock.sync(Clock(), server) == server)
        #expect(Clock.sync(server, server) == server)
    }

    // Proves new client values carry their context and one anonymous value, and anonymous values union on sync.
    @Test func freshValues() {
        let blind = Clock.fresh("x", context: nil)
        #expect(blind.values == ["x"] && blind.context.isEmpty && !blind.isEmpty)
        let informed = Clock.fresh("y", context: [alice: 2])
        #expect(informed.context == [alice: 2] && informed.values == ["y"])
        let both = Clock.sync(blind, Clock.fresh("z", context: nil))
        #expect(Set(both.values) == ["x", "z"])
        #expect(both == Clock.sync(Clock.fresh("z", context: nil), blind))
        #expect(Clock.sync(blind, informed).values == ["y"], "a value after more history wins over an anonymous one")
    }

    // Proves map transforms every value, keeps the clock, and merges anonymous values that become equal.
    @Test func mapTransformsValues() {
        var server = write(Clock(), "one", context: nil, at: alice)
        server = write(server, "three", context: nil, at: bob)
        let lengths = server.map { $0.count }
        #expect(lengths.context == server.context)
        #expect(Set(lengths.values) == [3, 5])
        let anonymous = Clock.sync(.fresh("ab", context: nil), .fresh("cd", context: nil))
        #expect(anonymous.map { $0.count }.values == [2])
    }

    // Proves equality treats anonymous values as a set but entries exactly.
    @Test func equalityAndHashing() {
        let first = Clock.sync(.fresh("a", context: nil), .fresh("b", context: nil))
        let second = Clock.sync(.fresh("b", context: nil), .fresh("a", context: nil))
        #expect(first == second)
        #expect(Set([first, second]).count == 1)
        #expect(write(Clock(), "a", context: nil, at: alice) != write(Clock(), "a", context: nil, at: bob))
    }
}

@Suite struct VersionVectorTests {
    // Proves the initializer sorts, keeps the largest counter per actor and drops zeros.
    @Test func initializerNormalizes() {
        let pairs: [(ActorID, UInt64)] = [(bob, 2), (alice, 1), (bob, 5), (carol, 0)]
        let vector = VersionVector(pairs)
        #expect(vector.entries == [VersionVector.Entry(actor: alice, counter: 1), VersionVector.Entry(actor: bob, counter: 5)])
        #expect(vector[alice] == 1 && vector[bob] == 5 && vector[carol] == 0)
        #expect(vector == [bob: 5, alice: 1])
    }

    // Proves descends compares every counter and merge takes the pointwise maximum.
    @Test func descendsAndMerge() {
        let first: VersionVector = [alice: 2, bob: 1]
        let second: VersionVector = [bob: 3, carol: 1]
        #expect(first.descends(first) && first.descends(VersionVector()))
        #expect(!first.descends(second) && !second.descends(first))
        let merged = VersionVector.merge(first, second)
        #expect(merged == [alice: 2, bob: 3, carol: 1])
        #expect(merged.descends(first) && merged.descends(second))
        #expect(VersionVector.merge(second, first) == merged)
        #expect(!VersionVector().descends(first))
    }

    // Proves the encoding's layout and that it round-trips.
    @Test func encodingRoundTrip() throws {
        let vector: VersionVector = [alice: 300, bob: 1]
        let bytes = vector.encode()
        #expect(bytes == [1, 2, 0, 0, 0, 0, 0, 0, 0, 0xa, 0xac, 0x02, 0, 0, 0, 0, 0, 0, 0, 0xb, 0x01])
        #expect(try VersionVector(decoding: bytes) == vector)
        #expect(try VersionVector(decoding: VersionVector().encode()) == VersionVector())
    }

    // Proves malformed contexts throw: bad version, disorder, duplicates, zero or huge counters, extra or missing bytes.
    @Test func malformedEncodingsThrow() {
        func encoded(version: UInt8 = 1, _ entries: [(UInt64, UInt64)], trailing: [UInt8] = []) -> [UInt8] {
            var writer = ByteWriter()
            writer.writeUInt8(version)
            writer.writeVarint(UInt64(entries.count))
            for (actor, counter) in entries {
                writer.writeUInt64BE(actor)
                writer.writeVarint(counter)
            }
            writer.writeRaw(trailing)
            return writer.bytes
        }
        let malformed: [[UInt8]] = [
            [],
            encoded(version: 2, [(1, 1)]),
            encoded([(2, 1), (1, 1)]),
            encoded([(1, 1), (1, 2)]),
            encoded([(1, 0)]),
            encoded([(1, (1 << 62) + 1)]),
            encoded([(1, 1)], trailing: [0]),
            [1, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ]
        for bytes in malformed {
            #expect(throws: DecodeError.self) { try VersionVector(decoding: bytes) }
        }
        let valid = encoded([(1, 1), (2, 1 << 62)])
        #expect(throws: Never.self) { try VersionVector(decoding: valid) }
        for length in 0..<valid.count {
            #expect(throws: DecodeError.self) { try VersionVector(decoding: Array(valid.prefix(length))) }
        }
    }

    // Proves actor ids print as sixteen hex digits and order by value.
    @Test func actorDescription() {
        #expect(ActorID(rawValue: 0xab).description == "00000000000000ab")
        #expect(ActorID(rawValue: UInt64.max).description == "ffffffffffffffff")
        #expect(alice < bob)
    }
}

@Suite struct DottedVersionVectorSetEncodingTests {
    /// Writes a clock's encoding by hand, so that tests can break any invariant.
    private func encoded(entries: [(UInt64, UInt64, [String])], anonymous: [String] = []) -> [UInt8] {
        var writer = ByteWriter()
        writer.writeVarint(UInt64(entries.count))
        for (actor, counter, values) in entries {
            writer.writeUInt64BE(actor)
            writer.writeVarint(counter)
            writer.writeVarint(UInt64(values.count))
            for value in values { writer.writeString(value) }
        }
        writer.writeVarint(UInt64(anonymous.count))
        for value in anonymous { writer.writeString(value) }
        return writer.bytes
    }

    private var sample: Clock {
        var server = write(Clock(), "v1", context: nil, at: alice)
        server = write(server, "v2", context: nil, at: alice)
        server = write(server, "v3", context: [alice: 1], at: carol)
        return Clock.sync(server, write(Clock(), "", context: nil, at: bob))
    }

    // Proves a clock's encoding has the documented layout and round-trips.
    @Test func roundTrip() throws {
        let clock = sample
        let bytes = clock.encode(encodeString)
        #expect(bytes == encoded(entries: [(0xa, 2, ["v2"]), (0xb, 1, [""]), (0xc, 1, ["v3"])]))
        let decoded = try Clock(decoding: bytes, decodeValue: decodeString)
        #expect(decoded == clock)
        #expect(decoded.encode(encodeString) == bytes)
        let anonymous = Clock.fresh("n", context: [bob: 4])
        #expect(try Clock(decoding: anonymous.encode(encodeString), decodeValue: decodeString) == anonymous)
        #expect(try Clock(decoding: Clock().encode(encodeString), decodeValue: decodeString) == Clock())
    }

    // Proves encodings that break an invariant throw.
    @Test func malformedEncodingsThrow() {
        let malformed: [[UInt8]] = [
            encoded(entries: [(2, 1, []), (1, 1, [])]),
            encoded(entries: [(1, 1, []), (1, 2, [])]),
            encoded(entries: [(1, 0, [])]),
            encoded(entries: [(1, 1, ["a", "b"])]),
            encoded(entries: [(1, (1 << 63) + 1, [])]),
            encoded(entries: [], anonymous: ["a", "a"]),
            encoded(entries: [(1, 1, ["a"])]) + [0],
            [0xff, 0xff, 0xff, 0xff, 0x0f],
            [],
        ]
        for bytes in malformed {
            #expect(throws: DecodeError.self) { try Clock(decoding: bytes, decodeValue: decodeString) }
        }
        #expect(throws: Never.self) {
            try Clock(decoding: encoded(entries: [(1, 5, ["a", "a"])], anonymous: ["a"]), decodeValue: decodeString)
        }
    }

    // Proves a value decoder that consumes nothing cannot make the decoder loop on a forged count.
    @Test func valueThatTakesNoBytesThrows() {
        let bytes = encoded(entries: [], anonymous: ["a", "b"])
        #expect(throws: DecodeError.self) {
            try Clock(decoding: bytes) { (_: inout ByteReader) throws(DecodeError) -> String in "" }
        }
    }

    // Proves every proper prefix of a valid encoding throws, and random or mutated bytes never trap.
    @Test func truncatedAndRandomBytesNeverTrap() {
        let valid = sample.encode(encodeString)
        for length in 0..<valid.count {
            #expect(throws: DecodeError.self) {
                try Clock(decoding: Array(valid.prefix(length)), decodeValue: decodeString)
            }
        }
        var random = SplitMix64(seed: 0xd7_5e7)
        for _ in 0..<3_000 {
            var bytes = random.bytes(count: Int.random(in: 0...40, using: &random))
            if Bool.random(using: &random) {
                bytes = valid
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if let decoded = try? Clock(decoding: bytes, decodeValue: decodeString) {
                #expect(Clock.invariantsHold(entries: decoded.entries, anonymous: decoded.anonymous))
            }
        }
    }
}
