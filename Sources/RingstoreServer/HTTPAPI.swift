import Foundation
public import Hummingbird
public import HTTPTypes
import HummingbirdCore
public import Logging
public import NIOCore
public import Prometheus
import RingstoreCore
import RingstoreStorage

/// A table created or dropped through this node's API.
public enum TableChange: Sendable {
    case created(TableDefinition)
    case dropped(String)
}

/// The client HTTP API of DESIGN.md §3, as one responder with its own small router:
/// every unknown path is a JSON 404 and every known path with the wrong method a JSON
/// 405 with `Allow`, which a generic router would not give.
///
/// Keys arrive percent-encoded in the path and may contain `/`; everything after
/// `/v1/kv/{table}/` is the key.
public struct NodeHTTPAPI: HTTPResponder {
    public typealias Context = BasicRequestContext

    static let contextHeader = HTTPField.Name("X-Ringstore-Context")!
    static let defaultContentType = "application/octet-stream"
    /// A table definition is a few fields; anything larger is not one.
    static let tableBodyBytesMax = 64 << 10

    let catalog: any TableDirectory
    let service: any KeyValueService
    /// Serves the keys of linearizable tables.
    let linearizable: any LinearizableService
    let cluster: any ClusterView
    /// Told of every table created or dropped here, so that a cluster can spread it.
    let tablesChanged: @Sendable (TableChange) async -> Void
    let maxValueBytes: Int
    let registry: PrometheusCollectorRegistry?
    let health: @Sendable () -> String
    let logger: Logger
    let metrics = HTTPMetrics()

    public init(
        catalog: any TableDirectory, service: any KeyValueService, linearizable: any LinearizableService,
        cluster: any ClusterView, maxValueBytes: Int,
        registry: PrometheusCollectorRegistry?, logger: Logger,
        tablesChanged: @escaping @Sendable (TableChange) async -> Void = { _ in },
        health: @escaping @Sendable () -> String
    ) {
        self.catalog = catalog
        self.service = service
        self.linearizable = linearizable
        self.cluster = cluster
        self.tablesChanged = tablesChanged
        self.maxValueBytes = maxValueBytes
        self.registry = registry
        self.logger = logger
        self.health = health
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var route = "unmatched"
        let response: Response
        do {
            response = try await dispatch(request, route: &route)
        } catch {
            response = errorReply(error, path: request.uri.path).response
        }
        metrics.record(route: route, method: request.method.rawValue, status: response.status.code, duration: ContinuousClock.now - started)
        return response
    }

    /// The JSON error a failed request answers: its own for an `APIError`, a mapped
    /// one for a storage failure, a 500 (logged) for anything else.
    func errorReply(_ error: any Error, path: String) -> HTTPReply {
        switch error {
        case let error as APIError:
            return Self.errorReply(error)
        case let error as StorageError:
            if case .corruptRecord = error {} else { logger.error("storage error", metadata: ["error": "\(error)"]) }
            return Self.errorReply(Self.apiError(for: error))
        default:
            logger.error("unexpected error", metadata: ["error": "\(error)", "path": "\(path)"])
            return Self.errorReply(.internalError("The server failed to handle the request: \(error)"))
        }
    }

    // MARK: Routing

