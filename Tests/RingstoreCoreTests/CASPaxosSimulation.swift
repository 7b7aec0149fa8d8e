@testable import RingstoreCore

/// A deterministic world of CASPaxos acceptors and proposers on one thread, in
/// 1 ms ticks (it jumps straight to the next tick at which something is due): a
/// network that drops, delays (and so reorders) and duplicates messages and cuts
/// links between proposers and acceptors; acceptors that crash
/// and restart from what they persisted; proposers that crash in the middle of an
/// operation and restart with a fresh ballot generator under the same id. Clients
/// on the proposers run reads, puts, deletes, counter adds and set changes and
/// record a history that `LinearizabilityChecker` judges at the end. Every
/// parameter and fault is drawn from one seed, so a seed replays exactly.
struct CASPaxosWorld {
    struct Parameters: CustomStringConvertible {
        var seed: UInt64
        var acceptorCount: Int
        var proposerCount: Int
        var keyCount: Int
        var operationsPerProposer: Int
        var dropPercent: Int
        var duplicatePercent: Int
        var delayMaxTicks: Int
        /// Chance per tick, in parts per 10,000, that an acceptor crashes.
        var acceptorCrashPerTenThousand: Int
        /// Chance per tick, in parts per 10,000, that a proposer crashes.
        var proposerCrashPerTenThousand: Int
        /// Chance per tick, in parts per 10,000, that links are cut (when none are).
        var partitionPerTenThousand: Int
        var fault: CASPaxosProposer.Fault = .correct
        /// A deliberate bug: acceptors lose what they stored when they crash, as if
        /// they replied before persisting.
        var acceptorsForgetOnCrash = false
        /// Proposers ask each accept for a promise of their next ballot and run their
        /// next change to the key from it, without a prepare (one round trip).
        var onePhase = false
        /// Acceptors reply to a promise under their stored floor before it is
        /// durable, and hold every key promised at that floor after a restart
        /// (`CASPaxosPromiseFloor`).
        var unsyncedPromises = false
        /// A deliberate bug: unsynced promises without the floor, so a crash forgets
        /// promises that were answered.
        var unsyncedPromisesWithoutFloor = false
        /// How long a crashed acceptor stays down, in ticks.
        var acceptorDownTicks = 20...300

        /// Every parameter derived from the seed.
        static func derived(seed: UInt64, fault: CASPaxosProposer.Fault = .correct) -> Parameters {
            var random = SplitMixGenerator(seed: seed ^ 0x5EED_CA5_9A05)
            return Parameters(
                seed: seed,
                acceptorCount: Bool.random(using: &random) ? 3 : 5,
                proposerCount: Int.random(in: 3...5, using: &random),
                keyCount: Int.random(in: 1...3, using: &random),
                operationsPerProposer: Int.random(in: 4...8, using: &random),
                dropPercent: Int.random(in: 0...15, using: &random),
                duplicatePercent: Int.random(in: 0...10, using: &random),
                delayMaxTicks: Int.random(in: 1...12, using: &random),
                acceptorCrashPerTenThousand: Int.random(in: 0...30, using: &random),
                proposerCrashPerTenThousand: Int.random(in: 0...8, using: &random),
                partitionPerTenThousand: Int.random(in: 0...40, using: &random),
                fault: fault,
                onePhase: Bool.random(using: &random) && fault == .correct,
                unsyncedPromises: Bool.random(using: &random))
        }

        var description: String {
            "seed \(seed): \(acceptorCount) acceptors, \(proposerCount) proposers, \(keyCount) keys, "
                + "\(operationsPerProposer) ops each, drop \(dropPercent)%, duplicate \(duplicatePercent)%, "
                + "delay ≤\(delayMaxTicks) ms, crashes \(acceptorCrashPerTenThousand)/\(proposerCrashPerTenThousand) per 10k ticks, "
                + "cuts \(partitionPerTenThousand) per 10k ticks, fault \(fault)" + (onePhase ? ", one-phase changes" : "")
                + (unsyncedPromises ? ", unsynced promises" : "") + (unsyncedPromisesWithoutFloor ? " without a floor" : "")
        }
    }

