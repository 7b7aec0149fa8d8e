/// Walks the records of a segment's bytes, checking every checksum.
///
/// A record that fails its checksum is skipped when a good record can be found
/// after it (a flipped bit in the middle of a file); when no good record follows,
/// everything from the bad record on is a torn tail. Zeros after the last record are
/// the active segment's preallocated space, not damage.
enum SegmentScanner {
    /// What a scan found besides the good records.
    struct Outcome: Equatable {
        /// Offset just past the last good record: the length the file should have.
        var validBytes: Int
        /// Bytes after `validBytes` that hold no good record and are not all zero (a torn tail).
        var tornBytes: Int
        /// Bytes after `validBytes` that are all zero: space the writer preallocated
        /// and never used. Either this or `tornBytes` is 0.
        var zeroTailBytes = 0
        /// Offsets and lengths of regions in the middle that failed their checksum and were skipped.
        var skippedRegions: [Range<Int>]
    }

    /// Calls `visit` with the header and offset of every good record in `bytes`.
    static func scan(
        _ bytes: UnsafeRawBufferPointer,
        visit: (RecordFormat.Header, _ offset: Int) -> Void
    ) -> Outcome {
        var offset = 0
        var skipped: [Range<Int>] = []
        while offset < bytes.count {
            if let header = goodRecord(in: bytes, at: offset) {
                visit(header, offset)
                offset += header.recordBytes
                continue
            }
            if isZero(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
                return Outcome(validBytes: offset, tornBytes: 0, zeroTailBytes: bytes.count - offset, skippedRegions: skipped)
            }
            guard let next = nextGoodRecord(in: bytes, after: offset) else { break }
            skipped.append(offset..<next)
            offset = next
        }
        return Outcome(validBytes: offset, tornBytes: bytes.count - offset, skippedRegions: skipped)
    }

    private static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let words = bytes.count / 8
        while index < words {
            if bytes.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) != 0 { return false }
            index += 1
        }
        for byte in bytes[(words * 8)...] where byte != 0 { return false }
        return true
    }

    /// The header of the record at `offset` if the whole record is present and its checksum matches.
    static func goodRecord(in bytes: UnsafeRawBufferPointer, at offset: Int) -> RecordFormat.Header? {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        guard let header = RecordFormat.header(in: rest),
              header.recordBytes <= rest.count,
              RecordFormat.checksumMatches(header, record: UnsafeRawBufferPointer(rebasing: rest[0..<header.recordBytes]))
        else { return nil }
        return header
    }

    /// The offset of the first good record after a bad one at `offset`, searching byte by byte.
    private static func nextGoodRecord(in bytes: UnsafeRawBufferPointer, after offset: Int) -> Int? {
        var candidate = offset + 1
        while candidate + RecordFormat.headerBytes <= bytes.count {
            if goodRecord(in: bytes, at: candidate) != nil { return candidate }
            candidate += 1
        }
        return nil
    }
}
