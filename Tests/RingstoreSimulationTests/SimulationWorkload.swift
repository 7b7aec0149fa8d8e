import RingstoreCore

/// Clients: each issues one operation at a time against a random node, remembers
/// the context of its last successful read or write of every key and writes with
/// it. Every value written is unique, so the checker can tell writes apart.
extension Simulation {
    /// Adds a client; random clients start acting at once, scripted ones wait to be told.
    @discardableResult
    func addClient(scripted: Bool) -> Int {
        let index = clients.count
        clients.append(SimulatedClient(index: index, isScripted: scripted))
        if !scripted { schedule(.clientStep(client: index), after: random.microseconds(in: parameters.thinkTimeMicroseconds)) }
        return index
    }

    func clientStep(_ client: Int) {
        guard acceptingClientOperations else { return }
        let keyIndex = random.index(below: keys.count)
        let node = random.index(below: nodes.count)
        switch random.weightedIndex(parameters.operationMix.weights) {
        case 0: get(client: client, keyIndex: keyIndex, via: node, r: drawQuorum())
        case 1: put(client: client, keyIndex: keyIndex, via: node)
        case 2: put(client: client, keyIndex: keyIndex, via: node, delete: true)
        case 3: put(client: client, keyIndex: keyIndex, via: node, blind: true)
        default: get(client: client, keyIndex: keyIndex, via: node, r: drawQuorum(), thenWrite: true)
        }
    }

    private func drawQuorum() -> Int {
        switch parameters.quorum {
        case .fixed(let r, _): r
        case .perOperation: random.int(in: 1...parameters.replicaCount)
        }
    }

    private func drawWriteQuorum() -> Int {
        switch parameters.quorum {
        case .fixed(_, let w): w
        case .perOperation: random.int(in: 1...parameters.replicaCount)
        }
    }

    /// A read of key `keyIndex` sent to node `via`.
    @discardableResult
    func get(client: Int, keyIndex: Int, via node: Int, r: Int, thenWrite: Bool = false) -> Int {
        let operation = ClientOperation.get(keys[keyIndex], r: r, n: parameters.replicaCount)
        return startCall(client: client, keyIndex: keyIndex, node: node, operation: operation, write: nil, thenWrite: thenWrite)
    }

    /// A write (or, with `delete`, a tombstone) of a new unique value, with the
    /// client's remembered context unless `blind`. Random clients draw their own w.
    @discardableResult
    func put(client: Int, keyIndex: Int, via node: Int, w: Int? = nil, delete: Bool = false, blind: Bool = false) -> Int {
        clients[client].sequence += 1
        let name = "c\(client)-\(clients[client].sequence)"
        // Tombstones carry the writer's name in their content type so that deletes,
        // too, can be told apart; the engine never looks at it.
        let value = delete
            ? Sibling(contentType: "deleted/\(name)", data: [], isTombstone: true)
            : Sibling(contentType: "text/plain", data: Array(name.utf8))
        let context = blind ? nil : clients[client].contexts[keyIndex]
        let descends = clients[client].acknowledged[keyIndex].map { acknowledged in
            context?.descends(acknowledged) ?? false
        } ?? true
        let write = writes.count
        writes.append(WriteRecord(
            call: calls.count, client: client, keyIndex: keyIndex, value: value, context: context,
            descendsOwnLastWrite: descends))
        writeIndexByValue[value] = write
        keyCounts[keyIndex].invoked += 1
        keyCounts[keyIndex].writers.insert(client)
        if context == nil || !descends { keyCounts[keyIndex].unanchored += 1 }
        let quorum = w ?? drawWriteQuorum()
        let operation = ClientOperation.put(keys[keyIndex], sibling: value, context: context, w: quorum, n: parameters.replicaCount)
        return startCall(client: client, keyIndex: keyIndex, node: node, operation: operation, write: write, thenWrite: false)
    }

    private func startCall(client: Int, keyIndex: Int, node: Int, operation: ClientOperation, write: Int?, thenWrite: Bool) -> Int {
        let id = calls.count
        calls.append(ClientCall(
            id: id, client: client, keyIndex: keyIndex, node: node, operation: operation, write: write,
            invokedAt: now, thenWrite: thenWrite))
        statistics.calls += 1
        keyLog[keyIndex].append((now, .invoked(call: id)))
        schedule(.clientRequestArrives(call: id), after: clientDelay())
        schedule(.clientTimeout(call: id), after: parameters.clientTimeoutMicroseconds)
        return id
    }

