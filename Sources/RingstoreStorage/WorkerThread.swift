import Foundation

/// A dedicated OS thread for blocking work (fsync, merge) that must not occupy
/// Swift's cooperative pool, which on this 2-core machine has two threads.
final class WorkerThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var signaled = false
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    private let name: String
    private var started = false

    /// Makes a worker; nothing runs until `start`.
    init(name: String) {
        self.name = name
    }

    /// Starts the thread; `body` runs until it returns, normally when `waitForWork` says stop.
    func start(_ body: @escaping @Sendable (WorkerThread) -> Void) {
        condition.lock()
        precondition(!started, "internal inconsistency in WorkerThread: started twice")
        started = true
        condition.unlock()
        let thread = Thread { [self] in
            body(self)
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Wakes the thread if it waits.
    func signal() {
        condition.lock()
        signaled = true
        condition.signal()
        condition.unlock()
    }

    /// Waits until signalled or until `timeout` passes (nil: no timeout); returns false when the thread must stop.
    func waitForWork(timeout: Duration?) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = timeout.map { Date().addingTimeInterval(Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18) }
        while !signaled && !stopping {
            if let deadline {
                if !condition.wait(until: deadline) { break }
            } else {
                condition.wait()
            }
        }
        signaled = false
        return !stopping
    }

    /// Whether `stopAndWait` was called: the body should return.
    var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    /// Asks the thread to stop and waits until its body has returned.
    func stopAndWait() {
        condition.lock()
        stopping = true
        let wasStarted = started
        condition.signal()
        condition.unlock()
        if wasStarted { finished.wait() }
    }
}
