import RingstoreCore

/// The phases after the faults, and the checks that decide whether a run passed.
extension Simulation {
    /// Runs the whole program for the seed's parameters: random clients and faults
    /// for the safety phase, then the liveness phase and every check.
    func runToCompletion() -> SimulationReport {
        for _ in 0..<parameters.clientCount { addClient(scripted: false) }
        startFaults()
        run(until: parameters.safetyDurationMicroseconds)
        return finish()
    }

    /// The liveness phase: heal everything, let calls in flight end, let hints drain,
    /// read every key from all N replicas (read repair), let repairs land; then check
    /// the final state and the whole history.
    func finish() -> SimulationReport {
        phase = .liveness
        acceptingClientOperations = false
        healAll()
        run(for: parameters.clientTimeoutMicroseconds + parameters.detectorDelayMicroseconds.upperBound + 100_000)
        let drainDeadline = now + parameters.drainDurationMaxMicroseconds
        while !hintsDrained && now < drainDeadline { run(for: SimulatedTime.seconds(1)) }
        if !hintsDrained { violation(nil, "hints not drained", hintSummary()) }
        let checker = addClient(scripted: true)
        let finalReads = keys.indices.map { keyIndex in
            get(client: checker, keyIndex: keyIndex, via: random.index(below: nodes.count), r: parameters.replicaCount)
        }
        // Final reads answer, their repairs land, and every coordinator's timer fires.
        run(for: max(parameters.requestTimeoutMicroseconds, parameters.rpcDeadlineMicroseconds) + SimulatedTime.seconds(1))
        checkFinalState(finalReads: finalReads)
        return report()
    }

    var hintsDrained: Bool {
        nodes.allSatisfy { node in
            guard let engine = node.engine else { return false }
            return engine.hintCount == 0 && node.disk.unsyncedCount == 0
                && keys.allSatisfy { node.disk.visibleSlot($0).hint == nil }
        }
    }

    private func hintSummary() -> String {
        nodes.map { node in
            let records = keys.indices.filter { node.disk.durableSlot(keys[$0]).hint != nil }.map { "key\($0)" }
            return "\(node.id): index=\(node.engine?.hintCount ?? -1) records=\(records)"
        }.joined(separator: "; ")
    }

    // MARK: Objects seen during the run

    /// Checks an object a client read (or the final state): every sibling is a value
    /// some client wrote to this key, no sibling was superseded by another sibling's
    /// write, and there are no more siblings than concurrent writes can explain.
    func checkObserved(_ object: StoredObject, keyIndex: Int, what: String, byClient: Bool = true) {
        statistics.siblingsMax = max(statistics.siblingsMax, object.siblingCount)
        var present: [Int] = []
        for value in object.values {
            guard let write = writeIndexByValue[value], writes[write].keyIndex == keyIndex else {
                violation(keyIndex, "unknown value", "\(what) returned \(name(of: value)), which no client wrote to this key")
                continue
            }
            present.append(write)
            if byClient { writes[write].observedByClient = true }
        }
        let bound = keyCounts[keyIndex].siblingBound
        if object.siblingCount > bound {
            violation(keyIndex, "sibling bound",
                      "\(what) holds \(object.siblingCount) siblings \(present.map { name(of: writes[$0].value) }), at most \(bound) writes were concurrent",
                      writes: present)
        }
        for older in present {
            for newer in present where newer != older && writes[older].isCovered(by: writes[newer].context, requireAllDots: true) {
                violation(keyIndex, "superseded sibling",
                          "\(what) holds \(describe(write: older)) beside \(describe(write: newer)), whose writer had seen it",
                          writes: [older, newer])
            }
        }
    }

    // MARK: The final state

    private func checkFinalState(finalReads: [Int]) {
        for (keyIndex, call) in finalReads.enumerated() {
            let merged = finalObject(keyIndex)
            switch calls[call].outcome {
            case .replied(.found(let object)):
                let returned = Set(object.values), held = Set(merged?.values ?? [])
                if returned != held {
                    violation(keyIndex, "final read", "the R=N read returned \(names(object)), replicas hold \(names(merged))",
                              writes: returned.symmetricDifference(held).compactMap { writeIndexByValue[$0] }.sorted())
                }
            case .replied(.notFound):
                if let merged, !merged.isDeleted {
                    violation(keyIndex, "final read", "the R=N read found nothing, replicas hold \(names(merged))",
                              writes: merged.values.compactMap { writeIndexByValue[$0] })
                }
            default:
                violation(keyIndex, "final read", "the R=N read on a healed cluster ended \(calls[call].outcome)")
            }
            checkConvergence(keyIndex)
            if let merged { checkObserved(merged, keyIndex: keyIndex, what: "final state", byClient: false) }
            checkWritesSurvived(keyIndex, merged: merged)
        }
        checkDotsUnique()
        for node in nodes {
            if let engine = node.engine, engine.operationsInFlight != 0 || engine.hintCount != 0 {
                violation(nil, "not quiescent", "\(node.id) still has \(engine.operationsInFlight) operations and \(engine.hintCount) hints")
            }
        }
        for call in calls where call.outcome == .pending {
            violation(call.keyIndex, "unfinished call", "call \(call.id) never completed")
        }
    }

