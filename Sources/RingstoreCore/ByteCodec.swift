/// Why bytes could not be decoded: truncated input, an over-long varint, a length
/// larger than what remains, invalid UTF-8, or a value that breaks an invariant.
///
/// Decoders throw this and never trap, whatever the bytes: they read data that
/// came from disk, from peers and from clients.
public struct DecodeError: Error, Equatable, Sendable {
    /// A human sentence naming what was wrong and where.
    public var reason: String

    /// Creates an error with a human-readable reason.
    public init(_ reason: String) {
        self.reason = reason
    }
}

/// Appends primitive values to a growing byte array: fixed-width big-endian integers,
/// LEB128 varints, and varint-length-prefixed byte strings.
///
/// Varints are written in their shortest form, so an encoding is canonical and
/// equal values encode to equal bytes.
public struct ByteWriter: Sendable {
    /// Everything written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer that reserves room for `capacity` bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(max(0, capacity))
    }

    /// Appends one byte.
    public mutating func writeUInt8(_ value: UInt8) {
        bytes.append(value)
    }

    /// Appends a 32-bit integer, most significant byte first.
    public mutating func writeUInt32BE(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    /// Appends a 64-bit integer, most significant byte first.
    public mutating func writeUInt64BE(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    /// Appends an unsigned LEB128 varint: seven bits per byte, least significant
    /// group first, the high bit set on every byte but the last (1 to 10 bytes).
    public mutating func writeVarint(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        bytes.append(UInt8(remaining))
    }

    /// Appends a byte string preceded by its length as a varint.
    public mutating func writeBytes(_ value: some Collection<UInt8>) {
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends a string's UTF-8 preceded by its byte length as a varint.
    public mutating func writeString(_ value: String) {
        writeBytes(value.utf8)
    }

    /// Appends bytes as they are, with no length.
    public mutating func writeRaw(_ value: some Collection<UInt8>) {
        bytes.append(contentsOf: value)
    }
}

/// Reads what `ByteWriter` wrote, from the front of a byte array.
///
/// Every read checks what remains first and throws `DecodeError` instead of
/// trapping; a failed read leaves the reader where it was.
public struct ByteReader: Sendable {
    /// The whole input.
    private let bytes: [UInt8]
    /// The offset of the next unread byte.
    public private(set) var offset: Int

    /// The longest varint: ten groups of seven bits cover 64 bits.
    static let varintBytesMax = 10

    /// Creates a reader positioned at the first byte of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    /// How many bytes are left to read.
    public var remainingCount: Int { bytes.count - offset }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset == bytes.count }

    /// Reads one byte.
    public mutating func readUInt8() throws(DecodeError) -> UInt8 {
        try requireRemaining(1, for: "a byte")
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Reads a big-endian 32-bit integer.
    public mutating func readUInt32BE() throws(DecodeError) -> UInt32 {
        try requireRemaining(4, for: "a 32-bit integer")
        var value: UInt32 = 0
        for index in offset..<(offset + 4) {
            value = value << 8 | UInt32(bytes[index])
        }
        offset += 4
        return value
    }

    /// Reads a big-endian 64-bit integer.
    public mutating func readUInt64BE() throws(DecodeError) -> UInt64 {
        try requireRemaining(8, for: "a 64-bit integer")
        var value: UInt64 = 0
        for index in offset..<(offset + 8) {
            value = value << 8 | UInt64(bytes[index])
        }
        offset += 8
        return value
    }

    /// Reads an unsigned LEB128 varint in its shortest form.
    ///
    /// Throws when the input ends inside the varint, when it runs past ten bytes or
    /// past 64 bits, or when it is padded with a trailing zero group (not canonical).
    public mutating func readVarint() throws(DecodeError) -> UInt64 {
        var value: UInt64 = 0
        var index = offset
        for group in 0..<Self.varintBytesMax {
            guard index < bytes.count else {
                throw DecodeError("input ends inside a varint at offset \(offset)")
            }
            let byte = bytes[index]
            index += 1
            let payload = UInt64(byte & 0x7f)
            if group == Self.varintBytesMax - 1 && byte > 1 {
                throw DecodeError("varint at offset \(offset) overflows 64 bits")
            }
            value |= payload << UInt64(7 * group)
            if byte & 0x80 == 0 {
                if byte == 0 && group > 0 {
                    throw DecodeError("varint at offset \(offset) is not in its shortest form")
                }
                offset = index
                return value
            }
        }
        throw DecodeError("varint at offset \(offset) is longer than \(Self.varintBytesMax) bytes")
    }

    /// Reads a varint count of items that each take at least `elementBytesMin` bytes,
    /// and checks that many items can fit in what remains.
    ///
    /// Decoders call this before looping over a count, so a forged count can neither
    /// make them allocate nor spin.
    public mutating func readCount(elementBytesMin: Int = 1) throws(DecodeError) -> Int {
        precondition(elementBytesMin >= 1, "every element takes at least one byte")
        let start = offset
        let count = try readVarint()
        guard count <= UInt64(remainingCount / elementBytesMin) else {
            offset = start
            throw DecodeError(
                "count \(count) at offset \(start) needs at least \(elementBytesMin) bytes each; \(remainingCount) remain"
            )
        }
        return Int(count)
    }

    /// Reads a varint length and then that many bytes.
    public mutating func readBytes() throws(DecodeError) -> [UInt8] {
        let start = offset
        let length = try readVarint()
        guard length <= UInt64(remainingCount) else {
            offset = start
            throw DecodeError("length \(length) at offset \(start) exceeds the \(remainingCount) bytes that remain")
        }
        return try readRaw(count: Int(length))
    }

    /// Skips a varint length and then that many bytes, copying nothing.
    public mutating func skipBytes() throws(DecodeError) {
        let start = offset
        let length = try readVarint()
        guard length <= UInt64(remainingCount) else {
            offset = start
            throw DecodeError("length \(length) at offset \(start) exceeds the \(remainingCount) bytes that remain")
        }
        offset += Int(length)
    }

    /// Reads a varint length and then that many bytes of UTF-8.
    public mutating func readString() throws(DecodeError) -> String {
        let start = offset
        let utf8 = try readBytes()
        guard UTF8.isValid(utf8) else {
            offset = start
            throw DecodeError("string at offset \(start) is not valid UTF-8")
        }
        return String(decoding: utf8, as: UTF8.self)
    }

    /// Reads exactly `count` bytes with no length prefix.
    public mutating func readRaw(count: Int) throws(DecodeError) -> [UInt8] {
        guard count >= 0 else { throw DecodeError("negative byte count \(count)") }
        try requireRemaining(count, for: "\(count) bytes")
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Throws unless every byte has been read; decoders call it last so that
    /// trailing garbage is refused rather than ignored.
    public func expectEnd() throws(DecodeError) {
        guard isAtEnd else {
            throw DecodeError("\(remainingCount) unexpected bytes after offset \(offset)")
        }
    }

    /// Throws unless at least `count` bytes remain.
    private func requireRemaining(_ count: Int, for what: String) throws(DecodeError) {
        guard count <= remainingCount else {
            throw DecodeError("input ends at offset \(offset) while reading \(what); \(remainingCount) bytes remain")
        }
    }
}
