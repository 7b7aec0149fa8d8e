/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and
/// LevelDB. Computed with the slicing-by-8 method: eight table lookups per eight bytes.
public enum CRC32C {
    /// Eight 256-entry tables laid end to end; table `k` holds the CRC of a byte
    /// followed by `k` zero bytes. Allocated once for the life of the process.
    private nonisolated(unsafe) static let table: UnsafePointer<UInt32> = {
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            table[byte] = crc
        }
        for byte in 0..<256 {
            var crc = table[byte]
            for slice in 1..<8 {
                crc = (crc >> 8) ^ table[Int(crc & 0xFF)]
                table[slice * 256 + byte] = crc
            }
        }
        return UnsafePointer(table)
    }()

    /// The CRC-32C of `bytes`, continuing from `initial` (the result of an earlier call).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing initial: UInt32 = 0) -> UInt32 {
        let t = table
        var crc = ~initial
        var index = 0
        let count = bytes.count
        while count - index >= 8 {
            let low = bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian ^ crc
            let high = bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self).littleEndian
            crc = t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                ^ t[5 * 256 + Int((low >> 16) & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                ^ t[1 * 256 + Int((high >> 16) & 0xFF)] ^ t[Int(high >> 24)]
            index += 8
        }
        while index < count {
            crc = (crc >> 8) ^ t[Int((crc ^ UInt32(bytes[index])) & 0xFF)]
            index += 1
        }
        return ~crc
    }

    /// The CRC-32C of an array of bytes.
    public static func checksum(_ bytes: [UInt8], continuing initial: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: initial) }
    }
}
