import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import RingstoreCore
@testable import RingstoreServer
import Testing

@Suite("Operation timeouts")
struct OperationTimeoutsTests {
    private static func at(_ milliseconds: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(milliseconds) * 1_000_000) }
    private static let resolution = TimeAmount.milliseconds(20)

    @Test func onlyTheFirstDeadlineArmsATimer() {
        // Proves one timer serves every operation: the first deadline asks for a wake-up
        // one resolution after it, later ones while a timer is armed ask for none.
        let loop = EmbeddedEventLoop()
        var timeouts = OperationTimeouts()
        let wake = timeouts.add(OperationID(rawValue: 1), deadline: Self.at(2000), resolution: Self.resolution)
        #expect(wake == Self.at(2020))
        timeouts.timer = loop.scheduleTask(deadline: wake!) {}
        #expect(timeouts.add(OperationID(rawValue: 2), deadline: Self.at(2001), resolution: Self.resolution) == nil)
        #expect(timeouts.add(OperationID(rawValue: 3), deadline: Self.at(1500), resolution: Self.resolution) == nil)
        #expect(timeouts.count == 3)
    }

    @Test func takesEveryDueOperationAndWakesNoSoonerThanTheResolution() {
        // Proves expiry hands over exactly the operations whose deadline passed, earliest
        // first, and that the next wake-up is the next deadline but at least one
        // resolution away, so a stream of close deadlines cannot make the timer spin.
        var timeouts = OperationTimeouts()
        for (id, deadline) in [(1, 100), (2, 105), (3, 101), (4, 300), (5, 130)] {
            _ = timeouts.add(OperationID(rawValue: UInt64(id)), deadline: Self.at(Int64(deadline)), resolution: Self.resolution)
        }
        let first = timeouts.takeDue(at: Self.at(110), resolution: Self.resolution)
        #expect(first.due.map(\.rawValue) == [1, 3, 2])
        #expect(first.wake == Self.at(130))
        let second = timeouts.takeDue(at: Self.at(129), resolution: Self.resolution)
        #expect(second.due.isEmpty)
        #expect(second.wake == Self.at(149))
        let third = timeouts.takeDue(at: Self.at(300), resolution: Self.resolution)
        #expect(third.due.map(\.rawValue) == [5, 4])
        #expect(third.wake == nil)
        #expect(timeouts.count == 0)
        #expect(timeouts.add(OperationID(rawValue: 6), deadline: Self.at(400), resolution: Self.resolution) == Self.at(420))
    }

    @Test func aStoppedNodeArmsNothing() {
        // Proves that after stop no deadline is kept and no timer is asked for.
        var timeouts = OperationTimeouts()
        _ = timeouts.add(OperationID(rawValue: 1), deadline: Self.at(100), resolution: Self.resolution)
        timeouts.stop()
        #expect(timeouts.count == 0)
        #expect(timeouts.add(OperationID(rawValue: 2), deadline: Self.at(200), resolution: Self.resolution) == nil)
        #expect(timeouts.takeDue(at: Self.at(1000), resolution: Self.resolution).due.isEmpty)
    }
}

@Suite("Coarse timeouts")
struct CoarseTimeoutsTests {
    // Proves every body runs on the loop, never before its deadline and at most about one resolution after it, in deadline order, whatever order they were set in; an earlier deadline set after a later one is not held back to the later one's timer.
    @Test func bodiesRunAfterTheirDeadlineWithinTheResolution() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let timeouts = CoarseTimeouts(loop: loop, resolution: .milliseconds(10))
        let fired = Mutex<[(Int, NIODeadline, Bool)]>([])
        let delays: [Int64] = [200, 40, 120, 40, 5]
        var deadlines: [NIODeadline] = []
        for (index, delay) in delays.enumerated() {
            deadlines.append(.now() + .milliseconds(delay))
            timeouts.schedule(after: .milliseconds(delay)) {
                fired.withLock { $0.append((index, NIODeadline.now(), loop.inEventLoop)) }
            }
        }
        #expect(timeouts.count == delays.count)
        try await Task.sleep(for: .milliseconds(400))
        let runs = fired.withLock { $0 }
        #expect(runs.count == delays.count)
        #expect(timeouts.count == 0)
        for (index, at, onLoop) in runs {
            #expect(onLoop)
            #expect(at >= deadlines[index], "body \(index) ran before its deadline")
            // One resolution late at most, plus scheduling slack on a busy machine.
            #expect(at - deadlines[index] < .milliseconds(60), "body \(index) ran \(at - deadlines[index]) late")
        }
        #expect(runs.map { delays[$0.0] } == delays.sorted())
    }
}
