@testable import RingstoreCore
import Testing

private let text = "text/plain"

private func bytes(_ version: UInt64, _ data: [UInt8]) -> LinearizableValue {
    LinearizableValue(version: version, content: .bytes(contentType: text, data: data))
}

@Suite("CASPaxos changes")
struct CASPaxosChangeTests {
    // Proves ballots order by counter first and proposer id second, and the generator always draws above what it saw.
    @Test func ballotsAndGenerator() {
        #expect(Ballot(counter: 1, proposer: 9) < Ballot(counter: 2, proposer: 1))
        #expect(Ballot(counter: 2, proposer: 1) < Ballot(counter: 2, proposer: 2))
        var generator = BallotGenerator(proposer: 5)
        #expect(generator.next() == Ballot(counter: 1, proposer: 5))
        generator.observe(Ballot(counter: 40, proposer: 9))
        let next = generator.next()
        #expect(next == Ballot(counter: 41, proposer: 5) && next > Ballot(counter: 40, proposer: 9))
        generator.observe(Ballot(counter: 3, proposer: 1))
        #expect(generator.next().counter == 42, "a lower ballot observed never lowers the counter")
    }

    // Proves puts and deletes follow If-Match and If-None-Match, bump the version on every change, and keep it across a delete.
    @Test func registerPreconditions() {
        let create = LinearizableChange.put(contentType: text, data: [1], precondition: .ifNoneMatch)
        #expect(create.apply(to: nil) == .applied(bytes(1, [1])))
        #expect(create.apply(to: bytes(1, [1])) == .refused(.preconditionFailed, current: bytes(1, [1])))
        let update = LinearizableChange.put(contentType: text, data: [2], precondition: .ifMatch(version: 1))
        #expect(update.apply(to: bytes(1, [1])) == .applied(bytes(2, [2])))
        #expect(update.apply(to: bytes(2, [2])) == .refused(.preconditionFailed, current: bytes(2, [2])))
        #expect(update.apply(to: nil) == .refused(.preconditionFailed, current: nil))
        let deleted = LinearizableValue(version: 3, content: .deleted)
        #expect(LinearizableChange.delete(precondition: .ifMatch(version: 2)).apply(to: bytes(2, [2])) == .applied(deleted))
        #expect(LinearizableChange.delete(precondition: .none).apply(to: deleted) == .applied(deleted), "deleting nothing changes nothing")
        #expect(LinearizableChange.delete(precondition: .none).apply(to: nil) == .applied(nil))
        // A stale ETag from before the delete does not match what is written after it.
        #expect(update.apply(to: deleted) == .refused(.preconditionFailed, current: deleted))
        #expect(create.apply(to: deleted) == .applied(bytes(4, [1])))
        #expect(LinearizableChange.read.apply(to: bytes(7, [7])) == .applied(bytes(7, [7])))
    }

    // Proves a counter add refuses, with the numbers, instead of crossing a bound or overflowing, and refuses other kinds.
    @Test func counterBounds() {
        let take = LinearizableChange.counterAdd(delta: 1, min: 0, max: 2)
        let one = LinearizableValue(version: 1, content: .counter(1))
        let two = LinearizableValue(version: 2, content: .counter(2))
        #expect(take.apply(to: nil) == .applied(one))
        #expect(take.apply(to: one) == .applied(two))
        #expect(take.apply(to: two) == .refused(.counterOutOfBounds(value: 2, delta: 1, min: 0, max: 2), current: two))
        #expect(LinearizableChange.counterAdd(delta: -1, min: 0, max: 2).apply(to: nil)
            == .refused(.counterOutOfBounds(value: 0, delta: -1, min: 0, max: 2), current: nil))
        let huge = LinearizableValue(version: 1, content: .counter(.max))
        #expect(LinearizableChange.counterAdd(delta: 1, min: .min, max: .max).apply(to: huge)
            == .refused(.counterOutOfBounds(value: .max, delta: 1, min: .min, max: .max), current: huge))
        #expect(take.apply(to: bytes(1, [1])) == .refused(.wrongKind(expected: .counter, found: .bytes), current: bytes(1, [1])))
        #expect(LinearizableChange.counterAdd(delta: 0, min: 0, max: 2).apply(to: one) == .applied(one))
    }

    // Proves set adds and removes are idempotent, keep members sorted, and refuse past the cap.
    @Test func setCapAndIdempotence() {
        let add = { (member: String) in LinearizableChange.setAdd(member: member, cap: 2) }
        guard case .applied(let first?) = add("bob").apply(to: nil),
              case .applied(let second?) = add("ann").apply(to: first)
        else {
            Issue.record("adds under the cap were refused")
            return
        }
        #expect(second == LinearizableValue(version: 2, content: .set(["ann", "bob"])))
        #expect(add("ann").apply(to: second) == .applied(second), "a second add of a member changes nothing")
        #expect(add("cat").apply(to: second) == .refused(.setFull(count: 2, cap: 2), current: second))
        #expect(LinearizableChange.setRemove(member: "zed").apply(to: second) == .applied(second))
        #expect(LinearizableChange.setRemove(member: "ann").apply(to: second)
            == .applied(LinearizableValue(version: 3, content: .set(["bob"]))))
        let long = String(repeating: "x", count: CASPaxosLimits.setMemberBytesMax + 1)
        #expect(add(long).apply(to: nil) == .refused(.memberTooLong(bytes: long.utf8.count, max: CASPaxosLimits.setMemberBytesMax), current: nil))
        #expect(add("a").apply(to: LinearizableValue(version: 1, content: .counter(1)))
            == .refused(.wrongKind(expected: .set, found: .counter), current: LinearizableValue(version: 1, content: .counter(1))))
    }

    // Proves an addition with conflicts is refused while the set holds one of them, naming it, and otherwise acts as a plain addition.
    @Test func setAddUnlessConflicts() {
        let timetable = LinearizableValue(version: 4, content: .set(["COMP1000", "MATH2000"]))
        let web = LinearizableChange.setAddUnless(member: "COMP1400", cap: 3, conflicts: ["ART1000", "MATH2000"])
        #expect(web.apply(to: timetable) == .refused(.conflictingMember("MATH2000"), current: timetable))
        #expect(web.apply(to: nil) == .applied(LinearizableValue(version: 1, content: .set(["COMP1400"]))))
        let free = LinearizableChange.setAddUnless(member: "COMP1400", cap: 3, conflicts: ["ART1000"])
        #expect(free.apply(to: timetable) == .applied(LinearizableValue(version: 5, content: .set(["COMP1000", "COMP1400", "MATH2000"]))))
        // A member already present changes nothing, whatever else the set holds.
        let again = LinearizableChange.setAddUnless(member: "COMP1000", cap: 2, conflicts: ["MATH2000"])
        #expect(again.apply(to: timetable) == .applied(timetable))
        // The conflict is named before the cap.
        #expect(LinearizableChange.setAddUnless(member: "X", cap: 2, conflicts: ["COMP1000"]).apply(to: timetable)
            == .refused(.conflictingMember("COMP1000"), current: timetable))
        #expect(LinearizableChange.setAddUnless(member: "X", cap: 2, conflicts: ["Y"]).apply(to: timetable)
            == .refused(.setFull(count: 2, cap: 2), current: timetable))
        #expect(web.isIdempotent)
    }
}
