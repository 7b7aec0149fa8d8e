@testable import RingstoreCore
import Testing

private func returned(_ change: LinearizableChange, _ invokedAt: Int, _ returnedAt: Int, _ outcome: LinearizableOutcome) -> LinearizableHistoryOperation {
    LinearizableHistoryOperation(change: change, invokedAt: invokedAt, completion: .returned(outcome, at: returnedAt))
}

private func timedOut(_ change: LinearizableChange, _ invokedAt: Int) -> LinearizableHistoryOperation {
    LinearizableHistoryOperation(change: change, invokedAt: invokedAt, completion: .unknown)
}

private func bytes(_ version: UInt64, _ text: String) -> LinearizableValue {
    LinearizableValue(version: version, content: .bytes(contentType: "text/plain", data: Array(text.utf8)))
}

private func put(_ text: String, _ precondition: LinearizablePrecondition = .none) -> LinearizableChange {
    .put(contentType: "text/plain", data: Array(text.utf8), precondition: precondition)
}

private func isLinearizable(_ operations: [LinearizableHistoryOperation]) -> Bool {
    LinearizabilityChecker.check(operations) == .linearizable
}

private func isViolation(_ operations: [LinearizableHistoryOperation]) -> Bool {
    if case .notLinearizable = LinearizabilityChecker.check(operations) { return true }
    return false
}

