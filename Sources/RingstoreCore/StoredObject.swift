/// One version of a key in an eventual table: a value with its content type, or a
/// tombstone left by a delete.
///
/// A tombstone has empty data and an empty content type. It stays in the clock like
/// any value, so that a delete supersedes what the deleting client saw and nothing
/// else, and it is purged only by anti-entropy (DESIGN §5).
public struct Sibling: Hashable, Sendable {
    /// The value's MIME type as the client sent it.
    public var contentType: String
    /// The value's bytes; empty for a tombstone.
    public var data: [UInt8]
    /// Whether this version records a delete.
    public var isTombstone: Bool

    /// The tombstone a delete writes.
    public static let tombstone = Sibling(contentType: "", data: [], isTombstone: true)

    /// Creates a version; a tombstone MUST have empty data.
    public init(contentType: String, data: [UInt8], isTombstone: Bool = false) {
        precondition(!isTombstone || data.isEmpty, "a tombstone carries no data")
        self.contentType = contentType
        self.data = data
        self.isTombstone = isTombstone
    }

    /// Flag bits of the encoded form.
    fileprivate static let tombstoneFlag: UInt8 = 0x01

    /// Appends the sibling: a flags byte (bit 0: tombstone), the content type as a
    /// length-prefixed string, the data as length-prefixed bytes.
    func encode(into writer: inout ByteWriter) {
        assert(!isTombstone || data.isEmpty, "a tombstone carries no data")
        writer.writeUInt8(isTombstone ? Self.tombstoneFlag : 0)
        writer.writeString(contentType)
        writer.writeBytes(data)
    }

    /// Reads what `encode(into:)` wrote, refusing unknown flags, a tombstone with
    /// data, and sizes above `Limits.contentTypeBytesMax` and `Limits.valueBytesMaxCeiling`.
    init(from reader: inout ByteReader) throws(DecodeError) {
        let flags = try reader.readUInt8()
        guard flags & ~Self.tombstoneFlag == 0 else {
            throw DecodeError("unknown sibling flags \(flags)")
        }
        let contentType = try reader.readString()
        guard contentType.utf8.count <= Limits.contentTypeBytesMax else {
            throw DecodeError(
                "content type of \(contentType.utf8.count) bytes exceeds \(Limits.contentTypeBytesMax)"
            )
        }
        let data = try reader.readBytes()
        guard data.count <= Limits.valueBytesMaxCeiling else {
            throw DecodeError("value of \(data.count) bytes exceeds \(Limits.valueBytesMaxCeiling)")
        }
        let isTombstone = flags & Self.tombstoneFlag != 0
        guard !isTombstone || data.isEmpty else {
            throw DecodeError("tombstone carries \(data.count) bytes of data")
        }
        self.init(contentType: contentType, data: data, isTombstone: isTombstone)
    }
}

/// What an eventual table keeps per key: the key's causal history and every
/// concurrent version, tombstones included.
public typealias StoredObject = DottedVersionVectorSet<Sibling>

extension DottedVersionVectorSet where Value == Sibling {
    /// The first byte of an encoded object, so that the format can change later.
    static var objectFormatVersion: UInt8 { 1 }

    /// The bytes the storage engine keeps and replicas exchange: a format version
    /// (1) followed by the clock with its siblings.
    public static func encodeObject(_ object: StoredObject) -> [UInt8] {
        var writer = ByteWriter(capacity: 32 + object.values.reduce(0) { $0 + $1.data.count })
        writer.writeUInt8(objectFormatVersion)
        object.encode(into: &writer) { sibling, writer in sibling.encode(into: &writer) }
        return writer.bytes
    }

    /// Decodes what `encodeObject` produced, throwing on an unknown version, any
    /// malformed part, or trailing bytes.
    public static func decodeObject(_ bytes: [UInt8]) throws(DecodeError) -> StoredObject {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == objectFormatVersion else {
            throw DecodeError("unknown stored object format \(version)")
        }
        let object = try StoredObject(from: &reader) { (reader: inout ByteReader) throws(DecodeError) -> Sibling in
            try Sibling(from: &reader)
        }
        try reader.expectEnd()
        return object
    }

    /// The siblings that hold a value (not tombstones).
    public var liveSiblings: [Sibling] {
        values.filter { !$0.isTombstone }
    }

    /// Whether the key reads as absent: no sibling holds a value (also true of the
    /// empty object). A read of a deleted key answers 404.
    public var isDeleted: Bool {
        !values.contains { !$0.isTombstone }
    }

    /// Whether the key holds versions and all of them are tombstones: what anti-entropy
    /// may purge once every replica holds the same.
    public var holdsOnlyTombstones: Bool {
        isDeleted && !values.isEmpty
    }

    /// `holdsOnlyTombstones` of what `encodeObject` produced, read without decoding
    /// (nothing is copied or allocated), so that every key can be looked at when a
    /// node starts. False for bytes that are not an encoded object.
    public static func holdsOnlyTombstones(encoded bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        var siblings = 0
        // Each sibling: flags, then a content type and data, both length-prefixed.
        func onlyTombstones(_ count: Int, _ reader: inout ByteReader) throws(DecodeError) -> Bool {
            for _ in 0..<count {
                guard try reader.readUInt8() == Sibling.tombstoneFlag else { return false }
                try reader.skipBytes()
                try reader.skipBytes()
            }
            siblings += count
            return true
        }
        do {
            guard try reader.readUInt8() == objectFormatVersion else { return false }
            for _ in 0..<(try reader.readCount(elementBytesMin: 10)) {
                _ = try reader.readUInt64BE()  // actor
                _ = try reader.readVarint()  // counter
                guard try onlyTombstones(try reader.readCount(elementBytesMin: 3), &reader) else { return false }
            }
            guard try onlyTombstones(try reader.readCount(elementBytesMin: 3), &reader) else { return false }
            return reader.isAtEnd && siblings > 0
        } catch {
            return false
        }
    }
}
