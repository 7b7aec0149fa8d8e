import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RingstoreCore
import RingstoreServer
import RingstoreStorage
import Testing

/// How a test reaches the API: the responder alone, through Hummingbird's router test
/// client, or a live server whose fast path serves the key routes.
enum HTTPMode: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case responder
    case fastPath

    var setup: TestingSetup { self == .responder ? .router : .live }
    var testDescription: String { rawValue }
}

/// A node assembled on a temporary folder, with its HTTP server (fast path included).
struct NodeFixture {
    let folder: String
    let parts: NodeServer.Parts
    let app: Application<NodeHTTPAPI>

    static func make(maxValueBytes: Int = 1000) async throws -> NodeFixture {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-server-\(UUID().uuidString)").path
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let parts = try await NodeServer.assemble(
            NodeConfiguration(dataDirectory: folder, maxValueBytes: maxValueBytes, durability: .never), registry: nil, logger: logger)
        return NodeFixture(folder: folder, parts: parts, app: Application(
            responder: parts.api, server: .http1(fastPath: parts.api, logger: logger),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)), logger: logger))
    }

    func close() async {
        await parts.storage.close()
        try? FileManager.default.removeItem(atPath: folder)
    }
}

let contextHeader = HTTPField.Name("X-Ringstore-Context")!

func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

/// Reads everything a client could observe, to compare before and after a refused request.
func snapshot(_ client: some TestClientProtocol) async throws -> String {
    var parts: [String] = []
    for key in ["alpha", "beta", "a%2Fb"] {
        try await client.execute(uri: "/v1/kv/default/\(key)", method: .get) { response in
            parts.append("\(key)=\(response.status.code):\(String(buffer: response.body))")
        }
    }
    try await client.execute(uri: "/v1/tables", method: .get) { parts.append(String(buffer: $0.body)) }
    try await client.execute(uri: "/healthz", method: .get) { response in
        let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as! [String: Any]
        parts.append("keys=\(json["keys"]!)")
    }
    return parts.joined(separator: "\n")
}