    enum Endpoint: Hashable {
        case acceptor(Int)
        case proposer(Int)
    }

    struct Envelope {
        var from: Endpoint
        var to: Endpoint
        var message: CASPaxosMessage
    }

    struct AcceptorSlot {
        /// What the acceptor persisted, by key index; it survives crashes.
        var disk: [Int: CASPaxosAcceptorState] = [:]
        /// States written but not yet durable, by key index: a crash loses them, and
        /// the next durable write makes them durable too (a log's fsync covers all
        /// that came before).
        var unsynced: [Int: CASPaxosAcceptorState] = [:]
        /// The promise floor stored durably.
        var floor = CASPaxosPromiseFloor.none
        /// The floor read at the last start, applied to every key.
        var startFloor = CASPaxosPromiseFloor.none
        var restartAt: Int?
        var nextCrashAt = Int.max
        var isUp: Bool { restartAt == nil }
    }

    struct ClientOperation {
        var historyIndex: Int
        var keyIndex: Int
        var change: LinearizableChange
        var attempts = 0
        var machine: CASPaxosProposer?
        var timerAt: Int?
        var retryAt: Int?
    }

    /// A class, not a struct: the simulator touches a proposer's fields on every
    /// event, and a debug build would copy a whole struct for each access.
    final class ProposerSlot {
        let id: UInt64
        var generator: BallotGenerator
        var operationsLeft: Int
        var current: ClientOperation?
        var restartAt: Int?
        var nextCrashAt = Int.max
        /// When the idle client invokes its next operation.
        var nextInvokeAt = 0
        /// The version each key had in this client's last answer, for `If-Match`.
        var lastVersion: [Int: UInt64] = [:]
        /// Promises earned by accepts that carried a next ballot, by key index.
        var promises: [Int: CASPaxosPromise] = [:]
        var isUp: Bool { restartAt == nil }

        init(id: UInt64, operationsLeft: Int) {
            self.id = id
            self.generator = BallotGenerator(proposer: id)
            self.operationsLeft = operationsLeft
        }
    }

    /// What the key holds: decides which changes the clients send.
    enum KeyKind: CaseIterable {
        case register, counter, set
    }

    /// One recorded operation and its key; `hadNoEffect` marks an operation known to
    /// have changed nothing (it failed before any accept that changes the value),
    /// left out of the history.
    struct Record {
        var keyIndex: Int
        var operation: LinearizableHistoryOperation
        var hadNoEffect = false
    }

    static let counterMax: Int64 = 3
    static let setCap = 3
    static let members = ["ann", "bob", "cat", "dan", "eve"]
    static let proposerTimeout = Duration.milliseconds(40)
    static let attemptsMax = 8
    static let faultyPhaseTicks = 3_000
    static let healedPhaseTicks = 6_000

    let parameters: Parameters
    private(set) var now = 0
    private var random: SplitMixGenerator
    private(set) var acceptors: [AcceptorSlot]
    let proposers: [ProposerSlot]
    let keys: [ItemKey]
    let keyKinds: [KeyKind]
    let replicas: [NodeID]
    private var inFlight: [Int: [Envelope]] = [:]
    /// Proposer–acceptor pairs that cannot talk, and when the cut heals.
    private var cuts: Set<[Int]> = []
    private var cutsHealAt: Int?
    private var nextCutAt = Int.max
    private var faultsEnabled = true
    /// The event counter that orders the history.
    private var clock = 0
    private(set) var records: [Record] = []
    /// Every value accepted under each ballot, by key: a ballot carries one value.
    private var acceptedByBallot: [Int: [Ballot: LinearizableValue?]] = [:]
    private(set) var invariantViolations: [String] = []
    private(set) var messagesSent = 0

