/// Every bound Ringstore enforces, in one place, named with the unit last.
///
/// A limit that is not written down here is a limit nobody chose. Tests check how
/// these relate to one another (see `LimitsTests`).
public enum Limits {
    /// Keys are routed and indexed in memory; 1 KiB keeps the key directory small.
    public static let keyBytesMax = 1 << 10
    /// The default ceiling on a stored value; `--max-value-bytes` raises or lowers it.
    public static let valueBytesMaxDefault = 1 << 20
    /// The largest value a node can be configured to accept. Values travel in one
    /// frame and sit in memory while they are replicated.
    public static let valueBytesMaxCeiling = 64 << 20
    /// A node's value cache (`ringstore node --cache-mb`), by default and at most.
    public static let valueCacheBytesDefault = 4 << 20
    public static let valueCacheMegabytesMax = 1 << 16
    /// Table names appear in every stored key; short names keep keys small.
    public static let tableNameBytesMax = 64
    /// Content types are stored with every sibling.
    public static let contentTypeBytesMax = 256
    /// Above this many siblings a key is reported in logs and metrics.
    public static let siblingsWarn = 25
    /// A write that would leave more siblings than this is refused.
    public static let siblingsMax = 100
    /// Partitions of the hash ring when a cluster is created (a power of two).
    public static let partitionCountDefault = 256
    /// The most partitions a ring may have; the storage engine keeps one index per partition.
    public static let partitionCountMax = 1 << 16
    /// Bytes of hinted values a fallback keeps before it drops the oldest hints.
    public static let hintBytesMax = 256 << 20
    /// Hints a fallback keeps before it drops the oldest.
    public static let hintsMax = 100_000
    /// The most replicas a table may ask for.
    public static let replicasMax = 9
}
