/// A replica's identity in version vectors: one per node data folder, drawn at
/// random by the shell when the folder is created and never reused.
///
/// A fresh identity for a wiped folder keeps a rebuilt node from reissuing dots it
/// issued before it lost its data.
public struct ActorID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The identity's 64 bits.
    public var rawValue: UInt64

    /// Wraps 64 bits drawn by the shell.
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Orders actors by their bits; version vectors keep entries in this order.
    public static func < (lhs: ActorID, rhs: ActorID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// Sixteen lowercase hex digits, as logs and the admin API show it.
    public var description: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// A version vector: for each actor, how many of its events are known.
///
/// It is the causal context a client reads with a value and sends back with its
/// next write (the HTTP layer carries `encode()` base64-encoded), so that the write
/// supersedes exactly what was read. Entries are kept sorted by actor, with no
/// duplicates and no zero counters, so equal vectors are equal values and encode
/// to equal bytes.
public struct VersionVector: Hashable, Sendable, ExpressibleByDictionaryLiteral {
    /// One actor's counter: events 1...counter of `actor` are known.
    public struct Entry: Hashable, Sendable {
        /// The actor whose events are counted.
        public var actor: ActorID
        /// How many of the actor's events are known; at least 1 in a stored entry.
        public var counter: UInt64

        /// Creates an entry.
        public init(actor: ActorID, counter: UInt64) {
            self.actor = actor
            self.counter = counter
        }
    }

    /// The entries, sorted by actor, one per actor, every counter at least 1.
    public private(set) var entries: [Entry]

    /// The first byte of `encode()`, so that the format can change later.
    static let formatVersion: UInt8 = 1

    /// The largest counter a client context may carry. Servers increment counters
    /// they receive, so this bound keeps a forged context from overflowing one.
    static let contextCounterMax: UInt64 = 1 << 62

    /// The empty vector: nothing is known.
    public init() {
        entries = []
    }

    /// Creates a vector from (actor, counter) pairs in any order; repeated actors
    /// keep their largest counter and zero counters are dropped.
    public init(_ counters: some Sequence<(ActorID, UInt64)>) {
        var largest: [ActorID: UInt64] = [:]
        for (actor, counter) in counters where counter > 0 {
            largest[actor] = max(largest[actor] ?? 0, counter)
        }
        entries = largest.map { Entry(actor: $0.key, counter: $0.value) }.sorted { $0.actor < $1.actor }
    }

    /// Creates a vector from a literal such as `[alice: 2, bob: 1]`.
    public init(dictionaryLiteral elements: (ActorID, UInt64)...) {
        self.init(elements)
    }

    /// Wraps entries that are already sorted, unique and non-zero.
    init(sortedEntries: [Entry]) {
        assert(Self.isCanonical(sortedEntries), "version vector entries must be sorted, unique and non-zero")
        entries = sortedEntries
    }

    /// Whether no event is known.
    public var isEmpty: Bool { entries.isEmpty }

    /// How many of `actor`'s events are known (0 when the actor is absent).
    public subscript(actor: ActorID) -> UInt64 {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].actor < actor { low = middle + 1 } else { high = middle }
        }
        return low < entries.count && entries[low].actor == actor ? entries[low].counter : 0
    }

    /// Whether this vector has seen everything `other` has: every counter of
    /// `other` is at most the matching counter here. Every vector descends itself.
    public func descends(_ other: VersionVector) -> Bool {
        var index = 0
        for theirs in other.entries {
            while index < entries.count && entries[index].actor < theirs.actor { index += 1 }
            guard index < entries.count,
                  entries[index].actor == theirs.actor,
                  entries[index].counter >= theirs.counter
            else { return false }
        }
        return true
    }

    /// The least vector that descends both: the larger counter for every actor.
    public static func merge(_ first: VersionVector, _ second: VersionVector) -> VersionVector {
        var merged: [Entry] = []
        merged.reserveCapacity(max(first.entries.count, second.entries.count))
        var firstIndex = 0, secondIndex = 0
        while firstIndex < first.entries.count || secondIndex < second.entries.count {
            let left = firstIndex < first.entries.count ? first.entries[firstIndex] : nil
            let right = secondIndex < second.entries.count ? second.entries[secondIndex] : nil
            if let left, let right, left.actor == right.actor {
                merged.append(Entry(actor: left.actor, counter: max(left.counter, right.counter)))
                firstIndex += 1
                secondIndex += 1
            } else if let left, right.map({ left.actor < $0.actor }) ?? true {
                merged.append(left)
                firstIndex += 1
            } else if let right {
                merged.append(right)
                secondIndex += 1
            }
        }
        return VersionVector(sortedEntries: merged)
    }

    /// The vector's bytes: a format version (1), a varint entry count, then for each
    /// entry the actor as 8 big-endian bytes and the counter as a varint.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 2 + entries.count * 12)
        writer.writeUInt8(Self.formatVersion)
        writer.writeVarint(UInt64(entries.count))
        for entry in entries {
            writer.writeUInt64BE(entry.actor.rawValue)
            writer.writeVarint(entry.counter)
        }
        return writer.bytes
    }

    /// Decodes what `encode()` produced; the bytes come from clients, so anything
    /// else (unknown version, unsorted or repeated actors, a zero counter, a counter
    /// above 2^62, trailing bytes) throws.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.formatVersion else {
            throw DecodeError("unknown version vector format \(version)")
        }
        let count = try reader.readCount(elementBytesMin: 9)
        var decoded: [Entry] = []
        decoded.reserveCapacity(count)
        for _ in 0..<count {
            let actor = ActorID(rawValue: try reader.readUInt64BE())
            let counter = try reader.readVarint()
            guard counter >= 1, counter <= Self.contextCounterMax else {
                throw DecodeError("version vector counter \(counter) is outside 1...\(Self.contextCounterMax)")
            }
            if let previous = decoded.last, previous.actor >= actor {
                throw DecodeError("version vector actors are not strictly increasing at \(actor)")
            }
            decoded.append(Entry(actor: actor, counter: counter))
        }
        try reader.expectEnd()
        self.init(sortedEntries: decoded)
    }

    /// Whether entries are sorted by actor, unique, and non-zero.
    static func isCanonical(_ entries: [Entry]) -> Bool {
        for (index, entry) in entries.enumerated() {
            if entry.counter == 0 { return false }
            if index > 0 && entries[index - 1].actor >= entry.actor { return false }
        }
        return true
    }
}