@Suite("HTTP API")
struct HTTPAPITests {
    // Proves the round trip of a value with its content type, and the context a write returns.
    @Test(arguments: HTTPMode.allCases) func putThenGetKeepsContentType(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            let put = try await client.execute(uri: "/v1/kv/default/alpha", method: .put, headers: [.contentType: "text/x-test"], body: body("one"))
            #expect(put.status == .noContent)
            #expect(put.headers[contextHeader] != nil)
            try await client.execute(uri: "/v1/kv/default/alpha", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "one")
                #expect(response.headers[.contentType] == "text/x-test")
                #expect(response.headers[contextHeader] == put.headers[contextHeader])
            }
        }
    }

    // Proves Dynamo's versioning over HTTP: writes without context become siblings, a write with the context resolves them.
    @Test(arguments: HTTPMode.allCases) func siblingsAndResolution(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            _ = try await client.execute(uri: "/v1/kv/default/k", method: .put, body: body("a"))
            _ = try await client.execute(uri: "/v1/kv/default/k", method: .put, body: body("b"))
            let conflict = try await client.execute(uri: "/v1/kv/default/k", method: .get)
            #expect(conflict.status == .multipleChoices)
            let json = try JSONSerialization.jsonObject(with: Data(conflict.body.readableBytesView)) as! [String: Any]
            let siblings = json["siblings"] as! [[String: Any]]
            let values = Set(siblings.map { String(decoding: Data(base64Encoded: $0["value_base64"] as! String)!, as: UTF8.self) })
            #expect(values == ["a", "b"])
            let context = conflict.headers[contextHeader]!
            #expect(json["context"] as? String == context)
            _ = try await client.execute(uri: "/v1/kv/default/k", method: .put, headers: [contextHeader: context], body: body("merged"))
            try await client.execute(uri: "/v1/kv/default/k", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "merged")
            }
        }
    }

    // Proves that a delete hides the key and that a key can be written again after it.
    @Test(arguments: HTTPMode.allCases) func deleteThenPut(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            let put = try await client.execute(uri: "/v1/kv/default/d", method: .put, body: body("x"))
            let delete = try await client.execute(uri: "/v1/kv/default/d", method: .delete, headers: [contextHeader: put.headers[contextHeader]!])
            #expect(delete.status == .noContent)
            #expect(try await client.execute(uri: "/v1/kv/default/d", method: .get).status == .notFound)
            _ = try await client.execute(uri: "/v1/kv/default/d", method: .put, body: body("y"))
            #expect(String(buffer: try await client.execute(uri: "/v1/kv/default/d", method: .get).body) == "y")
        }
    }

    // Proves the table routes: create, confirm, conflict, list, and that dropping a table drops its keys.
    @Test(arguments: HTTPMode.allCases) func tableLifecycle(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            #expect(try await client.execute(uri: "/v1/tables/seats", method: .put, body: body("{}")).status == .created)
            #expect(try await client.execute(uri: "/v1/tables/seats", method: .put, body: body("{}")).status == .ok)
            #expect(try await client.execute(uri: "/v1/tables/seats", method: .put, body: body("{\"consistency\":\"linearizable\"}")).status == .conflict)
            _ = try await client.execute(uri: "/v1/kv/seats/s1", method: .put, body: body("v"))
            let list = String(buffer: try await client.execute(uri: "/v1/tables", method: .get).body)
            #expect(list.contains("\"seats\"") && list.contains("\"default\""))
            #expect(try await client.execute(uri: "/v1/tables/seats", method: .delete).status == .noContent)
            #expect(try await client.execute(uri: "/v1/kv/seats/s1", method: .get).status == .notFound)
            _ = try await client.execute(uri: "/v1/tables/seats", method: .put)
            try await client.execute(uri: "/v1/kv/seats/s1", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("key_not_found"))
            }
            #expect(try await client.execute(uri: "/v1/tables/default", method: .delete).status == .conflict)
        }
    }

    // Proves a linearizable table's routes answer alike through the responder and the fast path: ETags, preconditions, counters, capped sets, HEAD, and refusals that change nothing.
    @Test(arguments: HTTPMode.allCases) func linearizableKeysAndOperations(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            #expect(try await client.execute(uri: "/v1/tables/seats", method: .put, body: body("{\"consistency\":\"linearizable\"}")).status == .created)
            let etag = HTTPField.Name.eTag
            func json(_ response: TestResponse) -> [String: Any] {
                (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any] ?? [:]
            }

            // Bytes with If-None-Match, If-Match, a stale ETag, HEAD and DELETE.
            let created = try await client.execute(uri: "/v1/kv/seats/note", method: .put, headers: [.ifNoneMatch: "*", .contentType: "text/plain"], body: body("one"))
            #expect(created.status == .noContent && created.headers[etag] == "\"1\"")
            let again = try await client.execute(uri: "/v1/kv/seats/note", method: .put, headers: [.ifNoneMatch: "*"], body: body("two"))
            #expect(again.status == .preconditionFailed && again.headers[etag] == "\"1\"")
            #expect(json(again)["error"] as? String == "precondition_failed")
            #expect(try await client.execute(uri: "/v1/kv/seats/note", method: .put, headers: [.ifMatch: "\"1\"", .contentType: "text/plain"], body: body("two")).headers[etag] == "\"2\"")
            let read = try await client.execute(uri: "/v1/kv/seats/note", method: .get)
            #expect(read.status == .ok && String(buffer: read.body) == "two" && read.headers[etag] == "\"2\"")
            #expect(read.headers[.contentType] == "text/plain" && read.headers[HTTPField.Name("X-Ringstore-Kind")!] == "bytes")
            let head = try await client.execute(uri: "/v1/kv/seats/note", method: .head)
            #expect(head.status == .ok && head.headers[etag] == "\"2\"" && head.body.readableBytes == 0)
            #expect(try await client.execute(uri: "/v1/kv/seats/note", method: .delete, headers: [.ifMatch: "\"1\""]).status == .preconditionFailed)
            #expect(try await client.execute(uri: "/v1/kv/seats/note", method: .delete, headers: [.ifMatch: "\"2\""]).status == .noContent)
            #expect(try await client.execute(uri: "/v1/kv/seats/note", method: .get).status == .notFound)

            // A bounded counter and a capped set.
            let added = try await client.execute(uri: "/v1/kv/seats/c1/add?delta=2&max=3", method: .post)
            #expect(added.status == .ok && json(added)["value"] as? Int == 2)
            let over = try await client.execute(uri: "/v1/kv/seats/c1/add?delta=2&max=3", method: .post)
            #expect(over.status == .conflict && json(over)["error"] as? String == "counter_out_of_bounds")
            for member in ["s1", "s2"] {
                #expect(try await client.execute(uri: "/v1/kv/seats/r%2F1/set-add?member=\(member)&cap=2", method: .post).status == .ok)
            }
            let full = try await client.execute(uri: "/v1/kv/seats/r%2F1/set-add?member=s3&cap=2", method: .post)
            #expect(full.status == .conflict && json(full)["error"] as? String == "set_full" && json(full)["count"] as? Int == 2)
            // `unless`: refused while the set holds a named member (named back), added otherwise.
            let excluded = try await client.execute(uri: "/v1/kv/seats/t1/set-add?member=b&unless=x&unless=a%20b", method: .post)
            #expect(excluded.status == .ok && json(excluded)["members"] as? [String] == ["b"])
            let conflicting = try await client.execute(uri: "/v1/kv/seats/t1/set-add?member=c&unless=b", method: .post)
            #expect(conflicting.status == .conflict && json(conflicting)["error"] as? String == "conflicting_member"
                && json(conflicting)["conflicting_member"] as? String == "b")
            let removed = try await client.execute(uri: "/v1/kv/seats/r%2F1/set-remove?member=s1", method: .post)
            #expect(removed.status == .ok && json(removed)["members"] as? [String] == ["s2"])
            let emptySet = try await client.execute(uri: "/v1/kv/seats/none/set-remove?member=s1", method: .post)
            #expect(emptySet.status == .ok && json(emptySet)["count"] as? Int == 0)

            // Refusals: each a 400 with its code, and nothing changed.
            let before = String(buffer: try await client.execute(uri: "/v1/kv/seats/c1", method: .get).body)
            for (uri, method, headers, code) in [
                ("/v1/kv/seats/c1/multiply?delta=2", HTTPRequest.Method.post, HTTPFields(), "unknown_operation"),
                ("/v1/kv/seats/c1/add", .post, [:], "invalid_parameter"),
                ("/v1/kv/seats/c1/add?delta=1&min=5&max=1", .post, [:], "invalid_parameter"),
                ("/v1/kv/seats/c1/add?delta=x", .post, [:], "invalid_parameter"),
                ("/v1/kv/seats/c1/add?delta=1&w=2", .post, [:], "not_applicable"),
                ("/v1/kv/seats/c1/add?delta=1", .post, [.ifMatch: "\"1\""], "invalid_precondition"),
                ("/v1/kv/seats/c1?r=1", .get, [:], "not_applicable"),
                ("/v1/kv/seats/c1", .get, [.ifMatch: "\"1\""], "invalid_precondition"),
                ("/v1/kv/seats/c1", .put, [.ifMatch: "\"01\""], "invalid_precondition"),
                ("/v1/kv/seats/c1", .delete, [.ifMatch: "*", .ifNoneMatch: "*"], "invalid_precondition"),
                ("/v1/kv/seats/r1/set-add?member=", .post, [:], "invalid_parameter"),
                ("/v1/kv/seats/r1/set-add?member=a&cap=0", .post, [:], "invalid_parameter"),
                ("/v1/kv/seats/r1/set-add?member=a&unless=", .post, [:], "invalid_parameter"),
            ] {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: method == .put ? body("x") : nil)
                #expect(response.status == .badRequest, "\(method) \(uri)")
                #expect(json(response)["error"] as? String == code, "\(method) \(uri)")
            }
            #expect(String(buffer: try await client.execute(uri: "/v1/kv/seats/c1", method: .get).body) == before)
        }
    }

    /// Requests that must be refused, with the status and error code each must get.
    static let badRequests: [(String, HTTPRequest.Method, HTTPFields, String?, Int, String)] = [
        ("/v1/kv/default/", .put, [:], "v", 400, "empty_key"),
        ("/v1/kv/default", .put, [:], "v", 400, "empty_key"),
        ("/v1/kv/default/" + String(repeating: "k", count: 1025), .put, [:], "v", 400, "key_too_long"),
        ("/v1/kv/default/big", .put, [:], String(repeating: "v", count: 1001), 413, "value_too_large"),
        ("/v1/kv/nosuchtable/k", .put, [:], "v", 404, "table_not_found"),
        ("/v1/kv/default/a%zz", .put, [:], "v", 400, "malformed_percent_encoding"),
        ("/v1/kv/default/a%4", .put, [:], "v", 400, "malformed_percent_encoding"),
        ("/v1/kv/default/%FF%FE", .put, [:], "v", 400, "key_not_utf8"),
        ("/v1/kv/Bad.Name/k", .put, [:], "v", 400, "invalid_table_name"),
        ("/v1/kv/default/alpha/add?delta=1", .post, [:], nil, 400, "not_linearizable"),
        ("/v1/kv/default/alpha", .patch, [:], "v", 405, "method_not_allowed"),
        ("/v1/tables", .post, [:], "{}", 405, "method_not_allowed"),
        ("/v1/kv/default/alpha", .put, [contextHeader: "not base64!"], "v", 400, "invalid_context"),
        ("/v1/kv/default/alpha", .put, [contextHeader: "AAAA"], "v", 400, "invalid_context"),
        ("/v1/kv/default/alpha?w=0", .put, [:], "v", 400, "invalid_quorum"),
        ("/v1/kv/default/alpha?r=abc", .get, [:], nil, 400, "invalid_quorum"),
        ("/v1/tables/new", .put, [:], "{not json", 400, "invalid_json"),
        ("/v1/tables/new", .put, [:], "{\"n\": 3}", 400, "invalid_table"),
        ("/v1/tables/_hidden", .put, [:], "{}", 400, "invalid_table_name"),
        ("/v1/nothing", .get, [:], nil, 404, "route_not_found"),
        ("/", .get, [:], nil, 404, "route_not_found"),
    ]

    // Proves that every kind of bad input gets its 4xx with a JSON error body and changes nothing in the store.
    @Test(arguments: HTTPMode.allCases) func badInputIsRefusedAndChangesNothing(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make(maxValueBytes: 1000)
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            for key in ["alpha", "beta", "a%2Fb"] {
                _ = try await client.execute(uri: "/v1/kv/default/\(key)", method: .put, body: body("value of \(key)"))
            }
            #expect(try await client.execute(uri: "/v1/kv/default/ok", method: .put, body: body(String(repeating: "v", count: 1000))).status == .noContent)
            _ = try await client.execute(uri: "/v1/kv/default/ok", method: .delete)
            let before = try await snapshot(client)
            for (uri, method, headers, text, status, code) in Self.badRequests {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: text.map(body))
                #expect(Int(response.status.code) == status, "\(method) \(uri.prefix(60))")
                #expect(response.headers[.contentType] == "application/json", "\(method) \(uri.prefix(60))")
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: String]
                #expect(json?["error"] == code, "\(method) \(uri.prefix(60))")
                #expect((json?["message"]?.count ?? 0) > 10, "\(method) \(uri.prefix(60))")
                if status == 405 { #expect(response.headers[.allow] != nil) }
                #expect(try await snapshot(client) == before, "\(method) \(uri.prefix(60)) changed the store")
            }
        }
    }

    // Proves that keys up to the 1024-byte limit, and keys with slashes and UTF-8, are accepted.
    @Test(arguments: HTTPMode.allCases) func unusualButValidKeys(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            let longest = String(repeating: "k", count: 1024)
            for uri in ["/v1/kv/default/\(longest)", "/v1/kv/default/a/b/c", "/v1/kv/default/%E2%9C%93%20ok"] {
                let put = try await client.execute(uri: uri, method: .put, body: body("v"))
                #expect(put.status == .noContent, "\(uri.prefix(40))")
                let get = try await client.execute(uri: uri, method: .get)
                #expect(get.status == .ok)
            }
            // An encoded slash and a literal one name the same key.
            let encoded = try await client.execute(uri: "/v1/kv/default/a%2Fb%2Fc", method: .get)
            #expect(String(buffer: encoded.body) == "v")
        }
    }

    // Proves the health and metrics routes answer.
    @Test(arguments: HTTPMode.allCases) func healthAndMetrics(mode: HTTPMode) async throws {
        let node = try await NodeFixture.make()
        defer { Task { await node.close() } }
        try await node.app.test(mode.setup) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"status\":\"ok\""))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
            }
        }
    }
}
