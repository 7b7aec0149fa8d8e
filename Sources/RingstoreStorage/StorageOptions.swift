/// When a write counts as done.
public enum Durability: Sendable, Hashable, CustomStringConvertible {
    /// A write returns once it is on the device. Writes that arrive while an fsync is
    /// in flight share the next one (group commit).
    case always
    /// A write returns at once; a background thread syncs every `milliseconds`.
    case interval(milliseconds: Int)
    /// A write returns at once and reaches the device when the OS decides (or on `sync()`).
    case never

    /// Parses `always`, `never` or `interval:MS` (for example `interval:100`).
    public init?(parsing text: String) {
        switch text {
        case "always": self = .always
        case "never": self = .never
        default:
            let parts = text.split(separator: ":")
            guard parts.count == 2, parts[0] == "interval", let milliseconds = Int(parts[1]), milliseconds > 0 else { return nil }
            self = .interval(milliseconds: milliseconds)
        }
    }

    public var description: String {
        switch self {
        case .always: "always"
        case .never: "never"
        case .interval(let milliseconds): "interval:\(milliseconds)"
        }
    }
}

/// How a storage engine behaves; the defaults suit a node.
public struct StorageOptions: Sendable {
    public var durability: Durability
    /// The active segment rolls over once it would exceed this size (at most 4 GiB − 1).
    public var segmentBytesMax: Int
    /// A merge starts by itself when closed segments hold at least this many dead bytes…
    public var mergeDeadBytesMin: Int
    /// …and dead bytes are at least this fraction of all bytes in closed segments.
    public var mergeDeadFractionMin: Double
    /// Whether the engine merges by itself; `merge()` works either way.
    public var automaticMerge: Bool
    /// How many bytes of recently written and read values to keep in memory (0: none).
    public var cacheBytes: Int

    public init(
        durability: Durability = .always,
        segmentBytesMax: Int = 64 << 20,
        mergeDeadBytesMin: Int = 64 << 20,
        mergeDeadFractionMin: Double = 0.5,
        automaticMerge: Bool = true,
        cacheBytes: Int = 0
    ) {
        precondition(segmentBytesMax > RecordFormat.headerBytes && segmentBytesMax < Int(UInt32.max))
        precondition(mergeDeadFractionMin >= 0 && mergeDeadFractionMin <= 1)
        self.durability = durability
        self.segmentBytesMax = segmentBytesMax
        self.mergeDeadBytesMin = mergeDeadBytesMin
        self.mergeDeadFractionMin = mergeDeadFractionMin
        self.automaticMerge = automaticMerge
        self.cacheBytes = cacheBytes
    }
}

/// What recovery found when the engine opened.
public struct RecoveryReport: Sendable, Equatable {
    public var segments = 0
    public var segmentsFromHints = 0
    public var segmentsScanned = 0
    public var keys = 0
    public var tornBytesTruncated = 0
    public var corruptRegionsSkipped = 0
    public var corruptBytesSkipped = 0
    public var interruptedMergeCompleted = false
}

/// What one merge did.
public struct MergeReport: Sendable, Equatable {
    public var segmentsMerged = 0
    public var segmentsWritten = 0
    public var recordsKept = 0
    public var bytesBefore = 0
    public var bytesAfter = 0
    public var bytesReclaimed: Int { bytesBefore - bytesAfter }
}

/// A snapshot of the engine's size.
public struct StorageStatistics: Sendable, Equatable {
    public var keys: Int
    public var segments: Int
    public var totalBytes: Int
    public var liveBytes: Int
    /// fsyncs done by the syncer since the engine opened (group commits).
    public var syncs: Int
    public var deadBytes: Int { totalBytes - liveBytes }
}
