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
        // A lower ballot is rejected after the restart: the key is held promised at the
        // floor that the first promise raised.
        let floorBallot = try #require(CASPaxosPromiseFloor(counter: 3 + CASPaxosPromiseFloor.headroom).ballot)
        #expect(try await Self.decide(store, .prepare(Self.key, ballot: Ballot(counter: 2, proposer: 1)))
            == .prepareRejected(Self.key, ballot: Ballot(counter: 2, proposer: 1), highest: floorBallot))
        let newer = LinearizableValue(version: 2, content: .counter(6))
        try await store.merge([(Self.key, CASPaxosAcceptorState(promised: Ballot(counter: 4, proposer: 1), accepted: CASPaxosAcceptedValue(ballot: Ballot(counter: 4, proposer: 1), value: newer)))])
        try await store.merge([(Self.key, CASPaxosAcceptorState(promised: Ballot(counter: 3, proposer: 9), accepted: CASPaxosAcceptedValue(ballot: Ballot(counter: 3, proposer: 9), value: value)))])
        #expect(try store.state(of: Self.key).acceptedValue == newer)
        await storage.close()
    }

    // Proves a promise under the stored floor is answered without an fsync of its own, a promise above it first stores a raised floor, an accept still waits for its fsync, and after a restart every key, even one never seen, refuses ballots under the floor.
    @Test func promisesUnderTheFloorNeedNoFsyncAndTheFloorOutlivesARestart() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-acceptor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let other = ItemKey(table: "seats", key: Array("comp2000".utf8), partition: PartitionID(rawValue: 6))
        let floor = CASPaxosPromiseFloor(counter: 3 + CASPaxosPromiseFloor.headroom)
        do {
            let storage = try Self.open(folder)
            let store = AcceptorStore(storage: storage)
            #expect(store.durableFloor == .none)
            let first = Ballot(counter: 3, proposer: 9)
            #expect(try await Self.decide(store, .prepare(Self.key, ballot: first)) == .promise(Self.key, ballot: first, accepted: nil))
            #expect(store.durableFloor == floor)

            let syncs = storage.statistics.syncs
            let second = Ballot(counter: 10, proposer: 9)
            #expect(try await Self.decide(store, .prepare(other, ballot: second)) == .promise(other, ballot: second, accepted: nil))
            let third = Ballot(counter: 11, proposer: 9)
            #expect(try await Self.decide(store, .prepare(Self.key, ballot: third)) == .promise(Self.key, ballot: third, accepted: nil))
            #expect(storage.statistics.syncs == syncs, "promises under the floor waited for an fsync")

            let value = LinearizableValue(version: 1, content: .counter(1))
            #expect(try await Self.decide(store, .accept(Self.key, ballot: third, value: value)) == .accepted(Self.key, ballot: third))
            #expect(storage.statistics.syncs > syncs, "an accept was answered before its fsync")
            await storage.close()
        }
        let storage = try Self.open(folder)
        let store = AcceptorStore(storage: storage)
        #expect(store.durableFloor == floor)
        let never = ItemKey(table: "seats", key: Array("comp3000".utf8), partition: PartitionID(rawValue: 7))
        let under = Ballot(counter: 12, proposer: 4)
        let floorBallot = try #require(floor.ballot)
        for key in [Self.key, other, never] {
            #expect(try await Self.decide(store, .prepare(key, ballot: under)) == .prepareRejected(key, ballot: under, highest: floorBallot))
        }
        // The accepted value is kept under the raised promise.
        #expect(try await Self.peek(store)?.value == LinearizableValue(version: 1, content: .counter(1)))
        let above = Ballot(counter: floorBallot.counter + 1, proposer: 4)
        #expect(try await Self.decide(store, .prepare(never, ballot: above)) == .promise(never, ballot: above, accepted: nil))
        await storage.close()
    }

    // Proves an acceptor whose stored floor cannot be read answers nothing: it may have forgotten promises.
    @Test func anUnreadableFloorRefusesEveryRequest() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-acceptor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let storage = try Self.open(folder)
        try await storage.put(partition: AcceptorStore.floorLocation.partition, key: AcceptorStore.floorLocation.key, value: [1, 2, 3])
        let store = AcceptorStore(storage: storage)
        await #expect(throws: DecodeError.self) {
            try await Self.decide(store, .prepare(Self.key, ballot: Ballot(counter: 1, proposer: 1)))
        }
        await storage.close()
    }

    private static func peek(_ store: AcceptorStore, _ key: ItemKey = key) async throws -> CASPaxosAcceptedValue? {
        try await withCheckedThrowingContinuation { continuation in
            store.peek(key) { continuation.resume(with: $0) }
        }
    }

    // Proves a remembered (decoded) state is used only while its record is the stored one:
    // a delete or a write that bypasses the store is seen at once.
    @Test func rememberedStatesFollowTheStoredRecord() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-acceptor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let storage = try Self.open(folder)
        let store = AcceptorStore(storage: storage)
        let ballot = Ballot(counter: 3, proposer: 9)
        let value = LinearizableValue(version: 1, content: .set(["s1000001", "s1000002"]))
        _ = try await Self.decide(store, .prepare(Self.key, ballot: ballot))
        _ = try await Self.decide(store, .accept(Self.key, ballot: ballot, value: value))
        #expect(try await Self.peek(store)?.value == value)
        #expect(try await Self.peek(store)?.value == value)

        // Deleted behind the store's back (as a dropped table's keys are): the state is gone.
        try await storage.delete(partition: Self.key.partition, key: Self.key.acceptorStorageKey)
        #expect(try await Self.peek(store) == nil)
        let lower = Ballot(counter: 1, proposer: 1)
        #expect(try await Self.decide(store, .prepare(Self.key, ballot: lower)) == .promise(Self.key, ballot: lower, accepted: nil))

        // Written behind the store's back: the new record is decoded, not the remembered state.
        let other = CASPaxosAcceptorState(
            promised: Ballot(counter: 8, proposer: 2),
            accepted: CASPaxosAcceptedValue(ballot: Ballot(counter: 8, proposer: 2), value: LinearizableValue(version: 5, content: .counter(4))))
        try await storage.put(partition: Self.key.partition, key: Self.key.acceptorStorageKey, value: other.encode())
        #expect(try await Self.peek(store) == other.accepted)
        #expect(try await Self.decide(store, .prepare(Self.key, ballot: Ballot(counter: 4, proposer: 1)))
            == .prepareRejected(Self.key, ballot: Ballot(counter: 4, proposer: 1), highest: Ballot(counter: 8, proposer: 2)))

        // Many keys through one store: each answers its own state.
        let keys = (0..<600).map { ItemKey(table: "seats", key: Array("k\($0)".utf8), partition: PartitionID(rawValue: UInt32($0 % 64))) }
        for (index, key) in keys.enumerated() {
            let ballot = Ballot(counter: UInt64(index + 1), proposer: 1)
            _ = try await Self.decide(store, .prepare(key, ballot: ballot))
            _ = try await Self.decide(store, .accept(key, ballot: ballot, value: LinearizableValue(version: 1, content: .counter(Int64(index)))))
        }
        for (index, key) in keys.enumerated().reversed() {
            #expect(try await Self.peek(store, key)?.value == LinearizableValue(version: 1, content: .counter(Int64(index))))
        }
        await storage.close()
    }
}
