import CoreMetrics
import Logging
import Synchronization

/// Background work: hint files for closed segments, merges, gauges.
extension StorageEngine {
    /// Rewrites every closed segment without superseded records and tombstones, and
    /// returns what it reclaimed. Runs on the maintenance thread; the caller waits.
    public func merge() async throws -> MergeReport {
        try await withCheckedThrowingContinuation { continuation in
            let closed = state.withLock { state in
                if state.isClosed { return true }
                state.mergeRequests.append(continuation)
                return false
            }
            if closed { continuation.resume(throwing: StorageError.closed) } else { maintainerSignal() }
        }
    }

    /// One round of the maintenance thread.
    func maintain() {
        writePendingHints()
        let requests = state.withLock { state in
            defer { state.mergeRequests.removeAll() }
            return state.mergeRequests
        }
        if !requests.isEmpty || (options.automaticMerge && mergeIsWorthwhile()) {
            let result: Result<MergeReport, StorageError>
            do throws(StorageError) {
                result = .success(try runMerge())
            } catch {
                logger.error("merge failed; the segments it read are kept", metadata: ["error": "\(error)"])
                result = .failure(error)
            }
            for request in requests { request.resume(with: result.mapError { $0 as any Error }) }
        }
        updateGauges()
    }

    private func writePendingHints() {
        let pending = state.withLock { state in
            state.segmentsNeedingHints.compactMap { state.segments[$0] }
        }
        for file in pending {
            do throws(StorageError) {
                let bytes = try file.readAll()
                var entries: [HintFile.Entry] = []
                let outcome = bytes.withUnsafeBytes { raw in
                    SegmentScanner.scan(raw) { header, offset in entries.append(Recovery.hintEntry(header, offset: offset, in: raw)) }
                }
                if outcome.tornBytes > 0 || !outcome.skippedRegions.isEmpty {
                    logger.error("a segment written by this process failed its checksums", metadata: ["segment": "\(file.path)"])
                }
                let hint = HintFile.encode(segment: file.id, entries: entries)
                try FileSystem.writeAtomically(hint, to: SegmentNames.hintPath(directoryPath, file.id), directory: directoryPath)
                state.withLock { $0.segmentsNeedingHints.removeAll { $0 == file.id } }
            } catch {
                logger.error("could not write a hint file; a restart will scan the segment", metadata: [
                    "segment": "\(file.path)", "error": "\(error)",
                ])
            }
        }
    }

    private func mergeIsWorthwhile() -> Bool {
        state.withLock { state in
            var total = 0
            var live = 0
            for (id, usage) in state.usage where id != state.active.id {
                total += usage.totalBytes
                live += usage.liveBytes
            }
            let dead = total - live
            return total > 0 && dead >= options.mergeDeadBytesMin && Double(dead) >= Double(total) * options.mergeDeadFractionMin
        }
    }

    /// Merges every closed segment. Safe to drop tombstones: every record older than
    /// a tombstone in a closed segment is itself in a closed segment (the active
    /// segment only holds newer records), so all of them go together.
    private func runMerge() throws(StorageError) -> MergeReport {
        let inputs: [SegmentFile] = state.withLock { state in
            state.segments.values.filter { $0.id != state.active.id }.sorted { $0.id < $1.id }
        }
        var report = MergeReport()
        guard !inputs.isEmpty else { return report }
        report.segmentsMerged = inputs.count
        report.bytesBefore = state.withLock { state in inputs.reduce(0) { $0 + (state.usage[$1.id]?.totalBytes ?? 0) } }
        var output = MergeOutput()
        for input in inputs {
            let bytes = try input.readAll()
            let candidates: [MergeOutput.Candidate] = bytes.withUnsafeBytes { raw in
                var candidates: [MergeOutput.Candidate] = []
                _ = SegmentScanner.scan(raw) { header, offset in
                    guard header.kind == .value else { return }
                    candidates.append(MergeOutput.Candidate(
                        partition: header.partition, entry: Recovery.hintEntry(header, offset: offset, in: raw),
                        location: Location(segment: input.id, offset: UInt32(offset), recordBytes: UInt32(header.recordBytes), sequence: header.sequence)))
                }
                return candidates
            }
            let current = state.withLock { state in
                candidates.filter { state.directory.location(partition: $0.partition, key: $0.entry.key) == $0.location }
            }
            for candidate in current {
                let start = Int(candidate.location.offset)
                let end = start + Int(candidate.location.recordBytes)
                if output.bytes.count + (end - start) > options.segmentBytesMax {
                    try install(&output, report: &report)
                }
                output.add(candidate, record: bytes[start..<end])
            }
        }
        try install(&output, report: &report)
        try retire(inputs)
        report.bytesAfter = report.bytesBefore - (report.bytesBefore - state.withLock { state in
            state.usage.filter { $0.key != state.active.id }.values.reduce(0) { $0 + $1.totalBytes }
        })
        metrics.merges.increment()
        metrics.mergeReclaimedBytes.increment(by: max(0, report.bytesReclaimed))
        logger.info("merged segments", metadata: [
            "inputs": "\(report.segmentsMerged)", "outputs": "\(report.segmentsWritten)",
            "records": "\(report.recordsKept)", "bytesBefore": "\(report.bytesBefore)", "bytesAfter": "\(report.bytesAfter)",
        ])
        return report
    }

