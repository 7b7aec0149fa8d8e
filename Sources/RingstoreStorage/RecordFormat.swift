/// The on-disk layout of one record in a segment file. All integers little-endian.
///
/// ```
/// offset size field
///      0    4 crc32c       CRC-32C of bytes 12..<end, continued over bytes 4..<12
///      4    8 sequence     engine-wide write sequence; the highest wins on recovery
///     12    4 partition    ring partition the key belongs to
///     16    4 valueLength
///     20    2 keyLength
///     22    1 kind         1 value, 2 tombstone, 3 partition drop
///     23    1 version      1
///     24    …  key bytes, then value bytes
/// ```
///
/// The sequence number, not the file a record sits in, orders versions of a key:
/// merge copies records into new files whose ids are higher than newer data.
/// The checksum covers the sequence last so that a writer can checksum the record
/// before it takes the lock that hands out sequence numbers, and finish under it
/// with eight more bytes.
enum RecordFormat {
    static let headerBytes = 24
    static let version: UInt8 = 1

    /// What a record says about its key.
    enum Kind: UInt8 {
        case value = 1
        case tombstone = 2
        /// Everything of `partition` written with a lower sequence is gone. Key and value are empty.
        case partitionDrop = 3
    }

    /// A decoded record header.
    struct Header: Equatable {
        var checksum: UInt32
        var sequence: UInt64
        var partition: UInt32
        var valueLength: Int
        var keyLength: Int
        var kind: Kind

        /// Header, key and value together.
        var recordBytes: Int { RecordFormat.headerBytes + keyLength + valueLength }
    }

    /// Appends one complete record, checksum included, to `buffer`; returns its
    /// partial checksum (see `seal`).
    @discardableResult
    static func append(
        sequence: UInt64, partition: UInt32, kind: Kind,
        key: [UInt8], value: [UInt8], to buffer: inout [UInt8]
    ) -> UInt32 {
        precondition(key.count <= Int(UInt16.max) && value.count <= Int(UInt32.max))
        let start = buffer.count
        buffer.reserveCapacity(start + headerBytes + key.count + value.count)
        appendLittleEndian(UInt32(0), to: &buffer)
        appendLittleEndian(sequence, to: &buffer)
        appendLittleEndian(partition, to: &buffer)
        appendLittleEndian(UInt32(value.count), to: &buffer)
        appendLittleEndian(UInt16(key.count), to: &buffer)
        buffer.append(kind.rawValue)
        buffer.append(version)
        buffer.append(contentsOf: key)
        buffer.append(contentsOf: value)
        let partial = buffer.withUnsafeBytes { all in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[(start + 12)...]))
        }
        buffer.withUnsafeMutableBytes { all in
            let record = UnsafeMutableRawBufferPointer(rebasing: all[start...])
            seal(record, sequence: sequence, partialChecksum: partial)
        }
        return partial
    }

    /// Writes `sequence` into a record and completes its checksum from `partialChecksum`,
    /// the checksum of the bytes after the sequence field that `append` returned.
    static func seal(_ record: inout [UInt8], sequence: UInt64, partialChecksum: UInt32) {
        record.withUnsafeMutableBytes { seal($0, sequence: sequence, partialChecksum: partialChecksum) }
    }

    private static func seal(_ record: UnsafeMutableRawBufferPointer, sequence: UInt64, partialChecksum: UInt32) {
        record.storeBytes(of: sequence.littleEndian, toByteOffset: 4, as: UInt64.self)
        let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[4..<12]), continuing: partialChecksum)
        record.storeBytes(of: checksum.littleEndian, toByteOffset: 0, as: UInt32.self)
    }

    /// Decodes the header at the start of `bytes`; nil when fewer than `headerBytes`
    /// remain or the fixed fields are impossible (unknown kind or version).
    static func header(in bytes: UnsafeRawBufferPointer) -> Header? {
        guard bytes.count >= headerBytes,
              bytes[23] == version,
              let kind = Kind(rawValue: bytes[22])
        else { return nil }
        return Header(
            checksum: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            sequence: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt64.self)),
            partition: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
            valueLength: Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))),
            keyLength: Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 20, as: UInt16.self))),
            kind: kind
        )
    }

    /// Whether the checksum in `header` matches the record bytes that follow it.
    /// `record` must hold exactly `header.recordBytes` bytes.
    static func checksumMatches(_ header: Header, record: UnsafeRawBufferPointer) -> Bool {
        precondition(record.count == header.recordBytes)
        let partial = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[12...]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[4..<12]), continuing: partial) == header.checksum
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }
}
