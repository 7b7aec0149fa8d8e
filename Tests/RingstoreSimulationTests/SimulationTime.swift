/// Simulated time: microseconds since the run began. Nothing in the simulator reads
/// a real clock; time moves only when the next event is taken from the queue.
typealias SimulatedInstant = Int64

/// Conversions between the engine's `Duration`s and simulated microseconds.
enum SimulatedTime {
    static let microsecondsPerSecond: Int64 = 1_000_000

    static func microseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * microsecondsPerSecond + attoseconds / 1_000_000_000_000
    }

    static func duration(microseconds: Int64) -> Duration {
        .microseconds(microseconds)
    }

    static func milliseconds(_ value: Int64) -> Int64 { value * 1_000 }
    static func seconds(_ value: Int64) -> Int64 { value * microsecondsPerSecond }

    /// "12.345678s", for traces.
    static func format(_ instant: SimulatedInstant) -> String {
        let seconds = instant / microsecondsPerSecond
        let fraction = String(instant % microsecondsPerSecond)
        return "\(seconds).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)s"
    }
}

/// The pending events of a run, ordered by (time, sequence number): events due at
/// the same instant run in the order they were scheduled, so a run never depends on
/// how a heap breaks ties.
///
/// The heap orders small plain entries; the events themselves (which carry objects)
/// wait in a slab, so sifting never copies them.
struct EventQueue<Event> {
    private struct Entry {
        var time: SimulatedInstant
        var sequence: UInt64
        var slot: Int

        func precedes(_ other: Entry) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    private var heap: [Entry] = []
    private var slab: [Event?] = []
    private var freeSlots: [Int] = []
    private var nextSequence: UInt64 = 0
    /// A bound on pending events: a run that schedules more has a runaway loop.
    let countMax: Int

    init(countMax: Int = 1_000_000) {
        self.countMax = countMax
    }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var nextTime: SimulatedInstant? { heap.first?.time }

    mutating func schedule(_ event: Event, at time: SimulatedInstant) {
        precondition(heap.count < countMax, "event queue over \(countMax) events: a runaway loop in the simulation")
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slab[slot] = event
        } else {
            slot = slab.count
            slab.append(event)
        }
        heap.append(Entry(time: time, sequence: nextSequence, slot: slot))
        nextSequence += 1
        siftUp(heap.count - 1)
    }

    /// Removes and returns the earliest event.
    mutating func pop() -> (time: SimulatedInstant, event: Event)? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        guard let event = slab[first.slot] else {
            preconditionFailure("internal inconsistency in EventQueue: empty slot \(first.slot)")
        }
        slab[first.slot] = nil
        freeSlots.append(first.slot)
        return (first.time, event)
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        let moving = heap[child]
        while child > 0 {
            let parent = (child - 1) / 2
            guard moving.precedes(heap[parent]) else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = moving
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let moving = heap[parent]
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var first = left
            if left + 1 < heap.count && heap[left + 1].precedes(heap[left]) { first = left + 1 }
            guard heap[first].precedes(moving) else { break }
            heap[parent] = heap[first]
            parent = first
        }
        heap[parent] = moving
    }
}