// MARK: - Dotted version vector sets

/// A dotted version vector set (DVVSet): the causal history of one key plus every
/// value written concurrently, as Riak 2.0 keeps them (Almeida, Gonçalves et al.,
/// "Scalable and Accurate Causality Tracking for Eventually Consistent Stores").
///
/// The clock is a list of entries sorted by actor. Entry (actor, n, values) says
/// that the actor's events 1...n are known, and that the newest `values.count` of
/// them, n, n-1, …, are still live siblings (`values` is newest first). Live dots of
/// one actor always form such a suffix, because a client context is a version
/// vector: whoever supersedes dot k of an actor has also seen dots 1..<k.
/// Values that have no dot yet (a client's new value, `fresh`) are kept apart as
/// anonymous values; a clock the server stores through `update` never has any.
///
/// The server keeps one per key. A write arrives as `fresh(value, context:)` and is
/// applied with `update(with:actor:)`; replicas reconcile with `sync`. Sibling limits
/// (`Limits.siblingsMax`) are the coordinator's to enforce; this type never drops a
/// value on its own.
public struct DottedVersionVectorSet<Value: Hashable & Sendable>: Hashable, Sendable {
    /// One actor's part of the clock: events 1...counter are known, and `values`
    /// holds the live values of dots counter, counter-1, … (newest first).
    struct Entry: Hashable, Sendable {
        var actor: ActorID
        var counter: UInt64
        var values: [Value]
    }

    /// The clock, sorted by actor with no duplicates; `counter >= values.count` and
    /// `counter >= 1` in every entry.
    private(set) var entries: [Entry]
    /// Values without a dot, all distinct.
    private(set) var anonymous: [Value]

    /// The largest counter a stored clock may carry; see `VersionVector.contextCounterMax`.
    static var storedCounterMax: UInt64 { 1 << 63 }

    /// The empty clock: no history and no values (a key never written).
    public init() {
        self.init(entries: [], anonymous: [])
    }

