import Logging

/// Rebuilds the key directory from a data folder when an engine opens.
///
/// Hint files are read where they are intact; every other segment is scanned record
/// by record with checksums checked. A torn tail is cut off, a corrupt record in the
/// middle is skipped, and the log says what was dropped. A merge that was interrupted
/// after its outputs became durable is completed first.
enum Recovery {
    struct Result {
        var directory: KeyDirectory
        var segments: [UInt32: SegmentFile]
        var usage: [UInt32: StorageEngine.SegmentUsage]
        var active: SegmentFile
        var nextSequence: UInt64
        var segmentsNeedingHints: [UInt32]
        var report: RecoveryReport
    }

    /// Collects records in any file order; the highest sequence of a key wins.
    private struct Loader {
        var directory = KeyDirectory()
        var partitionDrops: [UInt32: UInt64] = [:]
        var highestSequence: UInt64 = 0

        mutating func apply(segment: UInt32, entry: HintFile.Entry) {
            highestSequence = max(highestSequence, entry.sequence)
            switch entry.kind {
            case .value, .tombstone:
                let location = Location(
                    segment: segment, offset: entry.offset,
                    recordBytes: entry.kind == .value ? entry.recordBytes : 0, sequence: entry.sequence)
                _ = directory.setIfNewer(partition: entry.partition, key: entry.key, location: location)
            case .partitionDrop:
                partitionDrops[entry.partition] = max(partitionDrops[entry.partition] ?? 0, entry.sequence)
            }
        }

        /// Applies partition drops and forgets tombstones once every file has been read.
        mutating func finish() -> KeyDirectory {
            for (partition, sequence) in partitionDrops {
                _ = directory.removeEntries(of: partition, olderThan: sequence)
            }
            _ = directory.removeEntries { _, location in location.isTombstone }
            return directory
        }
    }

    static func run(directory path: String, logger: Logger) throws(StorageError) -> Result {
        var report = RecoveryReport()
        report.interruptedMergeCompleted = try completeInterruptedMerge(directory: path, logger: logger)
        let names = try FileSystem.list(path)
        for name in names where name.hasSuffix(".tmp") { FileSystem.remove(path + "/" + name) }
        let ids = names.compactMap(SegmentNames.segmentID(fromFileName:)).sorted()

        var loader = Loader()
        var segments: [UInt32: SegmentFile] = [:]
        var usage: [UInt32: StorageEngine.SegmentUsage] = [:]
        for id in ids {
            let file = try SegmentFile.open(id: id, path: SegmentNames.segmentPath(path, id))
            segments[id] = file
            let hintPath = SegmentNames.hintPath(path, id)
            if FileSystem.fileExists(hintPath),
               let hint = try? SegmentFile.open(id: id, path: hintPath),
               let bytes = try? hint.readAll(),
               HintFile.decode(bytes, segment: id, visit: { loader.apply(segment: id, entry: $0) }) {
                report.segmentsFromHints += 1
                usage[id] = StorageEngine.SegmentUsage(totalBytes: try file.size())
                continue
            }
            let size = try scan(file, directory: path, loader: &loader, report: &report, logger: logger)
            report.segmentsScanned += 1
            if size == 0 {
                // An active segment that never got a record: nothing to keep.
                segments[id] = nil
                FileSystem.remove(file.path)
                FileSystem.remove(hintPath)
                continue
            }
            usage[id] = StorageEngine.SegmentUsage(totalBytes: size)
        }
        report.segments = segments.count

        let keyDirectory = loader.finish()
        for entries in keyDirectory.partitions.values {
            for location in entries.values { usage[location.segment]!.liveBytes += Int(location.recordBytes) }
        }
        report.keys = keyDirectory.count

        let activeID = (ids.last ?? 0) + 1
        let active = try SegmentFile.create(id: activeID, path: SegmentNames.segmentPath(path, activeID))
        try FileSystem.syncDirectory(path)
        segments[activeID] = active
        usage[activeID] = StorageEngine.SegmentUsage()
        logger.info("storage recovered", metadata: [
            "directory": "\(path)", "keys": "\(report.keys)", "segments": "\(report.segments)",
            "fromHints": "\(report.segmentsFromHints)", "scanned": "\(report.segmentsScanned)",
            "tornBytesTruncated": "\(report.tornBytesTruncated)", "corruptRegionsSkipped": "\(report.corruptRegionsSkipped)",
        ])
        return Result(
            directory: keyDirectory, segments: segments, usage: usage, active: active,
            nextSequence: loader.highestSequence + 1, segmentsNeedingHints: [], report: report)
    }