    func clientRequestArrives(_ id: Int) {
        let node = calls[id].node
        guard nodes[node].isUp else {
            schedule(.clientRefused(call: id), after: clientDelay())
            return
        }
        nextToken += 1
        let token = nextToken
        nodes[node].clientRequests[token] = id
        let operation = calls[id].operation
        withEngine(node) { $0.clientRequested(operation, token: token) }
    }

    /// The engine at `index` answers a client; the shell checks what a `.written`
    /// promises before it sends the answer on its way.
    func replyToClient(from index: Int, token: UInt64, _ result: ClientResult) {
        guard let id = nodes[index].clientRequests.removeValue(forKey: token) else {
            violation(nil, "double reply", "\(nodes[index].id) answered client token \(token) twice or unasked")
            return
        }
        if case .written(let context) = result {
            checkAcknowledgement(calls[id], context: context)
        }
        schedule(.clientReplyArrives(call: id, result), after: clientDelay())
    }

    /// A write is acknowledged only after W durable copies, and the context it returns
    /// covers the version it created.
    private func checkAcknowledgement(_ call: ClientCall, context: VersionVector) {
        guard let write = call.write, case .put(_, _, _, let w, _) = call.operation else {
            violation(call.keyIndex, "bad reply", "call \(call.id) is a read but was answered .written")
            return
        }
        // A replica that acknowledged may already hold a newer version that superseded
        // this one (a client read it from the coordinator and wrote over it): what it
        // holds durably has then seen the dot, if not the value.
        var holders = 0
        for node in nodes.indices {
            let seen = nodes[node].disk.durableSlot(keys[call.keyIndex]).object.map { object in
                writes[write].dots.contains { object.context[$0.actor] >= $0.counter }
            } ?? false
            if seen || writes[write].durableHolders & (1 << UInt64(node)) != 0 { holders += 1 }
        }
        if holders < w {
            violation(call.keyIndex, "early acknowledgement",
                      "\(describe(write: write)) acknowledged with \(holders) durable copies, w=\(w)", writes: [write])
        }
        if !writes[write].dots.contains(where: { context[$0.actor] >= $0.counter }) {
            violation(call.keyIndex, "bad context", "\(describe(write: write)) acknowledged with a context that misses its own version",
                      writes: [write])
        }
    }

    func completeCall(_ id: Int, _ outcome: CallOutcome) {
        guard calls[id].outcome == .pending else {
            calls[id].lateReplies += 1
            return
        }
        calls[id].outcome = outcome
        calls[id].completedAt = now
        let keyIndex = calls[id].keyIndex
        let client = calls[id].client
        keyLog[keyIndex].append((now, .completed(call: id)))
        var succeeded = false
        switch outcome {
        case .replied(.written(let context)):
            statistics.written += 1
            succeeded = true
            if let write = calls[id].write { writes[write].acknowledgedContext = context }
            keyCounts[keyIndex].acknowledged += 1
            clients[client].contexts[keyIndex] = context
            clients[client].acknowledged[keyIndex] = context
        case .replied(.found(let object)):
            statistics.found += 1
            succeeded = true
            checkObserved(object, keyIndex: keyIndex, what: "read \(id)")
            clients[client].contexts[keyIndex] = object.context
        case .replied(.notFound(let context)):
            statistics.notFound += 1
            succeeded = true
            clients[client].contexts[keyIndex] = context
        case .replied(.failed): statistics.failed += 1
        case .refused: statistics.refused += 1
        case .indeterminate: statistics.indeterminate += 1
        case .pending: preconditionFailure("internal inconsistency in Simulation: completing with .pending")
        }
        guard !clients[client].isScripted, acceptingClientOperations else { return }
        if calls[id].thenWrite && succeeded {
            put(client: client, keyIndex: keyIndex, via: random.index(below: nodes.count))
        } else {
            schedule(.clientStep(client: client), after: random.microseconds(in: parameters.thinkTimeMicroseconds))
        }
    }
}