    /// Wraps parts that already satisfy the invariants.
    init(entries: [Entry], anonymous: [Value]) {
        assert(Self.invariantsHold(entries: entries, anonymous: anonymous), "DVVSet invariants broken")
        self.entries = entries
        self.anonymous = anonymous
    }

    /// A client's new value (Riak's `new/1` and `new/2`): `value` with no dot, after
    /// the causal history in `context`, or after nothing when `context` is nil.
    ///
    /// The result is meant for `update(with:actor:)` only; it is not a server clock.
    public static func fresh(_ value: Value, context: VersionVector?) -> Self {
        let entries = (context?.entries ?? []).map {
            Entry(actor: $0.actor, counter: $0.counter, values: [])
        }
        return Self(entries: entries, anonymous: [value])
    }

    /// Applies a client write to this, the server's stored clock (Riak's `update/3`,
    /// and `update/2` when this clock is empty): drops every stored value the client's
    /// context has seen, keeps the rest as siblings, and records the new value under a
    /// new dot of `actor`.
    ///
    /// `clientValue` MUST come from `fresh(_:context:)` (exactly one anonymous value).
    /// `actor` MUST be this replica's own identity, so that only one replica issues
    /// that actor's dots.
    public func update(with clientValue: Self, actor: ActorID) -> Self {
        precondition(
            clientValue.anonymous.count == 1,
            "update(with:) takes a clock made by fresh(_:context:), which holds exactly one value"
        )
        // The client's entries say what it has seen; any values in them are ignored.
        let seen = clientValue.entries.map { Entry(actor: $0.actor, counter: $0.counter, values: []) }
        var synced = Self.sync(Self(entries: seen, anonymous: []), self)
        synced.entries = Self.event(synced.entries, actor: actor, value: clientValue.anonymous[0])
        assert(synced.descends(self) && synced.descends(clientValue))
        return synced
    }

    /// Merges two replicas' clocks of the same key: the union of their histories,
    /// keeping every value that the other side has not seen superseded. On clocks
    /// made by `update` it is commutative, associative and idempotent, so replicas
    /// converge whatever order they sync in.
    ///
    /// Anonymous values (from `fresh`) survive only when neither side's history
    /// strictly contains the other's, as in Riak; mixing several `fresh` clocks can
    /// therefore depend on grouping. Servers never store such clocks.
    public static func sync(_ first: Self, _ second: Self) -> Self {
        let anonymous: [Value]
        if strictlyGreater(second.entries, first.entries) {
            anonymous = second.anonymous
        } else if strictlyGreater(first.entries, second.entries) {
            anonymous = first.anonymous
        } else {
            var union = first.anonymous
            for value in second.anonymous where !union.contains(value) { union.append(value) }
            anonymous = union
        }
        return Self(entries: syncEntries(first.entries, second.entries), anonymous: anonymous)
    }

    /// The causal history without the values (Riak's `join`): what a client reads
    /// and sends back as the context of its next write.
    public var context: VersionVector {
        VersionVector(sortedEntries: entries.map { VersionVector.Entry(actor: $0.actor, counter: $0.counter) })
    }

    /// Every concurrent sibling: the anonymous values, then each entry's, newest first.
    public var values: [Value] {
        // A plain loop: a key path here costs a runtime metadata lookup per read.
        var result = anonymous
        for entry in entries { result.append(contentsOf: entry.values) }
        return result
    }

    /// How many siblings the clock holds.
    public var siblingCount: Int {
        entries.reduce(anonymous.count) { $0 + $1.values.count }
    }

    /// Whether this is the empty clock: no history and no values.
    public var isEmpty: Bool { entries.isEmpty && anonymous.isEmpty }

    /// The same clock with every value transformed. Anonymous values that become
    /// equal are kept once, since without a dot they cannot be told apart.
    public func map<T: Hashable & Sendable>(_ transform: (Value) -> T) -> DottedVersionVectorSet<T> {
        let mappedEntries = entries.map {
            DottedVersionVectorSet<T>.Entry(actor: $0.actor, counter: $0.counter, values: $0.values.map(transform))
        }
        var mappedAnonymous: [T] = []
        for value in anonymous {
            let mapped = transform(value)
            if !mappedAnonymous.contains(mapped) { mappedAnonymous.append(mapped) }
        }
        return DottedVersionVectorSet<T>(entries: mappedEntries, anonymous: mappedAnonymous)
    }

