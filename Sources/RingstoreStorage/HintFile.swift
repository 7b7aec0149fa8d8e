/// A hint file sits beside a closed segment and lists, for each record in it, what
/// the key directory needs (key, partition, sequence, offset, size, kind) without
/// the values, so that a restart reads a few bytes per key instead of every value.
///
/// ```
/// header   8 bytes  "RSHINT01"
///          4 bytes  segment id
/// entries  8 sequence, 4 offset, 4 record bytes, 4 partition, 2 key length, 1 kind, key
/// trailer  8 bytes  entry count
///          4 bytes  CRC-32C of everything before it
///          8 bytes  "RSHINTOK"
/// ```
/// A hint file whose trailer is missing or whose checksum fails is ignored and
/// the segment is scanned instead.
enum HintFile {
    static let headerMagic = Array("RSHINT01".utf8)
    static let trailerMagic = Array("RSHINTOK".utf8)
    static let headerBytes = 12
    static let entryFixedBytes = 23
    static let trailerBytes = 20

    /// One line of a hint file.
    struct Entry: Equatable {
        var sequence: UInt64
        var offset: UInt32
        var recordBytes: UInt32
        var partition: UInt32
        var kind: RecordFormat.Kind
        var key: [UInt8]
    }

    /// Encodes a whole hint file for `segment`.
    static func encode(segment: UInt32, entries: [Entry]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes + trailerBytes + entries.reduce(0) { $0 + entryFixedBytes + $1.key.count })
        bytes.append(contentsOf: headerMagic)
        RecordFormat.appendLittleEndian(segment, to: &bytes)
        for entry in entries {
            RecordFormat.appendLittleEndian(entry.sequence, to: &bytes)
            RecordFormat.appendLittleEndian(entry.offset, to: &bytes)
            RecordFormat.appendLittleEndian(entry.recordBytes, to: &bytes)
            RecordFormat.appendLittleEndian(entry.partition, to: &bytes)
            RecordFormat.appendLittleEndian(UInt16(entry.key.count), to: &bytes)
            bytes.append(entry.kind.rawValue)
            bytes.append(contentsOf: entry.key)
        }
        RecordFormat.appendLittleEndian(UInt64(entries.count), to: &bytes)
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        bytes.append(contentsOf: trailerMagic)
        return bytes
    }

    /// Decodes a hint file, calling `visit` for every entry; returns false (having
    /// visited nothing) if the file is not a complete, intact hint file for `segment`.
    static func decode(_ bytes: [UInt8], segment: UInt32, visit: (Entry) -> Void) -> Bool {
        bytes.withUnsafeBytes { raw in
            guard raw.count >= headerBytes + trailerBytes,
                  Array(raw[0..<8]) == headerMagic,
                  raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian == segment,
                  Array(raw[(raw.count - 8)...]) == trailerMagic
            else { return false }
            let bodyEnd = raw.count - trailerBytes
            let storedChecksum = raw.loadUnaligned(fromByteOffset: bodyEnd + 8, as: UInt32.self).littleEndian
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<(bodyEnd + 8)])) == storedChecksum else { return false }
            let expectedCount = raw.loadUnaligned(fromByteOffset: bodyEnd, as: UInt64.self).littleEndian
            // First pass checks the structure, second visits: nothing is visited from a bad file.
            guard walk(raw, bodyEnd: bodyEnd, visiting: false, visit: { _ in }) == expectedCount else { return false }
            _ = walk(raw, bodyEnd: bodyEnd, visiting: true, visit: visit)
            return true
        }
    }

    /// Walks the entries between the header and `bodyEnd`, visiting them if `visiting`; returns how many there are,
    /// or nil if an entry runs past the end or has an unknown kind.
    private static func walk(_ raw: UnsafeRawBufferPointer, bodyEnd: Int, visiting: Bool, visit: (Entry) -> Void) -> UInt64? {
        var count: UInt64 = 0
        var offset = headerBytes
        while offset < bodyEnd {
            guard offset + entryFixedBytes <= bodyEnd else { return nil }
            let keyLength = Int(raw.loadUnaligned(fromByteOffset: offset + 20, as: UInt16.self).littleEndian)
            let keyStart = offset + entryFixedBytes
            guard let kind = RecordFormat.Kind(rawValue: raw[offset + 22]), keyStart + keyLength <= bodyEnd else { return nil }
            if visiting {
                visit(Entry(
                    sequence: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian,
                    offset: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self).littleEndian,
                    recordBytes: raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self).littleEndian,
                    partition: raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt32.self).littleEndian,
                    kind: kind,
                    key: Array(raw[keyStart..<(keyStart + keyLength)])
                ))
            }
            count += 1
            offset = keyStart + keyLength
        }
        return count
    }
}