    private func dispatch(_ request: Request, route: inout String) async throws -> Response {
        let path = request.uri.path
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        switch (segments.first, segments.count) {
        case ("healthz", 1):
            route = "/healthz"
            try allow([.get], request)
            return Self.jsonResponse(.ok, health())
        case ("metrics", 1):
            route = "/metrics"
            try allow([.get], request)
            return metricsResponse()
        case ("v1", _) where segments.count >= 2:
            let rest = segments.dropFirst()
            switch rest.first {
            case "tables" where rest.count == 1:
                route = "/v1/tables"
                try allow([.get], request)
                return listTables()
            case "tables" where rest.count == 2:
                route = "/v1/tables/{table}"
                try allow([.get, .put, .delete], request)
                return try await table(request, name: String(rest.last!))
            case "cluster" where rest.count == 1:
                route = "/v1/cluster"
                try allow([.get], request)
                return Self.jsonResponse(.ok, cluster.clusterJSON())
            case "cluster" where rest.count == 2 && rest.last == "ring":
                route = "/v1/cluster/ring"
                try allow([.get], request)
                return Self.jsonResponse(.ok, cluster.ringJSON())
            case "cluster" where rest.count >= 4 && rest.dropFirst().first == "locate":
                route = "/v1/cluster/locate/{table}/{key}"
                try allow([.get], request)
                let table = try lookUpTable(String(rest.dropFirst(2).first!))
                let key = try Self.decodeKey(rest.dropFirst(3).joined(separator: "/"))
                return Self.jsonResponse(.ok, cluster.locateJSON(table: table, key: key))
            case "kv" where rest.count >= 2:
                route = "/v1/kv/{table}/{key}"
                try allow([.get, .head, .put, .delete, .post], request)
                let table = try lookUpTable(String(rest.dropFirst().first!))
                if request.method == .post {
                    // The last segment names the operation; the key is what lies between.
                    route = "/v1/kv/{table}/{key}/{operation}"
                    guard table.consistency == .linearizable else { throw APIError.notLinearizable(table.name) }
                    let rawKey = rest.count >= 4 ? rest.dropFirst(2).dropLast().joined(separator: "/") : ""
                    return try await keyRoute(request, table: table, rawKey: rawKey, operation: String(rest.last!))
                }
                let rawKey = rest.count >= 3 ? rest.dropFirst(2).joined(separator: "/") : ""
                return try await keyRoute(request, table: table, rawKey: rawKey)
            default:
                throw APIError.routeNotFound(path)
            }
        default:
            throw APIError.routeNotFound(path)
        }
    }

    private func allow(_ methods: [HTTPRequest.Method], _ request: Request) throws(APIError) {
        guard methods.contains(request.method) else {
            throw .methodNotAllowed(request.method, path: request.uri.path, allowed: methods)
        }
    }

    func lookUpTable(_ rawName: String) throws(APIError) -> TableDefinition {
        let name = try Self.decodeTableName(rawName)
        guard let table = catalog.table(named: name) else {
            do { try Validation.checkTableName(name) } catch { throw APIError(error) }
            throw .tableNotFound(name)
        }
        return table
    }

    // MARK: Key-value routes

    static func decodeKey(_ rawKey: String) throws(APIError) -> [UInt8] {
        do {
            let key = try Validation.percentDecode(rawKey)
            try Validation.checkKey(key)
            return key
        } catch {
            throw APIError(error)
        }
    }

    /// A key route through the responder: a HEAD, and requests the fast path leaves
    /// here (a body announced as too large, a server built without the fast path,
    /// tests of the router alone). The body is collected, then the request is served
    /// as the fast path serves it; a HEAD answers a GET's status and headers without
    /// its body (curl -I, caches).
    private func keyRoute(_ request: Request, table: TableDefinition, rawKey: String, operation: String? = nil) async throws -> Response {
        // A bad key is refused before a body is read (an operation names itself first).
        if operation == nil { _ = try Self.decodeKey(rawKey) }
        var request = request
        let body = request.method == .put ? ByteBuffer(bytes: try await collectValue(&request)) : nil
        let method = request.method == .head ? .get : request.method
        let reply = await withCheckedContinuation { continuation in
            serveKey(method: method, uri: request.uri, headers: request.headers, table: table, rawKey: rawKey, operation: operation, body: body) {
                continuation.resume(returning: $0)
            }
        }
        if request.method == .head { return Response(status: reply.status, headers: reply.headers) }
        return reply.response
    }

    /// Serves a key route of either kind of table through `done` (once, on any
    /// thread): `serveKeyValue` for an eventual table, `serveLinearizable` (which also
    /// takes the POST operations) for a linearizable one.
    func serveKey(
        method: HTTPRequest.Method, uri: URI, headers: HTTPFields, table: TableDefinition, rawKey: String, operation: String?,
        body: ByteBuffer?, done: @escaping @Sendable (HTTPReply) -> Void
    ) {
        if table.consistency == .linearizable {
            serveLinearizable(method: method, uri: uri, headers: headers, table: table, rawKey: rawKey, operation: operation, body: body, done: done)
        } else {
            serveKeyValue(method: method, uri: uri, headers: headers, table: table, rawKey: rawKey, body: body, done: done)
        }
    }