    /// Makes the pending output durable (file, hint, directory entry), then points
    /// the key directory at it for every key no write has touched since it was copied.
    private func install(_ output: inout MergeOutput, report: inout MergeReport) throws(StorageError) {
        guard !output.candidates.isEmpty else { return }
        let id = state.withLock { state in
            defer { state.nextSegmentID += 1 }
            return state.nextSegmentID
        }
        let file = try SegmentFile.create(id: id, path: SegmentNames.segmentPath(directoryPath, id))
        try file.write(output.bytes, at: 0)
        try file.sync()
        try FileSystem.writeAtomically(
            HintFile.encode(segment: id, entries: output.hintEntries), to: SegmentNames.hintPath(directoryPath, id),
            directory: directoryPath)
        state.withLock { state in
            state.segments[id] = file
            state.usage[id] = SegmentUsage(totalBytes: output.bytes.count)
            for (candidate, newOffset) in zip(output.candidates, output.newOffsets) {
                var moved = candidate.location
                moved.segment = id
                moved.offset = newOffset
                if state.directory.replace(partition: candidate.partition, key: candidate.entry.key, expected: candidate.location, with: moved) {
                    state.usage[id]!.liveBytes += Int(moved.recordBytes)
                    state.usage[candidate.location.segment]?.liveBytes -= Int(moved.recordBytes)
                }
            }
        }
        report.segmentsWritten += 1
        report.recordsKept += output.candidates.count
        output = MergeOutput()
    }

    /// Deletes merged inputs behind a durable manifest, so a crash midway finishes the job on restart.
    private func retire(_ inputs: [SegmentFile]) throws(StorageError) {
        let ids = inputs.map(\.id)
        let manifestPath = SegmentNames.mergeManifestPath(directoryPath)
        try FileSystem.writeAtomically(MergeManifest.encode(ids), to: manifestPath, directory: directoryPath)
        state.withLock { state in
            for id in ids {
                assert(state.usage[id]?.liveBytes ?? 0 == 0, "internal inconsistency in merge: retiring a segment with live records")
                state.segments[id] = nil
                state.usage[id] = nil
            }
            state.segmentsNeedingHints.removeAll { ids.contains($0) }
        }
        for input in inputs {
            FileSystem.remove(input.path)
            FileSystem.remove(SegmentNames.hintPath(directoryPath, input.id))
        }
        try FileSystem.syncDirectory(directoryPath)
        FileSystem.remove(manifestPath)
        try FileSystem.syncDirectory(directoryPath)
    }

    func updateGauges() {
        let statistics = self.statistics
        metrics.keys.record(statistics.keys)
        metrics.liveBytes.record(statistics.liveBytes)
        metrics.totalBytes.record(statistics.totalBytes)
        metrics.segments.record(statistics.segments)
    }
}

/// A merge output being filled: the records copied so far and where each came from.
struct MergeOutput {
    struct Candidate {
        var partition: UInt32
        var entry: HintFile.Entry
        var location: Location
    }

    var bytes: [UInt8] = []
    var candidates: [Candidate] = []
    var newOffsets: [UInt32] = []
    var hintEntries: [HintFile.Entry] = []

    mutating func add(_ candidate: Candidate, record: ArraySlice<UInt8>) {
        var entry = candidate.entry
        entry.offset = UInt32(bytes.count)
        newOffsets.append(entry.offset)
        hintEntries.append(entry)
        candidates.append(candidate)
        bytes.append(contentsOf: record)
    }
}
