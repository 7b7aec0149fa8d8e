public import NIOCore

/// How long a client waits before reconnecting after consecutive failed attempts:
/// `delayInitial`, doubling per failure up to `delayMax`, each delay drawn at random
/// from its upper `jitterFraction` so that many clients that lost the same peer do
/// not reconnect in step.
public struct RPCBackoff: Sendable, Equatable {
    /// The delay after the first failure (before jitter).
    public var delayInitial: TimeAmount
    /// The largest delay (before jitter).
    public var delayMax: TimeAmount
    /// Each delay is uniform in `[base × (1 − jitterFraction), base]`; 0 disables jitter.
    public var jitterFraction: Double

    /// Creates a backoff policy: 50 ms doubling to 2 s, up to half of each delay jittered.
    public init(delayInitial: TimeAmount = .milliseconds(50), delayMax: TimeAmount = .seconds(2), jitterFraction: Double = 0.5) {
        precondition(delayInitial.nanoseconds > 0 && delayMax >= delayInitial, "backoff needs 0 < delayInitial <= delayMax")
        precondition((0...1).contains(jitterFraction), "jitterFraction must be within 0...1")
        self.delayInitial = delayInitial
        self.delayMax = delayMax
        self.jitterFraction = jitterFraction
    }

    /// The delay before the next attempt after `consecutiveFailures` (at least 1) failures.
    public func delay(consecutiveFailures: Int, using generator: inout some RandomNumberGenerator) -> TimeAmount {
        precondition(consecutiveFailures >= 1, "a backoff delay follows at least one failure")
        let doublings = min(consecutiveFailures - 1, 32)
        let (scaled, overflow) = delayInitial.nanoseconds.multipliedReportingOverflow(by: 1 << doublings)
        let base = overflow ? delayMax.nanoseconds : min(scaled, delayMax.nanoseconds)
        let jitterRange = Int64(Double(base) * jitterFraction)
        let jitter = jitterRange > 0 ? Int64.random(in: 0...jitterRange, using: &generator) : 0
        return .nanoseconds(base - jitter)
    }
}

