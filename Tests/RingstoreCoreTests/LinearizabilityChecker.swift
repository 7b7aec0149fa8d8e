@testable import RingstoreCore

/// One operation on one key as a client saw it: when it was invoked, the change,
/// and how it ended. Times are points on one total order (the simulator's event
/// counter), so no two events share a time.
struct LinearizableHistoryOperation: CustomStringConvertible {
    /// How the client saw the operation end.
    enum Completion: Equatable {
        /// It answered at `at` with this outcome.
        case returned(LinearizableOutcome, at: Int)
        /// It timed out or its proposer crashed after an accept that changes the
        /// value was sent: it may have taken effect at any time after its
        /// invocation, or never.
        case unknown
    }

    var change: LinearizableChange
    var invokedAt: Int
    var completion: Completion

    var returnedAt: Int? {
        if case .returned(_, let at) = completion { return at }
        return nil
    }

    var description: String {
        switch completion {
        case .returned(let outcome, let at): "[\(invokedAt)–\(at)] \(change) → \(outcome)"
        case .unknown: "[\(invokedAt)–?] \(change) → unknown"
        }
    }
}

/// Checks a history of one key against the sequential specification
/// `LinearizableChange.apply` (a register with compare-and-set, a bounded counter,
/// a capped set): is there a total order of the operations that respects real time
/// (an operation that returned before another was invoked comes first) in which
/// every returned operation saw exactly the outcome the specification gives?
///
/// Wing and Gong's search with Lowe's memoisation: depth first over which pending
/// operation takes effect next, never visiting the same (set of operations taken,
/// value) twice. Operations with an unknown outcome may take effect anywhere after
/// their invocation, or not at all.
struct LinearizabilityChecker {
    enum Verdict: Equatable {
        case linearizable
        /// No order fits; the reason names how far the search got.
        case notLinearizable(String)
        /// The search visited more than `visitedMax` configurations.
        case gaveUp(visited: Int)
    }

    private struct Configuration: Hashable {
        var taken: [UInt64]
        var value: LinearizableValue?
    }

    let operations: [LinearizableHistoryOperation]
    let initial: LinearizableValue?
    let visitedMax: Int
    private var visited: Set<Configuration> = []
    private var deepest = 0

    /// Checks `operations` starting from `initial`.
    static func check(
        _ operations: [LinearizableHistoryOperation], initial: LinearizableValue? = nil, visitedMax: Int = 500_000
    ) -> Verdict {
        var checker = LinearizabilityChecker(operations: operations, initial: initial, visitedMax: visitedMax)
        return checker.run()
    }

    private init(operations: [LinearizableHistoryOperation], initial: LinearizableValue?, visitedMax: Int) {
        self.operations = operations.sorted { $0.invokedAt < $1.invokedAt }
        self.initial = initial
        self.visitedMax = visitedMax
    }

    private mutating func run() -> Verdict {
        let words = (operations.count + 63) / 64
        let start = Configuration(taken: [UInt64](repeating: 0, count: words), value: initial)
        visited.insert(start)
        if search(start, takenCount: 0) { return .linearizable }
        if visited.count > visitedMax { return .gaveUp(visited: visited.count) }
        let returned = operations.filter { $0.returnedAt != nil }.count
        return .notLinearizable("no order fits; the longest prefix took \(deepest) operations (\(returned) returned, \(operations.count) in all)")
    }

    private static func isTaken(_ index: Int, in taken: [UInt64]) -> Bool {
        taken[index / 64] & (1 << UInt64(index % 64)) != 0
    }

    /// Whether the operations not yet taken in `configuration` can follow it.
    private mutating func search(_ configuration: Configuration, takenCount: Int) -> Bool {
        deepest = max(deepest, takenCount)
        guard visited.count <= visitedMax else { return false }
        // The earliest return among returned operations not yet taken: whatever goes
        // next must have been invoked before it.
        var earliestReturn = Int.max
        var returnedLeft = false
        for (index, operation) in operations.enumerated() where !Self.isTaken(index, in: configuration.taken) {
            if let at = operation.returnedAt {
                returnedLeft = true
                earliestReturn = min(earliestReturn, at)
            }
        }
        guard returnedLeft else { return true }
        for (index, operation) in operations.enumerated() {
            guard operation.invokedAt < earliestReturn else { break }
            guard !Self.isTaken(index, in: configuration.taken) else { continue }
            let outcome = operation.change.apply(to: configuration.value)
            if case .returned(let observed, _) = operation.completion, observed != outcome { continue }
            var next = configuration
            next.taken[index / 64] |= 1 << UInt64(index % 64)
            if case .applied(let value) = outcome { next.value = value }
            guard visited.insert(next).inserted else { continue }
            if search(next, takenCount: takenCount + 1) { return true }
        }
        return false
    }
}
