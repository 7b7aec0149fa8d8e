import Foundation
import Logging
@testable import RingstoreCore
@testable import RingstoreServer
import RingstoreStorage
import Testing

@Suite("Acceptor store")
struct AcceptorStoreTests {
    private static let key = ItemKey(table: "seats", key: Array("comp1000".utf8), partition: PartitionID(rawValue: 5))

    private static func open(_ folder: String) throws -> StorageEngine {
        try StorageEngine(directory: folder, options: StorageOptions(durability: .always), logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    private static func decide(_ store: AcceptorStore, _ message: CASPaxosMessage) async throws -> CASPaxosMessage {
        try await withCheckedThrowingContinuation { continuation in
            store.decide(message) { continuation.resume(with: $0) }
        }
    }

    // Proves promises and accepts survive a restart, are kept apart from the table's own keys, and that merging keeps the newer state.
    @Test func statesAreDurableAndMerge() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-acceptor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let value = LinearizableValue(version: 1, content: .counter(7))
        do {
            let storage = try Self.open(folder)
            let store = AcceptorStore(storage: storage)
            let ballot = Ballot(counter: 3, proposer: 9)
            #expect(try await Self.decide(store, .prepare(Self.key, ballot: ballot)) == .promise(Self.key, ballot: ballot, accepted: nil))
            #expect(try await Self.decide(store, .accept(Self.key, ballot: ballot, value: value)) == .accepted(Self.key, ballot: ballot))
            // The same accept again (a duplicated message) is answered again.
            #expect(try await Self.decide(store, .accept(Self.key, ballot: ballot, value: value)) == .accepted(Self.key, ballot: ballot))
            #expect(try storage.get(partition: Self.key.partition, key: Self.key.storageKey) == nil)
            await storage.close()
        }
        let storage = try Self.open(folder)
        let store = AcceptorStore(storage: storage)
        let restored = try store.state(of: Self.key)
        #expect(restored.promised == Ballot(counter: 3, proposer: 9) && restored.acceptedValue == value)
        // A lower ballot is rejected after the restart: the promise was not forgotten.
        #expect(try await Self.decide(store, .prepare(Self.key, ballot: Ballot(counter: 2, proposer: 1)))
            == .prepareRejected(Self.key, ballot: Ballot(counter: 2, proposer: 1), highest: Ballot(counter: 3, proposer: 9)))
        let newer = LinearizableValue(version: 2, content: .counter(6))
        try await store.merge([(Self.key, CASPaxosAcceptorState(promised: Ballot(counter: 4, proposer: 1), accepted: CASPaxosAcceptedValue(ballot: Ballot(counter: 4, proposer: 1), value: newer)))])
        try await store.merge([(Self.key, CASPaxosAcceptorState(promised: Ballot(counter: 3, proposer: 9), accepted: CASPaxosAcceptedValue(ballot: Ballot(counter: 3, proposer: 9), value: value)))])
        #expect(try store.state(of: Self.key).acceptedValue == newer)
        await storage.close()
    }
}