    /// Scans one segment, cuts off a torn tail, writes its hint file; returns its size.
    private static func scan(
        _ file: SegmentFile, directory: String, loader: inout Loader, report: inout RecoveryReport, logger: Logger
    ) throws(StorageError) -> Int {
        let bytes = try file.readAll()
        var entries: [HintFile.Entry] = []
        let outcome = bytes.withUnsafeBytes { raw in
            SegmentScanner.scan(raw) { header, offset in
                entries.append(hintEntry(header, offset: offset, in: raw))
            }
        }
        for entry in entries { loader.apply(segment: file.id, entry: entry) }
        for region in outcome.skippedRegions {
            report.corruptRegionsSkipped += 1
            report.corruptBytesSkipped += region.count
            logger.error("skipped bytes that failed their checksum; the records in them are not served", metadata: [
                "segment": "\(file.path)", "offset": "\(region.lowerBound)", "bytes": "\(region.count)",
            ])
        }
        if outcome.tornBytes > 0 {
            logger.warning("truncated a torn tail: these bytes held no complete record", metadata: [
                "segment": "\(file.path)", "offset": "\(outcome.validBytes)", "bytes": "\(outcome.tornBytes)",
            ])
            report.tornBytesTruncated += outcome.tornBytes
        }
        if outcome.tornBytes > 0 || outcome.zeroTailBytes > 0 {
            // A zero tail is the space an active segment had preallocated when the
            // process stopped without closing it: nothing was lost.
            try file.truncate(to: outcome.validBytes)
            try file.sync()
        }
        if outcome.validBytes > 0 {
            let hint = HintFile.encode(segment: file.id, entries: entries)
            do {
                try FileSystem.writeAtomically(hint, to: SegmentNames.hintPath(directory, file.id), directory: directory)
            } catch {
                // A hint file only speeds up the next start; a full disk must not stop this one.
                logger.warning("could not write a hint file; the next start will scan the segment again", metadata: [
                    "segment": "\(file.path)", "error": "\(error)",
                ])
            }
        }
        return outcome.validBytes
    }

    /// The hint entry describing the good record at `offset` of `raw`.
    static func hintEntry(_ header: RecordFormat.Header, offset: Int, in raw: UnsafeRawBufferPointer) -> HintFile.Entry {
        let keyStart = offset + RecordFormat.headerBytes
        return HintFile.Entry(
            sequence: header.sequence, offset: UInt32(offset), recordBytes: UInt32(header.recordBytes),
            partition: header.partition, kind: header.kind, key: Array(raw[keyStart..<(keyStart + header.keyLength)]))
    }

    /// If a merge crashed after its outputs were durable, finishes removing its inputs.
    /// Without this, a tombstone the merge dropped could let an older value return.
    private static func completeInterruptedMerge(directory: String, logger: Logger) throws(StorageError) -> Bool {
        let manifestPath = SegmentNames.mergeManifestPath(directory)
        guard FileSystem.fileExists(manifestPath) else { return false }
        let bytes = try SegmentFile.open(id: 0, path: manifestPath).readAll()
        guard let inputs = MergeManifest.decode(bytes) else {
            // Written atomically, so a bad manifest means the merge never reached its commit point.
            logger.warning("ignoring an unreadable merge manifest", metadata: ["path": "\(manifestPath)"])
            FileSystem.remove(manifestPath)
            return false
        }
        for id in inputs {
            FileSystem.remove(SegmentNames.segmentPath(directory, id))
            FileSystem.remove(SegmentNames.hintPath(directory, id))
        }
        try FileSystem.syncDirectory(directory)
        FileSystem.remove(manifestPath)
        try FileSystem.syncDirectory(directory)
        logger.notice("completed an interrupted merge", metadata: ["removedSegments": "\(inputs)"])
        return true
    }
}

/// The commit point of a merge: the list of input segments to delete, written
/// atomically once every output is durable. Layout: count (UInt32), ids (UInt32 each), CRC-32C.
enum MergeManifest {
    static func encode(_ inputs: [UInt32]) -> [UInt8] {
        var bytes: [UInt8] = []
        RecordFormat.appendLittleEndian(UInt32(inputs.count), to: &bytes)
        for id in inputs { RecordFormat.appendLittleEndian(id, to: &bytes) }
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> [UInt32]? {
        bytes.withUnsafeBytes { raw -> [UInt32]? in
            guard raw.count >= 8 else { return nil }
            let count = Int(raw.loadUnaligned(as: UInt32.self).littleEndian)
            guard raw.count == 8 + 4 * count,
                  CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 4)]))
                    == raw.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self).littleEndian
            else { return nil }
            return (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 + 4 * $0, as: UInt32.self).littleEndian }
        }
    }
}
