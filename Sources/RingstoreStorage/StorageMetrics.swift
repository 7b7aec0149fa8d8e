import CoreMetrics
import Metrics

/// The storage engine's metrics (swift-metrics; exported by whatever backend the process bootstraps).
struct StorageMetrics: Sendable {
    let reads = Counter(label: "ringstore_storage_reads_total")
    let writes = Counter(label: "ringstore_storage_writes_total")
    let deletes = Counter(label: "ringstore_storage_deletes_total")
    /// Reads answered from the value cache, without touching the segment files.
    let cacheHits = Counter(label: "ringstore_storage_cache_hits_total")
    let corruptReads = Counter(label: "ringstore_storage_corrupt_reads_total")
    let syncs = Counter(label: "ringstore_storage_fsyncs_total")
    let syncDuration = Timer(label: "ringstore_storage_fsync_duration_seconds", preferredDisplayUnit: .seconds)
    /// How many writers one fsync released (group commit at work).
    let syncBatch = Recorder(label: "ringstore_storage_fsync_batch_writes", aggregate: true)
    let merges = Counter(label: "ringstore_storage_merges_total")
    let mergeReclaimedBytes = Counter(label: "ringstore_storage_merge_reclaimed_bytes_total")
    let keys = Gauge(label: "ringstore_storage_keys")
    let liveBytes = Gauge(label: "ringstore_storage_live_bytes")
    let totalBytes = Gauge(label: "ringstore_storage_total_bytes")
    let segments = Gauge(label: "ringstore_storage_segments")
}

extension Timer {
    func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