/// The connection life of one `RPCClient`: idle, connecting, connected, backing off
/// after failures, shut down. Pure: the client's event loop feeds it events and the
/// current time, and carries out the actions it returns.
package struct RPCConnectionStateMachine {
    package enum State: Equatable {
        /// No connection; the next call connects at once.
        case idle(consecutiveFailures: Int)
        /// Attempt `attempt` is in progress; calls wait for it.
        case connecting(attempt: UInt64, consecutiveFailures: Int)
        /// Attempt `attempt` made the current connection.
        case connected(attempt: UInt64)
        /// The last attempt failed; calls fail fast until `until`, then the next call connects.
        case backingOff(until: NIODeadline, consecutiveFailures: Int, reason: String)
        case shutdown
    }

    package enum CallAction: Equatable {
        /// Write the call on the current connection.
        case send
        /// Hold the call until the attempt in progress finishes.
        case queue
        /// Hold the call and start connection attempt `attempt`.
        case connectAndQueue(attempt: UInt64)
        /// Fail the call at once.
        case fail(RPCError)
    }

    package enum ConnectSucceededAction: Equatable {
        /// The connection is current: write the held calls.
        case sendQueued
        /// A stale attempt or a shut-down client: close the new channel.
        case closeChannel
    }

    package enum ConnectFailedAction: Equatable {
        /// Fail the held calls with this error.
        case failQueued(RPCError)
        /// A stale attempt: nothing to do.
        case none
    }

    package enum ConnectionClosedAction: Equatable {
        /// The current connection closed: fail every outstanding call with this error.
        case failOutstanding(RPCError)
        /// A stale connection: nothing to do.
        case none
    }

    package private(set) var state: State = .idle(consecutiveFailures: 0)
    private var lastAttempt: UInt64 = 0
    package let backoff: RPCBackoff

    package init(backoff: RPCBackoff) {
        self.backoff = backoff
    }

    package var isConnected: Bool {
        if case .connected = state { return true }
        return false
    }

    package mutating func callRequested(now: NIODeadline) -> CallAction {
        switch state {
        case .connected:
            return .send
        case .connecting:
            return .queue
        case .idle(let failures):
            return startAttempt(consecutiveFailures: failures)
        case .backingOff(let until, let failures, let reason):
            guard now >= until else {
                let waitMilliseconds = (until - now).nanoseconds / 1_000_000
                return .fail(.connectionFailed("\(reason); next attempt in \(waitMilliseconds) ms"))
            }
            return startAttempt(consecutiveFailures: failures)
        case .shutdown:
            return .fail(.shutdown)
        }
    }

    package mutating func connectSucceeded(attempt: UInt64) -> ConnectSucceededAction {
        guard case .connecting(attempt, _) = state else { return .closeChannel }
        state = .connected(attempt: attempt)
        return .sendQueued
    }

    package mutating func connectFailed(attempt: UInt64, reason: String, now: NIODeadline, generator: inout some RandomNumberGenerator) -> ConnectFailedAction {
        guard case .connecting(attempt, let failures) = state else { return .none }
        let failuresNow = failures + 1
        let until = now + backoff.delay(consecutiveFailures: failuresNow, using: &generator)
        state = .backingOff(until: until, consecutiveFailures: failuresNow, reason: reason)
        return .failQueued(.connectionFailed(reason))
    }

    /// A channel of attempt `attempt` closed. A connection that closes before its
    /// connect completed counts as a failed attempt.
    package mutating func connectionClosed(attempt: UInt64, now: NIODeadline, generator: inout some RandomNumberGenerator) -> ConnectionClosedAction {
        switch state {
        case .connected(attempt):
            // A peer that restarts is usually back at once: reconnect on the next call.
            state = .idle(consecutiveFailures: 0)
            return .failOutstanding(.connectionClosed)
        case .connecting(attempt, _):
            switch connectFailed(attempt: attempt, reason: "connection closed while connecting", now: now, generator: &generator) {
            case .failQueued(let error): return .failOutstanding(error)
            case .none: return .none
            }
        case .idle, .connecting, .connected, .backingOff, .shutdown:
            return .none
        }
    }

    /// The peer is known to be up again (it called us): the next call connects at
    /// once instead of failing until the backoff delay ends.
    package mutating func peerIsBack() {
        if case .backingOff = state { state = .idle(consecutiveFailures: 0) }
    }

    package mutating func shutdownRequested() {
        state = .shutdown
    }

    private mutating func startAttempt(consecutiveFailures: Int) -> CallAction {
        lastAttempt += 1
        state = .connecting(attempt: lastAttempt, consecutiveFailures: consecutiveFailures)
        return .connectAndQueue(attempt: lastAttempt)
    }
}

/// Deadlines of outstanding work (an RPC client's calls, a node's operations),
/// earliest first (a binary min-heap).
///
/// Entries are not removed when their work completes; the owner skips entries whose
/// work is gone (and may compact the heap when stale entries outnumber live ones), so
/// one event-loop timer serves them all and completed work costs nothing here.
package struct DeadlineHeap {
    package struct Entry: Equatable {
        package var deadline: NIODeadline
        /// The call's request id, or the operation's id.
        package var id: UInt64

        package init(deadline: NIODeadline, id: UInt64) {
            self.deadline = deadline
            self.id = id
        }
    }

    package private(set) var entries: [Entry] = []

    package init() {}

    package var count: Int { entries.count }
    package var first: Entry? { entries.first }

    package mutating func push(_ entry: Entry) {
        entries.append(entry)
        siftUp(from: entries.count - 1)
    }

    @discardableResult
    package mutating func popFirst() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let first = entries.removeLast()
        if !entries.isEmpty { siftDown(from: 0) }
        return first
    }

    /// Keeps only the entries `isLive` accepts, in O(n).
    package mutating func retain(where isLive: (Entry) -> Bool) {
        entries.removeAll { !isLive($0) }
        for index in stride(from: entries.count / 2 - 1, through: 0, by: -1) {
            siftDown(from: index)
        }
    }

    private mutating func siftUp(from start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { return }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < entries.count else { return }
            let right = left + 1
            let smaller = right < entries.count && entries[right].deadline < entries[left].deadline ? right : left
            guard entries[smaller].deadline < entries[parent].deadline else { return }
            entries.swapAt(parent, smaller)
            parent = smaller
        }
    }
}
