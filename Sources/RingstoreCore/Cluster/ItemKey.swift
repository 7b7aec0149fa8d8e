/// A key of a table, with its partition: everything a replica needs to find it.
public struct ItemKey: Hashable, Sendable, CustomStringConvertible {
    public let table: String
    public let key: [UInt8]
    public let partition: PartitionID
    /// `table + 0x00 + key`, as the storage engine keeps it.
    public let storageKey: [UInt8]

    /// A key placed by `partitioning`.
    public init(table: String, key: [UInt8], partitioning: Partitioning) {
        self.init(table: table, key: key, partition: partitioning.partition(table: table, key: key))
    }

    /// A key whose partition is already known (decoded from a peer's message).
    public init(table: String, key: [UInt8], partition: PartitionID) {
        self.table = table
        self.key = key
        self.partition = partition
        self.storageKey = StorageKeyCodec.encode(table: table, key: key)
    }

    /// Where an acceptor of a linearizable table keeps this key's CASPaxos state.
    public var acceptorStorageKey: [UInt8] { StorageKeyCodec.encodeAcceptor(table: table, key: key) }

    public var description: String { "\(table)/\(String(decoding: key, as: UTF8.self))" }

    func encode(into writer: inout ByteWriter) {
        writer.writeString(table)
        writer.writeBytes(key)
        writer.writeUInt32BE(partition.rawValue)
    }

    init(from reader: inout ByteReader) throws(DecodeError) {
        let table = try reader.readString()
        let key = try reader.readBytes()
        let partition = try reader.readUInt32BE()
        guard !key.isEmpty, key.count <= Limits.keyBytesMax, !table.isEmpty, table.utf8.count <= Limits.tableNameBytesMax else {
            throw DecodeError("item key out of bounds")
        }
        self.init(table: table, key: key, partition: PartitionID(rawValue: partition))
    }
}
