import NIOCore
import RingstoreRPC
import Testing

@Suite("RPC client logic")
struct RPCClientLogicTests {
    @Test func backoffDoublesFromFiftyMillisecondsToTwoSeconds() {
        // Proves the un-jittered schedule: 50, 100, 200, … ms, capped at 2 s, and no overflow after many failures.
        let backoff = RPCBackoff(jitterFraction: 0)
        var generator = RPCTestGenerator(state: 1)
        let delays = (1...8).map { backoff.delay(consecutiveFailures: $0, using: &generator) }
        #expect(delays == [50, 100, 200, 400, 800, 1600, 2000, 2000].map { TimeAmount.milliseconds($0) })
        #expect(backoff.delay(consecutiveFailures: 10_000, using: &generator) == .seconds(2))
    }

    @Test func jitterStaysWithinItsFractionAndVaries() {
        // Proves jittered delays lie in [base/2, base] by default and are not all equal.
        let backoff = RPCBackoff()
        var generator = RPCTestGenerator(state: 7)
        let delays = (0..<200).map { _ in backoff.delay(consecutiveFailures: 3, using: &generator) }
        #expect(delays.allSatisfy { $0 >= .milliseconds(100) && $0 <= .milliseconds(200) })
        #expect(Set(delays.map(\.nanoseconds)).count > 100)
    }

    @Test func callsConnectQueueAndSendByConnectionState() {
        // Proves a first call connects, calls during the connect queue, and calls once connected are sent.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff())
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(machine.callRequested(now: now) == .connectAndQueue(attempt: 1))
        #expect(machine.callRequested(now: now) == .queue)
        #expect(machine.connectSucceeded(attempt: 1) == .sendQueued)
        #expect(machine.isConnected)
        #expect(machine.callRequested(now: now) == .send)
    }

    @Test func failedConnectBacksOffAndFailsCallsFastUntilTheDelayPasses() {
        // Proves that after a failed connect calls fail fast with connectionFailed, and the next call after the delay reconnects.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff(jitterFraction: 0))
        var generator = RPCTestGenerator(state: 3)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: start)
        #expect(machine.connectFailed(attempt: 1, reason: "refused", now: start, generator: &generator) == .failQueued(.connectionFailed("refused")))
        guard case .fail(.connectionFailed(let reason)) = machine.callRequested(now: start + .milliseconds(49)) else {
            Issue.record("a call during backoff must fail fast")
            return
        }
        #expect(reason.hasPrefix("refused"))
        #expect(machine.callRequested(now: start + .milliseconds(50)) == .connectAndQueue(attempt: 2))
        _ = machine.connectFailed(attempt: 2, reason: "refused", now: start + .milliseconds(50), generator: &generator)
        #expect(machine.state == .backingOff(until: start + .milliseconds(150), consecutiveFailures: 2, reason: "refused"))
        #expect(machine.callRequested(now: start + .milliseconds(150)) == .connectAndQueue(attempt: 3))
        #expect(machine.connectSucceeded(attempt: 3) == .sendQueued)
    }

    @Test func aPeerKnownToBeBackEndsTheBackoff() {
        // Proves that peerIsBack turns a backoff into a connect on the next call, and changes nothing in any other state.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff(jitterFraction: 0))
        var generator = RPCTestGenerator(state: 3)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: start)
        _ = machine.connectFailed(attempt: 1, reason: "refused", now: start, generator: &generator)
        machine.peerIsBack()
        #expect(machine.state == .idle(consecutiveFailures: 0))
        #expect(machine.callRequested(now: start + .milliseconds(1)) == .connectAndQueue(attempt: 2))
        machine.peerIsBack()
        #expect(machine.state == .connecting(attempt: 2, consecutiveFailures: 0))
        #expect(machine.connectSucceeded(attempt: 2) == .sendQueued)
        machine.peerIsBack()
        #expect(machine.state == .connected(attempt: 2))
    }

    @Test func droppedConnectionFailsOutstandingCallsAndReconnectsOnTheNextCall() {
        // Proves a drop fails outstanding calls with connectionClosed, resets the failure count, and the next call reconnects.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff())
        var generator = RPCTestGenerator(state: 5)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: now)
        _ = machine.connectSucceeded(attempt: 1)
        #expect(machine.connectionClosed(attempt: 1, now: now, generator: &generator) == .failOutstanding(.connectionClosed))
        #expect(machine.state == .idle(consecutiveFailures: 0))
        #expect(machine.callRequested(now: now) == .connectAndQueue(attempt: 2))
    }

    @Test func eventsOfStaleAttemptsAreIgnored() {
        // Proves a late connect result or close from an older attempt cannot disturb the current connection.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff())
        var generator = RPCTestGenerator(state: 9)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: now)
        _ = machine.connectSucceeded(attempt: 1)
        _ = machine.connectionClosed(attempt: 1, now: now, generator: &generator)
        _ = machine.callRequested(now: now)
        #expect(machine.connectSucceeded(attempt: 1) == .closeChannel)
        #expect(machine.connectFailed(attempt: 1, reason: "late", now: now, generator: &generator) == .none)
        #expect(machine.connectSucceeded(attempt: 2) == .sendQueued)
        #expect(machine.connectionClosed(attempt: 1, now: now, generator: &generator) == .none)
        #expect(machine.isConnected)
    }

    @Test func closeDuringConnectCountsAsAFailedAttempt() {
        // Proves a connection that closes before its connect completes backs off like a failed connect.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff())
        var generator = RPCTestGenerator(state: 11)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: now)
        #expect(machine.connectionClosed(attempt: 1, now: now, generator: &generator) == .failOutstanding(.connectionFailed("connection closed while connecting")))
        guard case .backingOff(_, 1, _) = machine.state else {
            Issue.record("expected backoff after one failure, got \(machine.state)")
            return
        }
    }

    @Test func shutdownFailsEveryLaterCall() {
        // Proves a shut-down client refuses calls and closes channels that finish connecting afterwards.
        var machine = RPCConnectionStateMachine(backoff: RPCBackoff())
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.callRequested(now: now)
        machine.shutdownRequested()
        #expect(machine.callRequested(now: now) == .fail(.shutdown))
        #expect(machine.connectSucceeded(attempt: 1) == .closeChannel)
    }

    @Test func deadlineHeapPopsEarliestFirstAndCompacts() {
        // Proves the deadline heap orders by deadline and that compaction keeps exactly the live entries in order.
        var heap = DeadlineHeap()
        var generator = RPCTestGenerator(state: 13)
        let offsets = (0..<300).map { _ in Int64.random(in: 0...1_000_000, using: &generator) }
        for (index, offset) in offsets.enumerated() {
            heap.push(.init(deadline: .uptimeNanoseconds(UInt64(offset)), id: UInt64(index)))
        }
        heap.retain { $0.id % 3 != 0 }
        #expect(heap.count == 200)
        var previous: NIODeadline = .uptimeNanoseconds(0)
        while let entry = heap.popFirst() {
            #expect(entry.id % 3 != 0)
            #expect(entry.deadline >= previous)
            previous = entry.deadline
        }
    }
}
