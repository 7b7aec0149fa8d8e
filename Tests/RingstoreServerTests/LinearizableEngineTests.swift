import Foundation
import Logging
import NIOCore
import NIOPosix
@testable import RingstoreCore
@testable import RingstoreServer
import RingstoreStorage
import Synchronization
import Testing

/// A node without a ring: every placement is unknown, so operations answer at once.
private struct NoRingNetwork: CASPaxosNetwork {
    let me = NodeID("alone")
    func placement(of key: ItemKey, replicaCount: Int) -> KeyPlacement? { nil }
    func send(_ request: CASPaxosRequest, to node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosReply?) -> Void) { reply(nil) }
    func schedule(after delay: Duration, _ body: @escaping @Sendable () -> Void) {
        MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: .nanoseconds(Int64(delay / .nanoseconds(1))), body)
    }
    func allReachable(_ nodes: [NodeID]) -> Bool { true }
    func peek(_ key: ItemKey, placement: CASPaxosPlacement, at node: NodeID, timeout: Duration, reply: @escaping @Sendable (CASPaxosAcceptedValue??) -> Void) {
        reply(.none)
    }
}

@Suite("Linearizable engine")
struct LinearizableEngineTests {
    private static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    private static let key = ItemKey(table: "seats", key: Array("c1".utf8), partition: PartitionID(rawValue: 3))

    private static func withStore(_ body: (AcceptorStore) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-engine-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let storage = try StorageEngine(directory: folder, options: StorageOptions(durability: .never), logger: logger)
        try await body(AcceptorStore(storage: storage))
        await storage.close()
    }

    // Proves that many operations queued on one key are all answered, in batches, each with its own outcome, and that the counter ends exact.
    @Test(.timeLimit(.minutes(1))) func queuedOperationsOnOneKeyAreBatchedAndAllAnswered() async throws {
        try await Self.withStore { acceptors in
            let engine = LinearizableEngine(
                network: LocalCASPaxosNetwork(loop: MultiThreadedEventLoopGroup.singleton.next()), acceptors: acceptors, logger: Self.logger)
            let answers = await withTaskGroup(of: LinearizableAnswer.self) { group in
                for _ in 0..<200 {
                    group.addTask { await engine.run(LinearizableRequest(key: Self.key, replicaCount: 1, change: .counterAdd(delta: 1, min: 0, max: 150))) }
                }
                var answers: [LinearizableAnswer] = []
                for await answer in group { answers.append(answer) }
                return answers
            }
            let applied = answers.filter { if case .applied = $0 { true } else { false } }
            let refused = answers.filter { if case .refused(.counterOutOfBounds, _) = $0 { true } else { false } }
            #expect(applied.count == 150 && refused.count == 50)
            let values = Set(applied.compactMap { answer -> Int64? in
                guard case .applied(let value) = answer, case .counter(let number)? = value?.content else { return nil }
                return number
            })
            #expect(values == Set(1...150))
            let read = await engine.run(LinearizableRequest(key: Self.key, replicaCount: 1, change: .read))
            #expect(read == .applied(LinearizableValue(version: 150, content: .counter(150))))
        }
    }

    // Proves that operations a node cannot run (no ring) are each answered at once, also when they queue on one key from several threads at once (the driver's loop takes what others queued meanwhile).
    @Test func operationsThatFinishAtOnceAreAllAnswered() async throws {
        try await Self.withStore { acceptors in
            let engine = LinearizableEngine(network: NoRingNetwork(), acceptors: acceptors, logger: Self.logger)
            let answered = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 10_000) { _ in
                engine.run(LinearizableRequest(key: Self.key, replicaCount: 3, change: .counterAdd(delta: 1, min: .min, max: .max))) { answer in
                    if case .failed(.notReady, _) = answer { answered.add(1, ordering: .relaxed) }
                }
            }
            #expect(answered.load(ordering: .relaxed) == 10_000)
        }
    }
}