    /// Serves a GET, PUT or DELETE of an eventual table's key and answers through
    /// `done` (once, on any thread). The fast path calls it on an event loop, so
    /// nothing here waits: the key-value service answers through a callback too.
    func serveKeyValue(
        method: HTTPRequest.Method, uri: URI, headers: HTTPFields, table: TableDefinition, rawKey: String, body: ByteBuffer?,
        done: @escaping @Sendable (HTTPReply) -> Void
    ) {
        let path = uri.path
        let fail: @Sendable (any Error) -> Void = { [self] error in done(errorReply(error, path: path)) }
        do {
            let key = try Self.decodeKey(rawKey)
            let context = try Self.context(from: headers)
            switch method {
            case .get:
                let r = try Self.quorum("r", uri, table: table)
                service.get(table: table, key: key, r: r) { result in
                    switch result {
                    case .success(let found): done(Self.readReply(table: table, key: key, found))
                    case .failure(let error): fail(error)
                    }
                }
            case .put:
                let w = try Self.quorum("w", uri, table: table)
                let value = body.map { Array($0.readableBytesView) } ?? []
                guard value.count <= maxValueBytes else { throw APIError(InputError.valueTooLarge(bytes: value.count, max: maxValueBytes)) }
                let contentType = headers[.contentType] ?? Self.defaultContentType
                do { try Validation.checkContentType(contentType) } catch { throw APIError(error) }
                service.put(table: table, key: key, sibling: Sibling(contentType: contentType, data: value), context: context, w: w) { result in
                    switch result {
                    case .success(let context): done(Self.noContentReply(context: context))
                    case .failure(let error): fail(error)
                    }
                }
            case .delete:
                let w = try Self.quorum("w", uri, table: table)
                service.delete(table: table, key: key, context: context, w: w) { result in
                    switch result {
                    case .success(let context): done(Self.noContentReply(context: context))
                    case .failure(let error): fail(error)
                    }
                }
            default:
                throw APIError.internalError("internal inconsistency in routing: \(method) reached the key-value handler")
            }
        } catch {
            fail(error)
        }
    }

    static func readReply(table: TableDefinition, key: [UInt8], _ found: ReadResult) -> HTTPReply {
        switch found {
        case .notFound(let context):
            var reply = errorReply(APIError(.notFound, code: "key_not_found", message: "The key has no value in table '\(table.name)'."))
            if let context { reply.headers[contextHeader] = encodeContext(context) }
            return reply
        case .found(let object):
            let siblings = object.values
            if siblings.count == 1, let only = siblings.first, !only.isTombstone {
                var headers = HTTPFields()
                headers[.contentType] = only.contentType
                headers[contextHeader] = encodeContext(object.context)
                return HTTPReply(status: .ok, headers: headers, body: ByteBuffer(bytes: only.data))
            }
            return siblingsReply(table: table.name, key: key, object: object)
        }
    }