    init(_ parameters: Parameters) {
        self.parameters = parameters
        random = SplitMixGenerator(seed: parameters.seed)
        acceptors = Array(repeating: AcceptorSlot(), count: parameters.acceptorCount)
        proposers = (0..<parameters.proposerCount).map { index in
            ProposerSlot(id: UInt64(index + 1), operationsLeft: parameters.operationsPerProposer)
        }
        keys = (0..<parameters.keyCount).map { index in
            ItemKey(table: "seats", key: Array("key-\(index)".utf8), partition: PartitionID(rawValue: UInt32(index)))
        }
        let firstKind = Int(parameters.seed % 3)
        keyKinds = (0..<parameters.keyCount).map { KeyKind.allCases[(firstKind + $0) % 3] }
        replicas = (0..<parameters.acceptorCount).map(Self.acceptorNode)
        for index in acceptors.indices { acceptors[index].nextCrashAt = interval(parameters.acceptorCrashPerTenThousand) }
        for index in proposers.indices {
            proposers[index].nextCrashAt = interval(parameters.proposerCrashPerTenThousand)
            proposers[index].nextInvokeAt = thinkTime()
        }
        nextCutAt = interval(parameters.partitionPerTenThousand)
    }

    /// When an event that happens `perTenThousand` times per 10,000 ticks on
    /// average happens next: a uniform gap with that mean; never for a rate of 0.
    private mutating func interval(_ perTenThousand: Int) -> Int {
        guard perTenThousand > 0 else { return Int.max }
        return now + Int.random(in: 1...(20_000 / perTenThousand), using: &random)
    }

    /// How long a client waits between operations.
    private mutating func thinkTime() -> Int {
        now + Int.random(in: 1...25, using: &random)
    }

    static func acceptorNode(_ index: Int) -> NodeID { NodeID("a\(index)") }

    var isFinished: Bool { proposers.allSatisfy { $0.operationsLeft == 0 && $0.current == nil } }

    /// The history of one key, without the operations known to have had no effect.
    func history(ofKey keyIndex: Int) -> [LinearizableHistoryOperation] {
        records.filter { $0.keyIndex == keyIndex && !$0.hadNoEffect }.map(\.operation)
    }

    // MARK: Running

    /// A faulty phase, then a healed one in which every client must finish.
    mutating func run() {
        while now < Self.faultyPhaseTicks && !isFinished { step() }
        heal()
        let deadline = now + Self.healedPhaseTicks
        while now < deadline && !isFinished { step() }
    }

    /// Stops injecting faults, restarts everything and mends every link.
    mutating func heal() {
        cuts = []
        cutsHealAt = nil
        for index in acceptors.indices { acceptors[index].restartAt = nil }
        for index in proposers.indices where !proposers[index].isUp { restartProposer(index) }
        faultsEnabled = false
    }

    /// Jumps to the next tick at which anything is due and handles it.
    mutating func step() {
        now = nextEventTime()
        if faultsEnabled { injectFaults() }
        for envelope in inFlight.removeValue(forKey: now) ?? [] { deliver(envelope) }
        for index in proposers.indices { driveProposer(index) }
    }

    /// The earliest tick after now with a delivery, a timer, a retry, an invocation,
    /// or (while faults are on) a crash, restart or cut due.
    private func nextEventTime() -> Int {
        var next = inFlight.keys.min() ?? Int.max
        for proposer in proposers {
            if faultsEnabled { next = min(next, proposer.restartAt ?? proposer.nextCrashAt) }
            guard proposer.isUp else { continue }
            if let current = proposer.current {
                next = min(next, current.timerAt ?? Int.max, current.retryAt ?? Int.max)
            } else if proposer.operationsLeft > 0 {
                next = min(next, proposer.nextInvokeAt)
            }
        }
        if faultsEnabled {
            for index in acceptors.indices { next = min(next, acceptors[index].restartAt ?? acceptors[index].nextCrashAt) }
            next = min(next, cutsHealAt ?? nextCutAt)
        }
        return max(now + 1, next == Int.max ? now + 1 : next)
    }