    /// Everything any node holds durably for the key, merged.
    func finalObject(_ keyIndex: Int) -> StoredObject? {
        var merged: StoredObject?
        for node in nodes {
            guard let object = node.disk.durableSlot(keys[keyIndex]).object else { continue }
            merged = merged.map { StoredObject.sync($0, object) } ?? object
        }
        return merged
    }

    /// All N home replicas hold the same object, durably, and nobody keeps a hint.
    private func checkConvergence(_ keyIndex: Int) {
        let key = keys[keyIndex]
        let objects = homes[keyIndex].map { nodes[$0].disk.durableSlot(key).object }
        for (position, object) in objects.enumerated().dropFirst() where object != objects[0] {
            let first = nodes[homes[keyIndex][0]].id, other = nodes[homes[keyIndex][position]].id
            let differing = Set(objects[0]?.values ?? []).symmetricDifference(object?.values ?? [])
            violation(keyIndex, "divergence", "\(first) holds \(names(objects[0])) but \(other) holds \(names(object))",
                      writes: differing.compactMap { writeIndexByValue[$0] }.sorted())
        }
        for node in nodes {
            if node.disk.durableSlot(key).hint != nil {
                violation(keyIndex, "stranded hint", "\(node.id) still keeps a hint record")
            }
            if node.disk.durableSlot(key) != node.disk.visibleSlot(key) {
                violation(keyIndex, "unsynced", "\(node.id) has writes that never became durable")
            }
        }
    }

    /// No acknowledged write is lost unless a later write saw it, and no write that a
    /// durable later write saw comes back.
    ///
    /// A write's context never covers its own dot (the coordinator issues the dot
    /// after it), so the union of all contexts covers a dot exactly when some other
    /// write's context does.
    private func checkWritesSurvived(_ keyIndex: Int, merged: StoredObject?) {
        let values = Set(merged?.values ?? [])
        let keyWrites = writes.indices.filter { writes[$0].keyIndex == keyIndex }
        var seenByApplied = VersionVector(), seenByDurable = VersionVector()
        for write in keyWrites {
            guard let context = writes[write].context, !writes[write].dots.isEmpty else { continue }
            seenByApplied = VersionVector.merge(seenByApplied, context)
            if writes[write].durablyApplied { seenByDurable = VersionVector.merge(seenByDurable, context) }
        }
        for write in keyWrites {
            let present = values.contains(writes[write].value)
            if writes[write].acknowledgedContext != nil && !present
                && !writes[write].isCovered(by: seenByApplied, requireAllDots: false) {
                violation(keyIndex, "lost write", "\(describe(write: write)) was acknowledged and no later write saw it, yet it is gone",
                          writes: [write])
            }
            if present && writes[write].isCovered(by: seenByDurable, requireAllDots: true) {
                let newer = keyWrites.filter { other in
                    writes[other].durablyApplied && writes[write].isCovered(by: writes[other].context, requireAllDots: false)
                }
                violation(keyIndex, "resurrection",
                          "\(describe(write: write)) is back though \(newer.map { describe(write: $0) }) superseded it durably",
                          writes: [write] + newer)
            }
        }
    }

    /// A dot names one version: two writes under one dot means a node issued a dot
    /// twice (after a crash, or as a fallback that forgot a key), and replicas can no
    /// longer tell the versions apart.
    private func checkDotsUnique() {
        let reused = writesByDot.filter { $0.value.count > 1 }.sorted {
            ($0.key.keyIndex, $0.key.dot.actor, $0.key.dot.counter) < ($1.key.keyIndex, $1.key.dot.actor, $1.key.dot.counter)
        }
        for (keyDot, sharing) in reused {
            let dot = keyDot.dot
            let escaped = sharing.filter { writes[$0].durableHolders != 0 || writes[$0].observedByClient }
            guard escaped.count > 1 else { continue }
            violation(writes[escaped[0]].keyIndex, "reissued dot",
                      "\(actorName(dot.actor)):\(dot.counter) names both \(escaped.map { describe(write: $0) })", writes: escaped)
        }
    }

    // MARK: Reports

