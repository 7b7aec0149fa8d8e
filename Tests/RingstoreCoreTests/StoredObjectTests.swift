import Testing
@testable import RingstoreCore

@Suite struct StoredObjectTests {
    private let json = Sibling(contentType: "application/json", data: Array("{\"seats\":3}".utf8))
    private let text = Sibling(contentType: "text/plain", data: Array("hello".utf8))

    /// A client write of `sibling` with `context`, applied at `actor`.
    private func put(_ object: StoredObject, _ sibling: Sibling, context: VersionVector?, at actor: ActorID) -> StoredObject {
        object.update(with: .fresh(sibling, context: context), actor: actor)
    }

    // Proves an object with live siblings and a tombstone encodes with version byte 1 and decodes to itself.
    @Test func roundTrip() throws {
        var object = put(StoredObject(), json, context: nil, at: alice)
        object = put(object, .tombstone, context: nil, at: bob)
        object = put(object, text, context: nil, at: alice)
        let bytes = StoredObject.encodeObject(object)
        #expect(bytes.first == 1)
        let decoded = try StoredObject.decodeObject(bytes)
        #expect(decoded == object)
        #expect(StoredObject.encodeObject(decoded) == bytes)
        #expect(try StoredObject.decodeObject(StoredObject.encodeObject(StoredObject())) == StoredObject())
    }

    // Proves the scan of encoded bytes agrees with decoding on which objects hold only tombstones, and refuses what is not an object.
    @Test func tombstonesOnlyScanAgreesWithDecoding() {
        let value = put(StoredObject(), json, context: nil, at: alice)
        let deleted = put(value, .tombstone, context: value.context, at: alice)
        let twoTombstones = put(deleted, .tombstone, context: nil, at: bob)
        let tombstoneAndValue = put(deleted, text, context: nil, at: bob)
        var anonymous = StoredObject.fresh(.tombstone, context: nil)
        anonymous = StoredObject.sync(anonymous, deleted)
        for object in [StoredObject(), value, deleted, twoTombstones, tombstoneAndValue, anonymous] {
            let bytes = StoredObject.encodeObject(object)
            #expect(StoredObject.holdsOnlyTombstones(encoded: bytes) == object.holdsOnlyTombstones, "\(object)")
        }
        #expect(deleted.holdsOnlyTombstones && twoTombstones.holdsOnlyTombstones)
        #expect(!StoredObject().holdsOnlyTombstones && !tombstoneAndValue.holdsOnlyTombstones)
        let bytes = StoredObject.encodeObject(deleted)
        #expect(!StoredObject.holdsOnlyTombstones(encoded: Array(bytes.dropLast())))
        #expect(!StoredObject.holdsOnlyTombstones(encoded: bytes + [0]))
        #expect(!StoredObject.holdsOnlyTombstones(encoded: [2] + bytes.dropFirst()))
        #expect(!StoredObject.holdsOnlyTombstones(encoded: []))
    }

    // Proves a delete that saw the value leaves only a tombstone, so the key reads as deleted.
    @Test func deleteWithContextDeletes() {
        var object = put(StoredObject(), json, context: nil, at: alice)
        object = put(object, .tombstone, context: object.context, at: alice)
        #expect(object.isDeleted)
        #expect(object.liveSiblings.isEmpty)
        #expect(object.values == [.tombstone])
        #expect(StoredObject().isDeleted, "a key never written reads as absent")
    }

    // Proves a write concurrent with a delete survives it, and a delete without context deletes nothing.
    @Test func concurrentWriteSurvivesDelete() {
        let original = put(StoredObject(), json, context: nil, at: alice)
        var object = put(original, text, context: original.context, at: alice)
        object = put(object, .tombstone, context: original.context, at: alice)
        #expect(!object.isDeleted)
        #expect(object.liveSiblings == [text])
        #expect(object.siblingCount == 2)
        let blindDelete = put(original, .tombstone, context: nil, at: bob)
        #expect(!blindDelete.isDeleted)
        #expect(blindDelete.liveSiblings == [json])
    }

    // Proves a tombstone synced to a replica that still holds the deleted value removes it there too.
    @Test func tombstoneReplicatesDelete() {
        let original = put(StoredObject(), json, context: nil, at: alice)
        let deleted = put(original, .tombstone, context: original.context, at: bob)
        #expect(StoredObject.sync(original, deleted).isDeleted)
        #expect(StoredObject.sync(deleted, original).isDeleted)
    }

    // Proves unknown versions, unknown flags, tombstones with data and oversized parts are refused.
    @Test func malformedObjectsThrow() {
        func object(version: UInt8 = 1, flags: UInt8, contentType: String = "t", data: [UInt8] = []) -> [UInt8] {
            var writer = ByteWriter()
            writer.writeUInt8(version)
            writer.writeVarint(0)
            writer.writeVarint(1)
            writer.writeUInt8(flags)
            writer.writeString(contentType)
            writer.writeBytes(data)
            return writer.bytes
        }
        #expect(throws: Never.self) { try StoredObject.decodeObject(object(flags: 0, data: [1])) }
        #expect(throws: Never.self) { try StoredObject.decodeObject(object(flags: 1)) }
        let malformed: [[UInt8]] = [
            [],
            object(version: 2, flags: 0),
            object(flags: 2),
            object(flags: 1, data: [1]),
            object(flags: 0, contentType: String(repeating: "x", count: Limits.contentTypeBytesMax + 1)),
            object(flags: 0) + [0],
        ]
        for bytes in malformed {
            #expect(throws: DecodeError.self) { try StoredObject.decodeObject(bytes) }
        }
    }

    // Proves every proper prefix of an encoded object throws and random or mutated bytes never trap.
    @Test func truncatedAndRandomBytesNeverTrap() {
        var object = put(StoredObject(), json, context: nil, at: alice)
        object = put(object, .tombstone, context: nil, at: bob)
        let valid = StoredObject.encodeObject(object)
        for length in 0..<valid.count {
            #expect(throws: DecodeError.self) { try StoredObject.decodeObject(Array(valid.prefix(length))) }
        }
        var random = SplitMix64(seed: 0x0b1e_c7)
        for _ in 0..<3_000 {
            var bytes = [1] + random.bytes(count: Int.random(in: 0...40, using: &random))
            if Bool.random(using: &random) {
                bytes = valid
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = try? StoredObject.decodeObject(bytes)
        }
    }
}