    private mutating func injectFaults() {
        for index in acceptors.indices {
            if let restartAt = acceptors[index].restartAt {
                if now >= restartAt {
                    acceptors[index].restartAt = nil
                    acceptors[index].nextCrashAt = interval(parameters.acceptorCrashPerTenThousand)
                }
            } else if now >= acceptors[index].nextCrashAt {
                acceptors[index].restartAt = now + Int.random(in: parameters.acceptorDownTicks, using: &random)
                if parameters.acceptorsForgetOnCrash { acceptors[index].disk = [:] }
                acceptors[index].unsynced = [:]
                if !parameters.unsyncedPromisesWithoutFloor { acceptors[index].startFloor = acceptors[index].floor }
            }
        }
        for index in proposers.indices {
            if let restartAt = proposers[index].restartAt {
                if now >= restartAt { restartProposer(index) }
            } else if now >= proposers[index].nextCrashAt {
                crashProposer(index)
            }
        }
        if let healAt = cutsHealAt {
            if now >= healAt {
                cuts = []
                cutsHealAt = nil
                nextCutAt = interval(parameters.partitionPerTenThousand)
            }
        } else if now >= nextCutAt {
            for proposer in proposers.indices {
                for acceptor in acceptors.indices where Int.random(in: 0..<100, using: &random) < 40 {
                    cuts.insert([proposer, acceptor])
                }
            }
            cutsHealAt = now + Int.random(in: 50...400, using: &random)
        }
    }

    // MARK: Network

    private mutating func send(_ message: CASPaxosMessage, from: Endpoint, to: Endpoint) {
        messagesSent += 1
        guard !faultsEnabled || Int.random(in: 0..<100, using: &random) >= parameters.dropPercent else { return }
        let copies = faultsEnabled && Int.random(in: 0..<100, using: &random) < parameters.duplicatePercent ? 2 : 1
        for _ in 0..<copies {
            let at = now + Int.random(in: 1...parameters.delayMaxTicks, using: &random)
            inFlight[at, default: []].append(Envelope(from: from, to: to, message: message))
        }
    }

    private func isCut(_ lhs: Endpoint, _ rhs: Endpoint) -> Bool {
        switch (lhs, rhs) {
        case (.proposer(let p), .acceptor(let a)), (.acceptor(let a), .proposer(let p)): cuts.contains([p, a])
        case (.proposer, .proposer), (.acceptor, .acceptor): false
        }
    }

    private mutating func deliver(_ envelope: Envelope) {
        guard !isCut(envelope.from, envelope.to) else { return }
        switch envelope.to {
        case .acceptor(let index):
            guard acceptors[index].isUp, let keyIndex = keys.firstIndex(of: envelope.message.key) else { return }
            let slot = acceptors[index]
            let state = (slot.unsynced[keyIndex] ?? slot.disk[keyIndex] ?? CASPaxosAcceptorState()).raisingPromise(to: slot.startFloor)
            guard let decision = CASPaxosAcceptor.handle(envelope.message, state: state) else {
                invariantViolations.append("acceptor got a non-request \(envelope.message)")
                return
            }
            if let newState = decision.newState {
                checkPersisted(newState, keyIndex: keyIndex)
                store(newState, keyIndex: keyIndex, at: index, decision: decision, previous: state)
            }
            send(decision.reply, from: envelope.to, to: envelope.from)
        case .proposer(let index):
            guard proposers[index].restartAt == nil, proposers[index].current?.machine?.ballot == envelope.message.ballot,
                  var machine = proposers[index].current?.machine, case .acceptor(let acceptor) = envelope.from
            else { return }
            proposers[index].current?.machine = nil // so that the machine below is not shared and copied on write
            let directives = machine.receive(envelope.message, from: replicas[acceptor])
            proposers[index].current?.machine = machine
            execute(directives, proposer: index)
        }
    }