    func report() -> SimulationReport {
        statistics.lostEscapedWrites = Set(lostApplications).filter { writes[$0].observedByClient || writes[$0].durableHolders != 0 }.count
        trace.combine(statistics.events)
        for keyIndex in keys.indices {
            for value in finalObject(keyIndex)?.values ?? [] { trace.combine(Array(name(of: value).utf8)) }
        }
        for call in calls { trace.combine(call.completedAt ?? -1) }
        var report = SimulationReport(
            parameters: parameters, violations: violations, statistics: statistics, traceHash: trace, failureText: nil)
        if !violations.isEmpty { report.failureText = failureText() }
        return report
    }

    private func failureText() -> String {
        var lines = [
            "Simulation found \(violations.count) violation(s).",
            "reproduce with: RINGSTORE_SIM_SEED=\(parameters.seed) swift test --filter Simulation",
            "parameters: \(parameters)",
            "statistics: \(statistics.summary) trace=\(trace)",
            "violations:",
        ]
        lines += violations.prefix(20).map { "  " + $0.line }
        let keyed = violations.filter { $0.keyIndex != nil }
        if let focus = keyed.first, let keyIndex = focus.keyIndex {
            lines.append("homes of key\(keyIndex): \(homes[keyIndex].map { nodes[$0].id.rawValue }), final: \(names(finalObject(keyIndex)))")
            lines.append("history of key\(keyIndex) around the first violation's writes:")
            lines += traceWindow(keyIndex: keyIndex, writes: focus.writes).map { "  [\(SimulatedTime.format($0.time))] " + describe($0.entry) }
        }
        lines.append("faults:")
        lines += faultLog.suffix(60).map { "  [\(SimulatedTime.format($0.time))] \($0.text)" }
        return lines.joined(separator: "\n")
    }

    /// The key's log from a second before the first involved write to a second after
    /// the last one ends (or the log's tail when no write is involved), bounded.
    private func traceWindow(keyIndex: Int, writes involved: [Int]) -> [(time: SimulatedInstant, entry: KeyLogEntry)] {
        let entries = keyLog[keyIndex]
        let times = involved.flatMap { write -> [SimulatedInstant] in
            let call = calls[writes[write].call]
            return [call.invokedAt, call.completedAt ?? call.invokedAt + parameters.clientTimeoutMicroseconds]
        }
        guard let first = times.min(), let last = times.max() else { return Array(entries.suffix(80)) }
        let window = (first - SimulatedTime.seconds(1))...(last + SimulatedTime.seconds(1))
        let shown = entries.filter { window.contains($0.time) }
        return shown.count <= 150 ? shown : Array(shown.prefix(75) + shown.suffix(75))
    }

    func name(of value: Sibling) -> String {
        value.isTombstone ? "del:" + value.contentType.dropFirst("deleted/".count) : String(decoding: value.data, as: UTF8.self)
    }

    func names(_ object: StoredObject?) -> String {
        guard let object else { return "nothing" }
        return "[" + object.values.map { name(of: $0) }.joined(separator: ", ") + "] " + describe(object.context)
    }

    func actorName(_ actor: ActorID) -> String {
        actorNames[actor] ?? actor.description
    }

    func describe(_ context: VersionVector?) -> String {
        guard let context else { return "{}" }
        return "{" + context.entries.map { "\(actorName($0.actor)):\($0.counter)" }.joined(separator: ",") + "}"
    }

    func describe(write: Int) -> String {
        let record = writes[write]
        return "\(name(of: record.value)) (call \(record.call), dots \(record.dots.map { "\(actorName($0.actor)):\($0.counter)" }))"
    }

    private func describe(_ entry: KeyLogEntry) -> String {
        switch entry {
        case .invoked(let id):
            let call = calls[id]
            let who = clients[call.client].isScripted ? "s\(call.client)" : "c\(call.client)"
            switch call.operation {
            case .get(_, let r, _):
                return "\(who) call \(id): get r=\(r) via \(nodes[call.node].id)"
            case .put(_, let sibling, let context, let w, _):
                return "\(who) call \(id): put \(name(of: sibling)) ctx=\(describe(context)) w=\(w) via \(nodes[call.node].id)"
            }
        case .completed(let id):
            let outcome: String = switch calls[id].outcome {
            case .replied(.written(let context)): "written \(describe(context))"
            case .replied(.found(let object)): "found \(names(object))"
            case .replied(.notFound(let context)): "not found \(describe(context))"
            case .replied(.failed(let failure)): "failed \(failure)"
            case .refused: "refused"
            case .indeterminate: "no reply (indeterminate)"
            case .pending: "pending"
            }
            return "  call \(id) -> \(outcome)"
        case .applied(let write, let node, let dot, let hintFor):
            let role = hintFor.map { " as hint for \($0)" } ?? ""
            return "    \(nodes[node].id) applies \(name(of: writes[write].value)) as \(actorName(dot.actor)):\(dot.counter)\(role)"
        }
    }
}
