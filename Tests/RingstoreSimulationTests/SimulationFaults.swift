import RingstoreCore

/// Process crashes, network partitions and the failure detector: the faults the
/// safety phase injects and the oracle that tells engines about them.
extension Simulation {
    // MARK: Failure detector

    /// What a heartbeat-based detector at `observer` concludes about `subject`: down
    /// when the subject is crashed, when either direction of the link is cut (pings or
    /// pongs are lost), or while the observer falsely suspects it.
    func verdict(observer: Int, subject: Int) -> Bool {
        nodes[subject].isUp
            && !network.isBlocked(from: observer, to: subject)
            && !network.isBlocked(from: subject, to: observer)
            && suspectedUntil[observer][subject] <= now
    }

    /// Something changed who can reach whom: every observer whose view is now wrong
    /// learns the truth after a detection delay (the truth as it is then).
    func reachabilityChanged() {
        for observer in nodes.indices where nodes[observer].isUp {
            for subject in nodes.indices where subject != observer {
                if verdict(observer: observer, subject: subject) != nodes[observer].toldReachable[subject] {
                    schedule(.detectorCheck(observer: observer, subject: subject), after: detectorDelay())
                }
            }
        }
    }

    func detectorDelay() -> Int64 { random.microseconds(in: parameters.detectorDelayMicroseconds) }

    func detectorCheck(observer: Int, subject: Int) {
        guard nodes[observer].isUp else { return }
        let reachable = verdict(observer: observer, subject: subject)
        guard nodes[observer].toldReachable[subject] != reachable else { return }
        nodes[observer].toldReachable[subject] = reachable
        let peer = nodes[subject].id
        withEngine(observer) { $0.setReachable(peer, reachable) }
    }

    // MARK: Injected faults

    func startFaults() {
        guard parameters.faultIntervalMeanMicroseconds > 0, !parameters.faultMix.isEmpty else { return }
        schedule(.faultStep, after: random.microseconds(in: 0...2 * parameters.faultIntervalMeanMicroseconds))
    }

    func faultStep() {
        guard phase == .safety else { return }
        switch random.weightedIndex(parameters.faultMix.weights) {
        case 0: crashRandomNode()
        case 1: cutRandomPartition()
        default: suspectRandomPair()
        }
        schedule(.faultStep, after: random.microseconds(in: 0...2 * parameters.faultIntervalMeanMicroseconds))
    }

    private func crashRandomNode() {
        let running = nodes.indices.filter { nodes[$0].isUp }
        guard running.count > 1 else { return }
        let victim = random.element(of: running)
        crash(victim)
        schedule(.restart(node: victim), after: random.microseconds(in: parameters.crashDowntimeMicroseconds))
    }

    private func cutRandomPartition() {
        var order = Array(nodes.indices)
        for index in order.indices.reversed() { order.swapAt(index, random.index(below: index + 1)) }
        let side = Array(order.prefix(random.int(in: 1...(nodes.count - 1))))
        let direction = random.weightedIndex([0.6, 0.2, 0.2])
        cut(side: side, direction: direction, length: random.microseconds(in: parameters.partitionLengthMicroseconds))
    }

    private func suspectRandomPair() {
        let observer = random.index(below: nodes.count)
        var subject = random.index(below: nodes.count - 1)
        if subject >= observer { subject += 1 }
        let until = now + random.microseconds(in: parameters.suspicionLengthMicroseconds)
        suspectedUntil[observer][subject] = max(suspectedUntil[observer][subject], until)
        statistics.suspicions += 1
        faultLog.append((now, "\(nodes[observer].id) falsely suspects \(nodes[subject].id) until \(SimulatedTime.format(until))"))
        // A missed heartbeat or two: noticed quickly, and forgiven after the usual delay.
        schedule(.detectorCheck(observer: observer, subject: subject), after: random.microseconds(in: 10_000...100_000))
        queue.schedule(.detectorCheck(observer: observer, subject: subject), at: until + detectorDelay())
    }

    // MARK: Faults a scenario can script

    /// Power loss at `index`: the engine with everything in flight and every write
    /// not yet durable are gone; clients waiting on it never hear back.
    func crash(_ index: Int) {
        guard nodes[index].isUp else { return }
        nodes[index].engine = nil
        nodes[index].incarnation += 1
        lostApplications += nodes[index].disk.crash().compactMap(\.clientWrite)
        nodes[index].peerRequests.removeAll()
        nodes[index].clientRequests.removeAll()
        nodes[index].lastSyncCompletion = now
        statistics.crashes += 1
        faultLog.append((now, "\(nodes[index].id) crashes"))
        reachabilityChanged()
    }

    /// The process starts again on its surviving data folder: same node id, a fresh
    /// engine that recovers its hints from disk. Every stop here is a crash, so, as
    /// the shell contract says of an unclean shutdown, the node takes a new actor:
    /// writes the crash lost may have left their dots on other replicas.
    func restart(_ index: Int) {
        guard !nodes[index].isUp else { return }
        if parameters.shellDefect != .restartKeepsActor {
            var actor = ActorID(rawValue: random.next())
            while !actorsUsed.insert(actor).inserted { actor = ActorID(rawValue: random.next()) }
            nodes[index].actor = actor
            actorNames[actor] = "\(nodes[index].id)@\(nodes[index].incarnation)"
        }
        faultLog.append((now, "\(nodes[index].id) restarts as \(actorName(nodes[index].actor))"))
        startEngine(index)
        reachabilityChanged()
    }

    /// Cuts the links between `side` and the other nodes: both ways (direction 0),
    /// only from `side` (1) or only towards `side` (2). Heals after `length` (0: never,
    /// until the liveness phase or `healAll`).
    @discardableResult
    func cut(side: [Int], direction: Int, length: Int64) -> Int {
        let others = nodes.indices.filter { !side.contains($0) }
        var links: [(from: Int, to: Int)] = []
        for inside in side {
            for outside in others {
                if direction != 2 { links.append((inside, outside)) }
                if direction != 1 { links.append((outside, inside)) }
            }
        }
        nextPartitionID += 1
        network.cut(id: nextPartitionID, links: links)
        statistics.partitions += 1
        let arrow = ["<->", "->", "<-"][direction]
        faultLog.append((now, "partition #\(nextPartitionID): \(side.map { nodes[$0].id.rawValue }) \(arrow) \(others.map { nodes[$0].id.rawValue })"))
        if length > 0 { schedule(.healPartition(id: nextPartitionID), after: length) }
        reachabilityChanged()
        return nextPartitionID
    }

    func healPartition(_ id: Int) {
        guard network.isActive(id: id) else { return }
        network.heal(id: id)
        faultLog.append((now, "partition #\(id) heals"))
        reachabilityChanged()
    }

    /// Ends every fault: partitions heal, suspicions end, crashed nodes restart, and
    /// the network stops losing and duplicating messages.
    func healAll() {
        network.healAll()
        for observer in nodes.indices {
            for subject in nodes.indices { suspectedUntil[observer][subject] = 0 }
        }
        dropProbability = 0
        duplicateProbability = 0
        slowProbability = 0
        faultLog.append((now, "everything heals"))
        for index in nodes.indices where !nodes[index].isUp { restart(index) }
        reachabilityChanged()
    }
}