    /// Stores an acceptor's new state as the node's `AcceptorStore` does: a promise
    /// the floor covers without an fsync; a promise above it after raising the floor;
    /// anything else durably, before the reply.
    private mutating func store(_ newState: CASPaxosAcceptorState, keyIndex: Int, at index: Int, decision: CASPaxosAcceptorDecision, previous: CASPaxosAcceptorState) {
        if parameters.unsyncedPromisesWithoutFloor, CASPaxosPromiseFloor.promiseOnly(decision, previous: previous) != nil {
            acceptors[index].unsynced[keyIndex] = newState
            return
        }
        if parameters.unsyncedPromises {
            if acceptors[index].floor.covers(decision, previous: previous) {
                acceptors[index].unsynced[keyIndex] = newState
                return
            }
            if let promise = CASPaxosPromiseFloor.promiseOnly(decision, previous: previous) {
                acceptors[index].floor = acceptors[index].floor.raised(toCover: promise)
            }
        }
        // An fsync makes everything written before it durable.
        acceptors[index].disk.merge(acceptors[index].unsynced) { _, newer in newer }
        acceptors[index].unsynced = [:]
        acceptors[index].disk[keyIndex] = newState // durable before the reply
    }

    // MARK: Proposers and clients

    private mutating func driveProposer(_ index: Int) {
        guard proposers[index].restartAt == nil else { return }
        guard proposers[index].current != nil else {
            if proposers[index].operationsLeft > 0, now >= proposers[index].nextInvokeAt { invoke(index) }
            return
        }
        if let timerAt = proposers[index].current?.timerAt, now >= timerAt, var machine = proposers[index].current?.machine {
            proposers[index].current?.timerAt = nil
            let directives = machine.timedOut()
            proposers[index].current?.machine = machine
            execute(directives, proposer: index)
        } else if let retryAt = proposers[index].current?.retryAt, now >= retryAt {
            proposers[index].current?.retryAt = nil
            attempt(index)
        }
    }

    /// A client on the proposer invokes its next operation.
    private mutating func invoke(_ index: Int) {
        let keyIndex = Int.random(in: 0..<keys.count, using: &random)
        let change = randomChange(kind: keyKinds[keyIndex], lastVersion: proposers[index].lastVersion[keyIndex])
        clock += 1
        records.append(Record(keyIndex: keyIndex, operation: LinearizableHistoryOperation(change: change, invokedAt: clock, completion: .unknown)))
        proposers[index].operationsLeft -= 1
        proposers[index].current = ClientOperation(historyIndex: records.count - 1, keyIndex: keyIndex, change: change)
        attempt(index)
    }

    private mutating func attempt(_ index: Int) {
        guard var operation = proposers[index].current else { return }
        operation.attempts += 1
        var machine: CASPaxosProposer
        if parameters.onePhase, let promise = proposers[index].promises.removeValue(forKey: operation.keyIndex) {
            machine = CASPaxosProposer(key: keys[operation.keyIndex], change: operation.change, replicas: replicas, ballot: promise.ballot,
                                       timeout: Self.proposerTimeout, next: proposers[index].generator.next(), promised: .some(promise.value),
                                       fault: parameters.fault)
        } else {
            let ballot = proposers[index].generator.next()
            machine = CASPaxosProposer(key: keys[operation.keyIndex], change: operation.change, replicas: replicas, ballot: ballot,
                                       timeout: Self.proposerTimeout, next: parameters.onePhase ? proposers[index].generator.next() : nil,
                                       fault: parameters.fault)
        }
        let directives = machine.start()
        operation.machine = machine
        proposers[index].current = operation
        execute(directives, proposer: index)
    }

    private mutating func execute(_ directives: [CASPaxosProposerDirective], proposer index: Int) {
        for directive in directives {
            switch directive {
            case .send(let message, let node):
                guard let acceptor = replicas.firstIndex(of: node) else {
                    invariantViolations.append("proposer sent to \(node), not a replica")
                    continue
                }
                send(message, from: .proposer(index), to: .acceptor(acceptor))
            case .startTimer(let after):
                proposers[index].current?.timerAt = now + Int(after / .milliseconds(1))
            case .reply(let result):
                finish(index, with: result)
            }
        }
    }

