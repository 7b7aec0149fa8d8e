import Synchronization

/// Starts `count` operations that report through callbacks, waits until every one
/// has reported, and throws the first failure (nil reports success). For pages of
/// writes that must share the storage engine's group commit: every operation is
/// started before any is awaited.
func awaitAll(_ count: Int, start: (_ index: Int, _ done: @escaping @Sendable ((any Error)?) -> Void) -> Void) async throws {
    guard count > 0 else { return }
    let failure = await withCheckedContinuation { (continuation: CheckedContinuation<(any Error)?, Never>) in
        let remaining = Atomic<Int>(count)
        let firstFailure = Mutex<(any Error)?>(nil)
        for index in 0..<count {
            start(index) { failure in
                if let failure { firstFailure.withLock { $0 = $0 ?? failure } }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    continuation.resume(returning: firstFailure.withLock { $0 })
                }
            }
        }
    }
    if let failure { throw failure }
}
