import Foundation
import NIOCore
@testable import RingstoreClient
import Testing

/// The partition-aware client against real node processes on loopback. Serialized:
/// each test starts its own cluster, and two at once would crowd a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ClusterClientTests {
    @Test func putGetAndDeleteGoStraightToTheNodes() async throws {
        // Proves put, get and delete run over the node protocol (no HTTP request), and that their contexts are the HTTP API's.
        try await withCluster(3) { cluster in
            try await withClient(cluster.endpoints) { client in
                let written = try await client.put(key: "greeting", value: Array("hello".utf8), contentType: "text/plain")
                #expect(client.ringEpoch != nil)
                guard case .value(let data, let contentType, let context) = try await client.get(key: "greeting") else {
                    Issue.record("expected one value")
                    return
                }
                #expect(data == Array("hello".utf8))
                #expect(contentType == "text/plain")
                #expect(context == written)

                // The same context over HTTP: the paths mix.
                let http = RingstoreHTTPClient(endpoints: [cluster.node("n2").endpoint])
                guard case .value(let httpData, _, let httpContext) = try await http.get(key: "greeting") else {
                    Issue.record("expected one value over HTTP")
                    return
                }
                #expect(httpData == data && httpContext == context)
                let overwritten = try await http.put(key: "greeting", value: Array("hi".utf8), context: httpContext)

                let deleted = try await client.delete(key: "greeting", context: overwritten)
                guard case .notFound(let tombstone) = try await client.get(key: "greeting") else {
                    Issue.record("expected the key to be gone")
                    return
                }
                #expect(tombstone == deleted)
                guard case .notFound = try await http.get(key: "greeting") else {
                    Issue.record("expected the key to be gone over HTTP")
                    return
                }
                let statistics = client.statistics
                #expect(statistics.directReplies == 4)
                #expect(statistics.httpRequests == 0)
                #expect(statistics.nodeFailovers == 0)
            }
        }
    }

    @Test func concurrentWritesBecomeSiblingsThatAContextResolves() async throws {
        // Proves two writes without a context are both kept (siblings, with one context), and a write with that context replaces both.
        try await withCluster(3) { cluster in
            try await withClient(cluster.endpoints) { client in
                try await client.put(key: "seat", value: Array("laptop".utf8))
                try await client.put(key: "seat", value: Array("phone".utf8))
                guard case .siblings(let siblings, let context) = try await client.get(key: "seat") else {
                    Issue.record("expected siblings")
                    return
                }
                #expect(Set(siblings.map { String(decoding: $0.data, as: UTF8.self) }) == ["laptop", "phone"])
                #expect(siblings.allSatisfy { !$0.deleted && $0.contentType == "application/octet-stream" })

                // The HTTP API lists the same siblings with the same context.
                let http = RingstoreHTTPClient(endpoints: [cluster.node("n3").endpoint])
                guard case .siblings(let httpSiblings, let httpContext) = try await http.get(key: "seat") else {
                    Issue.record("expected siblings over HTTP")
                    return
                }
                #expect(httpContext == context && Set(httpSiblings.map(\.valueBase64)) == Set(siblings.map(\.valueBase64)))

                try await client.put(key: "seat", value: Array("merged".utf8), context: context)
                guard case .value(let data, _, _) = try await client.get(key: "seat", r: 3) else {
                    Issue.record("expected one value after resolving")
                    return
                }
                #expect(data == Array("merged".utf8))
                #expect(client.statistics.httpRequests == 0)
            }
        }
    }

    @Test func aStoppedNodeIsPassedOverForTheNextOfThePreferenceList() async throws {
        // Proves that with a key's first node killed, reads and writes of its keys go to the next node of the preference list, not to HTTP.
        try await withCluster(3) { cluster in
            try await withClient(cluster.endpoints) { client in
                let keys = (0..<30).map { "key-\($0)" }
                for key in keys { try await client.put(key: key, value: Array(key.utf8)) }
                let firstOnN1 = try await keysWhosePreferenceListStarts(with: "n1", among: keys, client: client)
                #expect(!firstOnN1.isEmpty)

                cluster.kill("n1")
                for key in firstOnN1 {
                    guard case .value(let data, _, let context) = try await client.get(key: key) else {
                        Issue.record("expected \(key) to be readable with n1 down")
                        continue
                    }
                    #expect(data == Array(key.utf8))
                    try await client.put(key: key, value: Array("after".utf8), context: context)
                }
                for key in firstOnN1 {
                    guard case .value(let data, _, _) = try await client.get(key: key) else {
                        Issue.record("expected \(key) to be readable after the write")
                        continue
                    }
                    #expect(data == Array("after".utf8))
                }
                let statistics = client.statistics
                #expect(statistics.nodeFailovers >= 1)
                #expect(statistics.httpRequests == 0)
            }
        }
    }

    @Test func aReadAsksReplicasItselfAndACoordinatorWhenTheyDiffer() async throws {
        // Proves that a get reads its first r replicas straight (no coordinator) when they agree, and that when one is behind it goes to a coordinator, which answers the newest version and repairs the replica.
        try await withCluster(3, extra: ["--anti-entropy-pause-milliseconds", "0"]) { cluster in
            try await withClient(cluster.endpoints) { client in
                let keys = (0..<30).map { "behind-\($0)" }
                for key in keys { try await client.put(key: key, value: Array("old".utf8), w: 3) }
                let key = try #require(try await keysWhosePreferenceListStarts(with: "n1", among: keys, client: client).first)
                let onN1 = RingstoreHTTPClient(endpoints: [cluster.node("n1").endpoint])
                guard case .value(let data, _, let context) = try await client.get(key: key) else {
                    Issue.record("expected one value")
                    return
                }
                #expect(data == Array("old".utf8))
                #expect(try await metric("ringstore_home_reads_total", on: cluster) == 2, "the client read two replicas itself")
                #expect(try await metric("ringstore_read_repairs_total", on: cluster) == 0)

                // n1 misses the next write: with three nodes and N=3 there is no fallback to keep a hint, and anti-entropy is off.
                cluster.kill("n1")
                try await client.put(key: key, value: Array("new".utf8), context: context)
                try await cluster.restart("n1")
                guard case .value(let stale, _, _) = try await onN1.get(key: key, r: 1) else {
                    Issue.record("expected n1 to hold the old value")
                    return
                }
                #expect(stale == Array("old".utf8), "n1 must be behind for this test to mean anything")

                try await Task.sleep(for: .milliseconds(1100))  // the client passes n1 over for a second after the failed write
                guard case .value(let newest, _, _) = try await client.get(key: key) else {
                    Issue.record("expected one value")
                    return
                }
                #expect(newest == Array("new".utf8))
                #expect(try await metric("ringstore_read_repairs_total", on: cluster) >= 1, "the replicas differed: a coordinator merged and repaired them")
                let deadline = ContinuousClock.now + .seconds(5)
                while case .value(let held, _, _) = try await onN1.get(key: key, r: 1), held != Array("new".utf8), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                guard case .value(let repaired, _, _) = try await onN1.get(key: key, r: 1) else {
                    Issue.record("expected n1 to hold a value")
                    return
                }
                #expect(repaired == Array("new".utf8), "read repair brought n1 up to date")
                #expect(client.statistics.httpRequests == 0)
            }
        }
    }

    @Test func aWriteWhoseReplyIsLostIsReportedAndNotSentAgain() async throws {
        // Proves that a write sent to a node that stops answering fails with writeOutcomeUnknown (not sent to another node, which would make a sibling), and that reads then pass the node over.
        try await withCluster(3) { cluster in
            var configuration = ClusterClientConfiguration()
            configuration.requestTimeout = .milliseconds(500)
            configuration.nodePassOverDuration = .seconds(30)
            try await withClient(cluster.endpoints, configuration: configuration) { client in
                let keys = (0..<30).map { "frozen-\($0)" }
                for key in keys { try await client.put(key: key, value: Array("before".utf8)) }
                let firstOnN2 = try await keysWhosePreferenceListStarts(with: "n2", among: keys, client: client)
                try #require(firstOnN2.count >= 2)

                cluster.pause("n2")
                defer { cluster.resume("n2") }
                do {
                    try await client.put(key: firstOnN2[0], value: Array("during".utf8))
                    Issue.record("expected the write to report that its outcome is unknown")
                } catch TransportError.writeOutcomeUnknown(let node, _, _) {
                    #expect(node == "n2")
                }
                // n2 is passed over now: the next key of n2 is read and written through the next node.
                guard case .value(let data, _, let context) = try await client.get(key: firstOnN2[1]) else {
                    Issue.record("expected a value")
                    return
                }
                #expect(data == Array("before".utf8))
                try await client.put(key: firstOnN2[1], value: Array("after".utf8), context: context)
                #expect(client.statistics.httpRequests == 0)
            }
        }
    }

    @Test func requestsGoOverHTTPWhenNoNodeOfTheRingAnswersThenTheRingIsRefreshed() async throws {
        // Proves that when no node of the client's ring can be reached, requests are served over HTTP, and that the failure makes the client fetch the ring again and go direct.
        try await withCluster(3) { cluster in
            var configuration = ClusterClientConfiguration()
            configuration.ringRefreshSpacing = .seconds(60)  // only the refresh the failure triggers
            try await withClient(cluster.endpoints, configuration: configuration) { client in
                let deadPorts = try NodeProcesses.freePorts(3)
                let owners = (0..<256).map { ["n1", "n2", "n3"][$0 % 3] }
                let members = zip(["n1", "n2", "n3"], deadPorts).map { RingDocument.Member(id: $0, rpc: "127.0.0.1:\($1)", http: "") }
                let stale = RingDocument(partitions: 256, epoch: 0, owners: owners, members: members)
                client.adopt(stale, tables: ["default": TableSettings(n: 3, r: 2, w: 2, isEventual: true)])
                #expect(client.ringEpoch == 0)

                let context = try await client.put(key: "fallback", value: Array("over http".utf8))
                #expect(client.statistics.httpRequests == 1)
                #expect(client.statistics.directReplies == 0)

                // The failed connections asked for a fresh ring; once it is in, requests go direct.
                let deadline = ContinuousClock.now + .seconds(10)
                while client.statistics.ringFetches == 0 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(client.statistics.ringFetches >= 1)
                #expect(client.ringEpoch != 0)
                guard case .value(let data, _, let read) = try await client.get(key: "fallback") else {
                    Issue.record("expected the value written over HTTP")
                    return
                }
                #expect(data == Array("over http".utf8) && read == context)
                #expect(client.statistics.directReplies == 1)
                #expect(client.statistics.httpRequests == 1)
            }
        }
    }

    @Test func aLoneNodeIsServedOverHTTP() async throws {
        // Proves that a ring without node-protocol addresses (a lone node) sends every request over HTTP, with the same outcomes.
        let node = try await NodeProcesses.lone()
        do {
            try await withClient(node.endpoints) { client in
                let context = try await client.put(key: "alone", value: [1, 2, 3])
                guard case .value(let data, _, let read) = try await client.get(key: "alone") else {
                    Issue.record("expected the value")
                    return
                }
                #expect(data == [1, 2, 3] && read == context)
                try await client.delete(key: "alone", context: read)
                guard case .notFound = try await client.get(key: "alone") else {
                    Issue.record("expected the key to be gone")
                    return
                }
                #expect(client.ringEpoch == nil)
                #expect(client.statistics.directReplies == 0)
                #expect(client.statistics.httpRequests == 4)
            }
            await node.stopAll()
        } catch {
            await node.stopAll()
            throw error
        }
    }

    @Test func badInputIsRefusedWithTheHTTPAPIsErrorAndChangesNothing() async throws {
        // Proves an empty or too long key, a too large value, a bad quorum and a bad context are refused with the HTTP API's status and code, and store nothing.
        try await withCluster(3) { cluster in
            var configuration = ClusterClientConfiguration()
            configuration.ringRefreshInterval = .seconds(600)  // one fetch, counted below
            try await withClient(cluster.endpoints, configuration: configuration) { client in
                await client.refreshRing()
                await expectRefusal(400, "empty_key") { try await client.put(key: "", value: [1]) }
                await expectRefusal(400, "empty_key") { _ = try await client.get(key: "") }
                await expectRefusal(400, "key_too_long") { try await client.put(key: String(repeating: "k", count: 1025), value: [1]) }
                await expectRefusal(400, "invalid_quorum") { try await client.put(key: "refused", value: [1], w: 4) }
                await expectRefusal(400, "invalid_quorum") { _ = try await client.get(key: "refused", r: 0) }
                await expectRefusal(400, "invalid_context") { try await client.put(key: "refused", value: [1], context: "not-a-context!") }
                await expectRefusal(400, "content_type_too_long") {
                    try await client.put(key: "refused", value: [1], contentType: String(repeating: "t", count: 300))
                }
                #expect(client.statistics == ClusterClientStatistics(directReplies: 0, nodeFailovers: 0, httpRequests: 0, ringFetches: 1))

                // Larger than the nodes' limit (1 MiB): sent over HTTP, where the node refuses it.
                await expectRefusal(413, "value_too_large") { try await client.put(key: "refused", value: [UInt8](repeating: 7, count: 2 << 20)) }
                // A table that does not exist: over HTTP, which says so.
                await expectRefusal(404, "table_not_found") { try await client.put(table: "no-such-table", key: "k", value: [1]) }

                guard case .notFound(nil) = try await client.get(key: "refused", r: 3) else {
                    Issue.record("a refused write stored something")
                    return
                }
            }
        }
    }

    @Test func aTableCreatedLaterIsAddressedDirectlyOnceTheRingIsFetchedAgain() async throws {
        // Proves a table the client's last fetch did not list is served over HTTP at first, and directly after the next fetch, with its own quorums.
        try await withCluster(3) { cluster in
            var configuration = ClusterClientConfiguration()
            configuration.ringRefreshInterval = .milliseconds(300)
            try await withClient(cluster.endpoints, configuration: configuration) { client in
                await client.refreshRing()
                let http = RingstoreHTTPClient(endpoints: [cluster.node("n1").endpoint])
                let created = try await http.send(method: "PUT", path: "/v1/tables/courses", body: Array(#"{"n": 2, "r": 1, "w": 1}"#.utf8))
                #expect(created.status == 201)
                try await client.put(table: "courses", key: "cs101", value: Array("30 seats".utf8))
                #expect(client.statistics.httpRequests == 1)

                // The periodic fetch brings the new table in.
                let fetched = client.statistics.ringFetches
                let deadline = ContinuousClock.now + .seconds(10)
                while client.statistics.ringFetches < fetched + 1 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                guard case .value(let data, _, _) = try await client.get(table: "courses", key: "cs101") else {
                    Issue.record("expected the value")
                    return
                }
                #expect(data == Array("30 seats".utf8))
                #expect(client.statistics.httpRequests == 1)
                #expect(client.statistics.directReplies == 1)
                await expectRefusal(400, "invalid_quorum") { _ = try await client.get(table: "courses", key: "cs101", r: 3) }
            }
        }
    }

    @Test func manyConcurrentTasksShareOneClient() async throws {
        // Proves one client serves 32 concurrent tasks: every write is acknowledged and read back intact.
        try await withCluster(3) { cluster in
            try await withClient(cluster.endpoints) { client in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<32 {
                        group.addTask {
                            for index in 0..<20 {
                                let key = "task-\(task)-\(index)"
                                try await client.put(key: key, value: Array(key.utf8))
                                guard case .value(let data, _, _) = try await client.get(key: key) else {
                                    throw TestFailure("\(key) was not read back")
                                }
                                guard data == Array(key.utf8) else { throw TestFailure("\(key) read back other bytes") }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(client.statistics.directReplies == 32 * 20 * 2)
                #expect(client.statistics.httpRequests == 0)
            }
        }
    }
}

/// Expects `body` to fail with a `RingstoreError` of that status and code.
func expectRefusal(_ status: Int, _ code: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(code), but the request succeeded", sourceLocation: sourceLocation)
    } catch let error as RingstoreError {
        #expect(error.status == status && error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// The keys among `keys` whose preference list starts with `node`, as the cluster locates them.
func keysWhosePreferenceListStarts(with node: String, among keys: [String], client: RingstoreClusterClient) async throws -> [String] {
    var result: [String] = []
    let http = RingstoreHTTPClient(endpoints: client.endpoints)
    for key in keys {
        let reply = try await http.send(method: "GET", path: "/v1/cluster/locate/default/\(RingstoreHTTPClient.percentEncode(key))")
        guard let json = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any],
              let preference = json["preference_list"] as? [String]
        else { throw TestFailure("no preference list for \(key)") }
        if preference.first == node { result.append(key) }
    }
    return result
}

/// A counter summed over the running nodes of `cluster`, from their metrics.
func metric(_ name: String, on cluster: NodeProcesses) async throws -> Int {
    var total = 0
    for node in cluster.all where node.process.isRunning {
        let reply = try await RingstoreHTTPClient(endpoints: [node.endpoint]).send(method: "GET", path: "/metrics")
        for line in String(decoding: reply.body, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            total += Int(Double(line.split(separator: " ").last ?? "0") ?? 0)
        }
    }
    return total
}