    private mutating func finish(_ index: Int, with result: CASPaxosResult) {
        guard let operation = proposers[index].current else { return }
        if let promise = operation.machine?.promiseOfNext { proposers[index].promises[operation.keyIndex] = promise }
        switch result {
        case .applied(let value):
            complete(index, operation, .applied(value), version: value?.version ?? 0)
            if case .counter(let count)? = value?.content, count < 0 || count > Self.counterMax {
                invariantViolations.append("a client was told counter \(count), outside 0...\(Self.counterMax)")
            }
        case .refused(let reason, let current):
            complete(index, operation, .refused(reason, current: current), version: current?.version ?? 0)
        case .conflict, .unavailable:
            if case .conflict(let higher, _) = result { proposers[index].generator.observe(higher) }
            if !result.isSafeToRetry {
                records[operation.historyIndex].operation.completion = .unknown
                proposers[index].current = nil
                proposers[index].nextInvokeAt = thinkTime()
            } else if operation.attempts >= Self.attemptsMax {
                records[operation.historyIndex].hadNoEffect = true
                proposers[index].current = nil
                proposers[index].nextInvokeAt = thinkTime()
            } else {
                let backoffMax = 4 << min(operation.attempts, 5)
                proposers[index].current?.machine = nil
                proposers[index].current?.timerAt = nil
                proposers[index].current?.retryAt = now + Int.random(in: 1...backoffMax, using: &random)
            }
        }
    }

    private mutating func complete(_ index: Int, _ operation: ClientOperation, _ outcome: LinearizableOutcome, version: UInt64) {
        clock += 1
        records[operation.historyIndex].operation.completion = .returned(outcome, at: clock)
        proposers[index].lastVersion[operation.keyIndex] = version
        proposers[index].current = nil
        proposers[index].nextInvokeAt = thinkTime()
    }

    /// The proposer stops: an operation whose accept may have changed the value has
    /// an unknown outcome; any other had no effect.
    private mutating func crashProposer(_ index: Int) {
        if let operation = proposers[index].current {
            if operation.machine?.mayHaveTakenEffect ?? false {
                records[operation.historyIndex].operation.completion = .unknown
            } else {
                records[operation.historyIndex].hadNoEffect = true
            }
        }
        proposers[index].current = nil
        proposers[index].restartAt = now + Int.random(in: 20...300, using: &random)
    }

    /// Restarts with the same id and a generator that has forgotten its counter.
    private mutating func restartProposer(_ index: Int) {
        proposers[index].restartAt = nil
        proposers[index].nextCrashAt = interval(parameters.proposerCrashPerTenThousand)
        proposers[index].nextInvokeAt = thinkTime()
        proposers[index].generator = BallotGenerator(proposer: proposers[index].id)
        proposers[index].lastVersion = [:]
        proposers[index].promises = [:]
    }

    private mutating func randomChange(kind: KeyKind, lastVersion: UInt64?) -> LinearizableChange {
        let roll = Int.random(in: 0..<100, using: &random)
        switch kind {
        case .register:
            let data = [UInt8(truncatingIfNeeded: records.count), UInt8(truncatingIfNeeded: records.count >> 8)]
            let version = lastVersion ?? UInt64.random(in: 0...3, using: &random)
            switch roll {
            case ..<20: return .read
            case ..<40: return .put(contentType: "text/plain", data: data, precondition: .none)
            case ..<70: return .put(contentType: "text/plain", data: data, precondition: .ifMatch(version: version))
            case ..<85: return .put(contentType: "text/plain", data: data, precondition: .ifNoneMatch)
            default: return .delete(precondition: Bool.random(using: &random) ? .none : .ifMatch(version: version))
            }
        case .counter:
            switch roll {
            case ..<45: return .counterAdd(delta: 1, min: 0, max: Self.counterMax)
            case ..<80: return .counterAdd(delta: -1, min: 0, max: Self.counterMax)
            default: return .read
            }
        case .set:
            let member = Self.members[Int.random(in: 0..<Self.members.count, using: &random)]
            switch roll {
            case ..<50: return .setAdd(member: member, cap: Self.setCap)
            case ..<80: return .setRemove(member: member)
            default: return .read
            }
        }
    }