    /// Collects a PUT body, refusing it as soon as it passes the node's value limit.
    func collectValue(_ request: inout Request) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxValueBytes {
            throw APIError(InputError.valueTooLarge(bytes: length, max: maxValueBytes))
        }
        do {
            let buffer = try await request.collectBody(upTo: maxValueBytes)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(InputError.valueTooLarge(bytes: maxValueBytes + 1, max: maxValueBytes))
        }
    }

    // MARK: Table routes

    private func listTables() -> Response {
        let items = catalog.all.map(Self.tableJSON).joined(separator: ",")
        return Self.jsonResponse(.ok, "{\"tables\":[\(items)]}")
    }

    private func table(_ request: Request, name rawName: String) async throws -> Response {
        let name = try Self.decodeTableName(rawName)
        switch request.method {
        case .get:
            guard let table = catalog.table(named: name) else { throw APIError.tableNotFound(name) }
            return Self.jsonResponse(.ok, Self.tableJSON(table))
        case .put:
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: Self.tableBodyBytesMax)
            } catch is NIOTooManyBytesError {
                throw APIError.invalidJSON("a table definition is at most \(Self.tableBodyBytesMax) bytes")
            }
            let tableRequest: TableRequest
            if body.readableBytes == 0 {
                tableRequest = TableRequest()
            } else {
                do { tableRequest = try JSONDecoder().decode(TableRequest.self, from: Data(body.readableBytesView)) } catch {
                    throw APIError.invalidJSON("expected {\"n\": int, \"r\": int, \"w\": int, \"consistency\": \"eventual\"}, all optional")
                }
            }
            let (table, created) = try await catalog.create(name: name, request: tableRequest)
            if created { await tablesChanged(.created(table)) }
            return Self.jsonResponse(created ? .created : .ok, Self.tableJSON(table))
        case .delete:
            _ = try await catalog.remove(name: name)
            try await service.removeAllKeys(of: name)
            await tablesChanged(.dropped(name))
            return Response(status: .noContent)
        default:
            throw APIError.internalError("internal inconsistency in routing: \(request.method) reached the table handler")
        }
    }

    // MARK: Responses

    private func metricsResponse() -> Response {
        var bytes: [UInt8] = []
        registry?.emit(into: &bytes)
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func errorResponse(_ error: APIError) -> Response {
        errorReply(error).response
    }

    static func errorReply(_ error: APIError) -> HTTPReply {
        var reply = jsonReply(error.status, error.body)
        for field in error.headers { reply.headers.append(field) }
        return reply
    }

    static func jsonResponse(_ status: HTTPResponse.Status, _ json: String) -> Response {
        jsonReply(status, json).response
    }

    static func jsonReply(_ status: HTTPResponse.Status, _ json: String) -> HTTPReply {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return HTTPReply(status: status, headers: headers, body: ByteBuffer(string: json))
    }

    static func noContentReply(context: VersionVector) -> HTTPReply {
        var headers = HTTPFields()
        headers[contextHeader] = encodeContext(context)
        return HTTPReply(status: .noContent, headers: headers, body: nil)
    }

    static func siblingsReply(table: String, key: [UInt8], object: StoredObject) -> HTTPReply {
        let context = encodeContext(object.context)
        let siblings = object.values.map { sibling in
            "{\"content_type\":\(JSONText.quote(sibling.contentType)),\"value_base64\":\"\(Data(sibling.data).base64EncodedString())\",\"deleted\":\(sibling.isTombstone)}"
        }
        let keyText = String(decoding: key, as: UTF8.self)
        let json = "{\"table\":\(JSONText.quote(table)),\"key\":\(JSONText.quote(keyText)),\"context\":\"\(context)\",\"siblings\":[\(siblings.joined(separator: ","))]}"
        var reply = jsonReply(.multipleChoices, json)
        reply.headers[contextHeader] = context
        return reply
    }

    static func tableJSON(_ table: TableDefinition) -> String {
        "{\"name\":\(JSONText.quote(table.name)),\"n\":\(table.n),\"r\":\(table.r),\"w\":\(table.w),\"consistency\":\"\(table.consistency.rawValue)\"}"
    }

    // MARK: Parsing

    /// A table name from its percent-encoded path segment; bytes that are not UTF-8
    /// make an invalid table name.
    static func decodeTableName(_ raw: String) throws(APIError) -> String {
        let bytes: [UInt8]
        do { bytes = try Validation.percentDecode(raw) } catch { throw APIError(error) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw APIError(InputError.invalidTableName(raw)) }
        return text
    }

    static func encodeContext(_ context: VersionVector) -> String {
        Data(context.encode()).base64EncodedString()
    }

    static func context(from headers: HTTPFields) throws(APIError) -> VersionVector? {
        guard let text = headers[contextHeader], !text.isEmpty else { return nil }
        guard let data = Data(base64Encoded: text) else { throw .invalidContext("not base64") }
        do { return try VersionVector(decoding: Array(data)) } catch { throw .invalidContext(error.reason) }
    }

    static func quorum(_ name: String, _ uri: URI, table: TableDefinition) throws(APIError) -> Int? {
        guard let text = uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int(text), (1...table.n).contains(value) else { throw .invalidQuorum(name, String(text), n: table.n) }
        return value
    }

    static func apiError(for error: StorageError) -> APIError {
        switch error {
        case .diskFull:
            APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "disk_full", message: "The node's disk is full; nothing was written. Retry once space is freed.")
        case .closed:
            APIError(.serviceUnavailable, code: "shutting_down", message: "The node is shutting down; retry on another node.")
        case .corruptRecord:
            APIError(.internalServerError, code: "corrupt_record", message: "The stored record failed its checksum and is not served.")
        case .io, .locked, .failed, .recordTooLarge:
            APIError(.internalServerError, code: "storage_error", message: "The storage engine failed: \(error).")
        }
    }
}

/// A response as plain parts: what the fast path writes itself, and what the
/// responder turns into a Hummingbird `Response`.
public struct HTTPReply: Sendable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: ByteBuffer?

    public init(status: HTTPResponse.Status, headers: HTTPFields = [:], body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var response: Response {
        guard let body else { return Response(status: status, headers: headers) }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
    }
}