    /// Whether this clock has seen every event `other` has (each of `other`'s
    /// counters is at most ours). Every clock descends itself.
    public func descends(_ other: Self) -> Bool {
        context.descends(other.context)
    }

    /// Whether this clock has seen everything `other` has and something more
    /// (Riak's `less(other, self)`).
    public func dominates(_ other: Self) -> Bool {
        Self.strictlyGreater(entries, other.entries)
    }

    // MARK: Equality

    /// Clocks are equal when their entries are equal and they hold the same
    /// anonymous values in any order (`sync` may list them in either order).
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.entries == rhs.entries
            && lhs.anonymous.count == rhs.anonymous.count
            && Set(lhs.anonymous) == Set(rhs.anonymous)
    }

    /// Hashes the entries and the anonymous values as a set, matching `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(entries)
        hasher.combine(Set(anonymous))
    }
}

// MARK: - The algorithm

extension DottedVersionVectorSet {
    /// Whether history `lhs` strictly contains history `rhs` (Riak's `greater/3`):
    /// every counter of `rhs` is matched or exceeded in `lhs`, and `lhs` has some
    /// larger counter or some actor `rhs` lacks.
    static func strictlyGreater(_ lhs: [Entry], _ rhs: [Entry]) -> Bool {
        var lhsIndex = 0, rhsIndex = 0
        var isStrict = false
        while true {
            if lhsIndex == lhs.count { return rhsIndex == rhs.count && isStrict }
            if rhsIndex == rhs.count { return true }
            let left = lhs[lhsIndex], right = rhs[rhsIndex]
            if left.actor == right.actor {
                if left.counter < right.counter { return false }
                if left.counter > right.counter { isStrict = true }
                lhsIndex += 1
                rhsIndex += 1
            } else if left.actor < right.actor {
                isStrict = true
                lhsIndex += 1
            } else {
                return false
            }
        }
    }

    /// Merges two sorted entry lists actor by actor (Riak's `sync/2` on entries).
    static func syncEntries(_ first: [Entry], _ second: [Entry]) -> [Entry] {
        var merged: [Entry] = []
        merged.reserveCapacity(max(first.count, second.count))
        var firstIndex = 0, secondIndex = 0
        while firstIndex < first.count && secondIndex < second.count {
            let left = first[firstIndex], right = second[secondIndex]
            if left.actor < right.actor {
                merged.append(left)
                firstIndex += 1
            } else if right.actor < left.actor {
                merged.append(right)
                secondIndex += 1
            } else {
                merged.append(mergeEntry(left, right))
                firstIndex += 1
                secondIndex += 1
            }
        }
        merged.append(contentsOf: first[firstIndex...])
        merged.append(contentsOf: second[secondIndex...])
        return merged
    }

    /// Merges one actor's entry from two clocks (Riak's `merge/5`). The side with
    /// the larger counter is kept, cut to the values whose dots the other side has
    /// not discarded: a dot is live after the merge unless one side saw it and no
    /// longer holds it.
    static func mergeEntry(_ first: Entry, _ second: Entry) -> Entry {
        precondition(first.actor == second.actor, "internal inconsistency in DVVSet: merging entries of two actors")
        let (newer, older) = first.counter >= second.counter ? (first, second) : (second, first)
        // Dots at or below this are discarded on the respective side.
        let newerDiscardedMax = newer.counter - UInt64(newer.values.count)
        let olderDiscardedMax = older.counter - UInt64(older.values.count)
        if newerDiscardedMax >= olderDiscardedMax { return newer }
        let keptCount = Int(newer.counter - olderDiscardedMax)
        assert(keptCount < newer.values.count)
        return Entry(actor: newer.actor, counter: newer.counter, values: Array(newer.values.prefix(keptCount)))
    }

    /// Records a new event of `actor` carrying `value` (Riak's `event/3`): the
    /// actor's counter goes up by one and `value` becomes its newest live value.
    static func event(_ entries: [Entry], actor: ActorID, value: Value) -> [Entry] {
        var updated = entries
        let index = updated.firstIndex { $0.actor >= actor } ?? updated.count
        if index < updated.count && updated[index].actor == actor {
            precondition(updated[index].counter < storedCounterMax, "counter of \(actor) is exhausted")
            updated[index].counter += 1
            updated[index].values.insert(value, at: 0)
        } else {
            updated.insert(Entry(actor: actor, counter: 1, values: [value]), at: index)
        }
        return updated
    }

