/// The kinds of value a linearizable key can hold.
public enum LinearizableKind: UInt8, Hashable, Sendable {
    /// Opaque bytes with a content type (or a deleted register).
    case bytes = 1
    /// A signed 64-bit counter.
    case counter = 2
    /// A sorted set of member strings.
    case set = 3
}

/// What a linearizable key holds, apart from its version.
public enum LinearizableContent: Hashable, Sendable {
    /// A register holding bytes with their MIME type.
    case bytes(contentType: String, data: [UInt8])
    /// A register that was deleted. It keeps its version, so that an ETag handed out
    /// before the delete never matches a value written after it.
    case deleted
    /// A counter.
    case counter(Int64)
    /// A set: members sorted in ascending order, no duplicates.
    case set([String])

    /// The kind, or nil for a deleted register (any kind may start from it).
    public var kind: LinearizableKind? {
        switch self {
        case .bytes: .bytes
        case .deleted: nil
        case .counter: .counter
        case .set: .set
        }
    }
}

/// The value of a key in a linearizable table: its content and a version that
/// grows by one with every change, so that it can serve as an HTTP `ETag`.
///
/// A key that was never written has no value (`nil` where a
/// `LinearizableValue?` is expected); its version counts as 0.
public struct LinearizableValue: Hashable, Sendable, CustomStringConvertible {
    /// 1 for the first value written, one more for every change after it.
    public var version: UInt64
    /// What the key holds.
    public var content: LinearizableContent

    /// Creates a value.
    public init(version: UInt64, content: LinearizableContent) {
        self.version = version
        self.content = content
    }

    /// Whether a client would see something (not deleted).
    public var exists: Bool { content != .deleted }

    /// How many members a set holds; 0 for any other content.
    public var memberCount: Int {
        if case .set(let members) = content { members.count } else { 0 }
    }

    /// `v<version>:<content>`, for logs and failure messages.
    public var description: String {
        switch content {
        case .bytes(let contentType, let data): "v\(version):bytes(\(contentType), \(data.count) bytes)"
        case .deleted: "v\(version):deleted"
        case .counter(let value): "v\(version):counter(\(value))"
        case .set(let members): "v\(version):set(\(members.joined(separator: ",")))"
        }
    }

    // MARK: Encoding

    /// Appends the version as a varint, a kind byte (1 bytes, 2 deleted, 3 counter,
    /// 4 set) and the content.
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(version)
        switch content {
        case .bytes(let contentType, let data):
            writer.writeUInt8(1)
            writer.writeString(contentType)
            writer.writeBytes(data)
        case .deleted:
            writer.writeUInt8(2)
        case .counter(let value):
            writer.writeUInt8(3)
            writer.writeUInt64BE(UInt64(bitPattern: value))
        case .set(let members):
            writer.writeUInt8(4)
            writer.writeVarint(UInt64(members.count))
            for member in members { writer.writeString(member) }
        }
    }

    /// Reads what `encode(into:)` wrote, refusing versions above
    /// `CASPaxosLimits.versionMax`, oversized content types, values and members, and
    /// sets that are not strictly ascending.
    init(from reader: inout ByteReader) throws(DecodeError) {
        let version = try reader.readVarint()
        guard version >= 1, version <= CASPaxosLimits.versionMax else {
            throw DecodeError("value version \(version) is outside 1...\(CASPaxosLimits.versionMax)")
        }
        let content: LinearizableContent
        switch try reader.readUInt8() {
        case 1:
            let contentType = try reader.readString()
            guard contentType.utf8.count <= Limits.contentTypeBytesMax else {
                throw DecodeError("content type of \(contentType.utf8.count) bytes exceeds \(Limits.contentTypeBytesMax)")
            }
            let data = try reader.readBytes()
            guard data.count <= Limits.valueBytesMaxCeiling else {
                throw DecodeError("value of \(data.count) bytes exceeds \(Limits.valueBytesMaxCeiling)")
            }
            content = .bytes(contentType: contentType, data: data)
        case 2:
            content = .deleted
        case 3:
            content = .counter(Int64(bitPattern: try reader.readUInt64BE()))
        case 4:
            content = .set(try Self.readMembers(&reader))
        case let other:
            throw DecodeError("unknown linearizable value kind \(other)")
        }
        self.init(version: version, content: content)
    }

    private static func readMembers(_ reader: inout ByteReader) throws(DecodeError) -> [String] {
        let count = try reader.readCount(elementBytesMin: 1)
        guard count <= CASPaxosLimits.setMembersMax else {
            throw DecodeError("set of \(count) members exceeds \(CASPaxosLimits.setMembersMax)")
        }
        var members: [String] = []
        members.reserveCapacity(count)
        for _ in 0..<count {
            let member = try reader.readString()
            guard member.utf8.count <= CASPaxosLimits.setMemberBytesMax else {
                throw DecodeError("set member of \(member.utf8.count) bytes exceeds \(CASPaxosLimits.setMemberBytesMax)")
            }
            if let last = members.last, !(last < member) {
                throw DecodeError("set members are not strictly ascending at \(members.count)")
            }
            members.append(member)
        }
        return members
    }

    /// Appends an optional value: a presence byte (0 or 1), then the value.
    static func encodeOptional(_ value: LinearizableValue?, into writer: inout ByteWriter) {
        if let value {
            writer.writeUInt8(1)
            value.encode(into: &writer)
        } else {
            writer.writeUInt8(0)
        }
    }

    /// Reads what `encodeOptional(_:into:)` wrote.
    static func decodeOptional(_ reader: inout ByteReader) throws(DecodeError) -> LinearizableValue? {
        switch try reader.readUInt8() {
        case 0: return nil
        case 1: return try LinearizableValue(from: &reader)
        case let other: throw DecodeError("unknown presence byte \(other) before a linearizable value")
        }
    }
}