    // MARK: Checks

    /// Checks what an acceptor is about to persist: one value per ballot, and no
    /// counter or set outside its bounds.
    private mutating func checkPersisted(_ state: CASPaxosAcceptorState, keyIndex: Int) {
        guard let accepted = state.accepted else { return }
        if let earlier = acceptedByBallot[keyIndex]?[accepted.ballot], earlier != accepted.value {
            invariantViolations.append("ballot \(accepted.ballot) of key \(keyIndex) carried \(String(describing: earlier)) and \(String(describing: accepted.value))")
        }
        acceptedByBallot[keyIndex, default: [:]][accepted.ballot] = accepted.value
        switch accepted.value?.content {
        case .counter(let count)? where count < 0 || count > Self.counterMax:
            invariantViolations.append("counter \(count) accepted at \(accepted.ballot), outside 0...\(Self.counterMax)")
        case .set(let members)? where members.count > Self.setCap:
            invariantViolations.append("set of \(members.count) accepted at \(accepted.ballot), over its cap \(Self.setCap)")
        default:
            break
        }
    }

    /// Runs the linearizability checker on every key.
    func linearizabilityVerdicts() -> [(keyIndex: Int, verdict: LinearizabilityChecker.Verdict)] {
        keys.indices.map { ($0, LinearizabilityChecker.check(history(ofKey: $0))) }
    }

    /// Counts for a summary line.
    var summary: String {
        let returned = records.filter { $0.operation.returnedAt != nil }.count
        let unknown = records.filter { !$0.hadNoEffect && $0.operation.completion == .unknown }.count
        let dropped = records.filter(\.hadNoEffect).count
        return "\(parameters); \(records.count) operations: \(returned) answered, \(unknown) unknown, \(dropped) without effect; "
            + "\(messagesSent) messages, \(now) ticks, finished \(isFinished)"
    }
}

/// What one simulated run found.
struct CASPaxosRunReport {
    var seed: UInt64
    var summary: String
    var answered: Int
    var linearizabilityViolations: [String]
    var invariantViolations: [String]
    var finished: Bool

    /// Runs one seed to the end and checks it.
    /// With `briefFrequentCrashes`, acceptors crash often and come back within 15
    /// ticks, and every acceptor answers promises unsynced (with or without the floor):
    /// a forgotten promise matters only to a proposer whose messages reach the
    /// acceptor again before it gives up.
    static func run(
        seed: UInt64, fault: CASPaxosProposer.Fault = .correct, acceptorsForgetOnCrash: Bool = false,
        briefFrequentCrashes: Bool = false, unsyncedPromisesWithoutFloor: Bool = false
    ) -> CASPaxosRunReport {
        var parameters = CASPaxosWorld.Parameters.derived(seed: seed, fault: fault)
        parameters.acceptorsForgetOnCrash = acceptorsForgetOnCrash
        parameters.unsyncedPromisesWithoutFloor = unsyncedPromisesWithoutFloor
        if briefFrequentCrashes {
            parameters.acceptorCrashPerTenThousand = 300
            parameters.acceptorDownTicks = 1...15
            parameters.unsyncedPromises = true
        }
        var world = CASPaxosWorld(parameters)
        world.run()
        var violations: [String] = []
        for (keyIndex, verdict) in world.linearizabilityVerdicts() where verdict != .linearizable {
            let history = world.history(ofKey: keyIndex).map(\.description).joined(separator: "\n  ")
            violations.append("key \(keyIndex) (\(world.keyKinds[keyIndex])): \(verdict)\n  \(history)")
        }
        let answered = world.records.filter { $0.operation.returnedAt != nil }.count
        return CASPaxosRunReport(seed: seed, summary: world.summary, answered: answered, linearizabilityViolations: violations,
                                 invariantViolations: world.invariantViolations, finished: world.isFinished)
    }
}