@Suite("Linearizability checker (CASPaxos)")
struct CASPaxosLinearizabilityCheckerTests {
    // Proves the checker accepts a sequential register history and the empty history.
    @Test func acceptsSequentialRegister() {
        #expect(isLinearizable([]))
        #expect(isLinearizable([
            returned(put("a"), 1, 2, .applied(bytes(1, "a"))),
            returned(.read, 3, 4, .applied(bytes(1, "a"))),
            returned(put("b", .ifMatch(version: 1)), 5, 6, .applied(bytes(2, "b"))),
            returned(.delete(precondition: .none), 7, 8, .applied(LinearizableValue(version: 3, content: .deleted))),
        ]))
    }

    // Proves the checker rejects a stale read: a read invoked after a write returned must see it.
    @Test func rejectsStaleRead() {
        #expect(isViolation([
            returned(put("a"), 1, 2, .applied(bytes(1, "a"))),
            returned(.read, 3, 4, .applied(nil)),
        ]))
    }

    // Proves overlapping operations may take effect in either order, but a read cannot see a value that no order yields.
    @Test func overlappingWritesInEitherOrder() {
        let first = returned(put("a"), 1, 10, .applied(bytes(2, "a")))
        let second = returned(put("b"), 2, 11, .applied(bytes(1, "b")))
        #expect(isLinearizable([first, second, returned(.read, 12, 13, .applied(bytes(2, "a")))]))
        #expect(isViolation([first, second, returned(.read, 12, 13, .applied(bytes(1, "b")))]))
        #expect(isViolation([first, second, returned(.read, 12, 13, .applied(bytes(2, "b")))]))
    }

    // Proves the checker catches two If-None-Match creations that both succeed, and accepts one refused with the winner's value.
    @Test func compareAndSetHasOneWinner() {
        let winner = returned(put("a", .ifNoneMatch), 1, 5, .applied(bytes(1, "a")))
        #expect(isViolation([winner, returned(put("b", .ifNoneMatch), 2, 6, .applied(bytes(1, "b")))]))
        #expect(isViolation([winner, returned(put("b", .ifNoneMatch), 2, 6, .applied(bytes(2, "b")))]))
        #expect(isLinearizable([winner, returned(put("b", .ifNoneMatch), 2, 6, .refused(.preconditionFailed, current: bytes(1, "a")))]))
        // A refusal must report the value it was refused against.
        #expect(isViolation([winner, returned(put("b", .ifNoneMatch), 2, 6, .refused(.preconditionFailed, current: nil))]))
    }

    // Proves the checker catches a bounded counter taken past its maximum (the last seat sold twice).
    @Test func boundedCounterLastSeat() {
        let add = LinearizableChange.counterAdd(delta: 1, min: 0, max: 1)
        let one = LinearizableValue(version: 1, content: .counter(1))
        #expect(isViolation([returned(add, 1, 5, .applied(one)), returned(add, 2, 6, .applied(one))]))
        #expect(isLinearizable([
            returned(add, 1, 5, .applied(one)),
            returned(add, 2, 6, .refused(.counterOutOfBounds(value: 1, delta: 1, min: 0, max: 1), current: one)),
        ]))
        // The refusal can only come after the success: not when it returned before the success was invoked.
        #expect(isViolation([
            returned(add, 1, 2, .refused(.counterOutOfBounds(value: 1, delta: 1, min: 0, max: 1), current: one)),
            returned(add, 3, 4, .applied(one)),
        ]))
    }

    // Proves the checker catches a capped set that admitted too many members, and accepts the idempotent re-add.
    @Test func cappedSet() {
        let a = LinearizableValue(version: 1, content: .set(["a"]))
        let ab = LinearizableValue(version: 2, content: .set(["a", "b"]))
        let ba = LinearizableValue(version: 1, content: .set(["b"]))
        #expect(isViolation([
            returned(.setAdd(member: "a", cap: 1), 1, 5, .applied(a)),
            returned(.setAdd(member: "b", cap: 1), 2, 6, .applied(ba)),
        ]))
        #expect(isLinearizable([
            returned(.setAdd(member: "a", cap: 2), 1, 5, .applied(a)),
            returned(.setAdd(member: "b", cap: 2), 2, 6, .applied(ab)),
            returned(.setAdd(member: "a", cap: 2), 7, 8, .applied(ab)),
            returned(.setAdd(member: "c", cap: 2), 9, 10, .refused(.setFull(count: 2, cap: 2), current: ab)),
        ]))
    }

    // Proves a timed-out operation may take effect after its invocation or never, but not before it was invoked and not twice.
    @Test func timedOutOperations() {
        let write = timedOut(put("a"), 3)
        #expect(isLinearizable([write, returned(.read, 5, 6, .applied(bytes(1, "a")))]))
        #expect(isLinearizable([write, returned(.read, 5, 6, .applied(nil))]))
        #expect(isLinearizable([write, returned(.read, 5, 6, .applied(nil)), returned(.read, 7, 8, .applied(bytes(1, "a")))]))
        // Seen, then gone: it cannot be undone.
        #expect(isViolation([write, returned(.read, 5, 6, .applied(bytes(1, "a"))), returned(.read, 7, 8, .applied(nil))]))
        // Seen by a read that returned before the write was invoked.
        #expect(isViolation([returned(.read, 1, 2, .applied(bytes(1, "a"))), write]))
        // Applied once only: a counter bumped by one unknown add cannot read 2.
        let add = timedOut(.counterAdd(delta: 1, min: 0, max: 5), 1)
        #expect(isViolation([add, returned(.read, 4, 5, .applied(LinearizableValue(version: 2, content: .counter(2))))]))
    }

    // Proves the search stays small on a long history of many concurrent operations, thanks to memoisation.
    @Test func longConcurrentHistoryIsFast() {
        var operations: [LinearizableHistoryOperation] = []
        var value: LinearizableValue?
        // Five clients, 40 rounds: in each round all five overlap; they take effect in client order.
        for round in 0..<40 {
            let base = round * 20
            for client in 0..<5 {
                let change = LinearizableChange.counterAdd(delta: client % 2 == 0 ? 1 : -1, min: -3, max: 3)
                let outcome = change.apply(to: value)
                if case .applied(let next) = outcome { value = next }
                operations.append(returned(change, base + client, base + 10 + client, outcome))
            }
        }
        #expect(isLinearizable(operations))
        var broken = operations
        broken[broken.count - 1] = returned(.read, 1000, 1001, .applied(LinearizableValue(version: 999, content: .counter(3))))
        #expect(isViolation(broken))
    }
}
