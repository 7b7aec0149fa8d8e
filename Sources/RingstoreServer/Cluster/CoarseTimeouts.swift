import NIOCore
import RingstoreRPC
import Synchronization

/// Time limits that may fire up to `resolution` late, kept in one heap with one
/// armed event-loop timer.
///
/// A time limit that the work it guards nearly always beats (a CASPaxos attempt's)
/// then costs a heap push under a lock, instead of a task in NIO's timer heap, which
/// set from another thread (the storage engine's syncer runs most callbacks) also
/// wakes the event loop. Bodies run on `loop`, at their deadline or up to
/// `resolution` after it; a body whose work already finished must do nothing.
///
/// Thread safety: `schedule` may be called from any thread.
final class CoarseTimeouts: Sendable {
    private struct State {
        var heap = DeadlineHeap()
        var bodies: [UInt64: @Sendable () -> Void] = [:]
        var lastID: UInt64 = 0
        /// When the armed timer fires; nil when none is armed.
        var armedFor: NIODeadline?
    }

    private let loop: any EventLoop
    private let resolution: TimeAmount
    private let state = Mutex(State())

    init(loop: any EventLoop, resolution: TimeAmount = .milliseconds(20)) {
        self.loop = loop
        self.resolution = resolution
    }

    /// How many bodies wait.
    var count: Int { state.withLock { $0.bodies.count } }

    /// Runs `body` on the loop `delay` from now, or up to `resolution` later.
    func schedule(after delay: TimeAmount, _ body: @escaping @Sendable () -> Void) {
        let deadline = NIODeadline.now() + delay
        let arm: NIODeadline? = state.withLock { state in
            state.lastID += 1
            state.heap.push(.init(deadline: deadline, id: state.lastID))
            state.bodies[state.lastID] = body
            // An armed timer serves this deadline if it fires within the resolution.
            if let armed = state.armedFor, armed <= deadline + resolution { return nil }
            let wake = deadline + resolution
            state.armedFor = wake
            return wake
        }
        if let arm { loop.scheduleTask(deadline: arm) { self.fire() } }
    }

    private func fire() {
        let now = NIODeadline.now()
        let (due, arm): ([@Sendable () -> Void], NIODeadline?) = state.withLock { state in
            var due: [@Sendable () -> Void] = []
            while let first = state.heap.first, first.deadline <= now {
                state.heap.popFirst()
                if let body = state.bodies.removeValue(forKey: first.id) { due.append(body) }
            }
            // Another armed timer (armed for an earlier deadline) may still come; this
            // one re-arms for what is left unless that one fires in time for it.
            if let armed = state.armedFor, armed > now, let first = state.heap.first, armed <= first.deadline + resolution {
                return (due, nil)
            }
            guard let first = state.heap.first else {
                state.armedFor = nil
                return (due, nil)
            }
            let wake = max(first.deadline, now + resolution)
            state.armedFor = wake
            return (due, wake)
        }
        if let arm { loop.scheduleTask(deadline: arm) { self.fire() } }
        for body in due { body() }
    }
}