    /// Whether entries and anonymous values satisfy the type's invariants.
    static func invariantsHold(entries: [Entry], anonymous: [Value]) -> Bool {
        for (index, entry) in entries.enumerated() {
            if entry.counter == 0 || entry.counter < UInt64(entry.values.count) { return false }
            if index > 0 && entries[index - 1].actor >= entry.actor { return false }
        }
        return Set(anonymous).count == anonymous.count
    }
}

// MARK: - Encoding

extension DottedVersionVectorSet {
    /// The clock's bytes; `encodeValue` writes one value and MUST write at least one
    /// byte (the decoder bounds counts by the bytes that remain).
    ///
    /// Layout: varint entry count; per entry the actor (8 bytes big-endian), the
    /// counter (varint), a varint value count and the values newest first; then a
    /// varint count of anonymous values and the values.
    public func encode(_ encodeValue: (Value, inout ByteWriter) -> Void) -> [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer, encodeValue)
        return writer.bytes
    }

    /// Appends the clock's bytes to `writer`; see `encode(_:)`.
    public func encode(into writer: inout ByteWriter, _ encodeValue: (Value, inout ByteWriter) -> Void) {
        writer.writeVarint(UInt64(entries.count))
        for entry in entries {
            writer.writeUInt64BE(entry.actor.rawValue)
            writer.writeVarint(entry.counter)
            writer.writeVarint(UInt64(entry.values.count))
            for value in entry.values { encodeValue(value, &writer) }
        }
        writer.writeVarint(UInt64(anonymous.count))
        for value in anonymous { encodeValue(value, &writer) }
    }

    /// Decodes what `encode(_:)` produced, refusing trailing bytes.
    public init(
        decoding bytes: [UInt8],
        decodeValue: (inout ByteReader) throws(DecodeError) -> Value
    ) throws(DecodeError) {
        var reader = ByteReader(bytes)
        try self.init(from: &reader, decodeValue: decodeValue)
        try reader.expectEnd()
    }

    /// Decodes a clock from `reader`, checking every invariant: entries sorted by
    /// actor with no duplicates, counters in 1...2^63 and at least the entry's value
    /// count, anonymous values distinct.
    public init(
        from reader: inout ByteReader,
        decodeValue: (inout ByteReader) throws(DecodeError) -> Value
    ) throws(DecodeError) {
        let entryCount = try reader.readCount(elementBytesMin: 10)
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let actor = ActorID(rawValue: try reader.readUInt64BE())
            if let previous = entries.last, previous.actor >= actor {
                throw DecodeError("clock actors are not strictly increasing at \(actor)")
            }
            let counter = try reader.readVarint()
            guard counter >= 1, counter <= Self.storedCounterMax else {
                throw DecodeError("clock counter \(counter) of \(actor) is outside 1...\(Self.storedCounterMax)")
            }
            let values = try Self.decodeValues(from: &reader, decodeValue: decodeValue)
            guard UInt64(values.count) <= counter else {
                throw DecodeError("entry of \(actor) holds \(values.count) values but counts only \(counter) events")
            }
            entries.append(Entry(actor: actor, counter: counter, values: values))
        }
        let anonymous = try Self.decodeValues(from: &reader, decodeValue: decodeValue)
        guard Set(anonymous).count == anonymous.count else {
            throw DecodeError("clock repeats an anonymous value")
        }
        self.init(entries: entries, anonymous: anonymous)
    }

    /// Reads a varint count and that many values.
    private static func decodeValues(
        from reader: inout ByteReader,
        decodeValue: (inout ByteReader) throws(DecodeError) -> Value
    ) throws(DecodeError) -> [Value] {
        let count = try reader.readCount(elementBytesMin: 1)
        var values: [Value] = []
        values.reserveCapacity(count)
        for _ in 0..<count {
            let start = reader.offset
            values.append(try decodeValue(&reader))
            guard reader.offset > start else {
                throw DecodeError("a value at offset \(start) took no bytes")
            }
        }
        return values
    }
}
