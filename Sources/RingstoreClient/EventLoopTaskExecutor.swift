public import NIOCore

/// A Swift task executor that runs jobs on one NIO event loop.
///
/// A task that prefers it (`withTaskExecutorPreference(executor) { … }`) runs on the
/// loop thread; when that loop also owns the connections it calls (as
/// `RingstoreClusterClient.taskExecutor` does), a request is written and its reply
/// resumes the task on the same thread, with no hop between threads. Work that
/// blocks MUST NOT run on it: it would stall every connection of the loop.
public final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    /// The loop the jobs run on.
    public let eventLoop: any EventLoop

    /// Creates an executor for `eventLoop`.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `job` on the loop, after what the loop has queued already.
    public func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { unownedJob.runSynchronously(on: executor) }
    }
}
